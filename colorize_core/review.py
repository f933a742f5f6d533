"""Reviewer decisions: approve or reject a job's outputs, and ask for a re-run with other parameters.

A decision is a provenance event (type ``review``) on the item that holds the output, with the
reviewer as agent (``person:NAME``) and the note and requested parameters as detail; nothing else
changes. Decisions on several items are taken all or none; a job's items that need no attention
(:func:`clearance`) can be approved together, each decision saying so, and a review sheet (CSV)
filled in a spreadsheet is recorded whole or not at all. ``colorize run --redo-rejected JOB``
re-runs exactly the items whose latest decision is a rejection, each with its requested
parameters, and links old and new outputs with ``redo`` / ``superseded`` events.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from typing import Any

from sqlalchemy import Row, select

from colorize_core.archive import JobSettings
from colorize_core.errors import ColorizeError, ModelError, NotFoundError, ReviewError
from colorize_core.provenance import Event, Item, ProvenanceStore, in_chunks
from colorize_core.refine import REFINERS

DECISIONS = ("approved", "rejected")


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def _work_size(text: str) -> int:
    value = int(text)
    if value % 32 or not 64 <= value <= 2048:
        raise ValueError("expected a multiple of 32 between 64 and 2048")
    return value


def _refine(text: str) -> str:
    if text not in REFINERS:
        raise ValueError(f"expected one of {', '.join(REFINERS)}")
    return text


def _strength(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise ValueError("expected a number from 0 (no smoothing) to 1")
    return value


def _model(text: str) -> str:
    from colorize_core.weights import resolve

    try:
        resolve(text)
    except ModelError as exc:
        raise ValueError(str(exc)) from None
    return text


# What a reviewer may ask to change, and how each value is read.
REDO_PARAMS = {"model": _model, "refine": _refine, "work_size": _work_size, "temporal": _bool,
               "strength": _strength, "include_colour": _bool}


def parse_redo(pairs: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``["model=default", "refine=none"]`` -> a checked dict; ReviewError says what is wrong."""
    redo: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ReviewError(f"--redo {pair!r}: write it as key=value (keys: {', '.join(REDO_PARAMS)})")
        if key not in REDO_PARAMS:
            raise ReviewError(f"--redo {pair!r}: unknown parameter {key!r} (keys: {', '.join(REDO_PARAMS)})")
        try:
            redo[key] = REDO_PARAMS[key](value.strip())
        except ValueError as exc:
            raise ReviewError(f"--redo {pair!r}: {exc}") from None
    return redo


def redo_settings(base: dict[str, Any], redo: dict[str, Any]) -> JobSettings:
    """The job settings ``base`` (an item's recorded parameters) with a reviewer's changes."""
    names = {f.name for f in fields(JobSettings)}
    settings = {k: v for k, v in base.items() if k in names}
    for key, value in redo.items():
        if key == "strength":
            settings["temporal_params"] = {**settings.get("temporal_params", {}), "strength": value}
        else:
            settings[key] = value
    if "film_renditions" in settings:
        settings["film_renditions"] = tuple(settings["film_renditions"])
    return JobSettings(**settings)


