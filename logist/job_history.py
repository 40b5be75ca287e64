"""Job history reads by their known name; the implementation is :mod:`logist.store.job_history`."""

from logist.store.job_history import history_with_notes, last_signal, step_output

__all__ = ["history_with_notes", "last_signal", "step_output"]
