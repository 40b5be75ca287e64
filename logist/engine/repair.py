"""Finishing what an interrupted rerun or restep left, and the engine that does it first.

The step engine (``logist.engine.job_processor``) cannot import rerun and restep, which build
on it; the repair is handed to it instead: :func:`make_engine` is the engine every command
uses, with :func:`repair_interrupted` called under the lease before anything runs.
"""

from __future__ import annotations

from typing import Any

from logist.engine.job_processor import Engine
from logist.engine.restep import clear_restep, interrupted_restep_of, resume_restep
from logist.engine.steps import StepResult
from logist.store.jobstore import JobStore
from logist.store.locks import Lease


def make_engine(store: JobStore, **kwargs: Any) -> Engine:
    """The step engine with the repair of interrupted reruns and resteps handed in (the keyword
    arguments are the Engine's: progress, trust, watch)."""
    return Engine(store, repair=repair_interrupted, **kwargs)


def repair_interrupted(engine: Engine, lease: Lease) -> StepResult | None:
    """Called by the engine under the lease before it runs anything (Engine._repair).

    Repairs a worktree left mid-move by an interrupted rerun, and finishes an interrupted
    restep: uses an isolated result already kept at its ref; else re-attaches to its agent if
    it still runs, or harvests its recorded exit if it finished; else (killed, never started)
    executes it again (attempt + 1) or, when attempts are spent, records a failure.
    Returns the engine's StepResult for a finished restep, None when there was none.
    """
    job_id = lease.job_id
    found = interrupted_restep_of(engine, lease)
    if found is None:
        return None
    tip, m, r = found
    engine.progress(f"{job_id}: finishing an interrupted restep"
                    + (f" ({r.number}, step {r.step})" if r else ""))
    if r is None:
        result = clear_restep(engine, lease, tip, m)
    else:
        result = resume_restep(engine, lease, tip, m, r)
    return StepResult(job_id, result.state, result.current_step, outcome=result.outcome,
                      reason=f"restep {result.restep} of step {result.step}: {result.reason}",
                      commits=[result.commit])
