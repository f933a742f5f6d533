"""A flow's summary handed back to the command that runs the flow in this process.

The commands print what a flow found (a job's counts and manifest, a fixity check's damage, an
evaluation's table), which the flow returns as its final state's data. Results are not
persisted, so that data never travels through Prefect's API. Prefect replaces the state it
proposed with the API's copy, without the data, when the API rejects the proposal. The API does
that to a duplicate: it committed the final state but answered after the client's timeout (a
server stalled on its SQLite lock for a minute), and the client sent the same state again. The
command then failed on a finished job with "State data is missing". So each flow also hands its
summary back here, by its run's id, and the command takes it from here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

from prefect.context import FlowRunContext
from prefect.states import State

T = TypeVar("T")
_receivers: ContextVar[dict[str, Any] | None] = ContextVar("colorize_handed_back", default=None)


class Received:
    """The summaries handed back by flow runs inside a ``receiving()`` block."""

    def __init__(self) -> None:
        self._by_run: dict[str, Any] = {}

    def summary(self, state: State) -> Any:
        """What the run whose final state is ``state`` handed back; None if it handed nothing back
        (it raised, crashed or was stopped before its end)."""
        return self._by_run.get(str(state.state_details.flow_run_id))


@contextmanager
def receiving() -> Iterator[Received]:
    """Around a flow called in this process: the summaries its runs hand back."""
    received = Received()
    token = _receivers.set(received._by_run)
    try:
        yield received
    finally:
        _receivers.reset(token)


def hand_back(summary: T) -> T:
    """``summary``, kept for the command running this flow in this process (none does in a
    deployment's run on a worker: then nothing is kept)."""
    by_run, context = _receivers.get(), FlowRunContext.get()
    if by_run is not None and context is not None and context.flow_run is not None:
        by_run[str(context.flow_run.id)] = summary
    return summary
