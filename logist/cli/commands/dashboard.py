"""`logist dashboard`: the jobs that need you first, then what runs, then the rest; act on them
with one key (docs/cli.md#logist-dashboard).

Built on rich (already logist's table library) rather than Textual: the screen is a list of
lines redrawn every second, the keys are read from the terminal in cbreak mode, and the actions
(git log, git diff, `job attach`) hand the whole terminal to the program they run; rich's Live
does all of that without a second UI framework to install and import.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Annotated, Any

from cyclopts import Parameter

from logist import cli
from logist.core.jobid import JobId

NEEDS = ("INTERVENTION_REQUIRED", "APPROVAL_REQUIRED")
FINISHED = ("SUCCESS", "CANCELED")
SECTIONS = ("needs_you", "running", "waiting", "finished")
TITLES = {"needs_you": "NEEDS YOU", "running": "RUNNING", "waiting": "WAITING", "finished": "FINISHED"}
SHORT = {"INTERVENTION_REQUIRED": "INTERVENTION", "APPROVAL_REQUIRED": "APPROVAL"}
COLOURS = {"INTERVENTION_REQUIRED": "bold red", "APPROVAL_REQUIRED": "bold yellow", "EXECUTING": "cyan",
           "PROVISIONING": "cyan", "HARVESTING": "cyan", "RECOVERING": "magenta", "PENDING": "blue",
           "DRAFT": "dim", "SUSPENDED": "yellow", "SUCCESS": "green", "CANCELED": "dim", "INVALID": "red"}
KEYS = "↑↓ a approve r reject u resubmit s stop ⏎ attach d diff l log f finished q quit"  # fits 80


@dataclass
class Row:
    id: str
    state: str
    section: str
    step: str
    when: str  # running: how long the step has run; else how long ago it last moved
    cost: float
    note: str  # the reason (needs you), the agent's last output line (running), the title
    status: dict[str, Any] = field(default_factory=dict)  # the `job status --json` object

    def to_json(self) -> dict[str, Any]:
        return {**self.status, "section": self.section, "note": self.note, "when": self.when}


def snapshot(store) -> dict[str, list[Row]]:
    """Every job, by section: needs you (intervention, approval, interrupted), running,
    waiting (pending, draft, suspended, invalid), finished. Two or three git processes."""
    from datetime import datetime, timezone

    from logist.cli.commands.foreground import last_line
    from logist.cli.output import ago, duration
    from logist.core.states import TRANSIENT
    from logist.engine.job_status import status_rows

    lock_refs: dict[str, str] = {}
    records = store.list_records(lock_refs=lock_refs)
    data = {r.id: r.data for r in records}
    out: dict[str, list[Row]] = {s: [] for s in SECTIONS}
    now = datetime.now(timezone.utc)
    transient = {s.value for s in TRANSIENT}
    for st in status_rows(store, records, lock_refs):
        d = data.get(st["id"]) or {}
        state = st["state"]
        holder = st.get("holder") or {}
        live = bool(holder) and not holder.get("stale")
        step = f"{st.get('step', '?')}/{st.get('step_count', '?')}"
        ex = d.get("execution") or {}
        if state == "INVALID":
            out["waiting"].append(Row(st["id"], state, "waiting", "", "", 0.0, st.get("error") or "", st))
            continue
        if st.get("interrupted"):
            section = "needs_you"
            note = f"interrupted (its runner is gone): `logist recover {st['id']}` or `logist job stop {st['id']}`"
        elif state in NEEDS:
            section, note = "needs_you", st.get("reason") or ""
        elif state in transient or ex.get("restep") or (state == "PENDING" and live):
            section = "running"
            note = last_line(ex["log"]) if ex.get("log") else (st.get("reason") or "")
        elif state in FINISHED:
            section, note = "finished", st.get("title") or ""
        else:
            section, note = "waiting", (st.get("reason") if state == "SUSPENDED" else "") or st.get("title") or ""
        when = ago(st.get("updated_at"))
        if section == "running" and ex.get("started_at"):
            try:
                t = datetime.fromisoformat(ex["started_at"].replace("Z", "+00:00"))
                when = duration(max(0.0, (now - t).total_seconds()))
            except ValueError:
                pass
        out[section].append(Row(st["id"], state, section, step, when, float(st.get("cost_usd") or 0.0),
                                " ".join(str(note).split()), st))
    for s in ("needs_you", "waiting", "finished"):
        out[s].sort(key=lambda r: r.status.get("updated_at") or "", reverse=True)
    out["running"].sort(key=lambda r: r.status.get("updated_at") or "")
    return out


# ---- drawing ------------------------------------------------------------------------------
def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[:max(0, width - 1)] + "…"


def frame(store, snap: dict[str, list[Row]], *, width: int, height: int, selected: str | None,
          show_finished: bool, message: str = "", plain: bool = False):
    """The screen as a rich Text (``plain``: without colours)."""
    from rich.text import Text

    from logist.cli.output import clean

    lines: list[tuple[str, str]] = []
    clock = time.strftime("%H:%M:%S")
    head = f"logist  {store.root}"
    lines.append((_fit(head, width - len(clock) - 1).ljust(width - len(clock)) + clock, "bold"))
    idw = max([len(r.id) for rows in snap.values() for r in rows] + [8])
    idw = min(idw, max(12, width - 40))
    for section in SECTIONS:
        rows = snap[section]
        if section == "finished" and not show_finished:
            if rows:
                lines.append((f"FINISHED ({len(rows)}) folded: f shows them", "dim"))
            continue
        if not rows and section != "needs_you":
            continue
        title = f"{TITLES[section]} ({len(rows)})" + ("  nothing needs you" if not rows else "")
        lines.append((title, "bold underline" if section == "needs_you" and rows else "bold"))
        for r in rows:
            mark = ">" if r.id == selected else " "
            state = SHORT.get(r.state, r.state)
            main = (f"{mark} {_fit(r.id, idw).ljust(idw)}  {state.ljust(12)}  {r.step.ljust(5)} "
                    f"{r.when.rjust(8)}  ${r.cost:.2f}")
            style = COLOURS.get(r.state, "")
            lines.append((_fit(main, width), ("reverse " if r.id == selected else "") + style))
            if r.note and section in ("needs_you", "running"):
                lines.append((_fit("    " + r.note, width), "dim" if section == "running" else ""))
    footer = [(_fit(KEYS, width), "dim"), (_fit(message, width), "bold")] if not plain else []
    room = height - len(footer)
    sel = next((i for i, (line, _) in enumerate(lines) if line.startswith("> ")), None)
    if sel is not None and sel > room - 3:  # scroll what follows NEEDS YOU to keep the selection in view
        keep = next((i for i, (line, _) in enumerate(lines[2:], 2) if line[:1].isupper()), 2)
        cut = min(sel - (room - 3), max(0, sel - keep - 1))
        if cut > 0:
            lines = lines[:keep] + [(f"… {cut + 1} lines above", "dim")] + lines[keep + cut + 1:]
    if len(lines) > room:  # keep the top (needs you first) in view
        more = len(lines) - room + 1
        lines = lines[:max(1, room - 1)] + [(f"… {more} more lines (a taller terminal shows them)", "dim")]
    pad = [("", "")] * max(0, room - len(lines)) if footer else []
    text = Text()
    for i, (line, style) in enumerate(lines + pad + footer):
        if i:
            text.append("\n")
        # notes and titles come from records (agents, remotes): redacted, escapes shown
        text.append(clean(line, newlines=False), style=None if plain else (style or None))
    return text


def _order(snap: dict[str, list[Row]], show_finished: bool) -> list[str]:
    ids = [r.id for s in SECTIONS if s != "finished" or show_finished for r in snap[s]]
    return ids


# ---- the command --------------------------------------------------------------------------
def dashboard(*, once: bool = False, interval: float = 1.0,
              json_: Annotated[bool, Parameter(name="--json")] = False) -> int:
    """The jobs that need you first, then running, then the rest; keys act on the selected job.

    Keys: up/down (or j/k) select, a approve, r reject (asks for the note), u resubmit, s stop,
    enter attach, d the step's diff, l the record (git log), f show finished jobs, q quit.
    Exit codes: 0 after q, 130 after Ctrl-C. Piped (or --once) one frame is printed.

    Parameters
    ----------
    once
        Print one frame and exit (what a pipe gets anyway).
    interval
        Seconds between refreshes.
    json_
        With --once: print {"needs_you": [...], "running": [...], "waiting": [...], "finished": [...]},
        each a list of `job status --json` objects plus section, note and when.
    """
    from logist.core.limits import check_number

    check_number(interval, "--interval", positive=True)
    store = cli.store()
    if json_:
        from logist.cli.output import emit_json

        snap = snapshot(store)
        emit_json({s: [r.to_json() for r in snap[s]] for s in SECTIONS})
        return 0
    if once or not (sys.stdin.isatty() and sys.stdout.isatty()):
        import shutil

        from rich.console import Console

        size = shutil.get_terminal_size((100, 40))
        snap = snapshot(store)
        rows = sum(len(v) for v in snap.values())
        text = frame(store, snap, width=size.columns, height=rows * 2 + 12, selected=None,
                     show_finished=True, plain=True)
        if sys.stdout.isatty():  # the same lines, in colour
            from rich.text import Text

            coloured = Text()
            for i, line in enumerate(text.plain.splitlines()):
                state = next((s for s in COLOURS if f"  {SHORT.get(s, s)}  " in line), None)
                coloured.append(("\n" if i else "") + line, style=COLOURS.get(state or "", "") or None)
            Console(highlight=False, soft_wrap=True).print(coloured)
        else:
            sys.stdout.write("\n".join(line.rstrip() for line in text.plain.splitlines()) + "\n")
        return 0
    return _Live(store, interval).run()


class _Live:
    def __init__(self, store, interval: float) -> None:
        self.store = store
        self.interval = interval
        self.selected: str | None = None
        self.show_finished = False
        self.message = ""
        self.snap: dict[str, list[Row]] = {s: [] for s in SECTIONS}

    def refresh(self) -> None:
        try:
            self.snap = snapshot(self.store)
        except Exception as exc:  # a moment of contention: show it, keep the last picture
            self.message = f"could not read the jobs: {exc}"
        order = _order(self.snap, self.show_finished)
        if self.selected not in order:
            self.selected = order[0] if order else None

    def render(self, console):
        import os

        try:  # the terminal's own size ($COLUMNS/$LINES may say something else)
            size = os.get_terminal_size(sys.stdout.fileno())
            console.size = (size.columns, size.lines)
        except OSError:
            pass
        return frame(self.store, self.snap, width=console.size.width, height=console.size.height,
                     selected=self.selected, show_finished=self.show_finished, message=self.message)

    def row(self) -> Row | None:
        for rows in self.snap.values():
            for r in rows:
                if r.id == self.selected:
                    return r
        return None

    def run(self) -> int:
        import select
        import termios
        import tty

        from rich.console import Console
        from rich.live import Live

        from logist.core.errors import ExitCode

        console = Console()
        fd = sys.stdin.fileno()
        saved = termios.tcgetattr(fd)
        self.refresh()
        try:
            tty.setcbreak(fd)
            with Live(self.render(console), console=console, screen=True, auto_refresh=False) as live:
                next_refresh = time.monotonic() + self.interval
                while True:
                    wait = max(0.0, next_refresh - time.monotonic())
                    ready, _, _ = select.select([fd], [], [], wait)
                    if ready:
                        key = _read_key(fd)
                        if key in ("q", "Q"):
                            return 0
                        self.message = ""
                        self.key(key, live, fd, saved)
                    if not ready or time.monotonic() >= next_refresh:
                        self.refresh()
                        next_refresh = time.monotonic() + self.interval
                    live.update(self.render(console), refresh=True)
        except KeyboardInterrupt:
            return ExitCode.INTERRUPTED
        finally:
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)

    # ---- keys -------------------------------------------------------------------------
    def key(self, key: str, live, fd: int, saved) -> None:
        order = _order(self.snap, self.show_finished)
        if key in ("down", "j") and order:
            i = order.index(self.selected) if self.selected in order else -1
            self.selected = order[min(len(order) - 1, i + 1)]
            return
        if key in ("up", "k") and order:
            i = order.index(self.selected) if self.selected in order else 0
            self.selected = order[max(0, i - 1)]
            return
        if key == "f":
            self.show_finished = not self.show_finished
            return
        row = self.row()
        if row is None:
            if key.strip():
                self.message = "no job selected"
            return
        try:
            if key == "a":
                self._human(row, "approve", None)
            elif key == "r":
                note = self._ask(live, fd, saved, f"reject {row.id}: what should change? (empty: cancel) ")
                if note:
                    self._human(row, "reject", note)
                else:
                    self.message = "reject canceled: a rejection needs a note"
            elif key == "u":
                self._human(row, "resubmit", None)
            elif key == "s":
                from logist.engine.stop_job import stop_job

                self.message = f"stopping {row.id}..."
                live.update(self.render(live.console), refresh=True)
                out = stop_job(self.store, JobId(row.id), "suspend", "stopped from the dashboard", timeout=30.0,
                               require_running=True)
                self.message = f"{row.id}: {out.state}" + (" (stop requested)" if out.how == "requested" else "")
            elif key in ("enter", "o"):
                self._outside(live, fd, saved, [sys.executable, "-m", "logist", "-C", str(self.store.root),
                                                "job", "attach", row.id], wait_key=True)
            elif key == "d":
                self._outside(live, fd, saved, self._diff_argv(row), wait_key=True)
            elif key == "l":
                self._outside(live, fd, saved, ["git", "-C", str(self.store.root), "log", "--stat",
                                                f"logist/{row.id}", "--"], wait_key=True)
            elif key == "?":
                self.message = KEYS
        except Exception as exc:
            from logist.core.errors import LogistError

            if isinstance(exc, LogistError):
                self.message = f"{row.id}: {exc.message}" + (f" ({exc.hint})" if exc.hint else "")
            else:
                self.message = f"{row.id}: {type(exc).__name__}: {exc}"
        self.refresh()

    def _human(self, row: Row, event: str, message: str | None) -> None:
        from logist.engine.human_transitions import human_transition

        m = human_transition(self.store, JobId(row.id), event, message=message)
        self.message = f"{row.id}: {event} -> {m.state.value}"

    def _diff_argv(self, row: Row) -> list[str]:
        """The selected job's current (or last) step: from the commit it started at to the tip,
        without logist's own record."""
        _, d = self.store.read_record(row.id)
        steps = d["steps"]
        n = min(d.get("step", 1), len(steps))
        start = steps[n - 1].get("started_commit")
        if not start and n > 1:
            start = steps[n - 2].get("started_commit")
        base = start or d["base"]
        return ["git", "-C", str(self.store.root), "diff", "--stat", "-p", base, f"logist/{row.id}", "--",
                ".", ":(exclude).logist"]

    def _outside(self, live, fd: int, saved, argv: list[str], *, wait_key: bool = False) -> None:
        """Run a program on the whole terminal (the dashboard pauses), then come back."""
        import signal
        import termios

        from logist.runtimes.programs import run_foreground

        live.stop()
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        old = signal.signal(signal.SIGINT, lambda *a: None)  # Ctrl-C ends the program, not us
        try:
            import shlex

            shown = ["logist", *argv[5:]] if argv[1:3] == ["-m", "logist"] else ["git", *argv[3:]]
            sys.stdout.write(f"$ {shlex.join(shown)}\n")
            sys.stdout.flush()
            run_foreground(argv)
            if wait_key:
                sys.stdout.write("\n[press Enter to go back to the dashboard]")
                sys.stdout.flush()
                try:
                    sys.stdin.readline()
                except (OSError, KeyboardInterrupt):
                    pass
        except OSError as exc:
            self.message = f"could not run {argv[0]}: {exc}"
        finally:
            signal.signal(signal.SIGINT, old)
            import tty

            tty.setcbreak(fd)
            live.start(refresh=True)

    def _ask(self, live, fd: int, saved, prompt: str) -> str:
        import termios
        import tty

        live.stop()
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        try:
            return input("\n" + prompt).strip()
        except (EOFError, KeyboardInterrupt):
            return ""
        finally:
            tty.setcbreak(fd)
            live.start(refresh=True)


def _read_key(fd: int) -> str:
    import os
    import select

    ch = os.read(fd, 1)
    if ch == b"\x1b":
        seq = b""
        while select.select([fd], [], [], 0.02)[0] and len(seq) < 4:
            seq += os.read(fd, 1)
        return {b"[A": "up", b"[B": "down", b"OA": "up", b"OB": "down"}.get(seq, "esc")
    if ch in (b"\r", b"\n"):
        return "enter"
    return ch.decode(errors="replace")
