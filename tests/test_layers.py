"""docs/architecture.md#layers: lower layers never import higher ones, only the CLI layer prints or
exits, and processes are started only through the git and runtime doors.

Imports are read with ``ast`` from every module of the package (lazy imports inside functions
count too). A module that is not in the table below fails the test: give it a layer.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "logist"

LAYERS: dict[int, set[str]] = {
    0: {"core"},
    1: {"git"},
    2: {"store"},
    3: {"agents", "runtimes"},
    4: {"engine"},
    5: {"share"},
    6: {"cli", "__main__"},
    # The public names users know, kept as thin facades over the packages: nothing inside
    # logist imports them.
    7: {"job_state", "job_processor", "job_history"},
}
LAYER_OF = {name: level for level, names in LAYERS.items() for name in names}

# Only these may call print(): the CLI layer, and programs that run as their own process and
# talk through their stdout (the mock agent *is* the agent's output).
PRINT_ALLOWED = {"cli", "__main__"}
PRINT_ALLOWED_FILES = {"agents/mock_agent.py"}


def modules() -> list[Path]:
    return sorted(p for p in PKG.rglob("*.py") if "_data" not in p.parts)


def top_name(path: Path) -> str:
    """The first component below the package: ``store`` for store.py, ``agents`` for agents/x.py."""
    rel = path.relative_to(PKG)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def imported_logist_modules(path: Path) -> list[tuple[int, str]]:
    """(line, first component below logist) of every import of a logist module in ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    rel = path.relative_to(PKG)
    package = ["logist", *rel.parts[:-1]]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "logist" and len(parts) > 1:
                    out.append((node.lineno, parts[1]))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)]
                parts = base + (node.module.split(".") if node.module else [])
            else:
                parts = (node.module or "").split(".")
            if parts[0] != "logist":
                continue
            if len(parts) > 1:
                out.append((node.lineno, parts[1]))
            else:  # from logist import refs, store
                out.extend((node.lineno, alias.name) for alias in node.names)
    return out


def test_every_module_has_a_layer():
    unknown = sorted({top_name(p) for p in modules()} - set(LAYER_OF) - {"__init__"})
    assert not unknown, f"give these modules a layer in tests/test_layers.py (docs/architecture.md#layers): {unknown}"


@pytest.mark.parametrize("path", modules(), ids=lambda p: p.relative_to(PKG).as_posix())
def test_no_import_reaches_up(path):
    me = top_name(path)
    if me == "__init__":
        return
    mine = LAYER_OF.get(me)
    if mine is None:
        pytest.skip("no layer (reported by test_every_module_has_a_layer)")
    bad = []
    for line, other in imported_logist_modules(path):
        level = LAYER_OF.get(other)
        if other != me and level is not None and level > mine:
            bad.append(f"line {line}: {me} (layer {mine}) imports {other} (layer {level})")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("path", modules(), ids=lambda p: p.relative_to(PKG).as_posix())
