"""The relocation flows: DEST (``relocate-dest``) or SOURCE (``relocate-source``: the originals)
has been copied to other storage; read the copy back, and point the provenance database's
records at it (`colorize relocate [--source]` runs them)."""

from __future__ import annotations

import os
import socket
import uuid
from contextlib import ExitStack
from typing import Any

from prefect import flow, get_run_logger, unmapped
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run
from prefect.states import Completed, Failed, State

from colorize_core.fixity import item_ranges, merge
from colorize_core.provenance import DestinationLease, ProvenanceStore, utcnow
from colorize_core.relocation import (jobs_in, pages_of, relocate, relocate_source, relocated, relocation_scope,
                                      source_scope)
from colorize_core.settings import get_settings
from colorize_core.storage import open_location
from flows.archive import task_runner
from flows.fixity import SHOWN
from flows.handback import hand_back
from tasks.fixity import refresh_manifests
from tasks.relocation import compare_copy_task, compare_originals_task, rewrite_exports_task

_defaults = get_settings()
JOBS_PER_TASK = 20   # manifests rendered again per task after a relocation


@flow(name="relocate-dest", log_prints=True, task_runner=task_runner())
def relocate_dest(old: str, new: str, db_url: str = _defaults.db_url, chunk_size: int = 500,
                  s3_endpoint: str | None = _defaults.s3_endpoint, accept_damaged: bool = False) -> State:
    """DEST ``old`` has been copied to ``new`` (another folder, NAS or S3 bucket): read back
    there every output the provenance database records for ``old`` (``chunk_size`` items per
    task) and compare its sha256 and size with the record. When all are intact (or, with
    ``accept_damaged``, whatever was found), point every record of ``old`` at ``new`` in one
    transaction, with a ``transfer`` and a ``fixity check`` event on each item, then render
    the manifests (and PREMIS/PROV exports) at ``new`` again. Both places' leases are held
    throughout: no job writes to either. The run ends Failed, having changed nothing, when an
    output is not intact at ``new`` and that was not accepted; ``old`` is never written to or
    removed (remove it once satisfied)."""
    logger = get_run_logger()
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    old_loc, new_loc, store = open_location(old, s3_endpoint), open_location(new, s3_endpoint), ProvenanceStore(db_url)
    relocation_id = str(uuid.uuid4())
    run_id = str(flow_run.id) if flow_run.id else None
    holder = {"host": socket.gethostname(), "pid": os.getpid(), "flow_run": run_id, "relocation": relocation_id}
    started = utcnow()
    done = relocated(store, old_loc, new_loc)
    if done:   # a re-run, or this run retried after its commit: the records are there; the views again
        logger.info("%s was relocated to %s by relocation %s at %s; rendering its views there again", old_loc.uri,
                    new_loc.uri, done.id, done.at)
        jobs = jobs_in(store, new_loc.uri)
        with DestinationLease(store, new_loc.uri, relocation_id, holder=holder, lease_seconds=_defaults.lease_seconds,
                              log=logger):
            views = _views(jobs, new_loc.uri, store.url, s3_endpoint)
        return _already(done, store, {"jobs": jobs, **views}, "its views were rendered again there")
    scope = relocation_scope(store, old_loc, new_loc)
    with ExitStack() as leases:
        for uri in (old_loc.uri, new_loc.uri):
            leases.enter_context(DestinationLease(store, uri, relocation_id, holder=holder,
                                                  lease_seconds=_defaults.lease_seconds, log=logger))
        ranges = item_ranges(store, scope, chunk_size)
        logger.info("relocation %s: reading back at %s the outputs of %d item range(s) recorded in %s",
                    relocation_id, new_loc.uri, len(ranges), old_loc.uri)
        found, _ = _read_back(compare_copy_task, ranges, old_loc.uri, new_loc.uri, store.url, s3_endpoint, "Outputs")
        summary: dict[str, Any] = {"relocation": relocation_id, "old": old_loc.uri, "new": new_loc.uri,
                                   "db_url": store.url, "started_at": started.isoformat(), **found,
                                   "relocated": False, "accept_damaged": accept_damaged}
        c = found["counts"]
        bad = c["missing"] + c["changed"] + c["unreadable"]
        if found["problems"] and not accept_damaged:
            return _refused(summary, "output(s)")
        moved = relocate(store, old_loc, new_loc, scope, found["problems"], relocation_id, run_id)
        logger.info("relocation %s: %d job(s), %d item(s), %d output(s) and %d film unit(s) now name %s",
                    relocation_id, len(moved["jobs"]), moved["items"], moved["outputs"], moved["shots"], new_loc.uri)
        summary.update(relocated=True, moved={k: v for k, v in moved.items() if k not in ("jobs", "relocation")},
                       jobs=moved["jobs"])
        summary.update(_views(moved["jobs"], new_loc.uri, store.url, s3_endpoint))
    summary["finished_at"] = utcnow().isoformat()
    create_table_artifact(key="relocate-dest-summary", table=[
        {"old": old_loc.uri, "new": new_loc.uri, "items": found["items"], **c, "jobs": len(moved["jobs"])}],
        description=f"Relocation {relocation_id}")
    message = f"{old_loc.uri} relocated to {new_loc.uri}: {c['intact']} output(s) of {found['items']} item(s) intact"
    return Completed(message=message + (f", {bad} not (accepted; recorded damaged)" if bad else ""),
                     data=hand_back(summary))



