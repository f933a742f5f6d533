"""Prefect tasks: thin wrappers over colorize_core with retries, tags and logging."""

from collections.abc import Callable
from typing import Any


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
