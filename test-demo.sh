#!/usr/bin/env bash
# logist demo: runs the main scenarios end to end on the built-in mock agent (no API keys).
# Needs only Python >= 3.10 and git. Installs logist into ./.venv if `logist` is not on PATH.
# Everything happens in a scratch repository under a temp dir, never in this checkout.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
if ! command -v logist >/dev/null 2>&1; then
    if [ ! -x "$here/.venv/bin/logist" ]; then
        echo "== installing logist into $here/.venv"
        python3 -m venv "$here/.venv"
        "$here/.venv/bin/python" -m pip install --quiet --upgrade pip
        "$here/.venv/bin/python" -m pip install --quiet "$here"
    fi
    export PATH="$here/.venv/bin:$PATH"
fi

scratch=$(mktemp -d "${TMPDIR:-/tmp}/logist-demo.XXXXXX")
pids=()
cleanup() {
    for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
    rm -rf "$scratch"
}
trap cleanup EXIT
export HOME="$scratch/home"; mkdir -p "$HOME"
export XDG_DATA_HOME="$HOME/.local/share"  # job worktrees go there (docs/agents.md)
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL="$HOME/.gitconfig"
git config --global user.name "Demo User"
git config --global user.email demo@example.invalid
git config --global init.defaultBranch main

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
wait_until() {  # seconds, what, command...: poll the command until it succeeds, or fail
    local deadline=$(( $(date +%s) + $1 )) what=$2; shift 2
    until "$@"; do
        if [ "$(date +%s)" -ge "$deadline" ]; then echo "FAIL: timed out waiting for $what" >&2; exit 1; fi
        sleep 0.2
    done
}
expect_exit() {  # code, command...: run it and check its exit code (docs/exit-codes.md)
    local want=$1 rc=0; shift
    "$@" || rc=$?
    if [ "$rc" != "$want" ]; then echo "FAIL: '$*' exited $rc, expected $want" >&2; exit 1; fi
}
expect_state() {  # job, expected state
    local got
    got=$(logist job status "$1" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])')
    if [ "$got" != "$2" ]; then echo "FAIL: job $1 is $got, expected $2" >&2; exit 1; fi
    echo "ok: $1 is $2"
}

repo="$scratch/project"
mkdir -p "$repo" && cd "$repo"
git init -q
echo "# demo project" > README.md
git add README.md && git commit -qm "initial commit"

step "logist init"
logist init
logist init   # idempotent

step "a three-step job on the mock agent"
cat > "$scratch/greeting.toml" <<'TOML'
title = "Add greeting"
prompt = "Add a greeting to the project"
agent = "mock"
[budget]
max_cost_usd = 1.0
[[steps]]
name = "write"
prompt = "Create hello.txt"
[steps.mock]
writes = { "hello.txt" = "hello\n" }
cost_usd = 0.01
tokens = 120
[[steps]]
name = "extend"
prompt = "Add a second line"
[steps.mock]
writes = { "hello.txt" = "hello\nworld\n" }
cost_usd = 0.02
tokens = 240
[[steps]]
name = "check"
prompt = "Check the file with a real program"
agent = "command"
command = ["python3", "-c", "import sys; data = open('hello.txt').read(); print(data); sys.exit(0 if 'world' in data else 1)"]
TOML
job=$(logist job create --file "$scratch/greeting.toml" --activate)
echo "created $job"
logist job list
logist job status "$job"
logist job run "$job"
expect_state "$job" SUCCESS
logist job history "$job"
logist job metrics "$job"

step "the audit trail is plain git: git log logist/$job"
git log --format='%h %s%n    to=%(trailers:key=Logist-To,valueonly,separator=%x2C) cost=%(trailers:key=Logist-Cost-USD,valueonly)' "logist/$job" | head -40
git show "logist/$job:hello.txt"
git fsck --no-progress 2>&1 | grep -v '^dangling' || true

step "STUCK -> INTERVENTION_REQUIRED -> fix -> resubmit -> SUCCESS"
# a command step that fails until a human creates FIXED in the job's worktree
cat > "$scratch/stuck.toml" <<'TOML'
title = "Needs a human"
[[steps]]
name = "build"
agent = "command"
command = ["python3", "-c", "import os, sys; sys.exit(0 if os.path.exists('FIXED') else 1)"]
TOML
stuck=$(logist job create --file "$scratch/stuck.toml" --activate)
expect_exit 6 logist job run "$stuck"           # 6: needs a person
expect_state "$stuck" INTERVENTION_REQUIRED
touch "$(logist job path "$stuck")/FIXED"    # a human fixes it in the worktree
logist job resubmit "$stuck" --message "added FIXED"
logist job run "$stuck"
expect_state "$stuck" SUCCESS