@flow(name="relocate-source", log_prints=True, task_runner=task_runner())
def relocate_source_flow(old: str, new: str, db_url: str = _defaults.db_url, chunk_size: int = 500,
                         s3_endpoint: str | None = _defaults.s3_endpoint, accept_damaged: bool = False) -> State:
    """SOURCE ``old`` (the originals) has been copied to ``new``: read back there every original
    the provenance database records under ``old`` (the newest item of each, ``chunk_size`` per
    task; a frame sequence fingerprinted from its frames as a job does) and compare its sha256
    with the one recorded when it was last read. When all are intact (or, with
    ``accept_damaged``, whatever was found), point the items, film units and jobs at ``new`` in
    one transaction, with a ``transfer`` event on each item read, and render the pages of the
    jobs that show them again; a job reading ``old`` is refused from then on. The run ends
    Failed, having changed nothing, when an original is not intact at ``new`` and that was not
    accepted, and is refused while a job is reading ``old``."""
    logger = get_run_logger()
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    old_loc, new_loc, store = open_location(old, s3_endpoint), open_location(new, s3_endpoint), ProvenanceStore(db_url)
    relocation_id, run_id, started = str(uuid.uuid4()), str(flow_run.id) if flow_run.id else None, utcnow()
    done = relocated(store, old_loc, new_loc, "source")
    if done:   # run again: the pages again
        views = {dest: _views(jobs, dest, store.url, s3_endpoint) for dest, jobs in pages_of(store, new_loc).items()}
        return _already(done, store, {"views": views}, "the pages showing its originals were rendered again")
    scope = source_scope(store, old_loc, new_loc, _defaults.lease_seconds)
    ranges = item_ranges(store, scope, chunk_size)
    logger.info("relocation %s: reading back at %s the originals of %d item range(s) recorded under %s",
                relocation_id, new_loc.uri, len(ranges), old_loc.uri)
    found, versions = _read_back(compare_originals_task, ranges, old_loc.uri, new_loc.uri, store.url, s3_endpoint,
                                 "Originals")
    summary: dict[str, Any] = {"relocation": relocation_id, "old": old_loc.uri, "new": new_loc.uri, "db_url": store.url,
                               "started_at": started.isoformat(), **found, "relocated": False,
                               "accept_damaged": accept_damaged}
    if found["problems"] and not accept_damaged:
        return _refused(summary, "original(s)")
    source_scope(store, old_loc, new_loc, _defaults.lease_seconds)   # again: no job started reading it meanwhile
    moved = relocate_source(store, old_loc, new_loc, scope, found["problems"], relocation_id, run_id, versions)
    logger.info("relocation %s: %d item(s), %d film unit(s) and %d job(s) now name the originals under %s",
                relocation_id, moved["items"], moved["shots"], moved["jobs"], new_loc.uri)
    summary.update(relocated=True, moved={k: v for k, v in moved.items() if k not in ("pages", "relocation")})
    summary["views"] = {dest: _views(jobs, dest, store.url, s3_endpoint) for dest, jobs in moved["pages"].items()}
    summary["finished_at"] = utcnow().isoformat()
    c = found["counts"]
    bad = c["missing"] + c["changed"] + c["unreadable"]
    create_table_artifact(key="relocate-source-summary", table=[
        {"old": old_loc.uri, "new": new_loc.uri, "originals": found["items"], **c, "items": moved["items"]}],
        description=f"Relocation {relocation_id}")
    message = f"{old_loc.uri} relocated to {new_loc.uri}: {c['intact']} of {found['items']} original(s) intact"
    return Completed(message=message + (f", {bad} not (accepted)" if bad else ""), data=hand_back(summary))