def _reviewables(store: ProvenanceStore, item_ids: list[int]) -> tuple[dict[int, Row], list[ColorizeError]]:
    """The item that holds the output each of ``item_ids`` refers to (a skip record points to
    it), by the id asked for (the columns a decision needs); and why each of the others cannot
    take a decision."""
    found: dict[int, Row] = {}
    problems: list[ColorizeError] = []
    columns = (Item.id, Item.job_id, Item.rel_path, Item.status, Item.previous_item_id, Item.params, Item.reason,
               Item.error_type, Item.error)   # a job's approval reads an item (and its earlier one) per original
    with store.session() as s:
        rows = {it.id: it for part in in_chunks(item_ids) for it in s.execute(select(*columns).where(Item.id.in_(part)))}
        earlier = [it.previous_item_id for it in rows.values() if it.status == "skipped" and it.previous_item_id]
        rows.update((it.id, it) for part in in_chunks(earlier) for it in s.execute(select(*columns).where(Item.id.in_(part))))
        for item_id in item_ids:
            item = rows.get(item_id)
            if item is None:
                problems.append(NotFoundError(f"no item {item_id} in {store.url}"))
            elif item.status == "failed":
                problems.append(ReviewError(
                    f"item {item_id} ({item.rel_path}) failed ({item.error_type}: {item.error}); there is no colour "
                    "rendition to review: fix the input and run the job again"))
            elif item.status == "skipped" and item.previous_item_id is None:
                problems.append(ReviewError(f"item {item_id} ({item.rel_path}) was skipped ({item.reason}); "
                                            "there is no colour rendition to review"))
            else:
                found[item_id] = rows[item.previous_item_id] if item.status == "skipped" else item
    return found, problems


def decide(store: ProvenanceStore, item_id: int, decision: str, by: str, note: str = "",
           redo: dict[str, Any] | None = None) -> dict[str, Any]:
    """Record ``decision`` (approved | rejected) on the item's output; returns the decision."""
    return decide_many(store, [item_id], decision, by, note, redo)[0]


def _check_reviewer(by: str) -> None:
    if not by.strip():
        raise ReviewError("a decision needs the reviewer's name (--by NAME)")


def _check_request(decision: str, by: str, redo: dict[str, Any] | None) -> None:
    if decision not in DECISIONS:
        raise ReviewError(f"unknown decision {decision!r} (use {' or '.join(DECISIONS)})")
    _check_reviewer(by)
    if redo and decision != "rejected":
        raise ReviewError("--redo goes with a rejection")


def decide_many(store: ProvenanceStore, item_ids: list[int], decision: str, by: str, note: str = "",
                redo: dict[str, Any] | None = None, with_job: str | None = None) -> list[dict[str, Any]]:
    """Record ``decision`` (approved | rejected) on each item's output, all or none: when any item
    cannot take it (unknown, failed, skipped without a rendition), nothing is recorded and the
    error names every such item. An item and a skip record pointing to it are decided once.
    ``with_job``: the decision was taken for the job's items that needed no attention
    (:func:`clearance`), recorded with each. Returns the decisions, in the order asked for."""
    _check_request(decision, by, redo)
    if not item_ids:
        raise ReviewError("no items to decide on")
    return _record(store, [(i, decision, note, redo or {}) for i in item_ids], by, with_job)


def _record(store: ProvenanceStore, requests: list[tuple[int, str, str, dict[str, Any]]], by: str,
            with_job: str | None = None) -> list[dict[str, Any]]:
    """Record (item id, decision, note, redo) requests in one transaction, all or none."""
    found, problems = _reviewables(store, [r[0] for r in requests])
    if problems:
        if len(requests) == 1:
            raise problems[0]
        raise ReviewError(f"{len(problems)} of the {len(requests)} items cannot take a decision, so none was "
                          "recorded: " + "; ".join(str(p) for p in problems))
    decided: dict[int, tuple[Row, dict[str, Any]]] = {}
    for item_id, decision, note, redo in requests:
        item = found[item_id]
        if redo:
            redo_settings(item.params, redo)  # the combination must make a valid job
        detail = {"decision": decision, "note": note, "redo": redo, "requested_in_job": item.job_id}
        if with_job:
            detail["with_job"] = with_job
        decided.setdefault(item.id, (item, detail))
    store.add_events({"job_id": item.job_id, "item_id": item.id, "type": "review", "outcome": "success",
                      "agent": f"person:{by.strip()}", "detail": detail} for item, detail in decided.values())
    return [{"item_id": item.id, "rel_path": item.rel_path, "job_id": item.job_id, "by": by.strip(), **detail}
            for item, detail in decided.values()]


