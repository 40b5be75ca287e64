"""`logist hide-jobs`: a clone keeps the remote's job branches out of plain `git fetch`, while
`logist fetch` still brings them. Real bare remote, real clones; checked with git itself."""

from __future__ import annotations

from _sharekit import lg, make_job
from conftest import git


def tracking(repo, remote="origin") -> list[str]:
    return git(repo, "for-each-ref", "--format=%(refname)", f"refs/remotes/{remote}/logist/").split()


def test_hide_jobs_keeps_plain_fetch_quiet_and_logist_fetch_working(net):
    jobs = [make_job(net.a, f"Job {i}", run=False) for i in range(3)]
    lg(net.a, "push")
    assert len(git(net.remote, "for-each-ref", "refs/heads/logist/").splitlines()) == 3

    b = net.clone("b")
    assert len(tracking(b)) == 3  # a plain clone brings every job branch

    res = lg(b, "hide-jobs", "--prune", "--json").json()
    assert res == {"remote": "origin", "hidden": True, "changed": True, "removed_tracking": 3}
    assert "^refs/heads/logist/*" in git(b, "config", "--get-all", "remote.origin.fetch").splitlines()
    assert tracking(b) == []

    more = make_job(net.a, "Job later", run=False)
    lg(net.a, "push")
    git(b, "fetch", "-q")
    git(b, "pull", "-q")
    assert tracking(b) == []  # plain fetch/pull skip them
    assert "logist/" not in git(b, "branch", "-a")
    assert git(b, "rev-parse", "origin/main") == git(net.remote, "rev-parse", "main")  # the rest still comes

    lg(b, "fetch")  # asked for explicitly: every job arrives
    assert sorted(r.rsplit("/", 1)[1] for r in tracking(b)) == sorted([*jobs, more])
    listed = {row["id"] for row in lg(b, "job", "list", "--remote", "origin", "--json").json()}
    assert listed == {*jobs, more}

    again = lg(b, "hide-jobs", "--json").json()
    assert again["changed"] is False  # idempotent: one refspec, not two
    assert git(b, "config", "--get-all", "remote.origin.fetch").splitlines().count("^refs/heads/logist/*") == 1

    assert lg(b, "hide-jobs", "--undo", "--json").json()["changed"] is True
    assert "^refs/heads/logist/*" not in git(b, "config", "--get-all", "remote.origin.fetch")
    git(b, "update-ref", "-d", f"refs/remotes/origin/logist/{more}")
    git(b, "fetch", "-q")
    assert f"refs/remotes/origin/logist/{more}" in tracking(b)  # plain fetch brings them again


def test_a_clone_can_start_without_job_branches(net):
    make_job(net.a, "Job", run=False)
    lg(net.a, "push")
    c = net.tmp / "c"  # git clone -c does not apply a negative refspec to its first fetch
    git(net.tmp, "init", "-q", "-b", "main", str(c))
    git(c, "remote", "add", "origin", str(net.remote))
    git(c, "config", "--add", "remote.origin.fetch", "^refs/heads/logist/*")
    git(c, "fetch", "-q", "origin")
    git(c, "checkout", "-q", "main")
    assert tracking(c) == []
    assert (c / "README.md").exists()
    lg(c, "init")
    assert lg(c, "hide-jobs", "--json").json()["changed"] is False


def test_hide_jobs_refuses_an_unknown_or_malformed_remote(net):
    before = git(net.a, "config", "--get-all", "remote.origin.fetch")
    for bad in ("nosuch", "--upload-pack=touch /tmp/x", "a b"):
        res = lg(net.a, "hide-jobs", "--", bad, code=None)
        assert res.code != 0 and "error" in res.err, res
    assert git(net.a, "config", "--get-all", "remote.origin.fetch") == before


def test_a_fetched_job_asked_for_here_names_its_remote_and_the_commands(net):
    """`job status ID` in a clone that only fetched the job: not "there are no jobs yet", but
    where it is and the two commands that read it or take it; exit 1, nothing written."""
    job = make_job(net.a, "Fetched job", run=False)
    lg(net.a, "push")
    b = net.clone("b")
    lg(b, "init")
    lg(b, "fetch")
    before = git(b, "for-each-ref", "--format=%(refname) %(objectname)")
    res = lg(b, "job", "status", job, code=1)
    assert f"no job '{job}' here; it was fetched from origin" in res.err
    assert f"logist job status {job} --remote origin" in res.err
    assert f"logist job adopt {job} --remote origin" in res.err
    assert git(b, "for-each-ref", "--format=%(refname) %(objectname)") == before
    assert "there are no jobs yet" in lg(b, "job", "status", "not-fetched-x1", code=1).err
    assert lg(b, "job", "status", job, "--remote", "origin", "--json").json()["id"] == job
