"""A job id is checked once where it comes in and carried as a JobId (logist.core.jobid)."""

from __future__ import annotations

import pytest
from _core import create_job
from conftest import git

from logist.core import jobid
from logist.core.errors import ExitCode, InvalidIdError
from logist.core.jobid import JobId
from logist.git import refs


@pytest.mark.parametrize("text", ["", "-a", "a-", "A", "a_b", "a/b", "..", "x" * 64, "a\n", None, 7])
def test_an_invalid_id_is_refused_with_a_clear_message(text):
    with pytest.raises(InvalidIdError) as err:
        JobId(text)
    assert "invalid job id" in err.value.message and err.value.exit_code == ExitCode.USAGE
    with pytest.raises(InvalidIdError):
        refs.validate_job_id(text)


def test_a_checked_id_is_not_checked_again(monkeypatch):
    checked = []
    real = jobid.is_job_id
    monkeypatch.setattr(jobid, "is_job_id", lambda text: checked.append(text) or real(text))
    jid = JobId("fix-login-7k2q")
    assert checked == ["fix-login-7k2q"] and isinstance(jid, str) and jid == "fix-login-7k2q"
    assert JobId(jid) is jid and refs.validate_job_id(jid) is jid
    names = [refs.branch_ref(jid), refs.lock_ref(jid), refs.tip_ref(jid), refs.manifest_path(jid)]
    assert checked == ["fix-login-7k2q"]  # the ref builders took the JobId as it is
    assert names[0] == "refs/heads/logist/fix-login-7k2q"
    refs.branch_ref("fix-login-7k2q")  # a plain str is checked every time
    assert checked == ["fix-login-7k2q"] * 2


def test_the_cli_boundary_and_the_store_hand_out_checked_ids(cli):
    from logist.engine.job_select import resolve_job, selected_job

    job = create_job(cli, "--title", "Typed", "--step", "one")
    from logist.store.jobstore import JobStore

    store = JobStore.discover(cli.repo)
    for found in (resolve_job(store, job[:4]), selected_job(store, job)):
        assert type(found) is JobId and found == job
    _, m = store.read(resolve_job(store, job))
    assert type(m.id) is JobId  # a record read from git carries a checked id
    assert [type(s.id) for s in store.list_jobs()] == [JobId]
    assert [type(r.id) for r in store.list_records()] == [JobId]
    # what git itself lists is what the store listed
    assert git(cli.repo, "for-each-ref", "--format=%(refname:lstrip=3)", "refs/heads/logist/") == job


def test_a_bad_id_on_the_command_line_changes_nothing(cli):
    create_job(cli, "--title", "Typed", "--step", "one")
    before = git(cli.repo, "for-each-ref")
    r = cli("job", "suspend", "Bad_Id")
    assert r.code == ExitCode.USAGE and "invalid job id" in r.err
    assert git(cli.repo, "for-each-ref") == before