# A review sheet: `colorize review list JOB --csv` writes one, a curator fills in new_decision
# (approve or reject), note and redo in a spreadsheet, and `colorize review apply` records them.
SHEET_COLUMNS = ("item", "path", "status", "attention", "decision", "decided_by", "new_decision", "note", "redo")
_SHEET_DECISIONS = {"approve": "approved", "approved": "approved", "reject": "rejected", "rejected": "rejected"}


def _cell(text: str) -> str:
    """``text`` as a spreadsheet shows it, not as a formula it runs: a file name from a donor's disk
    starting with ``=``, ``+``, ``-`` or ``@`` (``=HYPERLINK(...)``) gets a leading apostrophe, as
    OWASP advises against CSV injection. Only the path and reviewer columns, which `review apply`
    does not read, come from outside."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def write_sheet(items: Iterable[dict[str, Any]]) -> Iterator[str]:
    """The review sheet (CSV) of a manifest's items, in the order given: its lines, header first."""
    out = io.StringIO()
    sheet = csv.writer(out, lineterminator="\n")

    def line(row: list[Any] | tuple[str, ...]) -> str:
        sheet.writerow(row)
        text = out.getvalue()
        out.seek(0)
        out.truncate()
        return text

    yield line(SHEET_COLUMNS)
    for it in items:
        last = it["review"][-1] if it["review"] else {}
        yield line([it["id"], _cell(it["rel_path"]), it["status"], " ".join(it["attention"]), it["decision"] or "",
                    _cell(last.get("by", "")), "", "", ""])


def _sheet_text(data: bytes) -> str:
    """A saved sheet's text: UTF-8, with or without the byte-order mark a spreadsheet's "CSV UTF-8"
    starts with, or UTF-16 with its mark (Excel's "Unicode Text")."""
    try:
        if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return data.decode("utf-16")
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ReviewError("the sheet is not UTF-8 text: save it from the spreadsheet as CSV UTF-8") from None


def _sheet_delimiter(text: str) -> str:
    """The delimiter a sheet was saved with: a comma, or the semicolon a spreadsheet writes where the
    comma is the decimal mark (Excel in German, French, Dutch...), or a tab: the one that splits its
    header into the most of the sheet's column names."""
    header = text.split("\n", 1)[0]
    return max(",;\t", key=lambda d: len(set(next(csv.reader([header], delimiter=d), [])) & set(SHEET_COLUMNS)))


def read_sheet(data: bytes) -> list[tuple[int, str, str, dict[str, Any]]]:
    """The decisions a filled-in review sheet asks for: (item id, decision, note, redo) of every
    row whose ``new_decision`` is filled in. ReviewError naming every row that is wrong (an
    unknown decision, a rejection without a note, a bad redo, an item twice), so that a sheet
    is recorded whole or not at all."""
    text = _sheet_text(data)
    rows = csv.DictReader(io.StringIO(text), delimiter=_sheet_delimiter(text))
    missing = [c for c in ("item", "new_decision") if c not in (rows.fieldnames or [])]
    if missing:
        raise ReviewError(f"not a review sheet: no {' or '.join(missing)} column (`colorize review list JOB --csv` "
                          "writes one)")
    requests, problems, rows_of = [], [], {}
    for n, row in enumerate(rows, start=2):   # row 1 is the header, as a spreadsheet numbers it
        wanted = (row.get("new_decision") or "").strip().lower()
        if not wanted:
            continue
        note, redo_text = (row.get("note") or "").strip(), (row.get("redo") or "").strip()
        try:
            item_id = int((row.get("item") or "").strip())
            if wanted not in _SHEET_DECISIONS:
                raise ReviewError(f"new_decision {wanted!r}: write approve or reject")
            decision = _SHEET_DECISIONS[wanted]
            if decision == "rejected" and not note:
                raise ReviewError("a rejection needs a note saying what is wrong")
            redo = parse_redo(redo_text.replace(";", " ").split())
            if redo and decision != "rejected":
                raise ReviewError("a redo goes with a rejection")
            if item_id in rows_of:
                raise ReviewError(f"item {item_id} is on row {rows_of[item_id]} too")
        except ValueError:
            problems.append(f"row {n}: item {row.get('item')!r} is not an item id")
            continue
        except ReviewError as exc:
            problems.append(f"row {n}: {exc}")
            continue
        rows_of[item_id] = n
        requests.append((item_id, decision, note, redo))
    if problems:
        raise ReviewError(f"{len(problems)} row(s) of the sheet are wrong, so nothing was recorded: " + "; ".join(problems))
    if not requests:
        raise ReviewError("the sheet asks for no decision: fill in new_decision (approve or reject) on the rows decided")
    return requests


