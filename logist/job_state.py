"""The record API by its known name: the state table and the manifest functions.

The implementation lives in :mod:`logist.store.job_state`; this module keeps the names users and
scripts know (``from logist.job_state import transition_state``).
"""

from logist.core.errors import JobStateError
from logist.store.job_state import (
    Update,
    allowed_events,
    get_current_state_and_role,
    load_job_manifest,
    transition_state,
    update_job_manifest,
)

__all__ = ["JobStateError", "Update", "allowed_events", "get_current_state_and_role",
           "load_job_manifest", "transition_state", "update_job_manifest"]
