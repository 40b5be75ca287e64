"""What logist leaves in the repository for git itself: no reflogs for its own ref updates (the
record is the log), checked with `git reflog exists` and the logs/ directory."""

from __future__ import annotations

from _sharekit import lg, make_job
from conftest import git


def test_jobs_write_no_reflogs(project, monkeypatch):
    monkeypatch.setenv("LOGIST_NO_WATCHER", "1")
    jid = make_job(project, "Hygiene", writes={"out.txt": "hello\n"})
    assert git(project, "for-each-ref", "--format=%(refname)", f"refs/heads/logist/{jid}")
    refs = git(project, "for-each-ref", "--format=%(refname)", "refs/heads/logist/", "refs/notes/",
               "refs/logist/").split()
    assert f"refs/heads/logist/{jid}" in refs
    logged = [r for r in refs if git(project, "reflog", "exists", r, check=False) == "" and
              (project / ".git" / "logs" / r).exists()]
    assert logged == [], f"logist's refs have reflogs: {logged}"
    assert not (project / ".git" / "logs" / "refs" / "heads" / "logist").exists()
    # the user's own refs still get theirs
    (project / "user.txt").write_text("x\n")
    git(project, "add", "user.txt")
    git(project, "commit", "-q", "-m", "user work")
    assert (project / ".git" / "logs" / "refs" / "heads" / "main").exists()
    lg(project, "job", "status", jid)
