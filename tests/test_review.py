"""Review through pull requests (docs/sharing.md, "Review"): the review branch logist-review/<id>
carries only the job's work, `job pr` opens the pull request from it, `job diff` shows the work,
and cleanup knows which job a merge integrated (merge, fast-forward, squash, squash edited in
review) while a twin job with the same change is kept. Real bare remotes and clones; every
result is checked with git itself."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from _sharekit import fake_gh, lg, make_job, remote_refs
from conftest import git, wait_for
from test_hooks import pull

THREE_STEPS = """\
title = "{title}"
prompt = "Add a greeting to the project"
agent = "mock"
[[steps]]
name = "write"
prompt = "Create hello.txt"
[steps.mock]
writes = {{ "hello.txt" = "hello\\n" }}
cost_usd = 0.01
[[steps]]
name = "look"
prompt = "Change nothing"
[[steps]]
name = "extend"
prompt = "Add a line"
[steps.mock]
writes = {{ "hello.txt" = "hello\\nworld\\n", "{extra}" = "x\\n" }}
"""

# A step whose work differs on every run (a rerun must give a different review branch).
CHANGING = """\
title = "{title}"
[[steps]]
name = "stamp"
agent = "command"
command = ["{python}", "-c", "import time; open('stamp.txt', 'w').write(str(time.time_ns()))"]
[[steps]]
name = "note"
agent = "command"
command = ["{python}", "-c", "open('note.txt', 'w').write('note')"]
"""


def three(repo: Path, title: str = "Greet", extra: str = "extra.txt") -> str:
    return make_job(repo, title, toml=THREE_STEPS.format(title=title, extra=extra))


def changing(repo: Path, title: str = "Stamp") -> str:
    return make_job(repo, title, toml=CHANGING.format(title=title, python=sys.executable))


def review(repo: Path, jid: str) -> str:
    return git(repo, "rev-parse", f"refs/heads/logist-review/{jid}")


def base_of(repo: Path, jid: str) -> str:
    return json.loads(git(repo, "show", f"logist/{jid}:.logist/jobs/{jid}/manifest.json"))["base"]


def trailer(repo: Path, rev: str, key: str) -> list[str]:
    out = git(repo, "log", "--first-parent", f"--format=%(trailers:key={key},valueonly,separator=)",
              rev, "--not", "main")
    return [line for line in out.splitlines() if line]


def rebuild(repo: Path, jid: str):
    from logist.store import review as store_review
    from logist.store.jobstore import JobStore

    return store_review.update(JobStore.discover(repo), jid)


# ============================================================================ the branch


def test_review_branch_carries_only_the_work(net):
    jid = three(net.a)
    tip = git(net.a, "rev-parse", f"logist/{jid}")
    base = base_of(net.a, jid)
    rb = review(net.a, jid)  # made while the job ran (at each harvest)
    # one commit per step that changed files: "look" changed nothing
    assert git(net.a, "log", "--format=%s", f"{base}..{rb}").splitlines() == ["extend", "write"]
    assert git(net.a, "rev-list", "--first-parent", f"{base}..{rb}").splitlines() == \
        git(net.a, "rev-list", f"{base}..{rb}").splitlines()  # linear, on the base
    # no .logist/ path anywhere on it
    touched = git(net.a, "log", "--format=", "--name-only", f"{base}..{rb}").split()
    assert sorted(set(touched)) == ["extra.txt", "hello.txt"]
    assert git(net.a, "diff", "--name-only", base, rb).split() == ["extra.txt", "hello.txt"]
    # its tree is the job's code
    git(net.a, "diff", "--quiet", tip, rb, "--", ".", ":(exclude).logist")
    # trailers link back to the record: each Logist-Commit is a harvest on the job branch
    assert trailer(net.a, rb, "Logist-Job") == [jid, jid]
    assert trailer(net.a, rb, "Logist-Step") == ["3/3", "1/3"]
    for harvest in trailer(net.a, rb, "Logist-Commit"):
        git(net.a, "merge-base", "--is-ancestor", harvest, f"logist/{jid}")
        assert "Logist-From: HARVESTING" in git(net.a, "log", "-1", "--format=%B", harvest)
    body = git(net.a, "log", "-1", "--format=%B", rb)
    assert body.startswith("extend\n\nmock agent completed the step")
    # deterministic: rebuilt from nothing, the same ids
    git(net.a, "update-ref", "-d", f"refs/heads/logist-review/{jid}")
    assert rebuild(net.a, jid).status == "created"
    assert review(net.a, jid) == rb
    assert rebuild(net.a, jid).status == "unchanged"
    assert lg(net.a, "job", "status", jid, "--json").json()["review_branch"] == f"logist-review/{jid}"
    assert "error" not in subprocess.run(["git", "-C", str(net.a), "fsck", "--no-dangling"],
                                         capture_output=True, text=True).stderr


def test_a_job_without_work_has_no_review_branch(net):
    jid = make_job(net.a, "Nothing")
    assert git(net.a, "for-each-ref", f"refs/heads/logist-review/{jid}") == ""
    assert lg(net.a, "job", "status", jid, "--json").json()["review_branch"] is None
    res = lg(net.a, "job", "pr", jid, "--url", code=1)
    assert "no work to review" in res.err
    assert f"refs/heads/logist-review/{jid}" not in remote_refs(net.remote)


def test_rebuilt_after_rerun_and_restep(net):
    jid = changing(net.a)
    first = review(net.a, jid)
    assert git(net.a, "log", "--format=%s", f"main..{first}").splitlines() == ["note", "stamp"]
    lg(net.a, "job", "rerun", jid, "--step", "1")
    second = review(net.a, jid)
    assert second != first
    # the new branch is built from the new run's harvests, all on the current branch
    for harvest in trailer(net.a, second, "Logist-Commit"):
        git(net.a, "merge-base", "--is-ancestor", harvest, f"logist/{jid}")
    assert git(net.a, "merge-base", "--is-ancestor", first, second, check=False) == ""
    git(net.a, "diff", "--quiet", f"logist/{jid}", second, "--", ".", ":(exclude).logist")
    # an in-place restep of step 1 changes stamp.txt again: one more commit for step 1
    lg(net.a, "job", "restep", jid, "1")
    third = review(net.a, jid)
    assert git(net.a, "rev-parse", f"{third}^") == second
    assert trailer(net.a, third, "Logist-Step")[0] == "1/2"
    git(net.a, "diff", "--quiet", f"logist/{jid}", third, "--", ".", ":(exclude).logist")
    # a rerun from step 2 drops step 2's commit and adds the new one on top of step 1's
    lg(net.a, "job", "rerun", jid, "--step", "2")
    fourth = review(net.a, jid)
    assert git(net.a, "log", "--format=%s", f"main..{fourth}").splitlines()[-1] == "stamp"


def test_a_local_fixup_on_the_review_branch_is_kept(net):
    jid = changing(net.a, "Fixed here")
    rb = review(net.a, jid)
    # a person commits on the review branch (in a worktree of their own)
    wt = net.tmp / "fix-wt"
    git(net.a, "worktree", "add", "-q", str(wt), f"logist-review/{jid}")
    (wt / "note.txt").write_text("better note\n")
    git(wt, "commit", "-q", "-am", "reviewer: better note")
    fixed = review(net.a, jid)
    assert git(net.a, "rev-parse", f"{fixed}^") == rb
    upd = rebuild(net.a, jid)
    assert upd.status == "kept" and upd.foreign and upd.foreign[0][0] == fixed
    lg(net.a, "job", "rerun", jid, "--step", "1")  # the job moves on: the branch is not rebuilt
    assert review(net.a, jid) == fixed
    upd = rebuild(net.a, jid)
    assert upd.status == "kept" and "did not make" in upd.message and fixed[:12] in upd.message


# ============================================================================ push and pr


def test_pr_pushes_the_review_branch_and_a_rerun_updates_it(net, tmp_path, monkeypatch):
    jid = changing(net.a, "Reviewed")
    log = tmp_path / "gh.json"
    fake_gh(tmp_path / "bin", log)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    lg(net.a, "job", "pr", jid)
    rec = json.loads(log.read_text())
    assert rec["opts"]["head"] == f"logist-review/{jid}"
    body = rec["body"]
    assert "| # | step | agent | outcome | cost | time |" in body
    assert "| 1 | stamp | command | COMPLETED |" in body and f"git log logist/{jid}" in body
    assert remote_refs(net.remote)[f"refs/heads/logist-review/{jid}"] == review(net.a, jid)
    # what a reviewer sees: the diff of the PR has no .logist/ path
    srv = net.tmp / "reviewer"
    git(net.tmp, "clone", "-q", str(net.remote), str(srv))
    assert git(srv, "diff", "--name-only", "origin/main...origin/logist-review/" + jid).split() == \
        ["note.txt", "stamp.txt"]
    # rerun: `job pr` again pushes the rebuilt branch (the open PR follows its head branch)
    old = review(net.a, jid)
    lg(net.a, "job", "rerun", jid)
    fake_gh(tmp_path / "bin", log, fail=True)  # gh: "a pull request ... already exists"
    res = lg(net.a, "job", "pr", jid)
    assert "updated the open pull request" in res.out
    assert remote_refs(net.remote)[f"refs/heads/logist-review/{jid}"] == review(net.a, jid) != old


def test_pr_url_pushes_and_prints_the_compare_url_without_gh(net, monkeypatch):
    jid = changing(net.a, "Web")
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    git(net.a, "remote", "set-url", "origin", "git@github.com:acme/project.git")
    git(net.a, "remote", "set-url", "--push", "origin", str(net.remote))
    res = lg(net.a, "job", "pr", jid, "--url")
    assert f"https://github.com/acme/project/compare/main...logist-review/{jid}?expand=1" in res.out
    assert remote_refs(net.remote)[f"refs/heads/logist-review/{jid}"] == review(net.a, jid)


def test_a_reviewers_pushed_fixup_is_kept_or_clearly_refused(net):
    jid = changing(net.a, "Fixup")
    lg(net.a, "push")
    pushed = review(net.a, jid)
    # a reviewer (plain git, another clone) pushes a fixup onto the review branch
    rv = net.tmp / "reviewer"
    git(net.tmp, "clone", "-q", "-b", f"logist-review/{jid}", str(net.remote), str(rv))
    (rv / "note.txt").write_text("reviewed note\n")
    git(rv, "commit", "-q", "-am", "review: better note")
    git(rv, "push", "-q", "origin", f"logist-review/{jid}")
    fixup = git(rv, "rev-parse", "HEAD")
    # this clone has not changed its branch: the fixup is kept, nothing to push
    lg(net.a, "fetch")
    res = lg(net.a, "push", "--json").json()
    assert f"refs/heads/logist-review/{jid}" in res["skipped"]
    assert res["skipped"][f"refs/heads/logist-review/{jid}"].startswith("kept")
    assert remote_refs(net.remote)[f"refs/heads/logist-review/{jid}"] == fixup
    # the job reruns here: pushing the rebuilt branch would drop the fixup -> refused, clearly
    lg(net.a, "job", "rerun", jid)
    assert review(net.a, jid) != pushed
    res = lg(net.a, "push", code=1)
    assert "logist did not make" in res.err and fixup[:12] in res.err and "review: better note" in res.err
    assert remote_refs(net.remote)[f"refs/heads/logist-review/{jid}"] == fixup
    assert remote_refs(net.remote)[f"refs/heads/logist/{jid}"] == git(net.a, "rev-parse", f"logist/{jid}")
    res = lg(net.a, "job", "pr", jid, "--url", code=1)
    assert "not pushed" in res.err and "cherry-pick" in res.err
    assert remote_refs(net.remote)[f"refs/heads/logist-review/{jid}"] == fixup


def test_push_replaces_a_remote_review_branch_logist_made(net):
    jid = changing(net.a, "Replace")
    lg(net.a, "push")
    lg(net.a, "job", "rerun", jid)
    res = lg(net.a, "push", "--json").json()
    assert f"refs/heads/logist-review/{jid}" in res["pushed"]
    assert remote_refs(net.remote)[f"refs/heads/logist-review/{jid}"] == review(net.a, jid)


# ============================================================================ job diff


def test_job_diff_shows_the_work_without_the_record(net):
    jid = three(net.a)
    base, rb = base_of(net.a, jid), review(net.a, jid)
    assert lg(net.a, "job", "diff", jid).out == ""  # git prints straight to the terminal
    proc = subprocess.run([sys.executable, "-m", "logist", "job", "diff", jid], cwd=net.a,
                          capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout == git(net.a, "diff", base, rb) + "\n"
    assert ".logist" not in proc.stdout and "+world" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "logist", "job", "diff", jid, "--step", "3", "--stat"],
                          cwd=net.a, capture_output=True, text=True)
    assert "hello.txt | 1 +" in proc.stdout and "extra.txt" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "logist", "job", "diff", jid, "--step", "2"],
                          cwd=net.a, capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout == ""  # step 2 changed nothing
    assert "not a step" in lg(net.a, "job", "diff", jid, "--step", "0", code=2).err
    assert "not a step" in lg(net.a, "job", "diff", jid, "--step", "9", code=2).err
    assert lg(net.a, "job", "diff", "Bad..id", code=2).err
    assert "no job" in lg(net.a, "job", "diff", "no-such-job", code=1).err


def test_show_and_history_print_the_harvest_commits(net):
    jid = three(net.a)
    harvests = trailer(net.a, review(net.a, jid), "Logist-Commit")
    out = lg(net.a, "job", "show", jid).out
    for h in harvests:
        assert h[:12] in out
    entries = lg(net.a, "job", "history", jid, "--json").json()
    with_commit = [e for e in entries if e.get("harvest_commit")]
    assert len(with_commit) == 3
    assert {e["harvest_commit"] for e in with_commit} >= set(harvests)
    for e in with_commit:
        assert "Logist-From: HARVESTING" in git(net.a, "show", "-s", "--format=%B", e["harvest_commit"])


# ============================================================================ integration


def server(net) -> Path:
    srv = net.tmp / "server"
    if not srv.exists():
        git(net.tmp, "clone", "-q", str(net.remote), str(srv))
    git(srv, "fetch", "-q", "origin")
    git(srv, "reset", "-q", "--hard", "origin/main")
    return srv


def plan_of(repo: Path, jid: str) -> dict:
    plan = lg(repo, "gc", "--json").json()
    return next(j for j in plan["jobs"] if j["id"] == jid)


def assert_gone(repo: Path, jid: str) -> None:
    assert git(repo, "for-each-ref", f"refs/heads/logist/{jid}", f"refs/heads/logist-review/{jid}") == ""
    git(repo, "rev-parse", "--verify", f"refs/logist/archive/{jid}")


def assert_kept(repo: Path, jid: str) -> None:
    git(repo, "rev-parse", "--verify", f"refs/heads/logist/{jid}")
    git(repo, "rev-parse", "--verify", f"refs/heads/logist-review/{jid}")
    assert Path(lg(repo, "job", "path", jid).out.strip()).is_dir()


def no_record_in_main(srv: Path) -> None:
    assert git(srv, "ls-tree", "-r", "--name-only", "HEAD", "--", ".logist/jobs") == ""
    assert "logist(" not in git(srv, "log", "--format=%s", "HEAD")


@pytest.mark.parametrize("how", ["merge", "ff", "squash", "squash-github", "edited"])
def test_merged_pr_is_cleaned_and_its_twin_kept(net, how):
    jid = three(net.a, "Greet")
    twin = three(net.a, "Twin")  # the very same change, never merged
    lg(net.a, "push")
    srv = server(net)
    pr = f"origin/logist-review/{jid}"
    if how == "merge":
        git(srv, "merge", "-q", "--no-ff", "-m", "Merge pull request #1", pr)
    elif how == "ff":
        git(srv, "merge", "-q", "--ff-only", pr)
    elif how == "squash":  # git's own squash message quotes every commit (indented)
        git(srv, "merge", "-q", "--squash", pr)
        git(srv, "commit", "-q", "--no-edit")
    else:  # a forge's squash: the title, then each commit message (the trailers kept)
        git(srv, "merge", "-q", "--squash", pr)
        if how == "edited":
            (srv / "hello.txt").write_text("hello\nworld, edited in review\n")
            git(srv, "add", "hello.txt")
        msgs = git(srv, "log", "--reverse", "--format=* %B", f"origin/main..{pr}")
        git(srv, "commit", "-q", "-m", f"Greet (#1)\n\n{msgs}")
    git(srv, "push", "-q", "origin", "HEAD:main")
    no_record_in_main(srv)
    lg(net.a, "fetch")
    git(net.a, "fetch", "-q", "origin")
    entry = plan_of(net.a, jid)
    want = {"merge": "merge commit", "ff": "fast-forward", "squash": "squash merge",
            "squash-github": "squash merge", "edited": "squash merge, edited in review"}[how]
    assert entry["integrated"] and entry["how"].startswith(want), entry
    if how == "edited":
        assert entry["how"] == "squash merge, edited in review"
    t = plan_of(net.a, twin)
    assert not t["integrated"] and t["actions"] == [], t
    lg(net.a, "gc", "--yes", "--remote", "origin")
    assert_gone(net.a, jid)
    assert_kept(net.a, twin)
    on_remote = remote_refs(net.remote)
    assert f"refs/heads/logist/{jid}" not in on_remote
    assert f"refs/heads/logist-review/{jid}" not in on_remote
    assert f"refs/logist/archive/{jid}" in on_remote
    assert f"refs/heads/logist/{twin}" in on_remote and f"refs/heads/logist-review/{twin}" in on_remote


def test_a_squash_that_names_another_job_or_no_job_does_not_count(net):
    jid = three(net.a, "Named")
    lg(net.a, "push")
    srv = server(net)
    git(srv, "merge", "-q", "--squash", f"origin/logist-review/{jid}")
    git(srv, "commit", "-q", "-m", "same change, no trailer\n\nLogist-Job: some-other-job")
    git(srv, "push", "-q", "origin", "HEAD:main")
    git(net.a, "fetch", "-q", "origin")
    entry = plan_of(net.a, jid)
    assert not entry["integrated"] and entry["actions"] == []


def test_pulling_a_job_branch_merged_by_hand_warns_once(net):
    jid = three(net.a, "Direct")
    lg(net.a, "push")
    srv = server(net)
    git(srv, "merge", "-q", "--no-ff", "-m", "merge the job branch", f"origin/logist/{jid}")
    git(srv, "push", "-q", "origin", "HEAD:main")
    pull(net.a)  # the post-merge shim runs logist's hook (detached): it logs the warning ...
    wait_for(lambda: (net.a / ".git/logist/merge-warning").exists(), what="the hook's warning")
    log = (net.a / ".git/logist/hooks.log").read_text()
    assert f"record of job(s) {jid}" in log and "git revert -m 1" in log
    # ... and the next `logist job list` shows it, once
    first = lg(net.a, "job", "list", "--all")
    assert f"record of job(s) {jid}" in first.err and f"logist job pr {jid}" in first.err
    assert "record of job" not in lg(net.a, "job", "list", "--all").err
    again = subprocess.run([sys.executable, "-m", "logist", "hook", "post-merge", "0"], cwd=net.a,
                           capture_output=True, text=True)
    assert again.returncode == 0 and "record of job" not in again.stderr  # this merge: warned already
    # the job branch itself was integrated: cleaned up as usual
    assert git(net.a, "for-each-ref", f"refs/heads/logist/{jid}") == ""


def test_merging_the_review_branch_warns_about_nothing(net, tmp_path):
    jid = three(net.a, "Work only")
    git(net.a, "merge", "-q", "--no-ff", "-m", "merge the work", f"logist-review/{jid}")
    proc = subprocess.run([sys.executable, "-m", "logist", "hook", "post-merge", "0"], cwd=net.a,
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "logist:" not in proc.stderr
    assert git(net.a, "ls-tree", "-r", "--name-only", "HEAD", "--", ".logist/jobs") == ""
    assert "logist(" not in git(net.a, "log", "--format=%s", "HEAD")


def test_post_merge_warning_names_the_undo(net, tmp_path):
    jid = three(net.a, "Undo")
    git(net.a, "config", "core.hooksPath", str(tmp_path / "nohooks"))  # the handler alone
    git(net.a, "merge", "-q", "--no-ff", "-m", "oops", f"logist/{jid}")
    proc = subprocess.run([sys.executable, "-m", "logist", "hook", "post-merge", "0"], cwd=net.a,
                          capture_output=True, text=True)
    assert proc.returncode == 0
    assert f"record of job(s) {jid}" in proc.stderr
    assert "git reset --hard" in proc.stderr and f"logist job pr {jid}" in proc.stderr


def test_another_clone_computes_the_same_review_branch(net):
    """The review branch is a function of the job branch: a clone that adopts the job builds
    the very same commits (and a push there has nothing new to send for it)."""
    jid = three(net.a, "Everywhere")
    lg(net.a, "push")
    b = net.clone("b")
    lg(b, "job", "adopt", jid)
    assert review(b, jid) == review(net.a, jid)
    assert remote_refs(net.remote)[f"refs/heads/logist-review/{jid}"] == review(b, jid)


def test_a_review_branch_moved_meanwhile_is_not_overwritten(net):
    """Compare-and-swap: the branch is only moved from the value logist read."""
    from logist.store import review as store_review
    from logist.store.jobstore import JobStore

    jid = changing(net.a, "Raced")
    store = JobStore.discover(net.a)
    chain = store_review.build(store, jid)
    git(net.a, "update-ref", "-d", f"refs/heads/logist-review/{jid}")
    # somebody creates the branch between logist's read and its write: the create fails, the
    # next look finds a branch logist did not make, and it is kept
    real = store.update_refs
    calls = []

    def racing(stdin: str) -> None:
        if not calls:
            calls.append(stdin)
            tree = git(net.a, "rev-parse", "main^{tree}")
            other = git(net.a, "commit-tree", tree, "-p", "main", "-m", "someone else's")
            git(net.a, "update-ref", f"refs/heads/logist-review/{jid}", other)
        real(stdin)

    store.update_refs = racing  # type: ignore[method-assign]
    upd = store_review.update(store, jid, chain=chain)
    assert calls and upd.status == "kept"
    assert git(net.a, "log", "-1", "--format=%s", f"refs/heads/logist-review/{jid}") == "someone else's"


def test_job_pr_warns_when_the_local_review_branch_has_commits_logist_did_not_make(net):
    jid = changing(net.a, "Local fixup")
    rb = review(net.a, jid)
    tree = git(net.a, "rev-parse", f"{rb}^{{tree}}")
    mine = git(net.a, "commit-tree", tree, "-p", rb, "-m", "my local fixup")
    git(net.a, "update-ref", f"refs/heads/logist-review/{jid}", mine)
    res = lg(net.a, "job", "pr", jid, "--url")
    assert "did not make" in res.err
    assert remote_refs(net.remote)[f"refs/heads/logist-review/{jid}"] == mine  # pushed as it is


def test_push_of_a_named_job_brings_a_lagging_review_branch_along(net):
    """A process killed between a harvest's commit and the review branch's update leaves the
    branch one step behind: the next harvest, `logist job pr` or `logist push ID` rebuilds it."""
    jid = three(net.a, "Lagging")
    head = review(net.a, jid)
    git(net.a, "update-ref", f"refs/heads/logist-review/{jid}", f"{head}~1")  # as if killed
    res = lg(net.a, "push", "origin", jid, "--json").json()
    assert f"refs/heads/logist-review/{jid}" in res["pushed"]
    assert review(net.a, jid) == head
    assert remote_refs(net.remote)[f"refs/heads/logist-review/{jid}"] == head
