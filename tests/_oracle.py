"""An independent reader for the tests: job records, history, commit trailers, notes and refs
read with GitPython, never through logist's own readers (``logist.git.gitread``, the store), so
that a bug in logist's reader cannot hide a bug in its writer.

``Oracle(path).check_job(job_id)`` asserts what must hold for any job at rest: the record at
the tip and its history agree, every logist commit on the branch is one history entry (same
transition ids, in order) and its trailers say what the entry says.
"""

from __future__ import annotations

import json
from pathlib import Path

import git


class Oracle:
    def __init__(self, path: str | Path) -> None:
        self.repo = git.Repo(str(path))

    # ------------------------------------------------------------------ reads
    def tip(self, job_id: str) -> str:
        return self.repo.commit(f"refs/heads/logist/{job_id}").hexsha

    def _blob(self, rev: str, path: str) -> bytes:
        return (self.repo.commit(rev).tree / path).data_stream.read()

    def record(self, job_id: str, rev: str | None = None) -> dict:
        """manifest.json of the job at ``rev`` (default: the branch tip)."""
        rev = rev or f"refs/heads/logist/{job_id}"
        return json.loads(self._blob(rev, f".logist/jobs/{job_id}/manifest.json"))

    def history(self, job_id: str, rev: str | None = None) -> list[dict]:
        rev = rev or f"refs/heads/logist/{job_id}"
        text = self._blob(rev, f".logist/jobs/{job_id}/history.jsonl").decode()
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def trailers(self, rev: str) -> dict[str, str]:
        """The commit's trailers (the last value of a repeated key)."""
        return {k: v[-1] for k, v in self.repo.commit(rev).trailers_dict.items()}

    def logist_commits(self, job_id: str, rev: str | None = None) -> list[git.Commit]:
        """The commits of the branch (first parents, oldest first) that logist made for the job."""
        rev = rev or f"refs/heads/logist/{job_id}"
        out = []
        for c in self.repo.iter_commits(rev, first_parent=True):
            if c.trailers_dict.get("Logist-Job", [None])[-1] == job_id:
                out.append(c)
        return out[::-1]

    def note(self, notes_ref: str, rev: str) -> str | None:
        """The note on ``rev`` in ``notes_ref``, or None."""
        try:
            return self.repo.git.notes(f"--ref={notes_ref}", "show", self.repo.commit(rev).hexsha)
        except git.GitCommandError:
            return None

    def refs(self, prefix: str) -> dict[str, str]:
        """{ref name: object id} of the refs under ``prefix`` (any object type: locks are blobs)."""
        out = self.repo.git.for_each_ref("--format=%(refname) %(objectname)", prefix)
        return dict(line.split(" ", 1) for line in out.splitlines())

    # ------------------------------------------------------------------ invariants
    def check_job(self, job_id: str, *, state: str | None = None) -> dict:
        """Assert the invariants of a job at rest; returns its record."""
        rec = self.record(job_id)
        hist = self.history(job_id)
        assert rec["id"] == job_id
        if state is not None:
            assert rec["state"] == state, (rec["state"], rec.get("reason"))
        assert rec["transition_seq"] == len(hist) - 1, (rec["transition_seq"], len(hist))
        last_to = next(e["to"] for e in reversed(hist) if e.get("to"))
        assert last_to == rec["state"], (hist[-1], rec["state"])
        ids = [e["transition_id"] for e in hist]
        assert len(set(ids)) == len(ids), "a transition was recorded twice"
        commits = self.logist_commits(job_id)
        assert [self.trailers(c.hexsha)["Logist-Transition-Id"] for c in commits] == ids
        for c, entry in zip(commits, hist, strict=True):
            t = self.trailers(c.hexsha)
            assert t["Logist-Event"] == entry["event"], (t, entry)
            assert t["Logist-To"] == (entry.get("to") or ""), (t, entry)
            assert t["Logist-From"] == (entry.get("from") or "create"), (t, entry)  # create: from nothing
            assert t["Logist-Run"] == str(entry["run"]), (t, entry)
        return rec
