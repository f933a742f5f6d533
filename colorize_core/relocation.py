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

import itertools
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import JSON, DateTime, Text, bindparam, func, insert, literal, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from colorize_core import __version__
from colorize_core.archive import sequence_at, xmp_sidecar_of
from colorize_core.errors import ColorizeError, FixityError, NotFoundError, RelocationError
from colorize_core.film_archive import fingerprint
from colorize_core.fixity import EVENT as FIXITY
from colorize_core.fixity import STATUSES, Scope, check_output, check_scope, item_ranges, read_range
from colorize_core.provenance import Event, Item, Job, Output, ProvenanceStore, Relocation, Shot, utcnow
from colorize_core.storage import Location

TRANSFER = "transfer"   # PREMIS eventType vocabulary: an object moved from one location to another
# A problem's fields that a fixity check event does not repeat: it is on the item, and the record names the new place.
NOT_IN_EVENT = ("item_id", "job_id", "source", "recorded_uri", "recorded_sha256", "recorded_size")
EVENT_RANGE = 10_000   # items per statement recording their events


def _under(column: Any, root: str) -> Any:
    """``column`` (a URI) is under ``root`` (ending in /): compared by characters, in SQL."""
    return func.substr(column, 1, len(root)) == root


def _moved_uri(column: Any, old_root: str, new_root: str) -> Any:
    """``column`` (a URI under ``old_root``) with ``new_root`` in its place, in SQL."""
    return literal(new_root, Text).concat(func.substr(column, len(old_root) + 1, type_=Text))


def _except(ranges: list[tuple[int, int]], found: dict[int, Any]) -> Iterator[tuple[Any, ...]]:
    """Conditions that take the items of each range but those in ``found`` (a statement per
    range: the ids left out stay fewer than a database's limit on bound values)."""
    for first, last in ranges:
        left_out = [i for i in found if first <= i <= last]
        yield (Item.id.between(first, last), Item.id.not_in(left_out)) if left_out else (Item.id.between(first, last),)


def _check_places(old: Location, new: Location, what: str) -> None:
    """RelocationError unless ``new`` is a place of its own that exists (``what`` was copied there)."""
    if old.uri == new.uri:
        raise RelocationError(f"{old.uri} is where the records already point")
    if old.contains(new) or new.contains(old):
        raise RelocationError(f"{new.uri} and {old.uri}: one is inside the other; relocate to a place of its own")
    try:
        new.check()
    except NotFoundError as exc:
        raise RelocationError(f"{exc}: copy {what} there first, then relocate it") from exc


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
    _check_places(old, new, "DEST")
    with store.session() as s:
        items = s.scalar(select(func.count()).select_from(Item).where(Item.dest == new.uri))
        jobs = s.scalar(select(func.count()).select_from(Job).where(Job.dest == new.uri))
    if items or jobs:
        raise RelocationError(f"{new.uri} is already a destination in {store.url} ({jobs} job(s), {items} item(s)): "
                              f"relocating {old.uri} there would merge two destinations")
    return scope


def relocated(store: ProvenanceStore, old: Location, new: Location, kind: str = "dest") -> Relocation | None:
    """The relocation of ``old`` to ``new`` (a DEST, or with ``kind`` source a SOURCE) made
    already, a re-run or a flow run retried after its commit, if the records are still at
    ``new``; None otherwise."""
    moved = store.relocated_away(old.uri, kind)
    if moved is None or (moved.old, moved.new) != (old.uri, new.uri) or store.relocated_away(new.uri, kind):
        return None
    return moved