def test_only_the_cli_layer_prints(path):
    rel = path.relative_to(PKG).as_posix()
    if top_name(path) in PRINT_ALLOWED or rel in PRINT_ALLOWED_FILES:
        return
    tree = ast.parse(path.read_text(), str(path))
    calls = [node.lineno for node in ast.walk(tree)
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print"]
    assert not calls, f"{rel} calls print() at lines {calls}; return results or raise, the CLI prints"


# Processes are started through two doors only: logist/git (git itself) and logist/runtimes
# (agents, the side process, a detached runner, helper tools such as grep and gh).
PROCESS_DOORS = {"git", "runtimes"}
# Exiting the process belongs to the CLI too; besides it, programs with a main() of their own
# (the mock agent, the side process) and the crash injection of the crash tests.
EXIT_ALLOWED_FILES = {"agents/mock_agent.py", "engine/watcher.py", "core/faults.py"}


def _runtime_nodes(tree: ast.AST):
    """Every node except those under ``if TYPE_CHECKING:`` (imports for annotations only)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            stack.extend(node.orelse)
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def process_starts(path: Path) -> list[str]:
    """Where ``path`` can start a process: an import of subprocess/pty/multiprocessing, or a call
    of os.system/popen/spawn*/exec*/fork*/posix_spawn*."""
    found = []
    for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names = [(node.module or "").split(".")[0]]
            if names == ["os"]:
                names = [f"os.{a.name}" for a in node.names]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and getattr(node.func.value, "id", None) == "os":
            names = [f"os.{node.func.attr}"]
        for n in names:
            if n in ("subprocess", "pty", "multiprocessing") or n.startswith(
                    ("os.system", "os.popen", "os.spawn", "os.exec", "os.fork", "os.posix_spawn")):
                found.append((node.lineno, n))
    return [f"line {line}: {n}" for line, n in sorted(found)]


@pytest.mark.parametrize("path", modules(), ids=lambda p: p.relative_to(PKG).as_posix())
def test_only_the_git_and_runtime_doors_start_processes(path):
    if top_name(path) in PROCESS_DOORS:
        return
    found = process_starts(path)
    assert not found, (f"{path.relative_to(PKG)} starts processes itself ({'; '.join(found)}): use "
                       "logist.git.gitcmd for git, logist.runtimes.programs for any other program")


@pytest.mark.parametrize("path", modules(), ids=lambda p: p.relative_to(PKG).as_posix())
def test_only_the_cli_layer_exits_or_writes_to_the_terminal(path):
    rel = path.relative_to(PKG).as_posix()
    if top_name(path) in PRINT_ALLOWED or rel in EXIT_ALLOWED_FILES:
        return
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            target = node.func.value
            dotted = f"{getattr(target, 'id', '')}.{node.func.attr}"
            if isinstance(target, ast.Attribute):  # sys.stdout.write
                dotted = f"{getattr(target.value, 'id', '')}.{target.attr}.{node.func.attr}"
            if dotted in ("sys.exit", "os._exit", "os.abort", "sys.stdout.write", "sys.stderr.write"):
                found.append(f"line {node.lineno}: {dotted}()")
        elif isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) \
                and getattr(node.exc.func, "id", None) == "SystemExit":
            found.append(f"line {node.lineno}: raise SystemExit")
    assert not found, f"{rel}: {'; '.join(found)}; raise a LogistError and let the CLI print and exit"


def test_the_door_checks_see_what_they_look_for(tmp_path):
    """The checks themselves: a plain import counts, an annotation-only one does not."""
    sample = tmp_path / "sample.py"
    sample.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import subprocess\n"
                      "import os\n\ndef f():\n    import subprocess\n    os.execvp('x', ['x'])\n")
    assert process_starts(sample) == ["line 7: subprocess", "line 8: os.execvp"]


# ---- no import cycles ---------------------------------------------------------------------
# Between modules, in any layer (same-layer cycles included). Every import counts, lazy ones
# inside functions too: a function-level import that only hides a cycle is still a cycle. Only
# imports under ``if TYPE_CHECKING:`` are left out (they never run).


def module_name(path: Path, root: Path = PKG) -> str:
    """``logist.engine.jobs`` for logist/engine/jobs.py, ``logist.engine`` for its __init__.py."""
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            for stmt in node.body:
                skip.update(id(n) for n in ast.walk(stmt))
    return skip


def import_graph(root: Path = PKG) -> dict[str, set[str]]:
    """{module: the package's modules it imports}, read with ``ast`` (see above)."""
    paths = {module_name(p, root): p for p in root.rglob("*.py") if "_data" not in p.parts}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        tree = ast.parse(path.read_text(), str(path))
        skip = _type_checking_nodes(tree)
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        deps: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = ".".join(package[:len(package) - (node.level - 1)])
                    module = f"{base}.{node.module}" if node.module else base
                else:
                    module = node.module or ""
                # `from logist.engine import settle` imports the module logist.engine.settle
                targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in paths else module
                           for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in paths:
                    target = target.rpartition(".")[0]
                # a module's own packages are imported before it anyway: not an edge
                if target and target != name and not name.startswith(target + "."):
                    deps.add(target)
        graph[name] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def test_no_import_cycles():
    found = cycles(import_graph())
    assert not found, ("import cycles (lazy imports count; break them with a module below both, "
                       "or hand the callee in): " + "; ".join(" <-> ".join(c) for c in found))


def test_the_cycle_check_sees_lazy_and_relative_imports(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.sub import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from .. import a\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\n")
    (pkg / "d.py").write_text("import pkg.c\n")
    graph = import_graph(pkg)
    assert graph["pkg.a"] == {"pkg.sub.b"} and graph["pkg.sub.b"] == {"pkg.a"}
    assert graph["pkg.c"] == set() and graph["pkg.d"] == {"pkg.c"}
    assert cycles(graph) == [["pkg.a", "pkg.sub.b"]]


def test_the_checker_sees_imports():
    """The analysis itself: it must see lazy, relative and `from logist import x` imports."""
    found = {name for _, name in imported_logist_modules(PKG / "engine" / "jobs.py")}
    assert {"git", "store", "agents"} <= found
    found = {name for _, name in imported_logist_modules(PKG / "cli" / "commands" / "job.py")}
    assert {"cli", "engine"} <= found


def test_the_known_names_stay_importable():
    """The module paths users know keep working as facades over the layer packages."""
    import logist.cli
    import logist.job_history
    import logist.job_processor
    import logist.job_state
    from logist.core.errors import JobStateError
    from logist.store import job_state

    for name in ("load_job_manifest", "update_job_manifest", "get_current_state_and_role",
                 "transition_state"):
        assert getattr(logist.job_state, name) is getattr(job_state, name)
    assert logist.job_state.JobStateError is JobStateError
    from logist.engine.job_processor import Engine
    from logist.engine.repair import repair_interrupted

    assert issubclass(logist.job_processor.Engine, Engine)
    assert logist.job_processor.Engine.__init__.__module__ == "logist.job_processor"
    assert repair_interrupted is not None
    assert callable(logist.job_history.history_with_notes)
    assert callable(logist.cli.main)
