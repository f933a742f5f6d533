"""Prefect tasks: thin wrappers over colorize_core with retries, tags and logging."""

import threading
from collections.abc import Callable
from typing import Any

from colorize_core.storage import sweep_work_dirs

_sweep_lock = threading.Lock()
_swept = False


def retry_unless(*final: type[BaseException]) -> Callable[[Any, Any, Any], bool]:
    """A Prefect ``retry_condition_fn``: retry a failed attempt unless it failed with one of
    ``final``, errors another attempt cannot mend (a source that is not there, a job that
    stopped)."""
    def condition(task: Any, task_run: Any, state: Any) -> bool:  # noqa: ARG001 - Prefect's signature
        try:
            state.result()
        except final:
            return False
        except Exception:  # noqa: BLE001 - anything else may be transient
            return True
        return True
    return condition


def sweep_work_dirs_once(logger: Any) -> None:
    """Once per process (the flow's, or a Dask worker's, at its first task): remove the work
    folders that processes of this host killed mid-work left in the temporary folder, saying so."""
    global _swept
    with _sweep_lock:
        if _swept:
            return
        _swept = True
        removed = sweep_work_dirs()
    for path, size in removed:
        logger.warning("removed %s (%.1f MB), the work folder of a process that no longer runs (killed mid-work)",
                       path, size / 1e6)
