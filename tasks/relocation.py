"""Tasks of the relocation flows: read a range of items' outputs back at DEST's new place (or
their originals at SOURCE's), and write again the views (manifests, exports) that name URIs.
They pass item id ranges and URIs; the bytes are read inside the task."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from colorize_core.exports import rewrite_exports
from colorize_core.fixity import Scope
from colorize_core.provenance import ProvenanceStore
from colorize_core.relocation import SourceScope, compare_copy, compare_originals
from colorize_core.storage import open_location


@task(name="compare-copy", retries=2, retry_delay_seconds=[5, 30], cache_policy=NO_CACHE)
def compare_copy_task(first: int, last: int, old: str, new: str, db_url: str,
                      s3_endpoint: str | None) -> dict[str, Any]:
    """Read back at NEW the outputs recorded in OLD of items ``first``..``last``; records nothing."""
    old_loc = open_location(old, s3_endpoint)
    result = compare_copy(ProvenanceStore(db_url), old_loc, open_location(new, s3_endpoint), Scope(old_loc.uri),
                          first, last)
    _log_problems(result["problems"])
    return result


def _log_problems(problems: list[dict[str, Any]]) -> None:
    logger = get_run_logger()
    for p in problems:
        logger.error("%s at the new place: %s (%s of %s, item %d, job %s)%s", p["status"].upper(), p["uri"], p["kind"],
                     p["source"], p["item_id"], p["job_id"], f": {p['error']}" if p.get("error") else "")


@task(name="rewrite-exports", retries=2, retry_delay_seconds=[2, 10], cache_policy=NO_CACHE)
def rewrite_exports_task(job_ids: list[str], dest: str, db_url: str, s3_endpoint: str | None) -> dict[str, list[str]]:
    """Write again the PREMIS and PROV exports these jobs have in DEST; returns them by job."""
    store, location = ProvenanceStore(db_url), open_location(dest, s3_endpoint)
    written = {job_id: rewrite_exports(store, job_id, location) for job_id in job_ids}
    return {job_id: kinds for job_id, kinds in written.items() if kinds}


@task(name="compare-originals", retries=2, retry_delay_seconds=[5, 30], cache_policy=NO_CACHE)
def compare_originals_task(first: int, last: int, old: str, new: str, db_url: str,
                           s3_endpoint: str | None) -> dict[str, Any]:
    """Read back at NEW the originals recorded under OLD of items ``first``..``last``; records nothing."""
    old_loc = open_location(old, s3_endpoint)
    result = compare_originals(ProvenanceStore(db_url), old_loc, open_location(new, s3_endpoint),
                               SourceScope(old_loc.uri), first, last)
    _log_problems(result["problems"])
    return result
