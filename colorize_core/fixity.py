"""Fixity checks of a destination, as archives run them on a schedule.

Every output the provenance database records for DEST (colour renditions, films, review
thumbnails, a film's stills) is read back whole and its sha256 and size compared with those recorded when it was
written: ``intact``, ``missing``, ``changed`` or ``unreadable``. Each item checked gets a PREMIS
``fixity check`` event (outcome ``failure`` when any of its outputs is not intact, with what was
found). The files in DEST that no record accounts for (outside the reserved ``manifests/``
folder and the index) are listed: a job stopped between writing an output and recording it
leaves one, and so does anything put there by hand.

An item found damaged is written again from its original by ``colorize run --redo-damaged``
(:func:`repair_groups`): with its own recorded parameters, as a new item whose ``repair`` event
names the old one; the old one gets a ``replaced`` event and is no longer checked (what was
lost stays lost; the changed file, if any, stays where it is: nothing is overwritten).

The units of work are ranges of item ids (``item_ranges``), so that a flow can check an archive
of millions of items in parallel tasks that pass only two numbers each.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, distinct, func, insert, or_, select
from sqlalchemy.sql.elements import ColumnElement

from colorize_core import __version__
from colorize_core.archive import MANIFESTS, JobSettings
from colorize_core.errors import FixityError, NotFoundError, StorageError
from colorize_core.provenance import Event, Item, Job, Output, ProvenanceStore, Shot, in_chunks, utcnow
from colorize_core.review import redo_settings
from colorize_core.storage import Entry, Location

EVENT = "fixity check"      # PREMIS eventType vocabulary
STATUSES = ("intact", "missing", "changed", "unreadable")
INDEX = ("manifest.json", "manifest.html")   # DEST's index of its latest job, rewritten by design


REPAIR, REPLACED = "repair", "replaced"   # events on the item written again and on the damaged one


def _with_event(kind: str):  # noqa: ANN202 - a select of item ids
    return select(Event.item_id).where(Event.type == kind, Event.item_id.is_not(None))


@dataclass(frozen=True)
class Scope:
    """What a check covers: the items done in ``dest``, or only those a job shows (the items it
    did, and those its skip records point to: the outputs its manifest presents); with
    ``checked_before``, only those not checked since then (a rolling check: each night the
    items whose last check is older than a week, say)."""

    dest: str
    job_id: str | None = None
    checked_before: datetime | None = None

    def condition(self) -> ColumnElement[bool]:
        done = and_(Item.dest == self.dest, Item.status == "done", Item.id.not_in(_with_event(REPLACED)))
        if self.checked_before is not None:
            recent = _with_event(EVENT).where(Event.at >= self.checked_before)
            done = and_(done, Item.id.not_in(recent))
        if self.job_id is None:
            return done
        shown = select(Item.previous_item_id).where(Item.job_id == self.job_id, Item.status == "skipped",
                                                    Item.previous_item_id.is_not(None))
        return and_(done, or_(Item.job_id == self.job_id, Item.id.in_(shown)))


def check_scope(store: ProvenanceStore, dest: Location, job_id: str | None = None,
                checked_before: datetime | None = None) -> Scope:
    """The scope of a check of ``dest`` (of one job's outputs there if ``job_id``; of those not
    checked since ``checked_before`` if given). Raises FixityError for an unknown job, a job of
    another DEST, or a DEST with nothing recorded done (a mistyped DEST: the message names the
    destinations the database knows); a scope with nothing due yet is not an error."""
    if job_id is not None:
        job = store.job(job_id)
        if job is None:
            raise FixityError(f"no job {job_id} in {store.url}")
        if job.dest != dest.uri:
            raise FixityError(f"job {job_id} wrote to {job.dest}, not {dest.uri}")
    scope = Scope(dest.uri, job_id)
    with store.session() as s:
        if s.scalar(select(Item.id).where(scope.condition()).limit(1)) is None:
            dests = s.scalars(select(distinct(Item.dest)).where(Item.status == "done").limit(20)).all()
            moved = store.relocated_away(dest.uri)
            if moved is not None and job_id is None:
                raise FixityError(f"{dest.uri} was relocated to {moved.new} at {moved.at:%Y-%m-%d %H:%M} UTC "
                                  f"(relocation {moved.id}): its records name that place; check it there")
            what = f"job {job_id} shows no outputs" if job_id else f"nothing is recorded done for {dest.uri}"
            known = f"; destinations with outputs: {', '.join(sorted(dests))}" if dests else ""
            raise FixityError(f"{what} in {store.url}{known}")
    return Scope(dest.uri, job_id, checked_before)


def item_ranges(store: ProvenanceStore, scope: Scope, per_range: int,
                max_items: int | None = None) -> list[tuple[int, int]]:
    """The items in scope as (first id, last id) ranges of ``per_range`` items each, in id order;
    the first ``max_items`` only, if given (a night's share of a rolling check)."""
    if per_range < 1 or (max_items is not None and max_items < 1):
        raise ValueError("per_range and max_items must be at least 1")
    ranges, first, n, last = [], None, 0, None
    q = select(Item.id).where(scope.condition()).order_by(Item.id)
    if max_items is not None:
        q = q.limit(max_items)
    with store.session() as s:
        ids = s.scalars(q.execution_options(yield_per=10_000))
        for item_id in ids:
            first = item_id if first is None else first
            last, n = item_id, n + 1
            if n == per_range:
                ranges.append((first, last))
                first, n = None, 0
    if first is not None:
        ranges.append((first, last))
    return ranges


def check_output(dest: Location, uri: str, sha256: str, size: int, read: Location | None = None) -> dict[str, Any]:
    """Read back the file ``uri`` names under ``dest`` (at the same relative path under ``read``,
    if given) and compare it with its record: ``{"status": "intact", "version": ...}`` (the
    version it was read at, as a listing gives it; None if it changed while read), ``missing``,
    ``unreadable`` (with the ``error``), or ``changed`` (with the ``found_sha256`` and ``found_size``)."""
    rel = dest.rel_of(uri)
    if rel is None:
        return {"status": "unreadable", "error": f"{uri} is not under {dest.uri}"}
    try:
        found = (read or dest).digest(rel)
    except NotFoundError:
        return {"status": "missing"}
    except StorageError as exc:
        return {"status": "unreadable", "error": str(exc)}
    if found.sha256 == sha256 and found.size == size:
        return {"status": "intact", "version": found.version}
    return {"status": "changed", "found_sha256": found.sha256, "found_size": found.size}


def read_range(store: ProvenanceStore, dest: Location, scope: Scope, first: int, last: int,
               read: Location | None = None) -> dict[str, Any]:
    """Read back the outputs of the items in scope with ids ``first``..``last`` (from ``read``,
    at the same relative paths, if given: a copy of DEST elsewhere) and compare each with its
    record; records nothing. Returns the counts by status (outputs and items), every output not
    intact (``uri`` where it was read, ``recorded_uri``) and, per item id, its job, how many
    outputs it has and those not intact (``found``)."""
    q = (select(Item.id, Item.job_id, Item.rel_path, Output.kind, Output.uri, Output.sha256, Output.size)
         .outerjoin(Output, Output.item_id == Item.id)
         .where(scope.condition(), Item.id.between(first, last)).order_by(Item.id, Output.id))
    items: dict[int, tuple[str, str, list[tuple[str, str, str, int]]]] = {}
    with store.session() as s:   # rows, not objects; then let the session go: reading a film back takes a while
        for item_id, job_id, rel_path, *output in s.execute(q):
            outputs = items.setdefault(item_id, (job_id, rel_path, []))[2]
            if output[0] is not None:
                outputs.append(tuple(output))
        # A film's stills (a pair per shot, on its manifest page) are outputs of its shots.
        stills = [row for part in in_chunks(items) for row in s.execute(
            select(Shot.item_id, Shot.stills).where(Shot.item_id.in_(part)).order_by(Shot.item_id, Shot.start_frame))]
        for item_id, shot_stills in stills:
            for still in shot_stills or []:
                items[item_id][2].extend((f"still-{kind}", still[kind]["uri"], still[kind]["sha256"],
                                          still[kind]["size"]) for kind in ("original", "colour") if still.get(kind))
    seen: dict[tuple[str, str, int], dict[str, Any]] = {}   # thumbnails shared by items: read once
    counts = {status: 0 for status in STATUSES}
    problems, per_item = [], {}
    for item_id, (job_id, rel_path, outputs) in items.items():
        found = []
        for kind, uri, sha256, size in outputs:
            result = seen.get((uri, sha256, size))
            if result is None:
                result = seen[(uri, sha256, size)] = check_output(dest, uri, sha256, size, read)
            counts[result["status"]] += 1
            if result["status"] != "intact":
                rel = dest.rel_of(uri) if read else None   # where it was read: at the copy's
                at = read.uri_of(rel) if read and rel else uri
                found.append({"kind": kind, "uri": at, **result})
                problems.append({"item_id": item_id, "job_id": job_id, "source": rel_path, "kind": kind, "uri": at,
                                 "recorded_uri": uri, "recorded_sha256": sha256, "recorded_size": size, **result})
        per_item[item_id] = {"job_id": job_id, "outputs": len(outputs), "found": found}
    return {"items": len(items), "items_not_intact": sum(bool(i["found"]) for i in per_item.values()),
            "counts": counts, "problems": problems, "per_item": per_item}


def check_range(store: ProvenanceStore, dest: Location, scope: Scope, first: int, last: int,
                detail: dict[str, Any] | None = None) -> dict[str, Any]:
    """Check the outputs of the items in scope with ids ``first``..``last`` and record a fixity
    check event on each (``detail``, e.g. the flow run, goes into every event). Returns the
    counts by status (outputs and items) and every output not intact, with where it came from."""
    result = read_range(store, dest, scope, first, last)
    per_item = result.pop("per_item")
    events = [{"job_id": i["job_id"], "item_id": item_id, "type": EVENT, "outcome": "failure" if i["found"] else "success",
               "agent": f"colorize {__version__}", "at": utcnow(),
               "detail": {"algorithm": "SHA-256", "outputs": i["outputs"], "not_intact": i["found"], **(detail or {})}}
              for item_id, i in per_item.items()]
    before = {i: c["outcome"] for i, c in latest_checks(store, list(per_item)).items()}
    if events:
        with store.session() as s:   # one multi-row insert: an archive's check records millions
            s.execute(insert(Event), events)
    result["recovered"] = [{"item_id": e["item_id"], "job_id": e["job_id"]} for e in events
                           if e["outcome"] == "success" and before.get(e["item_id"]) == "failure"]
    return result


def merge(results: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The results of several :func:`check_range` calls as one."""
    total = {"items": 0, "items_not_intact": 0, "counts": {status: 0 for status in STATUSES}, "problems": [],
             "recovered": []}
    for r in results:
        total["items"] += r["items"]
        total["items_not_intact"] += r["items_not_intact"]
        for status, n in r["counts"].items():
            total["counts"][status] += n
        total["problems"] += r["problems"]
        total["recovered"] += r.get("recovered", [])
    return total


def unrecorded(store: ProvenanceStore, dest: Location, stale_after: float,
               remove_interrupted: bool = False) -> dict[str, Any]:
    """The files in DEST that no output record accounts for, outside ``manifests/`` and the
    index, and the partial copies that writes killed mid-way left (hidden ``.colorize-tmp-*``
    files, removed with ``remove_interrupted``): ``{"files": [{rel, uri, size}], "interrupted":
    [{rel, uri, size, removed}], "looked": True}``. Not looked for (``looked``: False, ``why``)
    while a job holds DEST's lease: the files it has written and not yet recorded would be
    listed, and its temporaries are files being written. Reads DEST's listing and the recorded
    URIs of every item ever written there."""
    lease = store.dest_lease(dest.uri)
    if lease and (utcnow() - lease["renewed_at"]).total_seconds() < stale_after:
        return {"files": [], "interrupted": [], "looked": False,
                "why": f"job {lease['job_id']} is writing to {dest.uri} now: files it has not recorded yet would "
                       f"be listed; run the check again once it has finished"}
    with store.session() as s:
        q = (select(Output.uri).join(Item, Output.item_id == Item.id).where(Item.dest == dest.uri)
             .execution_options(yield_per=10_000))
        recorded = {dest.rel_of(uri) for uri in s.scalars(q)}
    partial: list[Entry] = []   # found by the same walk
    try:
        files = [{"rel": e.rel, "uri": dest.uri_of(e.rel), "size": e.size} for e in dest.list(interrupted=partial)
                 if e.rel not in recorded and e.rel not in INDEX and not e.rel.startswith(f"{MANIFESTS}/")]
    except NotFoundError as exc:
        return {"files": [], "interrupted": [], "looked": False, "why": str(exc)}
    interrupted = [{"rel": e.rel, "uri": dest.uri_of(e.rel), "size": e.size, "removed": False} for e in partial]
    for f in interrupted if remove_interrupted else ():
        dest.delete(f["rel"])
        f["removed"] = True
    return {"files": files, "interrupted": interrupted, "looked": True}


def damaged(store: ProvenanceStore, dest: str) -> list[Item]:
    """The items done in ``dest`` whose latest fixity check failed, and that have been neither
    written again (``replaced``) nor redone after a review (``superseded``), in id order."""
    latest = (select(func.max(Event.id)).join(Item, Event.item_id == Item.id)
              .where(Item.dest == dest, Item.status == "done", Event.type == EVENT).group_by(Event.item_id))
    q = (select(Item).join(Event, Event.item_id == Item.id)
         .where(Event.id.in_(latest), Event.outcome == "failure", Item.id.not_in(_with_event(REPLACED)),
                Item.id.not_in(_with_event("superseded"))).order_by(Item.id))
    with store.session() as s:
        return list(s.scalars(q))


def repair_groups(store: ProvenanceStore, source: str, dest: str) -> list[tuple[JobSettings, list[Item]]]:
    """The damaged items of ``dest`` that came from ``source``, grouped by their own recorded
    settings (each is written again as it was made). FixityError when there are none: the
    message says whether the damaged items came from other sources, and which."""
    items = damaged(store, dest)
    root = source.rstrip("/") + "/"
    here = [it for it in items if it.source_uri.startswith(root)]
    if not here:
        others = damaged_sources(store, dest)
        raise FixityError(f"no damaged items in {dest} from {source}" + (
            f" ({len(items)} from elsewhere: {', '.join(others[:5])})" if items else
            ": every output its latest fixity check read was intact (`colorize verify` checks again)"))
    groups: dict[str, tuple[JobSettings, list[Item]]] = {}
    for item in here:
        settings = redo_settings(item.params, {})
        groups.setdefault(settings.key(item.model_sha256, "film"), (settings, []))[1].append(item)
    return list(groups.values())


def damaged_sources(store: ProvenanceStore, dest: str) -> list[str]:
    """The sources (of the jobs that did them) of the damaged items in ``dest``."""
    ids = {it.job_id for it in damaged(store, dest)}
    with store.session() as s:
        return sorted({src for part in in_chunks(ids) for src in s.scalars(select(Job.source).where(Job.id.in_(part)))})


def latest_checks(store: ProvenanceStore, item_ids: list[int]) -> dict[int, dict[str, Any]]:
    """Per item id, its latest fixity check: when, the outcome, the outputs not intact."""
    if not item_ids:
        return {}
    out = {}
    with store.session() as s:
        for part in in_chunks(item_ids):
            latest = (select(func.max(Event.id)).where(Event.type == EVENT, Event.item_id.in_(part))
                      .group_by(Event.item_id))
            out.update((e.item_id, {"at": e.at.isoformat(), "outcome": e.outcome,
                                    "not_intact": e.detail.get("not_intact", [])})
                       for e in s.scalars(select(Event).where(Event.id.in_(latest))))
    return out