def apply_sheet(store: ProvenanceStore, data: bytes, by: str) -> list[dict[str, Any]]:
    """Record the decisions of a filled-in review sheet (:func:`read_sheet`), all or none."""
    _check_reviewer(by)
    return _record(store, read_sheet(data), by)


@dataclass
class Clearance:
    """A job's items as a reviewer approving "the rest" sees them: those that need no attention
    and have no decision yet (``clear``: their ids), and those left to be decided one by one."""
    job_id: str
    clear: list[int] = field(default_factory=list)
    attention: list[dict[str, Any]] = field(default_factory=list)   # id, rel_path, reasons
    decided: int = 0            # items with a decision already (kept as taken)
    without_rendition: int = 0  # skipped with nothing to review, needing no attention


def clearance(store: ProvenanceStore, job_id: str) -> Clearance:
    """Sort job ``job_id``'s items as its manifest shows them (:func:`~colorize_core.manifest.
    attention`): a running job is refused, since its manifest does not yet show every item."""
    from colorize_core.manifest import iter_items

    job = store.job(job_id)
    if job is None:
        raise NotFoundError(f"no job {job_id} in {store.url}")
    if job.status == "running":
        raise ReviewError(f"job {job_id} is still running (or stopped without finishing: `colorize jobs` tells "
                          "which): its manifest does not show every item yet; decide its items one by one, or "
                          "approve the rest when it has ended")
    out = Clearance(job_id)
    for it in iter_items(store, job_id):
        if it["decision"]:
            out.decided += 1
        elif it["attention"]:
            out.attention.append({"id": it["id"], "rel_path": it["rel_path"], "reasons": it["attention"]})
        elif it["colour"] is None:
            out.without_rendition += 1
        else:
            out.clear.append(it["id"])
    return out


def take_decisions(store: ProvenanceStore, decision: str, by: str, items: list[int] | tuple[int, ...] = (),
                   job_id: str | None = None, note: str = "", redo: dict[str, Any] | None = None,
                   ) -> tuple[list[dict[str, Any]], Clearance | None]:
    """What ``colorize review approve|reject`` and the ``record-review`` flow do: ``decision`` on
    the ``items`` named, or (approval only) on job ``job_id``'s items that need no attention and
    have no decision yet. Returns the decisions and, for a job, its :class:`Clearance` (what was
    left to decide one by one). ReviewError / NotFoundError: nothing was recorded."""
    _check_request(decision, by, redo)
    if bool(items) == bool(job_id):
        raise ReviewError("name the items to decide on, or a job whose items needing no attention are approved "
                          "(--job JOB), not both" if items else "name the items to decide on (ITEM ...), or --job JOB")
    if job_id and decision != "approved":
        raise ReviewError("--job approves a job's items that need no attention; a rejection names its items")
    if decision == "rejected" and not note.strip():
        raise ReviewError("a rejection needs a note saying what is wrong (--note TEXT)")
    if not job_id:
        return decide_many(store, list(items), decision, by, note, redo), None
    clear = clearance(store, job_id)
    return (decide_many(store, clear.clear, decision, by, note, redo, with_job=job_id) if clear.clear else []), clear


