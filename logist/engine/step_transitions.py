"""The commits of a step: one transition of the job under its lease (reasons redacted, said to
``progress``, the person notified when the job comes to need them or finishes), a step ended
as needing a person, a stop request honoured, and the step's log noted on its commit.
"""

from __future__ import annotations

from pathlib import Path

from logist.core.errors import LogistError
from logist.core.jobid import JobId
from logist.core.model import TERMINAL, Manifest, State, StepStatus
from logist.engine.agent_supervisor import AgentSupervisor, read_step_log
from logist.engine.steps import StepResult
from logist.git import refs
from logist.store.hygiene import LeftOut
from logist.store.job_state import Update, update_job_manifest
from logist.store.jobstore import new_transition_id, utcnow
from logist.store.locks import Lease


class StepTransitions(AgentSupervisor):
    """The engine's commits (on top of its agent processes)."""

    # ---- the transition primitive -----------------------------------------------------
    def _transition(self, lease: Lease, update: Update, *, body: str = "", include_worktree=False,
                    parent: str | None = None, history_from: str | None = None,
                    expected: str | None = None, trailers: dict[str, str] | None = None,
                    exclude: tuple[str, ...] = (), left_out: list[LeftOut] | None = None
                    ) -> tuple[str, Manifest]:
        """One transition of the job under ``lease`` (``update_job_manifest``), said to ``progress``.

        ``expected``: the commit the branch must still be at (default: its tip now); the record
        is read at ``history_from`` or there; ``exclude``: worktree paths the commit leaves out;
        ``left_out``: what harvest hygiene leaves out (``store.hygiene``)."""
        job_id = lease.job_id
        if update.reason or body:  # reasons quote agents; they go into commits and the record
            from logist.core.redact import redact

            update.reason = redact(update.reason) if update.reason else update.reason
            body = redact(body)
        if expected is None:
            tip, manifest = self.store.read(job_id)
        else:
            tip = expected
            _, manifest = self.store.read(job_id, at=history_from or expected)
        done = update_job_manifest(self.store, job_id, update, now=utcnow(),
                                   transition_id=new_transition_id(), tip=tip, current=manifest,
                                   lease=lease.oid, body=body, include_worktree=include_worktree,
                                   parent=parent, history_from=history_from, extra_trailers=trailers,
                                   exclude=exclude, left_out=left_out)
        if done is None:
            return tip, manifest
        oid, new = done
        self.progress(f"{job_id}: {manifest.state.value} -> {new.state.value} (step {new.step}/{new.step_count})"
                      + (f": {update.reason}" if update.reason and new.state != State.PENDING else ""))
        if new.state != manifest.state:
            self._notify(new)
        return oid, new

    def _notify(self, m: Manifest) -> None:
        """The person's notify command, when the job came to need them or finished."""
        try:
            from logist.engine.notify import notify

            t = notify(self.store, {"id": m.id, "state": m.state.value, "reason": m.reason, "title": m.title,
                                    "step": m.step, "step_count": m.step_count}, warn=self.progress)
            if t is not None:
                self._notifications.append(t)
        except Exception as exc:  # a notification never stops a job
            self.progress(f"warning: no notification: {exc}")

    def _honour_stop(self, lease: Lease, req, log: Path | None = None) -> StepResult:
        """Commit the requested suspend/cancel under our lease (the agent is already stopped)."""
        from logist.engine.human_transitions import human_locked

        self._stop_req = None
        m = human_locked(self.store, lease, lease.job_id, req.event, req.message)
        self.progress(f"{m.id}: {m.state.value} (step {m.step}/{m.step_count}): {req.message}")
        if log is not None:
            self._note_log(self.store.tip(m.id), read_step_log(log, self.store.config.limits.max_log_bytes))
        return StepResult(m.id, m.state, m.step, reason=req.message)


    def _finish_intervention(self, lease: Lease, event: str, reason: str) -> StepResult:
        from logist.core.redact import redact

        reason = redact(reason)
        def mut(x: Manifest) -> None:
            x.current.status = StepStatus.FAILURE
            x.current.reason = reason
            x.execution = None

        oid, m = self._transition(lease, Update(event=event, reason=reason, mutate=mut))
        self._unlock_worktree(m.id)
        return StepResult(m.id, m.state, m.step, reason=reason, commits=[oid])

    def _unlock_worktree(self, job_id: JobId) -> None:
        self.store.unlock_worktree(job_id)

    def _release_if_finished(self, job_id: JobId, state: State) -> None:
        """A job that ended in SUCCESS or CANCELED gives its worktree back unless [worktrees]
        keep_finished (docs/architecture.md#worktrees); one that must stay is said why."""
        if state in TERMINAL and not self.store.config.worktrees.keep_finished:
            kept = self.store.release_worktree(job_id)
            if kept:
                self.progress(f"{job_id}: worktree kept: {kept}")

    def _note_log(self, commit: str, output: str) -> None:
        try:
            from logist.core.redact import cap, redact
            from logist.git.notes import set_note
        except ImportError:
            return
        text = cap(redact(output), self.store.config.logs.max_note_bytes)
        if text:
            try:
                set_note(self.store.root, refs.NOTES_LOGS, commit, text)
            except LogistError as exc:
                self.progress(f"warning: step log not noted: {exc.message}")