def _already(done: Any, store: ProvenanceStore, views: dict[str, Any], what: str) -> State:
    """A relocation made already (``done``, its row), whose views were rendered again."""
    data = {"relocation": done.id, "old": done.old, "new": done.new, "db_url": store.url, "at": done.at.isoformat(),
            "already": True, "relocated": True, **views}
    return Completed(message=f"{done.old} was relocated to {done.new} already (relocation {done.id}, "
                             f"{done.at:%Y-%m-%d %H:%M:%S} UTC); {what}", data=hand_back(data))


def _read_back(compare: Any, ranges: list[tuple[int, int]], old: str, new: str, db_url: str, s3_endpoint: str | None,
               what: str) -> tuple[dict[str, Any], list[list[Any]]]:
    """Run ``compare`` (a task) over the item ranges and merge what it found; the problems also
    as a markdown artifact. Returns that, and the versions read of the originals read intact
    (what :func:`~colorize_core.relocation.compare_originals` gives; kept out of the summary)."""
    compared = compare.map([r[0] for r in ranges], [r[1] for r in ranges], unmapped(old), unmapped(new),
                           unmapped(db_url), unmapped(s3_endpoint))
    results = [c.result() for c in compared]
    versions = [v for r in results for v in r.pop("versions", ())]
    found = merge(results)
    del found["recovered"]
    if found["problems"]:
        rows = "\n".join(f"| {p['status']} | {p['uri']} | {p['kind']} | {p['source']} | {p['item_id']} |"
                         for p in found["problems"][:SHOWN])
        create_markdown_artifact(key="relocation-problems", markdown=(
            f"# {what} not intact at {new}\n\n| status | at the new place | kind | source | item |\n"
            f"|---|---|---|---|---|\n{rows}\n"), description="Missing, changed or unreadable at the new place")
    return found, versions


def _refused(summary: dict[str, Any], what: str) -> State:
    c = summary["counts"]
    summary["finished_at"] = utcnow().isoformat()
    return Failed(message=f"not relocated: {c['missing'] + c['changed'] + c['unreadable']} {what} of "
                          f"{summary['items_not_intact']} item(s) are not intact at {summary['new']} ({c['missing']} "
                          f"missing, {c['changed']} changed, {c['unreadable']} unreadable); nothing was changed",
                  data=hand_back(summary))


def _views(job_ids: list[str], dest: str, db_url: str, s3_endpoint: str | None) -> dict[str, Any]:
    """The pages and exports at DEST name the outputs' URIs: rendered again from the records,
    ``JOBS_PER_TASK`` jobs per task in parallel (a job's page lists every item it saw: an
    archive's years of nightly jobs are the size of the database)."""
    chunks = [job_ids[i:i + JOBS_PER_TASK] for i in range(0, len(job_ids), JOBS_PER_TASK)]
    pages = refresh_manifests.map(chunks, unmapped(dest), unmapped(db_url), unmapped(s3_endpoint))
    exports = rewrite_exports_task.map(chunks, unmapped(dest), unmapped(db_url), unmapped(s3_endpoint))
    return {"manifests_refreshed": sorted({job for f in pages for job in f.result()}),
            "exports_rewritten": {job: kinds for f in exports for job, kinds in f.result().items()}}


if __name__ == "__main__":
    relocate_dest(old="var/colour", new="var/colour-moved", db_url="sqlite:///var/provenance.db")
