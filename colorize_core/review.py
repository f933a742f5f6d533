"""Reviewer decisions: approve or reject a job's outputs, and ask for a re-run with other parameters.

A decision is a provenance event (type ``review``) on the item that holds the output, with the
reviewer as agent (``person:NAME``) and the note and requested parameters as detail; nothing else
changes. ``colorize run --redo-rejected JOB`` re-runs exactly the items whose latest decision is a
rejection, each with its requested parameters, and links old and new outputs with ``redo`` /
``superseded`` events.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from sqlalchemy import select

from colorize_core.archive import JobSettings
from colorize_core.errors import ModelError, NotFoundError, ReviewError
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


def _reviewable(store: ProvenanceStore, item_id: int) -> Item:
    """The item that holds the output ``item_id`` refers to (a skip record points to it)."""
    with store.session() as s:
        item = s.get(Item, item_id)
        if item is None:
            raise NotFoundError(f"no item {item_id} in {store.url}")
        if item.status == "failed":
            raise ReviewError(f"item {item_id} ({item.rel_path}) failed ({item.error_type}: {item.error}); "
                              "there is no colour rendition to review: fix the input and run the job again")
        if item.status == "skipped":
            if item.previous_item_id is None:
                raise ReviewError(f"item {item_id} ({item.rel_path}) was skipped ({item.reason}); "
                                  "there is no colour rendition to review")
            item = s.get(Item, item.previous_item_id)
        return item


def decide(store: ProvenanceStore, item_id: int, decision: str, by: str, note: str = "",
           redo: dict[str, Any] | None = None) -> dict[str, Any]:
    """Record ``decision`` (approved | rejected) on the item's output; returns the decision."""
    if decision not in DECISIONS:
        raise ReviewError(f"unknown decision {decision!r} (use {' or '.join(DECISIONS)})")
    if not by.strip():
        raise ReviewError("a decision needs the reviewer's name (--by NAME)")
    if redo and decision != "rejected":
        raise ReviewError("--redo goes with a rejection")
    item = _reviewable(store, item_id)
    detail = {"decision": decision, "note": note, "redo": redo or {}, "requested_in_job": item.job_id}
    if redo:
        redo_settings(item.params, redo)  # the combination must make a valid job
    store.add_events([Event(job_id=item.job_id, item_id=item.id, type="review", outcome="success",
                            agent=f"person:{by.strip()}", detail=detail)])
    return {"item_id": item.id, "rel_path": item.rel_path, "job_id": item.job_id, "by": by.strip(), **detail}


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
        targets = {}
        for it in items:
            done = s.get(Item, it.previous_item_id) if it.status == "skipped" and it.previous_item_id else it
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
