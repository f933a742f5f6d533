"""Tasks of the fixity flow: check a range of items' outputs, and look for unrecorded files.
They pass item id ranges and URIs; the bytes are read inside the task."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from colorize_core.fixity import Scope, check_range, unrecorded
from colorize_core.manifest import index_job, refresh_manifest
from colorize_core.provenance import ProvenanceStore
from colorize_core.settings import get_settings
from colorize_core.storage import open_location


@task(name="check-fixity", retries=2, retry_delay_seconds=[5, 30], cache_policy=NO_CACHE)
def check_fixity(first: int, last: int, dest: str, db_url: str, job_id: str | None, s3_endpoint: str | None,
                 detail: dict[str, Any], checked_before: datetime | None = None) -> dict[str, Any]:
    """Read back the outputs of items ``first``..``last`` in scope and record a fixity check
    event on each (all at the end, in one transaction: a retried range records once)."""
    location = open_location(dest, s3_endpoint)
    scope = Scope(location.uri, job_id, checked_before)
    result = check_range(ProvenanceStore(db_url), location, scope, first, last, detail)
    logger = get_run_logger()
    for p in result["problems"]:
        logger.error("%s %s (%s of %s, item %d, job %s)%s", p["status"].upper(), p["uri"], p["kind"], p["source"],
                     p["item_id"], p["job_id"], f": {p['error']}" if p.get("error") else "")
    return result


@task(name="find-unrecorded", retries=2, retry_delay_seconds=[5, 30], cache_policy=NO_CACHE)
def find_unrecorded(dest: str, db_url: str, s3_endpoint: str | None,
                    remove_interrupted: bool = False) -> dict[str, Any]:
    """The files in DEST that no record accounts for, and the partial copies of writes that did
    not finish (removed with ``remove_interrupted``); not looked for while a job writes there."""
    found = unrecorded(ProvenanceStore(db_url), open_location(dest, s3_endpoint), get_settings().lease_seconds,
                       remove_interrupted)
    logger = get_run_logger()
    if not found["looked"]:
        logger.warning("unrecorded files not looked for: %s", found["why"])
    for f in found["files"]:
        logger.warning("UNRECORDED %s (%d bytes): no job recorded writing it", f["uri"], f["size"])
    for f in found["interrupted"]:
        logger.warning("INTERRUPTED %s (%d bytes): the partial copy of a write that did not finish%s", f["uri"],
                       f["size"], ", removed" if f["removed"] else "")
    return found


@task(name="refresh-manifests", retries=2, retry_delay_seconds=[2, 10], cache_policy=NO_CACHE)
def refresh_manifests(job_ids: list[str], dest: str, db_url: str, s3_endpoint: str | None) -> list[str]:
    """Render again the manifests of these jobs and of the job DEST's index shows (of this
    database), so that what a check found (or a repair did) is on the pages reviewers open.
    Returns the jobs refreshed."""
    store, location = ProvenanceStore(db_url), open_location(dest, s3_endpoint)
    shown = index_job(location)   # read once: the index is written again only as that job's
    jobs = sorted({j for j in [*job_ids, shown] if j and store.job(j) is not None})
    for job_id in jobs:
        refresh_manifest(store, job_id, location, index=job_id == shown)
    return jobs
