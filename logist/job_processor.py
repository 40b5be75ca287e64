"""The step engine by its known name; the implementation is :mod:`logist.engine.job_processor`."""

from logist.engine.job_processor import Engine, StepResult, assemble_prompt

__all__ = ["Engine", "StepResult", "assemble_prompt"]