def jobs_in(store: ProvenanceStore, dest: str) -> list[str]:
    """The ids of the jobs that wrote to ``dest``, oldest first."""
    with store.session() as s:
        return list(s.scalars(select(Job.id).where(Job.dest == dest).order_by(Job.started_at)))


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

    ranges = item_ranges(store, scope, EVENT_RANGE)
    with store.session() as s:
        # Events first: the scope is the old DEST's items until their rows are moved below.
        transferred = s.scalar(select(func.count()).select_from(Item).where(scope.condition()))
        s.execute(insert(Event).from_select(columns, event_rows(TRANSFER, moves)))
        for where in _except(ranges, found):
            s.execute(insert(Event).from_select(columns, event_rows(FIXITY, check, *where)))
        if found:
            s.execute(insert(Event), [{"job_id": jobs_of[i], "item_id": i, "type": FIXITY, "outcome": "failure",
                                       "agent": agent, "at": now, "detail": {**check, "not_intact": f}}
                                      for i, f in found.items()])
        of_old = select(Item.id).where(Item.dest == old.uri)
        outputs = s.execute(update(Output).where(Output.item_id.in_(of_old), _under(Output.uri, old_root))
                            .values(uri=_moved_uri(Output.uri, old_root, new_root))
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
        s.execute(update(Job).where(Job.dest == old.uri).values(dest=new.uri)
                  .execution_options(synchronize_session=False))
        s.add(Relocation(id=relocation_id, kind="dest", old=old.uri, new=new.uri, flow_run_id=flow_run, at=now,
                         items=items, outputs=outputs, not_intact=len(found)))
    return {"relocation": relocation_id, "jobs": jobs_in(store, new.uri), "items": items, "outputs": outputs,
            "shots": shots, "transferred": transferred, "items_not_intact": len(found)}


# A SOURCE relocated: the originals copied to other storage. Items, shots and jobs name them by
# URI: after the move a job on the new place would take every original for a new one and do the
# whole archive again, and --redo-rejected/--redo-damaged could not find them. Their versions
# follow too: a copy's new modification times or ETags would have the first job read them all again.

@dataclass(frozen=True)
class SourceScope:
    """What a relocation of SOURCE ``source`` reads back: per original recorded under it with a
    sha256, the newest item (the original as it was last read), whatever DEST it went to."""

    source: str

    def condition(self) -> ColumnElement[bool]:
        root = self.source.rstrip("/") + "/"
        newest = (select(func.max(Item.id)).where(_under(Item.source_uri, root), Item.sha256.is_not(None))
                  .group_by(Item.source_uri))
        return Item.id.in_(newest)


def source_scope(store: ProvenanceStore, old: Location, new: Location, stale_after: float) -> SourceScope:
    """What a relocation of SOURCE ``old`` to ``new`` reads back. RelocationError when it cannot
    be made: ``old`` relocated away already, the same place, one inside the other, ``new``
    missing, no original recorded under ``old`` (the message names the sources the database
    knows), or a job reading ``old`` now (its records would name the old place after the move)."""
    store.check_not_relocated(None, old.uri)
    _check_places(old, new, "SOURCE")
    root = old.uri.rstrip("/") + "/"
    with store.session() as s:
        if s.scalar(select(Item.id).where(_under(Item.source_uri, root)).limit(1)) is None:
            known = sorted(set(s.scalars(select(Job.source).limit(1000))))[:20]
            raise RelocationError(f"no original under {old.uri} is recorded in {store.url}"
                                  + (f"; sources of jobs: {', '.join(known)}" if known else ""))
        running = s.execute(select(Job.id, Job.dest).where(Job.status == "running", (Job.source == old.uri)
                                                           | _under(Job.source, root))).all()
    for job_id, dest in running:
        lease = store.dest_lease(dest)
        if lease and lease["job_id"] == job_id and (utcnow() - lease["renewed_at"]).total_seconds() < stale_after:
            raise RelocationError(f"job {job_id} is reading {old.uri} now (writing to {dest}): relocate once it has "
                                  f"finished")
    return SourceScope(old.uri)


def _check_original(new: Location, rel: str, rel_path: str, sha256: str, size: int | None) -> dict[str, Any]:
    """An original read back at ``new`` (``rel`` under it; ``rel_path`` under its job's SOURCE),
    as :func:`~colorize_core.fixity.check_output` says, with, when intact, the version it was
    read at: a frame sequence's as a job computes it, from a listing taken before its frames were read."""
    if not rel.endswith("/"):   # a photo or a film file
        return check_output(new, new.uri_of(rel), sha256, size if size is not None else -1)
    folder = rel.rstrip("/")    # a frame sequence: its fingerprint, as a job takes it
    place = new.child(folder) if folder else new
    try:
        film = sequence_at(place, as_folder=rel_path)
        if film is None:
            return {"status": "missing"}
        found = fingerprint(place, film)
    except NotFoundError:
        return {"status": "missing"}
    except (ColorizeError, OSError) as exc:
        return {"status": "unreadable", "error": str(exc)}
    if found == sha256:
        return {"status": "intact", "version": film.version}
    return {"status": "changed", "found_sha256": found, "found_size": film.size}


def compare_originals(store: ProvenanceStore, old: Location, new: Location, scope: SourceScope, first: int,
                      last: int) -> dict[str, Any]:
    """Read back at ``new`` the originals recorded under ``old`` of the items in scope with ids
    ``first``..``last`` (a frame sequence: its frames, sound and sequence.json, fingerprinted as a
    job does) and compare each with the sha256 recorded when it was last read; records nothing.
    Returns the counts by status and every original not intact, as :func:`compare_copy` does,
    and ``versions``: [item id, version at ``new``] of each original read intact (for
    :func:`relocate_source`)."""
    q = (select(Item.id, Item.job_id, Item.source_uri, Item.rel_path, Item.sha256, Item.size, Item.media)
         .where(scope.condition(), Item.id.between(first, last)).order_by(Item.id))
    with store.session() as s:
        rows = s.execute(q).all()
    counts = {status: 0 for status in STATUSES}
    problems, versions = [], []
    for item_id, job_id, uri, rel_path, sha256, size, media in rows:
        rel = old.rel_of(uri) or ""
        result = _check_original(new, rel, rel_path, sha256, size)
        read = [("original", rel, uri, sha256, size, result)]
        side = xmp_sidecar_of(uri, rel_path, media)
        if side:   # a photo's XMP sidecar, part of it: read back too, its version part of the photo's
            side_rel = old.rel_of(side["uri"]) or ""
            found = check_output(new, new.uri_of(side_rel), side["sha256"], side["size"])
            read.append(("xmp-sidecar", side_rel, side["uri"], side["sha256"], side["size"], found))
            if result["status"] == "intact" and result["version"] is not None:
                result["version"] = f"{result['version']}+xmp:{found['version']}" \
                    if found["status"] == "intact" and found["version"] is not None else None
        for kind, at, recorded_uri, recorded_sha, recorded_size, found in read:
            counts[found["status"]] += 1
            if found["status"] != "intact":
                problems.append({"item_id": item_id, "job_id": job_id, "source": rel_path, "kind": kind,
                                 "uri": new.uri_of(at.rstrip("/")) + ("/" if at.endswith("/") else ""),
                                 "recorded_uri": recorded_uri, "recorded_sha256": recorded_sha,
                                 "recorded_size": recorded_size, **found})
        if result["status"] == "intact" and result["version"] is not None:
            versions.append([item_id, result["version"]])
    return {"items": len(rows), "items_not_intact": len({p["item_id"] for p in problems}), "counts": counts,
            "problems": problems, "versions": versions}


def relocate_source(store: ProvenanceStore, old: Location, new: Location, scope: SourceScope,
                    problems: list[dict[str, Any]], relocation_id: str | None = None,
                    flow_run: str | None = None, versions: Iterable[list[Any]] = ()) -> dict[str, Any]:
    """Point every record of an original under ``old`` (items, film units, and the jobs that read
    ``old`` or a folder in it) at ``new``, in one transaction, with the relocation's own row (a
    job reading ``old`` is refused from then on); each item in scope gets a ``transfer`` event,
    a failure for those in ``problems``. ``versions`` (what :func:`compare_originals` read intact
    at ``new``): each such original's done items take its version there, so that a job's quick
    check at ``new`` knows them unchanged and does not read them all again (a copy gives files
    new modification times or ETags). Returns how many rows changed, and per DEST the jobs
    whose pages show the originals."""
    old_root, new_root = old.uri.rstrip("/") + "/", new.uri.rstrip("/") + "/"
    relocation_id = relocation_id or str(uuid.uuid4())
    now, agent = utcnow(), f"colorize {__version__}"
    moves = {"from": old.uri, "to": new.uri, "object": "original", "relocation": relocation_id, "flow_run": flow_run,
             "version_tags": "the new place's, for the originals read intact there"}
    found: dict[int, list[dict[str, Any]]] = defaultdict(list)
    jobs_of: dict[int, str] = {}
    for p in problems:
        found[p["item_id"]].append({k: v for k, v in p.items() if k not in NOT_IN_EVENT})
        jobs_of[p["item_id"]] = p["job_id"]
    columns = ["job_id", "item_id", "type", "outcome", "agent", "detail", "at"]
    rows = select(Item.job_id, Item.id, literal(TRANSFER, Text), literal("success", Text), literal(agent, Text),
                  literal(moves, JSON), literal(now, DateTime(timezone=True))).where(scope.condition())
    ranges = item_ranges(store, scope, EVENT_RANGE)
    with store.session() as s:
        transferred = s.scalar(select(func.count()).select_from(Item).where(scope.condition()))
        for where in _except(ranges, found):   # before the URIs change: the scope is by them
            s.execute(insert(Event).from_select(columns, rows.where(*where)))
        if found:
            s.execute(insert(Event), [{"job_id": jobs_of[i], "item_id": i, "type": TRANSFER, "outcome": "failure",
                                       "agent": agent, "at": now, "detail": {**moves, "not_intact": f}}
                                      for i, f in found.items()])
        items = s.execute(update(Item).where(_under(Item.source_uri, old_root))
                          .values(source_uri=_moved_uri(Item.source_uri, old_root, new_root))
                          .execution_options(synchronize_session=False)).rowcount
        shots = s.execute(update(Shot).where(_under(Shot.source_uri, old_root))
                          .values(source_uri=_moved_uri(Shot.source_uri, old_root, new_root))
                          .execution_options(synchronize_session=False)).rowcount
        jobs = s.execute(update(Job).where(Job.source == old.uri).values(source=new.uri)
                         .execution_options(synchronize_session=False)).rowcount
        jobs += s.execute(update(Job).where(_under(Job.source, old_root))
                          .values(source=_moved_uri(Job.source, old_root, new_root))
                          .execution_options(synchronize_session=False)).rowcount
        versioned = _take_versions(s, versions)
        s.add(Relocation(id=relocation_id, kind="source", old=old.uri, new=new.uri, flow_run_id=flow_run, at=now,
                         items=items, outputs=0, not_intact=len(found)))
    return {"relocation": relocation_id, "pages": pages_of(store, new), "items": items, "shots": shots, "jobs": jobs,
            "transferred": transferred, "items_not_intact": len(found), "versions_taken": versioned}


def _take_versions(s: Session, versions: Iterable[list[Any]]) -> int:
    """For each [item id, version] (an original read intact at the new place: the item is its
    newest record), the done items of the same original with the same content take that version
    as their ``version_tag``; returns how many originals."""
    items = Item.__table__
    verified = items.alias("verified")

    def of(column: str) -> Any:
        return select(verified.c[column]).where(verified.c.id == bindparam("verified_id")).scalar_subquery()

    take = (update(items).where(items.c.status == "done", items.c.source_uri == of("source_uri"),
                                items.c.sha256 == of("sha256"), items.c.size == of("size"))
            .values(version_tag=bindparam("new_version")))
    rows, n = iter(versions), 0
    while part := list(itertools.islice(rows, EVENT_RANGE)):
        s.execute(take, [{"verified_id": item_id, "new_version": version} for item_id, version in part])
        n += len(part)
    return n


def pages_of(store: ProvenanceStore, source: Location) -> dict[str, list[str]]:
    """Per DEST, the jobs whose pages show originals under ``source``."""
    root = source.uri.rstrip("/") + "/"
    by_dest: dict[str, list[str]] = defaultdict(list)
    with store.session() as s:
        for dest, job_id in s.execute(select(Item.dest, Item.job_id).where(_under(Item.source_uri, root)).distinct()
                                      .order_by(Item.dest, Item.job_id)):
            by_dest[dest].append(job_id)
    return dict(by_dest)