step "the approval gate"
cat > "$scratch/approval.toml" <<'TOML'
title = "Needs sign-off"
requires_approval = true
[[steps]]
prompt = "Write the release notes"
[steps.mock]
writes = { "NOTES.md" = "release notes\n" }
TOML
gate=$(logist job create --file "$scratch/approval.toml" --activate)
expect_exit 5 logist job run "$gate"            # 5: waiting for approval
expect_state "$gate" APPROVAL_REQUIRED
logist job reject "$gate" --message "mention the new greeting"
expect_exit 5 logist job run "$gate"
expect_state "$gate" APPROVAL_REQUIRED
logist job approve "$gate" --message "looks good"
expect_state "$gate" SUCCESS
git log -3 --format='%s%n%b' "logist/$gate" | grep -E 'logist\(|looks good' | head -5

# ---------------------------------------------------------------- rerun and restep (docs/rerun.md)
count_runs() { logist job show "$1" --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["runs"]))'; }

step "rerun/restep: a job whose step 2 fails until a person fixes it"
cat > "$scratch/rerun.toml" <<'TOML'
title = "Rerun me"
[[steps]]
name = "first"
agent = "command"
command = ["python3", "-c", "open('first.txt', 'a').write('first\\n')"]
[[steps]]
name = "second"
agent = "command"
command = ["python3", "-c", "import os, sys; open('second.txt', 'a').write('second\\n'); sys.exit(0 if os.path.exists('FIXED') else 1)"]
TOML
rr=$(logist job create --file "$scratch/rerun.toml" --activate)
expect_exit 6 logist job run "$rr"
expect_state "$rr" INTERVENTION_REQUIRED          # step 2 fails until FIXED exists

step "restep of a failing step: reported, recorded, state unchanged"
if logist job restep "$rr" 2; then echo "FAIL: restep should have failed" >&2; exit 1; fi
expect_state "$rr" INTERVENTION_REQUIRED

step "a fix in the worktree, then rerun --step of the failing step to SUCCESS"
touch "$(logist job path "$rr")/FIXED"
logist job rerun "$rr" --step 2
expect_state "$rr" SUCCESS
git for-each-ref refs/logist/runs
git log -6 --format="%h %s" "logist/$rr"

step "restep of an intermediate step: only it runs, recorded in the history"
logist job restep "$rr" 1
expect_state "$rr" SUCCESS
logist job history "$rr" --json | python3 -c "import json,sys; print([e[\"event\"] for e in json.load(sys.stdin)][-2:])"

step "full rerun: two run entries in the history"
cat > "$scratch/full.toml" <<'TOML'
title = "Replay me"
[[steps]]
prompt = "Write one.txt"
[steps.mock]
writes = { "one.txt" = "one\n" }
[[steps]]
prompt = "Write two.txt"
[steps.mock]
writes = { "two.txt" = "two\n" }
TOML
full=$(logist job create --file "$scratch/full.toml" --activate)
logist job run "$full"
logist job rerun "$full"
expect_state "$full" SUCCESS
[ "$(count_runs "$full")" = 2 ] || { echo "FAIL: expected 2 run entries" >&2; exit 1; }
logist job history "$full" | grep -E ' run ' || { echo "FAIL: no run entry in the history" >&2; exit 1; }
logist job rerun "$full" --step 2             # resume a finished job from step 2 only
[ "$(count_runs "$full")" = 3 ] || { echo "FAIL: expected 3 run entries" >&2; exit 1; }
git for-each-ref --format='%(refname) %(objectname:short)' "refs/logist/runs/$full"

step "resume with rerun --step N after stopping partway"
part=$(logist job create --file "$scratch/rerun.toml" --activate)
logist job step "$part"
logist job cancel "$part" --message "stop after step 1"
touch "$(logist job path "$part")/FIXED"
logist job rerun "$part" --step 2
expect_state "$part" SUCCESS

step "restep --isolated: the result is kept at refs/logist/resteps for comparison"
logist job restep "$rr" 1 --isolated
git for-each-ref refs/logist/resteps
git fsck --no-progress 2>&1 | grep -v '^dangling' || true


# ---------------------------------------------------------------- kill -9 and recovery (docs/recovery.md)
step "a job interrupted with kill -9 mid-step, then recovered from the branch tip"
cat > "$scratch/slow.toml" <<'TOML'
title = "Slow work"
[[steps]]
prompt = "Take a while"
[steps.mock]
scenario = "slow"
delay_s = 4
writes = { "slow.txt" = "done\n" }
[[steps]]
prompt = "Finish"
[steps.mock]
writes = { "finish.txt" = "ok\n" }
TOML
slow=$(logist job create --file "$scratch/slow.toml" --activate)
setsid logist job run "$slow" >"$scratch/slow.log" 2>&1 &
runner=$!
pids+=("$runner")
for _ in $(seq 1 100); do
    state=$(logist job status "$slow" --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])' || true)
    [ "$state" = EXECUTING ] && break
    sleep 0.1
