"""Run one real agent CLI against the scripted model server, by hand, and show what it prints.

    python tests/real_agents/capture.py AGENT SCENARIO [--save NAME] [--timeout S] [-- ARGS...]

The CLI runs in a fresh git repository under a temporary directory with a private HOME (see
``clis.agent_env``); ARGS replace the default headless command line. ``--save NAME`` writes the
CLI's combined output to ``tests/fixtures/agents/AGENT/NAME`` (the tests read those files as
real captured output; the temporary paths in them are harmless, keys never reach the output
because the server accepts a fixed test key).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model_server import SCENARIOS, ModelServer, Script
from real_agents import clis

PROMPT = ("Create the file hello.txt with a greeting.\n\n"
          "## Reporting your outcome (required)\n\nEnd with a fenced json block.\n")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("agent", choices=clis.AGENTS)
    ap.add_argument("scenario", choices=(*SCENARIOS, "nourl", "nokey", "bare"))
    ap.add_argument("--save")
    ap.add_argument("--timeout", type=float, default=60)
    ap.add_argument("--dump-requests", action="store_true")
    ap.add_argument("--cwd", help="run in this directory instead of a fresh repository")
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    ns = ap.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    ns.args = extra
    exe = clis.installed(ns.agent)
    if exe is None:
        print(f"{ns.agent} is not installed under {clis.prefix()}", file=sys.stderr)
        return 2
    scenario = ns.scenario if ns.scenario in SCENARIOS else "write"
    with tempfile.TemporaryDirectory(prefix=f"capture-{ns.agent}-") as tmp, \
            ModelServer(Script(scenario=scenario), max_seconds=ns.timeout + 30) as server:
        repo = Path(ns.cwd) if ns.cwd else Path(tmp) / "repo"
        if not ns.cwd:
            subprocess.run(["git", "init", "-q", str(repo)], check=True)
        url = None if ns.scenario in ("nourl", "bare") else server.url
        key = None if ns.scenario in ("nokey", "bare") else clis.TEST_KEY
        env = clis.agent_env(ns.agent, url, Path(tmp) / "home", key=key)
        argv = [str(exe), *(ns.args or [])] if ns.args else [str(exe), *default_args(ns.agent)]
        try:
            proc = subprocess.run(argv, cwd=repo, env=env, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  timeout=ns.timeout)
            out, code = proc.stdout.decode("utf-8", "replace"), proc.returncode
        except subprocess.TimeoutExpired as exc:
            out, code = (exc.stdout or b"").decode("utf-8", "replace"), None
        print(out)
        print(f"--- exit {code}; files: {sorted(p.name for p in repo.iterdir())}; "
              f"model requests: {len(server.model_requests())}", file=sys.stderr)
        if ns.dump_requests:
            for r in server.requests:
                print(json.dumps(r)[:3000], file=sys.stderr)
        if ns.save:
            dest = clis.ROOT / "tests" / "fixtures" / "agents" / ns.agent / ns.save
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(out)
    return 0


def default_args(agent: str) -> list[str]:
    """The headless command line logist's adapter uses (kept in step with logist.agents)."""
    return {
        "claude": ["-p", "--output-format", "stream-json", "--verbose",
                   "--permission-mode", "acceptEdits", PROMPT],
        "codex": ["exec", "--json", "--sandbox", "workspace-write", PROMPT],
        "gemini": ["--output-format", "stream-json", "--skip-trust", "--approval-mode",
                   "auto_edit", "--prompt", PROMPT],
        "cline": ["--json", PROMPT],
        "aider": ["--message", PROMPT, "--yes-always", "--no-auto-commits",
                  "--no-dirty-commits", "--no-gitignore", "--no-check-update",
                  "--no-show-model-warnings", "--no-pretty", "--input-history-file",
                  "/dev/null", "--chat-history-file", "/dev/null"],
    }[agent]


if __name__ == "__main__":
    sys.exit(main())
