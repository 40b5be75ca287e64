"""`logist help [TOPIC]` (the docs shipped in the wheel) and `logist completion SHELL`."""

from __future__ import annotations

import sys

from logist.cli.output import say


def _docs():
    from logist.share.install import data_dir

    try:
        return data_dir("docs")
    except FileNotFoundError:
        return None


def help_cmd(topic: str | None = None, /) -> int:
    """Show one of logist's documents (the docs/ pages, shipped with logist); no topic: list them.

    Parameters
    ----------
    topic
        A document: states, cli, jobfile, stopping, recovery, sharing, refs, ... (a unique
        prefix will do).
    """
    from logist.core.errors import UsageError

    docs = _docs()
    if docs is None:  # pragma: no cover - an installation without its data
        raise UsageError("this installation of logist has no docs",
                         hint="reinstall logist with pip; the docs are part of the wheel")
    pages = sorted(p.stem for p in docs.glob("*.md"))
    if topic is None:
        say("logist help TOPIC shows one of these documents:")
        for name in pages:
            first = (docs / f"{name}.md").read_text(encoding="utf-8").splitlines()[0].lstrip("# ").strip()
            say(f"  {name.ljust(14)} {first}")
        return 0
    wanted = topic.lower().removesuffix(".md")
    matches = [p for p in pages if p == wanted] or [p for p in pages if p.startswith(wanted)]
    if len(matches) != 1:
        raise UsageError(f"no help topic {topic!r}" if not matches else
                         f"{topic!r} is the start of several topics: {', '.join(matches)}",
                         hint="topics: " + ", ".join(pages))
    text = (docs / f"{matches[0]}.md").read_text(encoding="utf-8")
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.markdown import Markdown

        console = Console()
        with console.pager(styles=True):
            console.print(Markdown(text))
    else:
        sys.stdout.write(text)
    return 0


def completion(shell: str, /, *, install: bool = False) -> int:
    """Print the shell completion script for bash, zsh or fish (--install: add it to your shell's
    startup files).

    Parameters
    ----------
    shell
        bash, zsh or fish.
    install
        Write the script where the shell loads completions from, and load it at startup.
    """
    from logist.cli import app
    from logist.core.errors import UsageError

    if shell not in ("bash", "zsh", "fish"):
        raise UsageError(f"no completion for shell {shell!r}", hint="give bash, zsh or fish")
    if install:
        path = app.install_completion(shell=shell)  # type: ignore[arg-type]
        say(f"completion for {shell} installed in {path}; open a new shell to use it")
        return 0
    sys.stdout.write(app.generate_completion(prog_name="logist", shell=shell))  # type: ignore[arg-type]
    return 0