def decisions_of(store: ProvenanceStore, item_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """Review decisions per item id, oldest first."""
    if not item_ids:
        return {}
    out: dict[int, list[dict[str, Any]]] = {}
    with store.session() as s:
        events = [e for part in in_chunks(item_ids)
                  for e in s.scalars(select(Event).where(Event.type == "review", Event.item_id.in_(part)))]
        for e in sorted(events, key=lambda e: e.id):
            out.setdefault(e.item_id, []).append({"by": e.agent.removeprefix("person:"), "at": e.at.isoformat(),
                                                  **e.detail})
    return out


def rejected(store: ProvenanceStore, job_id: str) -> list[tuple[Item, dict[str, Any]]]:
    """Items of ``job_id`` (or done by it and reviewed there) whose latest decision is a
    rejection not yet redone: (item, requested parameters)."""
    if store.job(job_id) is None:
        raise NotFoundError(f"no job {job_id} in {store.url}")
    with store.session() as s:
        items = s.scalars(select(Item).where(Item.job_id == job_id)).all()
        earlier = {e.id: e for part in in_chunks(it.previous_item_id for it in items
                                                 if it.status == "skipped" and it.previous_item_id)
                   for e in s.scalars(select(Item).where(Item.id.in_(part)))}
        targets = {}
        for it in items:
            done = earlier[it.previous_item_id] if it.status == "skipped" and it.previous_item_id else it
            if done.status == "done":
                targets[done.id] = done
        latest = {i: d[-1] for i, d in decisions_of(store, list(targets)).items()}
        redone = {i for part in in_chunks(targets) for i in s.scalars(
            select(Event.item_id).where(Event.type == "superseded", Event.item_id.in_(part)))}
        return [(targets[i], d["redo"]) for i, d in sorted(latest.items())
                if d["decision"] == "rejected" and i not in redone]


def redo_groups(store: ProvenanceStore, job_id: str) -> list[tuple[JobSettings, list[Item]]]:
    """The rejected items of ``job_id`` grouped by the settings they are to be redone with."""
    groups: dict[str, tuple[JobSettings, list[Item]]] = {}
    for item, redo in rejected(store, job_id):
        settings = redo_settings(item.params, redo)
        key = settings.key(item.model_sha256, "film") + repr(sorted(redo.items()))
        groups.setdefault(key, (settings, []))[1].append(item)
    if not groups:
        raise ReviewError(f"job {job_id} has no rejected items waiting for a redo")
    return list(groups.values())


def link_redone(store: ProvenanceStore, job_id: str, old_items: list[Item],
                events: tuple[str, str] = ("redo", "superseded"), agent: str = "colorize review") -> int:
    """Link each redone item to its new output in ``job_id`` (``events``: ``redo`` on the new
    item, ``superseded`` on the old; a repair of damaged outputs: ``repair`` and ``replaced``);
    returns how many were linked (a redo that failed is not)."""
    if not old_items:
        return 0
    by_uri = {it.source_uri: it for it in old_items}
    with store.session() as s:
        new = [n for part in in_chunks(by_uri) for n in s.scalars(
            select(Item).where(Item.job_id == job_id, Item.status == "done", Item.source_uri.in_(part)))]
        pairs = [(s.get(Item, by_uri[n.source_uri].id), n) for n in new]
        for old, n in pairs:
            old_out = next((o.uri for o in old.outputs if not o.kind.startswith("thumb-")), None)
            new_out = next((o.uri for o in n.outputs if not o.kind.startswith("thumb-")), None)
            s.add(Event(job_id=job_id, item_id=n.id, type=events[0], outcome="success", agent=agent,
                        detail={"item_id": old.id, "job_id": old.job_id, "uri": old_out}))
            s.add(Event(job_id=job_id, item_id=old.id, type=events[1], outcome="success", agent=agent,
                        detail={"item_id": n.id, "job_id": job_id, "uri": new_out}))
    return len(pairs)
