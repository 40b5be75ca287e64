"""Harvest hygiene (docs/jobfile.md#harvest): environments and build output an agent leaves in
the worktree stay out of the harvest commit, named with the .gitignore line to add."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from _core import create_from_toml, write
from conftest import git

PY = json.dumps(sys.executable)

MAKE_MESS = r"""
import os, pathlib
P = pathlib.Path
for d in ("venv/bin", "venv/lib/python3/site-packages", "web/node_modules/left-pad", "pkg/__pycache__", "out"):
    P(d).mkdir(parents=True, exist_ok=True)
P("venv/pyvenv.cfg").write_text("home = /usr/bin\n")
os.symlink("/usr/bin/python3", "venv/bin/python")
P("venv/lib/python3/site-packages/x.py").write_text("x = 1\n")
P("web/node_modules/left-pad/index.js").write_text("module.exports = 1\n")
P("pkg/__pycache__/mod.cpython-311.pyc").write_bytes(b"\x00" * 10)
P("pkg/mod.py").write_text("VALUE = 1\n")
P("pkg/stray.pyc").write_bytes(b"\x00" * 10)
P("out/big.bin").write_bytes(b"\x01" * 6_000_000)
P("out/run.log").write_text("log\n")
P("out/keep.log").write_text("kept\n")
P("small.bin").write_bytes(b"\x01" * 1000)
"""


def test_environments_and_build_output_stay_out_of_the_harvest(cli):
    repo = cli.repo
    cfg = repo / ".logist" / "config.toml"
    write(cfg, cfg.read_text() + '\n[harvest]\nexclude = ["*.log"]\ninclude = ["out/keep.log"]\n')
    text = f'title = "Messy"\n[[steps]]\nname = "mess"\ncommand = [{PY}, "-c", {json.dumps(MAKE_MESS)}]\n'
    jid = create_from_toml(cli, text, "--activate")
    assert cli("job", "run", jid).code == 0
    tip = git(repo, "rev-parse", f"logist/{jid}")
    files = set(git(repo, "ls-tree", "-r", "--name-only", tip).splitlines())
    assert {"pkg/mod.py", "small.bin", "out/keep.log"} <= files
    for gone in ("venv/pyvenv.cfg", "venv/bin/python", "venv/lib/python3/site-packages/x.py",
                 "web/node_modules/left-pad/index.js", "pkg/__pycache__/mod.cpython-311.pyc",
                 "pkg/stray.pyc", "out/big.bin", "out/run.log"):
        assert gone not in files, gone
    body = git(repo, "log", "-1", "--format=%B", tip)
    assert "Left out of this commit" in body
    for line in ("venv/ (a Python virtual environment (pyvenv.cfg)); .gitignore: /venv/",
                 "web/node_modules/ (a node_modules directory); .gitignore: node_modules/",
                 "pkg/__pycache__/ (Python bytecode); .gitignore: __pycache__/",
                 "pkg/stray.pyc (Python bytecode); .gitignore: *.pyc",
                 "out/run.log ([harvest] exclude '*.log'); .gitignore: *.log",
                 ".gitignore: /out/big.bin"):
        assert line in body, line
    status = cli.ok("job", "status", jid, "--json").json()
    assert any("/venv/" in s for s in status["left_out"]) and len(status["left_out"]) == 6
    assert "left out" in cli.ok("job", "status", jid).out
    # the files are still there for the person to look at; the worktree is otherwise clean
    wt = Path(cli.ok("job", "path", jid).out.strip())
    assert (wt / "out/big.bin").exists() and (wt / "venv/pyvenv.cfg").exists()
    assert git(wt, "status", "--porcelain", "--", "pkg/mod.py") == ""
    hist = json.loads(git(repo, "show", f"{tip}:.logist/jobs/{jid}/history.jsonl").splitlines()[-1])
    assert {e["gitignore"] for e in hist["data"]["left_out"]} >= {"/venv/", "*.pyc", "node_modules/"}


def test_a_gitignored_environment_is_not_reported(cli):
    repo = cli.repo
    write(repo / ".gitignore", "venv/\n")
    git(repo, "add", ".gitignore")
    git(repo, "commit", "-q", "-m", "ignore venv")
    prog = "import pathlib; pathlib.Path('venv').mkdir(); pathlib.Path('venv/pyvenv.cfg').write_text('x')"
    text = f'title = "Clean"\n[[steps]]\nname = "s"\ncommand = [{PY}, "-c", {json.dumps(prog)}]\n'
    jid = create_from_toml(cli, text, "--activate")
    assert cli("job", "run", jid).code == 0
    assert "Left out" not in git(repo, "log", "-1", "--format=%B", f"logist/{jid}")
    assert cli.ok("job", "status", jid, "--json").json()["left_out"] == []


def test_an_in_place_restep_leaves_out_the_same(cli):
    repo = cli.repo
    prog = "import pathlib; pathlib.Path('m.pyc').write_bytes(b'x'); pathlib.Path('m.py').write_text('x = 1')"
    text = f'title = "Restep"\n[[steps]]\nname = "s"\ncommand = [{PY}, "-c", {json.dumps(prog)}]\n'
    jid = create_from_toml(cli, text, "--activate")
    assert cli("job", "run", jid).code == 0
    assert cli("job", "restep", jid, "1").code == 0
    tip = git(repo, "rev-parse", f"logist/{jid}")
    assert "Restep-Result: success" in git(repo, "log", "-1", "--format=%B", tip)
    assert "m.pyc (Python bytecode); .gitignore: *.pyc" in git(repo, "log", "-1", "--format=%B", tip)
    assert "m.pyc" not in git(repo, "ls-tree", "-r", "--name-only", tip).splitlines()
