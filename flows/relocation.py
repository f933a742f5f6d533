"""The relocation flow: DEST has been copied to other storage; read the copy back, and point the
provenance database's records at it (`colorize relocate` runs it)."""

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
from colorize_core.relocation import relocate, relocated, relocation_scope
from colorize_core.settings import get_settings
from colorize_core.storage import open_location
from flows.archive import task_runner
from flows.fixity import SHOWN
from tasks.fixity import refresh_manifests
from tasks.relocation import compare_copy_task, rewrite_exports_task

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
                    new_loc.uri, done["relocation"], done["at"])
        with DestinationLease(store, new_loc.uri, relocation_id, holder=holder, lease_seconds=_defaults.lease_seconds,
                              log=logger):
            views = _views(done["jobs"], new_loc.uri, store.url, s3_endpoint)
        return Completed(message=f"{old_loc.uri} was relocated to {new_loc.uri} already (relocation "
                                 f"{done['relocation']}, {done['at'][:19]} UTC); its views were rendered again there",
                         data={"relocation": done["relocation"], "old": old_loc.uri, "new": new_loc.uri,
                               "db_url": store.url, "already": done, "relocated": True, "jobs": done["jobs"], **views})
    scope = relocation_scope(store, old_loc, new_loc)
    with ExitStack() as leases:
        for uri in (old_loc.uri, new_loc.uri):
            leases.enter_context(DestinationLease(store, uri, relocation_id, holder=holder,
                                                  lease_seconds=_defaults.lease_seconds, log=logger))
        ranges = item_ranges(store, scope, chunk_size)
        logger.info("relocation %s: reading back at %s the outputs of %d item range(s) recorded in %s",
                    relocation_id, new_loc.uri, len(ranges), old_loc.uri)
        compared = compare_copy_task.map([r[0] for r in ranges], [r[1] for r in ranges], unmapped(old_loc.uri),
                                          unmapped(new_loc.uri), unmapped(store.url), unmapped(s3_endpoint))
        found = merge(c.result() for c in compared)
        del found["recovered"]
        summary: dict[str, Any] = {"relocation": relocation_id, "old": old_loc.uri, "new": new_loc.uri,
                                   "db_url": store.url, "started_at": started.isoformat(), **found,
                                   "relocated": False, "accept_damaged": accept_damaged}
        c = found["counts"]
        bad = c["missing"] + c["changed"] + c["unreadable"]
        if found["problems"]:
            rows = "\n".join(f"| {p['status']} | {p['uri']} | {p['kind']} | {p['source']} | {p['item_id']} |"
                             for p in found["problems"][:SHOWN])
            create_markdown_artifact(key="relocate-dest-problems", markdown=(
                f"# Outputs not intact at {new_loc.uri}\n\n| status | output | kind | source | item |\n"
                f"|---|---|---|---|---|\n{rows}\n"), description="Missing, changed or unreadable at the new place")
        if found["problems"] and not accept_damaged:
            summary["finished_at"] = utcnow().isoformat()
            return Failed(message=f"not relocated: {bad} output(s) of {found['items_not_intact']} item(s) are not intact "
                                  f"at {new_loc.uri} ({c['missing']} missing, {c['changed']} changed, "
                                  f"{c['unreadable']} unreadable); nothing was changed", data=summary)
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
    return Completed(message=message + (f", {bad} not (accepted; recorded damaged)" if bad else ""), data=summary)



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
