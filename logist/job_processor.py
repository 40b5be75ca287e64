"""The step engine by its known name; the implementation is :mod:`logist.engine.job_processor`.

``Engine`` here is the engine as logist's commands build it (``logist.engine.repair.make_engine``):
before a step runs it finishes what an interrupted rerun or restep left.
"""

from typing import Any

from logist.engine.job_processor import Engine as StepEngine
from logist.engine.repair import repair_interrupted
from logist.engine.steps import StepResult, assemble_prompt
from logist.store.jobstore import JobStore

__all__ = ["Engine", "StepResult", "assemble_prompt"]


class Engine(StepEngine):
    """``logist.engine.job_processor.Engine`` with the repair of interrupted reruns and resteps."""

    def __init__(self, store: JobStore, **kwargs: Any) -> None:
        kwargs.setdefault("repair", repair_interrupted)
        super().__init__(store, **kwargs)
