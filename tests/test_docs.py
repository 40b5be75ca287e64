"""docs/ against the code: the pages are checked, not trusted.

- states.md: both tables equal the state machine in logist/job_state.py (both directions);
- cli.md: every command registered in logist/cli.py (discovered from the App at test time, so
  commands added later are included) has a section, every option its ``--help`` prints appears
  in that section, no section names a command that does not exist, every config key is listed;
- exit-codes.md: the codes of ExitCode (+ 3, internal error) and every LogistError class;
- jobfile.md: the complete example parses with ``parse_job_text`` and builds a manifest; every
  key of the job-file models, the mock agent and the sentinel is documented;
- refs.md: every ref namespace in logist/refs.py and every Logist-* trailer in the code;
- architecture.md: every module of logist/ is named;
- performance.md: the table and the commands that reproduce it;
- bench/: every benchmark script starts (``--help``). The benchmarks themselves never run in
  the suite: .ci/run runs two of them once, small, as a smoke test.
"""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def doc(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def md_tables(text: str) -> list[tuple[list[str], list[list[str]]]]:
    """Every markdown table: (header cells, rows of cells), backticks removed."""
    tables = []
    lines = text.splitlines()
    i = 0
    while i < len(lines) - 1:
        if lines[i].startswith("|") and re.match(r"^\|(\s*:?-+:?\s*\|)+\s*$", lines[i + 1]):
            header = _cells(lines[i])
            rows = []
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(_cells(lines[i]))
                i += 1
            tables.append((header, rows))
        else:
            i += 1
    return tables


def _cells(line: str) -> list[str]:
    return [c.strip().replace("`", "") for c in line.strip().strip("|").split("|")]


def table_with(text: str, header: list[str]) -> list[list[str]]:
    found = [rows for h, rows in md_tables(text) if h == header]
    assert found, f"no table with header {header}"
    return found[0]


def sections(text: str) -> dict[str, str]:
    """``### `heading` `` -> the text up to the next heading."""
    out: dict[str, str] = {}
    for m in re.finditer(r"(?m)^#{2,4} (.+)\n((?:(?!#{1,4} ).*\n?)*)", text):
        out[m.group(1).strip().strip("`")] = m.group(2)
    return out


# --------------------------------------------------------------------------------- states.md
def test_states_transition_table_equals_code():
    from logist.store.job_state import TRANSITIONS

    code = {(src if src in ("*", "~") else src.value, event, dst.value) for src, event, dst in TRANSITIONS}
    rows = table_with(doc("states.md"), ["from", "event", "to"])
    documented = [(r[0][0] if r[0][0] in "*~" else r[0], r[1], r[2]) for r in rows]
    assert len(documented) == len(set(documented)), "a transition is listed twice in docs/states.md"
    assert set(documented) - code == set(), "docs/states.md lists transitions the code does not have"
    assert code - set(documented) == set(), "transitions of TRANSITIONS missing from docs/states.md"


def test_states_table_equals_code():
    from logist.core.model import TERMINAL, TRANSIENT, State
    from logist.store.job_state import allowed_events

    rows = table_with(doc("states.md"), ["state", "kind", "events allowed"])
    documented = {r[0]: (r[1], set() if r[2] == "-" else {e.strip() for e in r[2].split(",")})
                  for r in rows}
    code = {}
    for s in State:
        kind = "terminal" if s in TERMINAL else "transient" if s in TRANSIENT else "resting"
        code[s.value] = (kind, set(allowed_events(s)))
    assert documented == code


def test_states_events_are_explained():
    from logist.store.job_state import EVENTS

    who = table_with(doc("states.md"), ["event", "fired by"])
    named = {e.strip() for r in who for e in r[0].split("/")}
    assert set(EVENTS) - named == set(), "events without a 'fired by' row in docs/states.md"


# ------------------------------------------------------------------------------------ cli.md
def _walk(app, prefix=()):
    for name in app:
        if name.startswith("-"):
            continue
        sub = app[name]
        children = [n for n in sub if not n.startswith("-")]
        if sub.default_command is None and children:
            yield from _walk(sub, (*prefix, name))
        else:
            yield (*prefix, name), sub


def registered_commands(include_hidden: bool = False) -> list[tuple[str, ...]]:
    """Every command of the CLI, discovered from the App objects (lazy ones included)."""
    from logist.cli import app

    return [path for path, sub in _walk(app)
            if include_hidden or getattr(sub, "show", True)]


def options_in_help(text: str) -> set[str]:
    """Option names in the first column of a cyclopts --help (``--json``, ``--no-json``, ``-v``)."""
    opts: set[str] = set()
    for line in text.splitlines():
        inner = line.strip().lstrip("│┃|").strip()
        m = re.match(r"^(-[\w-]+(?:[ ,]+[^\s│]+)*?)(?:\s{2,}|\s*[│┃|]?\s*$)", inner)
        if not m:
            continue
        opts.update(t for t in re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", m.group(1)))
    return opts - {"--help", "-h", "--version"}


def help_of(path: tuple[str, ...], capsys) -> str:
    from logist.cli import main

    capsys.readouterr()
    code = main([*path, "--help"])
    out = capsys.readouterr().out
    assert code == 0, f"logist {' '.join(path)} --help exited {code}"
    return out


def test_cli_every_command_has_a_section():
    secs = sections(doc("cli.md"))
    missing = [" ".join(p) for p in registered_commands() if "logist " + " ".join(p) not in secs]
    assert not missing, ("commands missing from docs/cli.md (add a '### `logist ...`' section): "
                         + ", ".join(missing))


def test_cli_no_section_for_a_command_that_does_not_exist():
    known = {"logist " + " ".join(p) for p in registered_commands(include_hidden=True)}
    documented = {h for h in sections(doc("cli.md")) if h.startswith("logist ")}
    assert documented - known == set()


def test_cli_top_level_help_lists_what_the_app_has(capsys):
    """The discovery is right: what `logist --help` and `logist job --help` print is found."""
    from logist.cli import main

    found = {p for p in registered_commands()}
    for prefix in ((), ("job",)):
        capsys.readouterr()
        assert main([*prefix, "--help"]) == 0
        out = capsys.readouterr().out
        box = out.split("Commands", 1)[1] if "Commands" in out else out
        names = [m.group(1) for m in re.finditer(r"^(?:[│┃|] | ?)([a-z][a-z-]*)\s{2,}", box, re.M)]
        assert len(names) >= 3, f"no commands read from `logist {' '.join(prefix)} --help`:\n{out}"
        for name in names:
            if name == "job" and not prefix:
                continue
            assert (*prefix, name) in found, f"`logist {' '.join((*prefix, name))}` not discovered"


@pytest.mark.parametrize("path", registered_commands(), ids=lambda p: " ".join(p))
def test_cli_every_option_is_documented(path, capsys):
    section = sections(doc("cli.md")).get("logist " + " ".join(path))
    assert section is not None, f"no section for `logist {' '.join(path)}` in docs/cli.md"
    opts = options_in_help(help_of(path, capsys))
    missing = sorted(o for o in opts if not re.search(rf"(?<![\w-]){re.escape(o)}(?![\w-])", section))
    assert not missing, f"options of `logist {' '.join(path)}` missing from its section: {missing}"


def test_options_parser_reads_cyclopts_help(capsys):
    opts = options_in_help(help_of(("job", "create"), capsys))
    assert {"--title", "--file", "--activate", "--json"} <= opts and "--no-activate" not in opts


def test_cli_configuration_lists_every_config_key():
    from logist.core.config import Config

    def keys(model, prefix=""):
        for name, f in model.model_fields.items():
            ann = f.annotation
            if inspect.isclass(ann) and hasattr(ann, "model_fields"):
                yield from keys(ann, prefix + name + ".")
            else:
                yield prefix + name

    config = sections(doc("cli.md"))["Configuration"]
    missing = [k for k in keys(Config) if f"`{k}`" not in config]
    assert not missing, f"config keys missing from docs/cli.md#configuration: {missing}"


# ----------------------------------------------------------------------------- exit-codes.md
def test_exit_codes_match_code():
    from logist.core.errors import ExitCode

    rows = table_with(doc("exit-codes.md"), ["code", "name", "meaning"])
    documented = {int(r[0]): r[1] for r in rows}
    code = {v: k for k, v in vars(ExitCode).items() if not k.startswith("_") and isinstance(v, int)}
    internal = getattr(ExitCode, "INTERNAL", 3)
    assert set(documented) == set(code) | {internal}
    assert set(documented) >= {0, 1, 2, 3, 4, 130}
    for value, name in code.items():
        assert name in documented[value], f"exit code {value} should be named {name}"


def test_error_classes_match_code():
    import logist.core.errors as errors

    code = {name: cls.exit_code for name, cls in inspect.getmembers(errors, inspect.isclass)
            if issubclass(cls, errors.LogistError)}
    rows = table_with(doc("exit-codes.md"), ["error class", "exit code", "when"])
    documented = {r[0]: int(r[1]) for r in rows}
    assert documented == code


# -------------------------------------------------------------------------------- jobfile.md
def toml_blocks(text: str) -> list[str]:
    return re.findall(r"```toml\n(.*?)```", text, re.S)


def test_jobfile_complete_example_parses_and_builds():
    from logist.core.jobfile import parse_job_text
    from logist.engine.jobs import build_manifest

    blocks = [b for b in toml_blocks(doc("jobfile.md")) if "[[steps]]" in b]
    assert blocks, "docs/jobfile.md has no complete example"
    spec = parse_job_text(blocks[0], "docs/jobfile.md")
    m = build_manifest(spec, job_id="docs-example-1", base="0" * 40, now="2025-01-01T00:00:00.000Z")
    assert m.steps and all(s.agent for s in m.steps)


def test_jobfile_documents_every_key():
    from dataclasses import fields

    from logist.agents.mock import _SPEC_KEYS
    from logist.agents.mock_agent import SCENARIOS
    from logist.core.jobfile import BudgetFile, JobFile, ObserverFile, StepFile
    from logist.engine.sentinel import SentinelConfig

    text = doc("jobfile.md")
    example = [b for b in toml_blocks(text) if "[[steps]]" in b][0]
    keys = set()
    for model in (JobFile, StepFile, BudgetFile, ObserverFile):
        keys |= set(model.model_fields)
    keys |= set(_SPEC_KEYS) | {f.name for f in fields(SentinelConfig)}
    missing = sorted(k for k in keys if f"`{k}`" not in text and f".{k}`" not in text
                     and not re.search(rf"(?m)^{k}\s*=", example))
    assert not missing, f"job-file keys missing from docs/jobfile.md: {missing}"
    missing = [s for s in SCENARIOS if f"`{s}`" not in text]
    assert not missing, f"mock scenarios missing from docs/jobfile.md: {missing}"


def test_jobfile_example_sentinel_keys_are_valid():
    from logist.core.jobfile import parse_job_text
    from logist.engine.sentinel import SentinelConfig

    spec = parse_job_text([b for b in toml_blocks(doc("jobfile.md")) if "[[steps]]" in b][0])
    SentinelConfig.from_dict(dict(spec.sentinel))


# ----------------------------------------------------------------------------------- refs.md
def test_refs_doc_lists_every_namespace():
    import logist.git.refs as refs

    text = doc("refs.md")
    names = {k: v for k, v in vars(refs).items()
             if isinstance(v, str) and v.startswith("refs/") and not k.startswith("_")}
    assert names, "no ref constants found in logist/refs.py"
    missing = sorted(f"{k} = {v}" for k, v in names.items() if v not in text)
    assert not missing, f"ref namespaces missing from docs/refs.md: {missing}"


def test_refs_doc_lists_every_trailer():
    text = doc("refs.md")
    source = "\n".join(p.read_text() for p in (ROOT / "logist").rglob("*.py"))
    trailers = set(re.findall(r"[\"'](Logist-[A-Za-z][A-Za-z-]*[A-Za-z])", source))
    trailers |= set(re.findall(r"\b(Logist-[A-Za-z][A-Za-z-]*[A-Za-z]): \{", source))
    assert "Logist-To" in trailers
    missing = sorted(t for t in trailers if not re.search(rf"`{re.escape(t)}`", text))
    assert not missing, f"trailers missing from docs/refs.md: {missing}"


def test_refs_doc_commit_format_matches_commit_message():
    from logist.core.model import HistoryEntry, Manifest, State, Step
    from logist.store.objects import commit_message

    m = Manifest(id="add-greeting-7k2q", title="Add greeting", base="0" * 40,
                 steps=[Step(name="write"), Step(name="check")], state=State.PENDING,
                 created_at="t", updated_at="t")
    e = HistoryEntry(t="t", event="transition", run=1, step=1, transition_id="8fd9a0b146ad49ba",
                     reason="mock agent completed the step", outcome="COMPLETED", cost_usd=0.01,
                     tokens=1200, **{"from": State.HARVESTING, "to": State.PENDING})
    msg = commit_message("add-greeting-7k2q", e, m, lease="e" * 40)
    subject = msg.splitlines()[0]
    assert subject in doc("refs.md"), f"the subject format changed: {subject!r}"
    for line in msg.splitlines():
        if line.startswith("Logist-"):
            assert line.split(":")[0] in doc("refs.md")


# --------------------------------------------------------------------------- architecture.md
def test_architecture_names_every_module():
    text = doc("architecture.md")
    pkg = ROOT / "logist"
    names = set()
    for p in pkg.iterdir():
        if p.name.startswith(("_", ".")) or p.name == "__pycache__":
            continue
        if p.is_dir() and (p / "__init__.py").exists():
            names.add(p.name + "/")
        elif p.suffix == ".py":
            names.add(p.stem)
    names.add("__main__")
    missing = sorted(n for n in names if f"`{n}`" not in text and f"`{n.rstrip('/')}`" not in text)
    assert not missing, f"modules not named in docs/architecture.md (give them a layer): {missing}"


# ---------------------------------------------------------------------------- performance.md
def test_performance_doc_has_table_and_reproduction():
    text = doc("performance.md")
    assert any(h == ["operation", "logist", "floor", "ratio", "target", "met?"] for h, _ in md_tables(text))
    assert "python bench/bench_core.py" in text and "python bench/bench_step.py" in text
    assert re.search(r"nproc|CPUs", text) and "git version" in text


# ---------------------------------------------------------------------------------- bench/
BENCHES = sorted(p.name for p in (ROOT / "bench").glob("bench_*.py"))


@pytest.mark.parametrize("script", BENCHES)
def test_benchmark_scripts_start(script):
    """Each benchmark imports what it needs and parses its options (it is not run here)."""
    proc = subprocess.run([sys.executable, f"bench/{script}", "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.startswith("usage:"), proc.stdout[:500]


# ------------------------------------------------------------------------ self-contained
def _repo_texts() -> dict[str, str]:
    """Code, tests, benchmarks and docs: what a reader of the repository reads."""
    files = [*ROOT.glob("logist/**/*.py"), *ROOT.glob("tests/**/*.py"), *ROOT.glob("bench/*.py"),
             *ROOT.glob("docs/*.md"), ROOT / "README.md", ROOT / "test-demo.sh"]
    return {p.relative_to(ROOT).as_posix(): p.read_text() for p in files if "_data" not in p.parts}


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_the_repository_cites_only_itself():
    """No design notes or issue numbers from outside the repository: references name docs/."""
    design = "DESIGN" + ".md"
    pattern = re.compile(r"\bissue[ -]?\d+|§ ?\d")
    bad = [f"{name}:{i}" for name, text in _repo_texts().items() for i, line in enumerate(text.splitlines(), 1)
           if design in line or pattern.search(line)]
    assert not bad, f"references to something outside the repository: {bad}"


def test_every_docs_reference_leads_to_a_heading():
    """References to a docs page (with an optional #anchor) in code, and links between the docs
    pages, name a page and a heading that exist."""
    anchors = {p.name: {github_anchor(h) for h in re.findall(r"^#+ (.+)$", p.read_text(), re.M)}
               for p in DOCS.glob("*.md")}
    bad = []
    for name, text in _repo_texts().items():
        refs = re.findall(r"(?<![\w/\":])docs/([\w-]+\.md)(?:#([\w-]+))?", text)
        if name.startswith("docs/"):
            refs += re.findall(r"\]\(([\w-]+\.md)(?:#([\w-]+))?\)", text)
        for file, anchor in refs:
            if file not in anchors:
                bad.append(f"{name}: docs/{file} does not exist")
            elif anchor and anchor not in anchors[file]:
                bad.append(f"{name}: docs/{file} has no heading #{anchor}")
    assert not bad, "\n".join(sorted(set(bad)))
