"""Tasks for films in the archive flow: prepare (fingerprint, probe, cut), one per unit of
shots (tagged ``gpu``), assemble. They pass plans (JSON-ready dicts of references and frame
ranges), never frames."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from colorize_core.archive import FilmEntry, JobSettings
from colorize_core.errors import JobStoppedError
from colorize_core.film_archive import assemble_film, colorize_unit, prepare_film
from colorize_core.provenance import ProvenanceStore
from colorize_core.storage import open_location
from tasks import retry_unless, sweep_work_dirs_once
from tasks.photos import cached_colorizer


@task(name="prepare-film", retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=retry_unless(JobStoppedError),
      cache_policy=NO_CACHE)
def prepare_film_task(film: dict[str, Any], source: str, dest: str, db_url: str, job_id: str,
                      settings: dict[str, Any], model_name: str, model_sha256: str, force: bool,
                      s3_endpoint: str | None) -> dict[str, Any]:
    """Fingerprint, skip-check, probe and cut a film. Returns its plan, or {"result": status}
    when it is recorded already (skipped or failed)."""
    sweep_work_dirs_once(get_run_logger())
    out = prepare_film(FilmEntry.from_dict(film), open_location(source, s3_endpoint), open_location(dest, s3_endpoint),
                       ProvenanceStore(db_url), job_id, JobSettings(**settings), model_name, model_sha256, force)
    logger = get_run_logger()
    if isinstance(out, dict):
        todo = sum(not u["done"] for u in out["units"])
        logger.info("%s: %d frames, %d cuts, %d units (%d to do)", film["rel"], out["info"]["frames"],
                    len(out["cuts"]), len(out["units"]), todo)
        return out
    if out.status == "failed":
        logger.warning("%s failed: %s", film["rel"], out.detail)
    return {"result": out.status, "rel": out.rel, "detail": out.detail}


@task(name="colorize-shot", tags=["gpu"], retries=2, retry_delay_seconds=[2, 5, 15],
      retry_condition_fn=retry_unless(JobStoppedError), cache_policy=NO_CACHE)
def colorize_shot_task(plan: dict[str, Any], unit: dict[str, Any], source: str, dest: str, db_url: str,
                       job_id: str, settings: dict[str, Any], s3_endpoint: str | None,
                       batch_size: int = 8) -> dict[str, Any]:
    """Colorize one unit of shots of a film into segments under DEST, recorded."""
    sweep_work_dirs_once(get_run_logger())
    job = JobSettings(**settings)
    out = colorize_unit(plan, unit, open_location(source, s3_endpoint), open_location(dest, s3_endpoint),
                        ProvenanceStore(db_url), job_id, job, cached_colorizer(job.model, job.device, job.work_size),
                        batch_size)
    if out["status"] == "failed":
        get_run_logger().warning("%s frames %d-%d failed: %s", plan["film"]["rel"], out["start"], out["end"],
                                 out["error"])
    return out


@task(name="assemble-film", retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=retry_unless(JobStoppedError),
      cache_policy=NO_CACHE)
def assemble_film_task(plan: dict[str, Any], source: str, dest: str, db_url: str, job_id: str,
                       settings: dict[str, Any], model_name: str, model_sha256: str,
                       s3_endpoint: str | None) -> dict[str, Any]:
    """Join the film's segments with its audio into the renditions and record the film."""
    sweep_work_dirs_once(get_run_logger())
    out = assemble_film(plan, open_location(source, s3_endpoint), open_location(dest, s3_endpoint),
                        ProvenanceStore(db_url), job_id, JobSettings(**settings), model_name, model_sha256)
    if out.status == "failed":
        get_run_logger().warning("%s failed: %s", out.rel, out.detail)
    return {"result": out.status, "rel": out.rel, "detail": out.detail, "uri": out.output_uri}
