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
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL="$HOME/.gitconfig"
git config --global user.name "Demo User"
git config --global user.email demo@example.invalid
git config --global init.defaultBranch main

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
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
logist job run "$stuck" || true
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
logist job run "$gate"
expect_state "$gate" APPROVAL_REQUIRED
logist job reject "$gate" --message "mention the new greeting"
logist job run "$gate"
expect_state "$gate" APPROVAL_REQUIRED
logist job approve "$gate" --message "looks good"
expect_state "$gate" SUCCESS
git log -3 --format='%s%n%b' "logist/$gate" | grep -E 'logist\(|looks good' | head -5

step "dashboard (one frame)"
logist dashboard --once

echo
echo "demo finished: all scenarios passed"
