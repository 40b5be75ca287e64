"""The ref namespace of logist: every ref name is built and parsed here, nowhere else.

docs/refs.md is the contract::

    refs/heads/logist/<id>            job branch
    refs/logist/locks/<id>            lease lock
    refs/logist/runs/<id>/<n>         tip of run n, kept when run n+1 starts
    refs/logist/resteps/<id>/<k>      result of an isolated restep
    refs/logist/displaced/<id>/<k>    commits an agent rewrote away (amend/reset/rebase)
    refs/logist/archive/<id>          tip kept after cleanup
    refs/notes/logist/{observer,sentinel,logs}
    refs/heads/logist-review/<id>     review branch: only the job's work (docs/sharing.md)
"""

from __future__ import annotations

import re

from logist.core.errors import InvalidIdError
from logist.core.jobid import JOB_ID_RE, JobId

REMOTE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}\Z")

BRANCH_PREFIX = "refs/heads/logist/"
LOCKS_PREFIX = "refs/logist/locks/"
RUNS_PREFIX = "refs/logist/runs/"
RESTEPS_PREFIX = "refs/logist/resteps/"
DISPLACED_PREFIX = "refs/logist/displaced/"
ARCHIVE_PREFIX = "refs/logist/archive/"
TIPS_PREFIX = "refs/logist/tips/"  # logist's own copy of each job's tip (docs/refs.md)
STOP_PREFIX = "refs/logist/stop/"  # a stop request for a running job (docs/refs.md)
# Outside refs/heads/logist/: git cannot hold logist/<id> and logist/<id>/... at once.
REVIEW_PREFIX = "refs/heads/logist-review/"
NOTES_OBSERVER = "refs/notes/logist/observer"
NOTES_SENTINEL = "refs/notes/logist/sentinel"
NOTES_LOGS = "refs/notes/logist/logs"
NOTES_REFS = (NOTES_OBSERVER, NOTES_SENTINEL, NOTES_LOGS)
ZERO_OID = "0" * 40


def validate_job_id(job_id: object) -> JobId:
    """``job_id`` as a checked :class:`~logist.core.jobid.JobId` (one already checked is returned
    as it is), else InvalidIdError."""
    return job_id if type(job_id) is JobId else JobId(job_id)


def validate_remote(name: str) -> str:
    if not REMOTE_RE.match(name or "") or ".." in name:
        raise InvalidIdError(f"invalid remote name {name!r}", hint="run `git remote -v` to list remotes")
    return name


def branch_name(job_id: str) -> str:
    """Short branch name, as users type it: logist/<id>."""
    return "logist/" + validate_job_id(job_id)


def branch_ref(job_id: str) -> str:
    return BRANCH_PREFIX + validate_job_id(job_id)


def lock_ref(job_id: str) -> str:
    return LOCKS_PREFIX + validate_job_id(job_id)


def stop_ref(job_id: str) -> str:
    return STOP_PREFIX + validate_job_id(job_id)


def run_ref(job_id: str, run: int) -> str:
    return f"{RUNS_PREFIX}{validate_job_id(job_id)}/{int(run)}"


def restep_ref(job_id: str, k: int) -> str:
    return f"{RESTEPS_PREFIX}{validate_job_id(job_id)}/{int(k)}"


def displaced_ref(job_id: str, k: int) -> str:
    return f"{DISPLACED_PREFIX}{validate_job_id(job_id)}/{int(k)}"


def tip_ref(job_id: str) -> str:
    """refs/logist/tips/<id>: the job's tip as logist last wrote it, moved in the same ref
    transaction as the branch, so an agent that deletes or rewrites the branch loses nothing."""
    return TIPS_PREFIX + validate_job_id(job_id)


def archive_ref(job_id: str) -> str:
    return ARCHIVE_PREFIX + validate_job_id(job_id)


def review_ref(job_id: str) -> str:
    """refs/heads/logist-review/<id>: the job's work without its record, for pull requests."""
    return REVIEW_PREFIX + validate_job_id(job_id)


def review_name(job_id: str) -> str:
    """Short review branch name, as users type it: logist-review/<id>."""
    return "logist-review/" + validate_job_id(job_id)


def job_id_from_branch_ref(ref: str) -> str | None:
    """The job id of ``refs/heads/logist/<id>``, or None if ``ref`` is not a valid job branch."""
    if not ref.startswith(BRANCH_PREFIX):
        return None
    rest = ref[len(BRANCH_PREFIX):]
    return rest if JOB_ID_RE.match(rest) else None


def record_dir(job_id: str) -> str:
    """Path of the job record inside the tree: .logist/jobs/<id>."""
    return f".logist/jobs/{validate_job_id(job_id)}"


def manifest_path(job_id: str) -> str:
    return record_dir(job_id) + "/manifest.json"


def history_path(job_id: str) -> str:
    return record_dir(job_id) + "/history.jsonl"


# ---- sharing (logist push/fetch/worker): remote-tracking namespaces ------------------------
# `logist fetch R` maps the remote's refs into local namespaces that never collide with the
# local ones (and never make both X and X/Y):
#   refs/heads/logist/<id>        -> refs/remotes/<R>/logist/<id>
#   refs/logist/<ns>/...          -> refs/logist/remotes/<R>/<ns>/...   (ns: SHARED_NAMESPACES)
#   refs/notes/logist/<kind>      -> refs/notes/remotes/<R>/logist/<kind>
SHARED_NAMESPACES = ("runs", "resteps", "displaced", "archive", "locks")
REMOTE_LOGIST_PREFIX = "refs/logist/remotes/"
NOTES_MERGE_PREFIX = "refs/notes/logist-merge/"  # short-lived refs of an in-progress notes merge


def remote_branch_prefix(remote: str) -> str:
    """refs/remotes/<R>/logist/ (fetched job branches)."""
    return f"refs/remotes/{validate_remote(remote)}/logist/"


def remote_branch_ref(remote: str, job_id: str) -> str:
    return remote_branch_prefix(remote) + validate_job_id(job_id)


def remote_review_prefix(remote: str) -> str:
    """refs/remotes/<R>/logist-review/ (fetched review branches)."""
    return f"refs/remotes/{validate_remote(remote)}/logist-review/"


def remote_review_ref(remote: str, job_id: str) -> str:
    return remote_review_prefix(remote) + validate_job_id(job_id)


def remote_logist_prefix(remote: str, namespace: str) -> str:
    """refs/logist/remotes/<R>/<ns>/ (fetched runs, resteps, displaced, archive, locks)."""
    if namespace not in SHARED_NAMESPACES:
        raise ValueError(f"unknown shared namespace {namespace!r}")
    return f"{REMOTE_LOGIST_PREFIX}{validate_remote(remote)}/{namespace}/"


def remote_lock_ref(remote: str, job_id: str) -> str:
    return remote_logist_prefix(remote, "locks") + validate_job_id(job_id)


def remote_notes_ref(remote: str, notes_ref: str) -> str:
    """refs/notes/logist/<kind> -> refs/notes/remotes/<R>/logist/<kind>."""
    if not notes_ref.startswith("refs/notes/logist/"):
        raise ValueError(f"not a logist notes ref: {notes_ref!r}")
    return f"refs/notes/remotes/{validate_remote(remote)}/" + notes_ref[len("refs/notes/"):]


def job_refs_prefixes(job_id: str) -> tuple[str, ...]:
    """The per-job namespaces (besides the branch and lock) that travel with a job."""
    j = validate_job_id(job_id)
    return (f"{RUNS_PREFIX}{j}/", f"{RESTEPS_PREFIX}{j}/", f"{DISPLACED_PREFIX}{j}/")