done
kill -9 -- "-$runner" 2>/dev/null || kill -9 "$runner"
wait "$runner" 2>/dev/null || true
logist job status "$slow" || true
logist recover --check
logist recover --list
logist recover
logist job run "$slow" || true
expect_state "$slow" SUCCESS
git for-each-ref "refs/logist/locks/$slow" | grep . && { echo "FAIL: lock left behind" >&2; exit 1; } || true

# ---------------------------------------------------------------- observer and sentinel (docs/observer.md)
step "an agent hits a rate limit (noted by the observer) and completes"
cat > "$scratch/ratelimit.toml" <<'TOML'
title = "Rate limited"
[[steps]]
prompt = "Call a busy API"
[steps.mock]
scenario = "rate_limit"
delay_s = 1.5
TOML
rl=$(logist job create --file "$scratch/ratelimit.toml" --activate)
logist job run "$rl"
expect_state "$rl" SUCCESS
git log -4 --format='%h %s%n%N' "logist/$rl" | grep -E 'logist\(|rate_limit' | head -8

step "an agent asks a question and goes silent: the sentinel stops it; resubmitted and finished"
cat > "$scratch/question.toml" <<'TOML'
title = "Asks a question"
[budget]
max_attempts = 1
[sentinel]
silence_seconds = 1
waiting_input_seconds = 1
interrupt_grace_seconds = 1
terminate_grace_seconds = 1
[[steps]]
name = "ask"
agent = "command"
command = ["python3", "-c", "import os, time\nif not os.path.exists('ANSWER'):\n    print('Do you want to proceed? (y/n)', flush=True)\n    time.sleep(3600)\nprint('answered')"]
TOML
q=$(logist job create --file "$scratch/question.toml" --activate)
expect_exit 6 logist job run "$q"
expect_state "$q" INTERVENTION_REQUIRED
logist job history "$q" --notes | tail -8
echo yes > "$(logist job path "$q")/ANSWER"
logist job resubmit "$q" --message "answered the question"
logist job run "$q"
expect_state "$q" SUCCESS
git log --format='%h %s%n%N' "logist/$q" | grep -E 'Notes|waiting_input|interrupt' | head -6

# ---------------------------------------------------------------- sharing (docs/sharing.md)
step "push to a bare remote; a second clone inspects the job; a merged PR is cleaned up on pull"
git init -q --bare "$scratch/shared.git"
git clone -q "$scratch/shared.git" "$scratch/alice"
cd "$scratch/alice"
echo "# shared demo" > README.md && git add README.md && git commit -qm "initial"
logist init >/dev/null && git add .logist && git commit -qm "logist init" && git push -q origin main
printf '%s\n' 'title = "Shared greeting"' '[[steps]]' 'prompt = "Create hello.txt"' \
    '[steps.mock]' 'writes = { "hello.txt" = "hello\n" }' > "$scratch/shared.toml"
shared=$(logist job create --file "$scratch/shared.toml" --activate)
logist job run "$shared"
logist push
git clone -q "$scratch/shared.git" "$scratch/bob"
cd "$scratch/bob"
logist init >/dev/null
logist fetch
logist job list --remote origin --all
git log -3 --oneline "origin/logist/$shared"
git merge -q --no-ff -m "Merge $shared" "origin/logist/$shared" && git push -q origin main
cd "$scratch/alice"
git pull -q --no-rebase origin main
# the hook returns at once and cleans up detached (docs/sharing.md#hooks): wait for it, 60 s at most
wait_until 60 "the post-merge cleanup of $shared" \
    sh -c "git for-each-ref refs/logist/archive/$shared | grep -q . && ! git rev-parse -q --verify refs/heads/logist/$shared >/dev/null"
git for-each-ref "refs/logist/archive/$shared"
echo "ok: merged job archived and cleaned up by the post-merge hook"

step "two workers in two clones share one queue; each job runs exactly once"
for i in 1 2 3 4; do logist job create --title "Queued $i" --step "do it" --activate >/dev/null; done
logist push
(cd "$scratch/bob" && logist worker --until-idle) &
w=$!
pids+=("$w")
logist worker --until-idle
wait "$w"
logist fetch
logist job list --remote origin --all
left=$(logist job list --remote origin --json | python3 -c 'import json,sys; print(sum(1 for j in json.load(sys.stdin) if j["state"] == "PENDING"))')
[ "$left" = 0 ] || { echo "FAIL: $left jobs still PENDING" >&2; exit 1; }
cd "$repo"

step "worktrees cost nothing at rest: finished jobs gave theirs back; job path makes one again"
git worktree list
n=$(git worktree list --porcelain | grep -c '^branch refs/heads/logist/' || true)
[ "$n" = 0 ] || { echo "FAIL: $n job worktrees left after every job finished" >&2; exit 1; }
wt=$(logist job path "$job")
git -C "$wt" status --short --branch
echo "ok: no job worktree at rest; $job's made again on demand"

step "dashboard (one frame)"
logist dashboard --once

echo
echo "demo finished: all scenarios passed"
