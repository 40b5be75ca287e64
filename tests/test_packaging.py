"""Packaging: a wheel built from the project's own files carries hooks/ and
.logist-template/ as logist/_data/, and a normal (non-editable) install finds them.

The wheel is built from a copy of the sources (building in place would leave build/ and
*.egg-info in the checkout, and parallel tests would race on them), installed with
``pip install --target`` into a temporary directory, and used from there with nothing of the
checkout on sys.path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from conftest import git

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("logist", "hooks", ".logist-template", "docs", "setup.py", "pyproject.toml", "README.md")


def _build_wheel(tmp: Path) -> Path:
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "_data"))
        else:
            shutil.copy2(path, src / name)
    dist = tmp / "dist"
    argv = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-v", "-w", str(dist), str(src)]
    try:  # without build isolation when the backend is installed: offline and faster
        import setuptools  # noqa: F401
        import wheel  # noqa: F401

        argv.insert(4, "--no-build-isolation")
    except ImportError:
        pass
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=tmp)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # no deprecation warnings from the build backend (the license is an SPDX string)
    assert "DeprecationWarning" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    (whl,) = dist.glob("logist-*.whl")
    return whl


def _install(tmp: Path) -> Path:
    """A site directory holding logist installed from a freshly built wheel."""
    tmp.mkdir(parents=True, exist_ok=True)
    whl = _build_wheel(tmp)
    names = zipfile.ZipFile(whl).namelist()
    assert "logist/_data/hooks/post-merge" in names, names
    assert "logist/_data/template/.logist/config.toml" in names, names
    assert "logist/_data/docs/states.md" in names, names  # `logist help states` after a pip install
    assert "logist/__main__.py" in names and "logist/agents/mock_agent.py" in names
    assert not any(n.startswith(("tests/", "hooks/", ".logist-template/")) for n in names)
    site = tmp / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--no-index",
                           "--target", str(site), str(whl)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return site


def _run(site: Path, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)  # the installed copy only: nothing of the checkout
    return subprocess.run([sys.executable, *args], cwd=str(cwd), env=env, capture_output=True, text=True,
                          timeout=120)


def test_wheel_install_is_self_contained(tmp_path):
    """One test (one build: under xdist a module fixture would be built once per worker)."""
    site = _install(tmp_path / "build")
    work = tmp_path / "work"
    work.mkdir()
    check_data(site, work)
    check_help(site, work)
    check_init_and_run(site, work)


def check_data(installed: Path, tmp_path: Path) -> None:
    code = ("import logist, logist.share.install as i; print(logist.__file__); "
            "print(i.data_dir('hooks')); print(i.data_dir('template'))")
    proc = _run(installed, ["-c", code], tmp_path)
    assert proc.returncode == 0, proc.stderr
    pkg, hooks, template = (Path(line) for line in proc.stdout.splitlines())
    assert pkg.is_relative_to(installed) and not pkg.is_relative_to(ROOT)
    assert hooks == installed / "logist" / "_data" / "hooks"
    assert template == installed / "logist" / "_data" / "template"
    assert (hooks / "post-merge").is_file() and (hooks / "post-rewrite").is_file()
    assert (template / ".logist" / "config.toml").read_bytes() == \
        (ROOT / ".logist-template" / ".logist" / "config.toml").read_bytes()


def check_help(installed: Path, tmp_path: Path) -> None:
    proc = _run(installed, ["-m", "logist", "--help"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "job" in proc.stdout and "init" in proc.stdout
    proc = _run(installed, ["-m", "logist", "help", "states"], tmp_path)  # the docs, from the wheel
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (ROOT / "docs" / "states.md").read_text(encoding="utf-8")


def check_init_and_run(installed: Path, tmp_path: Path) -> None:
    repo = tmp_path / "fresh"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "README.md").write_text("x\n")
    git(repo, "add", "README.md")
    git(repo, "commit", "-q", "-m", "init")
    proc = _run(installed, ["-m", "logist", "init"], repo)
    assert proc.returncode == 0, proc.stderr
    assert (repo / ".logist" / "config.toml").is_file()
    assert "logist hook shim" in (repo / ".git" / "hooks" / "post-merge").read_text()
    job = tmp_path / "job.toml"
    job.write_text('title = "Installed"\n[[steps]]\nprompt = "p"\n[steps.mock]\nwrites = { "a.txt" = "a" }\n')
    proc = _run(installed, ["-m", "logist", "job", "create", "--file", str(job), "--activate"], repo)
    assert proc.returncode == 0, proc.stderr
    job_id = proc.stdout.strip()
    proc = _run(installed, ["-m", "logist", "job", "run", job_id], repo)
    assert proc.returncode == 0, proc.stderr
    assert "SUCCESS" in proc.stdout
    assert git(repo, "show", f"logist/{job_id}:a.txt") == "a"
