"""Tasks of the photo archive flow. Each works on references (URIs, relative paths); pixels
stay inside the task, and the model is loaded once per worker process."""

from __future__ import annotations

import functools
from dataclasses import asdict
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from colorize_core import Colorizer
from colorize_core.archive import JobSettings, PhotoEntry, plan, process_batch
from colorize_core.errors import JobStoppedError, NotFoundError
from colorize_core.exports import write_exports
from colorize_core.manifest import spooled_manifest, write_manifest
from colorize_core.provenance import ProvenanceStore
from colorize_core.settings import get_settings
from colorize_core.storage import open_location
from tasks import retry_unless, sweep_work_dirs_once


@functools.lru_cache(maxsize=2)
def cached_colorizer(model: str, device: str, work_size: int) -> Colorizer:
    """One loaded model per worker process and (model, device, work size)."""
    return Colorizer.load(model, device=device, work_size=work_size)


@task(name="plan-items", retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=retry_unless(NotFoundError),
      cache_policy=NO_CACHE)
def plan_items(source: str, dest: str, db_url: str, job_id: str, settings: dict[str, Any], model_sha256: str,
               force: bool, s3_endpoint: str | None,
               only: list[str] | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, int]]:
    """List the source, record items already done as skipped; returns (photos to do, films to
    do, counts by status of what planning recorded). ``only``: just these source URIs."""
    sweep_work_dirs_once(get_run_logger())
    todo, films, recorded = plan(open_location(source, s3_endpoint), open_location(dest, s3_endpoint),
                                 ProvenanceStore(db_url), job_id, JobSettings(**settings), model_sha256, force,
                                 set(only) if only is not None else None)
    counts: dict[str, int] = {}
    for r in recorded:
        counts[r.status] = counts.get(r.status, 0) + 1
        if not r.expected and r.status in ("failed", "skipped"):   # a link not followed, an XMP sidecar of two photos
            get_run_logger().warning("%s %s: %s", r.rel, r.status, r.detail)
    get_run_logger().info("%d photos and %d films to process; recorded while planning: %s", len(todo), len(films),
                          counts or "nothing")
    return [asdict(e) for e in todo], [asdict(f) for f in films], counts


@task(name="colorize-photo-batch", tags=["gpu"], retries=2, retry_delay_seconds=[2, 5, 15],
      retry_condition_fn=retry_unless(JobStoppedError), cache_policy=NO_CACHE)
def colorize_photo_batch(entries: list[dict[str, Any]], source: str, dest: str, db_url: str, job_id: str,
                         settings: dict[str, Any], force: bool, s3_endpoint: str | None,
                         model_batch: int = 8) -> dict[str, int]:
    """Colorize one chunk of photos, ``model_batch`` at a time through the model; every item
    ends recorded. Returns counts by status."""
    sweep_work_dirs_once(get_run_logger())
    job = JobSettings(**settings)
    colorizer = cached_colorizer(job.model, job.device, job.work_size)
    results = process_batch([PhotoEntry(**e) for e in entries], open_location(source, s3_endpoint),
                            open_location(dest, s3_endpoint), ProvenanceStore(db_url), job_id, job, colorizer, force,
                            model_batch, get_settings().batch_pixels)   # the worker's own memory
    logger = get_run_logger()
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
        if r.status == "failed":
            logger.warning("%s failed: %s", r.rel, r.detail)
    return counts


@task(name="write-manifest", retries=2, retry_delay_seconds=[2, 10], cache_policy=NO_CACHE)
def write_job_manifest(db_url: str, job_id: str, dest: str, s3_endpoint: str | None) -> dict[str, str]:
    """Write manifest.json, manifest.html and the IIIF manifest of the job under DEST; returns
    their URIs."""
    settings = get_settings()
    store, location = ProvenanceStore(db_url), open_location(dest, s3_endpoint)
    with spooled_manifest(store, job_id) as manifest:   # built once, for both
        uris = write_manifest(store, job_id, location, manifest=manifest)
        uris.update(write_exports(store, job_id, location, ("iiif",), settings.public_base_url,
                                  settings.source_base_url, manifest))
    return uris
