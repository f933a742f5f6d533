"""Relocation of a destination: the database follows DEST to the storage it was copied to.

An archive's storage is replaced every few years (a new NAS, a move to S3). Its keepers copy
DEST with their own tools (rsync, ``aws s3 sync``), but the provenance database names every
output at the old place: a fixity check there reads everything as missing, and a run into the
new place would redo every item. A relocation makes the records follow the copy:

1. :func:`relocation_scope`: the old DEST has outputs recorded; the new place exists, is neither
   inside the old one nor around it, and holds no destination of its own in this database.
2. :func:`compare_copy`, in ranges of item ids (in parallel tasks): every output recorded for
   the old DEST (renditions, films, thumbnails, a film's stills) is read back at the new place,
   at the same relative path, and its sha256 and size compared with its record. Nothing is
   recorded yet.
3. :func:`relocate`, in one transaction: jobs, items, shots (their segments and stills) and
   outputs name the new place, and every item whose outputs were read gets a ``transfer`` event
   (from, to) and a ``fixity check`` event (what the read-back at the new place found). Events
   recorded before keep the URIs they named: they are history. The relocation's own row
   (``relocations``) makes a job writing to the old place refused from then on: with no records
   there, it would do the whole archive again beside the files left there.

The caller refuses (changes nothing) when an output is not intact at the new place, unless told
to accept that: the damaged outputs are then recorded as such by their fixity check events, for
``colorize run --redo-damaged``. While it runs, the caller holds both places' leases, so that no
job writes to either.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from typing import Any

from sqlalchemy import JSON, DateTime, Text, func, insert, literal, select, update

from colorize_core import __version__
from colorize_core.errors import FixityError, NotFoundError, RelocationError
from colorize_core.fixity import EVENT as FIXITY
from colorize_core.fixity import Scope, check_scope, read_range
from colorize_core.provenance import Event, Item, Job, Output, ProvenanceStore, Relocation, Shot, utcnow
from colorize_core.storage import Location

TRANSFER = "transfer"   # PREMIS eventType vocabulary: an object moved from one location to another
# A problem's fields that a fixity check event does not repeat: it is on the item, and the record names the new place.
NOT_IN_EVENT = ("item_id", "job_id", "source", "recorded_uri", "recorded_sha256", "recorded_size")


def relocation_scope(store: ProvenanceStore, old: Location, new: Location) -> Scope:
    """What a relocation of ``old`` to ``new`` reads back: the outputs of the items done in
    ``old`` (a fixity check's scope). RelocationError when it cannot be made: the same place,
    one inside the other, ``new`` missing or already a destination in this database (two
    destinations are never merged), nothing recorded done in ``old`` (the message names the
    destinations the database knows)."""
    store.check_not_relocated(old.uri)
    try:
        scope = check_scope(store, old)
    except FixityError as exc:
        raise RelocationError(str(exc)) from exc
    if old.uri == new.uri:
        raise RelocationError(f"{old.uri} is where the records already point")
    if old.contains(new) or new.contains(old):
        raise RelocationError(f"{new.uri} and {old.uri}: one is inside the other; relocate to a place of its own")
    try:
        new.check()
    except NotFoundError as exc:
        raise RelocationError(f"{exc}: copy DEST there first, then relocate it") from exc
    with store.session() as s:
        items = s.scalar(select(func.count()).select_from(Item).where(Item.dest == new.uri))
        jobs = s.scalar(select(func.count()).select_from(Job).where(Job.dest == new.uri))
    if items or jobs:
        raise RelocationError(f"{new.uri} is already a destination in {store.url} ({jobs} job(s), {items} item(s)): "
                              f"relocating {old.uri} there would merge two destinations")
    return scope


def relocated(store: ProvenanceStore, old: Location, new: Location) -> dict[str, Any] | None:
    """The relocation of ``old`` to ``new`` made already (a re-run, or a flow run retried after
    its commit), if the records are still at ``new``: ``relocation``, ``at``, ``flow_run`` and
    the ids of the jobs in ``new``; None otherwise."""
    moved = store.relocated_away(old.uri)
    if moved is None or moved.new != new.uri or store.relocated_away(new.uri) is not None:
        return None
    with store.session() as s:
        jobs = list(s.scalars(select(Job.id).where(Job.dest == new.uri).order_by(Job.started_at)))
    return {"relocation": moved.id, "at": moved.at.isoformat(), "flow_run": moved.flow_run_id, "jobs": jobs}


def compare_copy(store: ProvenanceStore, old: Location, new: Location, scope: Scope, first: int,
                 last: int) -> dict[str, Any]:
    """Read back at ``new`` the outputs recorded in ``old`` of the items in scope with ids
    ``first``..``last``; records nothing. Returns the counts by status and every output not
    intact (``uri`` at the new place, ``recorded_uri``), as a fixity check does."""
    result = read_range(store, old, scope, first, last, read=new)
    del result["per_item"]
    return result


def relocate(store: ProvenanceStore, old: Location, new: Location, scope: Scope, problems: list[dict[str, Any]],
             relocation_id: str | None = None, flow_run: str | None = None) -> dict[str, Any]:
    """Point every record of ``old`` at ``new``, in one transaction, with the relocation's own
    row (``relocations``: from then on a job writing to ``old`` is refused), and record on each
    item in scope a ``transfer`` event and a ``fixity check`` event (a failure for the items
    with outputs in ``problems``, as :func:`compare_copy` found them), naming the relocation
    and its flow run. Returns how many rows changed, how many items got the events
    (``transferred``) and the ids of the jobs now in ``new``."""
    old_root, new_root = old.uri.rstrip("/") + "/", new.uri.rstrip("/") + "/"

    def moved(uri: str) -> str:
        rel = old.rel_of(uri)
        return new.uri_of(rel) if rel is not None else uri

    found: dict[int, list[dict[str, Any]]] = defaultdict(list)
    jobs_of: dict[int, str] = {}
    for p in problems:
        found[p["item_id"]].append({k: v for k, v in p.items() if k not in NOT_IN_EVENT})
        jobs_of[p["item_id"]] = p["job_id"]
    now, agent = utcnow(), f"colorize {__version__}"
    relocation_id = relocation_id or str(uuid.uuid4())
    moves = {"from": old.uri, "to": new.uri, "relocation": relocation_id, "flow_run": flow_run}
    check = {"algorithm": "SHA-256", "not_intact": [], "relocation": moves}
    columns = ["job_id", "item_id", "type", "outcome", "agent", "detail", "at"]

    def event_rows(kind: str, what: dict[str, Any], *where: Any) -> Any:
        return select(Item.job_id, Item.id, literal(kind, Text), literal("success", Text), literal(agent, Text),
                      literal(what, JSON), literal(now, DateTime(timezone=True))).where(scope.condition(), *where)

    with store.session() as s:
        # Events first: the scope is the old DEST's items until their rows are moved below.
        transferred = s.scalar(select(func.count()).select_from(Item).where(scope.condition()))
        s.execute(insert(Event).from_select(columns, event_rows(TRANSFER, moves)))
        s.execute(insert(Event).from_select(columns, event_rows(FIXITY, check, Item.id.not_in(list(found)))))
        if found:
            s.execute(insert(Event), [{"job_id": jobs_of[i], "item_id": i, "type": FIXITY, "outcome": "failure",
                                       "agent": agent, "at": now, "detail": {**check, "not_intact": f}}
                                      for i, f in found.items()])
        of_old = select(Item.id).where(Item.dest == old.uri)
        outputs = s.execute(update(Output)
                            .where(Output.item_id.in_(of_old), func.substr(Output.uri, 1, len(old_root)) == old_root)
                            .values(uri=literal(new_root, Text).concat(func.substr(Output.uri, len(old_root) + 1,
                                                                                   type_=Text)))
                            .execution_options(synchronize_session=False)).rowcount
        shots = 0
        for shot in s.scalars(select(Shot).where(Shot.dest == old.uri)):   # a few per film
            shot.dest = new.uri
            shot.segments = {r: {**seg, "uri": moved(seg["uri"])} for r, seg in (shot.segments or {}).items()}
            shot.stills = [{k: ({**v, "uri": moved(v["uri"])} if isinstance(v, dict) and "uri" in v else v)
                            for k, v in still.items()} for still in shot.stills or []]
            shots += 1
        items = s.execute(update(Item).where(Item.dest == old.uri).values(dest=new.uri)
                          .execution_options(synchronize_session=False)).rowcount
        job_ids = list(s.scalars(select(Job.id).where(Job.dest == old.uri).order_by(Job.started_at)))
        s.execute(update(Job).where(Job.dest == old.uri).values(dest=new.uri)
                  .execution_options(synchronize_session=False))
        s.add(Relocation(id=relocation_id, old=old.uri, new=new.uri, flow_run_id=flow_run, at=now, items=items,
                         outputs=outputs, not_intact=len(found)))
    return {"relocation": relocation_id, "jobs": job_ids, "items": items, "outputs": outputs, "shots": shots, "transferred": transferred,
            "items_not_intact": len(found)}
