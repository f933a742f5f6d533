"""The archive flow: colorize every photo under SOURCE into DEST, with provenance and a manifest."""

from __future__ import annotations

import concurrent.futures
import math
import os
import socket
import time
import uuid
from dataclasses import asdict
from typing import Any

from prefect import allow_failure, flow, get_run_logger, unmapped
from prefect.artifacts import create_link_artifact, create_table_artifact
from prefect.exceptions import TerminationSignal
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from colorize_core.archive import JobSettings, check_locations, job_status, software_versions
from colorize_core.errors import ColorizeError, StorageError
from colorize_core.fixity import REPAIR, REPLACED, repair_groups
from colorize_core.provenance import DestinationLease, ProvenanceStore
from colorize_core.review import link_redone, redo_groups
from colorize_core.settings import get_settings
from colorize_core.storage import open_location
from colorize_core.weights import resolve
from flows.handback import hand_back
from tasks.film import assemble_film_task, colorize_shot_task, prepare_film_task
from tasks.fixity import refresh_manifests
from tasks.photos import colorize_photo_batch, plan_items, write_job_manifest

_defaults = get_settings()
STOP_GRACE_SECONDS = 60.0   # how long a stopped job waits, holding DEST, for its running tasks to stop


def task_runner(spec: str | None = None):  # noqa: ANN201 - a Prefect task runner
    """Where the flow's tasks run: ``threads`` (this process; the model is loaded once), ``dask``
    (a local Dask cluster of ``task_workers`` processes) or a Dask scheduler's address
    (``tcp://host:8786``: an existing cluster), through prefect-dask."""
    spec = spec or _defaults.task_runner
    if spec == "threads":
        return ThreadPoolTaskRunner(max_workers=_defaults.task_workers)
    from prefect_dask import DaskTaskRunner

    if spec == "dask":
        return DaskTaskRunner(cluster_kwargs={"n_workers": _defaults.task_workers, "threads_per_worker": 1,
                                              "processes": True})
    if spec.startswith(("tcp://", "tls://", "ucx://")):
        return DaskTaskRunner(address=spec)
    raise ValueError(f"task runner {spec!r}: use threads, dask or a Dask scheduler address (tcp://host:8786)")


@flow(name="colorize-archive", log_prints=True, task_runner=task_runner())
def colorize_archive(source: str, dest: str, db_url: str = _defaults.db_url, model: str = _defaults.model,
                     refine: str = _defaults.refine, batch_size: int = _defaults.batch_size,
                     chunk_size: int = _defaults.chunk_size, force: bool = False,
                     include_colour: bool = False, work_size: int = _defaults.work_size,
                     device: str = _defaults.device, s3_endpoint: str | None = _defaults.s3_endpoint,
                     film_renditions: list[str] = [".mkv", ".mp4"], temporal: bool = True,  # noqa: B006
                     shot_max_frames: int = 1500, sequence_rate: str = "24",
                     redo_job: str | None = None, take_over: str | None = None,
                     redo_damaged: bool = False) -> dict[str, Any]:
    """Colorize the photos and films under ``source`` (folder, file:// or s3://) into ``dest``.

    Photos go through the model ``batch_size`` at a time; a task takes up to ``chunk_size``
    photos (fewer Prefect task runs per photo; small jobs are still split across workers).
    Films (video files, and frame sequences: folders of numbered DPX frames or with a
    ``sequence.json``) are cut into shots; a task colorizes a unit of shots into segments
    (``film_renditions``: .mkv FFV1 master, .mp4 H.264 access copy, .mov ProRes), with
    ``temporal`` smoothing; a last task joins them with the original audio. Frame sequences
    without a ``sequence.json`` play at ``sequence_rate``. Items already done with the same
    model and parameters are skipped unless ``force``; a film's finished shots are reused.
    ``redo_job``: re-run exactly the items of that job a reviewer rejected, each with the
    parameters the reviewer asked for (the other parameters as the item had them).
    ``redo_damaged``: write again, from their originals under ``source`` and with their own
    parameters, the items of ``dest`` whose latest fixity check (the verify-fixity flow) found
    an output missing, changed or unreadable.
    One job at a time writes to a DEST: the job holds DEST's lease in the provenance database
    while it runs, and a second job is refused (DestinationBusyError, naming the first). A lease
    not renewed for ``COLORIZE_LEASE_SECONDS`` (300) was a crashed job's and is taken over;
    ``take_over``: the id of a job known to have stopped, whose lease is taken at once.
    Returns the job id, counts by status, and where the manifest and database are.
    """
    logger = get_run_logger()
    if batch_size < 1 or chunk_size < 1:
        raise ValueError("batch_size and chunk_size must be at least 1")
    job = JobSettings(model=model, refine=refine, work_size=work_size, include_colour=include_colour,
                      max_pixels=_defaults.max_pixels, device=device, film_renditions=tuple(film_renditions),
                      temporal=temporal, shot_max_frames=shot_max_frames,
                      shot_min_frames=min(JobSettings.shot_min_frames, shot_max_frames), sequence_rate=sequence_rate)
    src, dst = open_location(source, s3_endpoint), open_location(dest, s3_endpoint)
    src.check()  # a source that does not exist fails the run here, before anything is recorded or written
    check_locations(src, dst)
    weights = resolve(model)
    store = ProvenanceStore(db_url)
    store.check_not_relocated(dst.uri, src.uri)   # records moved with them: this job would redo the whole archive
    # The work: one parameter set over the whole source, or, for a redo of rejected items,
    # each requested parameter set over exactly its items (always redone: never skipped).
    if redo_job and redo_damaged:
        raise ValueError("redo_job and redo_damaged are two kinds of job: ask for one at a time")
    if redo_job:
        groups = redo_groups(store, redo_job)
    elif redo_damaged:
        groups = repair_groups(store, src.uri, dst.uri)
    else:
        groups = [(job, None)]
    group_weights = [resolve(g.model) if g.model != model else weights for g, _ in groups]
    if redo_job or redo_damaged:
        force = True
        params = {"redo_of": redo_job} if redo_job else {"repair_of": dst.uri}
        params["groups"] = [{"params": g.params(w.sha256, "film"), "items": len(only)}
                            for (g, only), w in zip(groups, group_weights)]
    else:
        params = job.params(weights.sha256, "film")
    # One job at a time per DEST (in this database): a second is refused while this one holds the lease.
    job_id = str(uuid.uuid4())
    run_id = str(flow_run.id) if flow_run.id else None
    holder = {"host": socket.gethostname(), "pid": os.getpid(), "flow_run": run_id}
    with DestinationLease(store, dst.uri, job_id, holder=holder, lease_seconds=get_settings().lease_seconds,
                          take_over=take_over, log=logger) as lease:
        counts = {"done": 0, "skipped": 0, "failed": 0}
        crashed = 0
        futures, assemblies, submitted = [], [], []   # submitted: every task future, to stop them
        try:   # from the job's start: a signal at any point leaves it recorded, not 'running'
            job_id = store.start_job(src.uri, dst.uri, params, job.key(weights.sha256, "film"), weights.name,
                                     weights.sha256, software_versions(), run_id, job_id=job_id)
            if lease.taken_over:
                old = lease.taken_over
                logger.warning("took over %s from job %s (%s), whose lease was last renewed at %s UTC%s", dst.uri,
                               old["job_id"], old["holder"], f"{old['renewed_at']:%Y-%m-%d %H:%M:%S}",
                               "; that job is marked crashed" if old["marked_crashed"] else "")
            redoing = sum(len(o) for _, o in groups) if redo_job or redo_damaged else 0
            logger.info("job %s: %s -> %s with model %s (sha256 %s)%s", job_id, source, dest, weights.name,
                        weights.sha256[:12], f", redoing {redoing} rejected item(s) of job {redo_job}" if redo_job
                        else f", writing {redoing} damaged item(s) again" if redo_damaged else "")
            for (group, only), gw in zip(groups, group_weights):
                settings = asdict(group)
                uris = [item.source_uri for item in only] if only is not None else None
                todo, films, planned = plan_items(source, dest, store.url, job_id, settings, gw.sha256, force,
                                                  s3_endpoint, uris)
                for status, n in planned.items():
                    counts[status] = counts.get(status, 0) + n
                # Each task run costs ~1-2 s of orchestration at its start and end, and a chunk holds
                # only one model batch of decoded photos at a time: no more chunks than workers need.
                chunk = min(chunk_size, max(batch_size, math.ceil(len(todo) / _defaults.task_workers)))
                chunks = [todo[i:i + chunk] for i in range(0, len(todo), chunk)]
                batches = colorize_photo_batch.map(chunks, unmapped(source), unmapped(dest), unmapped(store.url),
                                                   unmapped(job_id), unmapped(settings), unmapped(force),
                                                   unmapped(s3_endpoint), unmapped(batch_size))
                futures += batches
                submitted += batches
                common = (unmapped(source), unmapped(dest), unmapped(store.url), unmapped(job_id), unmapped(settings))
                plans = prepare_film_task.map(films, *common, unmapped(gw.name), unmapped(gw.sha256),
                                              unmapped(force), unmapped(s3_endpoint))
                submitted += plans
                for planned_film in plans:
                    planned_film.wait()
                    if not planned_film.state.is_completed():
                        crashed += 1
                        logger.error("preparing a film failed after its retries: %s", planned_film.state.message)
                        continue
                    film_plan = planned_film.result()
                    if "result" in film_plan:
                        counts[film_plan["result"]] = counts.get(film_plan["result"], 0) + 1
                        continue
                    units = [u for u in film_plan["units"] if not u["done"]]
                    shots = (colorize_shot_task.map(unmapped(film_plan), units, *common, unmapped(s3_endpoint),
                                                    unmapped(batch_size)) if units else [])
                    assemblies.append(assemble_film_task.submit(film_plan, source, dest, store.url, job_id, settings,
                                                                gw.name, gw.sha256, s3_endpoint,
                                                                wait_for=[allow_failure(f) for f in shots]))
                    submitted += [*shots, assemblies[-1]]
            for future in futures:
                future.wait()
                if future.state.is_completed():
                    for status, n in future.result().items():
                        counts[status] = counts.get(status, 0) + n
                else:
                    crashed += 1
                    logger.error("a batch failed after its retries: %s", future.state.message)
            for future in assemblies:
                future.wait()
                if future.state.is_completed():
                    counts[future.result()["result"]] = counts.get(future.result()["result"], 0) + 1
                else:
                    crashed += 1
                    logger.error("assembling a film failed after its retries: %s", future.state.message)
            if redo_job:
                linked = link_redone(store, job_id, [item for _, only in groups for item in only])
                logger.info("%d rejected item(s) redone and linked to their new outputs", linked)
            elif redo_damaged:
                linked = link_redone(store, job_id, [item for _, only in groups for item in only],
                                     (REPAIR, REPLACED), "colorize fixity repair")
                logger.info("%d damaged item(s) written again and linked to their new outputs", linked)
            status = "crashed" if crashed else job_status(counts)
            store.finish_job(job_id, status)
        except BaseException as exc:   # stopped: by an error, or cancelled (SIGTERM from Prefect, Ctrl-C)
            stop = _signal_in(exc)
            store.finish_job(job_id, "crashed" if stop is None else "cancelled", if_running=True)
            _stop_tasks(submitted, logger)
            if stop is not None and stop is not exc:
                raise stop from None   # the stop it was, not the error raised in its place
            raise
        try:
            manifest = write_job_manifest(store.url, job_id, dest, s3_endpoint)
        except ColorizeError as exc:   # DEST full or unreachable at the very end: the items are recorded
            raise StorageError(f"job {job_id} ended {status}, its items recorded, but its manifest could not be "
                               f"written ({exc}); once DEST takes it, `colorize export {job_id} --what manifest` "
                               "writes it") from exc
        if redo_damaged:   # the replaced items' own jobs' pages say where they went
            refresh_manifests(sorted({item.job_id for _, only in groups for item in only}), dest, store.url,
                              s3_endpoint)
        summary = {"job_id": job_id, "status": status, "counts": counts, "crashed_batches": crashed,
                   "manifest": manifest, "dest": dest, "db_url": store.url}
        create_table_artifact(key="colorize-archive-summary", table=[
            {"job": job_id, "source": source, "dest": dest, "model": weights.name, **counts, "status": status}],
            description=f"Colorization job {job_id}")
        create_link_artifact(key="colorize-archive-manifest", link=_link(manifest["job_html"]),
                             link_text=f"manifest of job {job_id}",
                             description="Review page: original and colour side by side")
        if crashed:
            raise RuntimeError(f"{crashed} batch(es) failed after retries; their items are not recorded and "
                               f"will be picked up by the next run (job {job_id})")
        return hand_back(summary)


def _signal_in(exc: BaseException) -> BaseException | None:
    """What stopped the job if it was not an error (Ctrl-C, Prefect's SIGTERM), else None. A
    SIGTERM can arrive while Prefect is still creating a task run; Prefect's crash handling then
    raises an error of its own ("Task run is not set") with the signal as its context, so an
    error's chain is looked through for a signal."""
    if not isinstance(exc, Exception):
        return exc
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, (KeyboardInterrupt, TerminationSignal)):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _stop_tasks(futures: list[Any], logger: Any) -> None:
    """Once the job is recorded stopped: drop its tasks that have not started, and give those
    running ``STOP_GRACE_SECONDS`` to reach their next check of the job (between photos and
    between frames), where they stop (JobStoppedError), while the job still holds DEST's lease:
    nothing is written into DEST after the lease is given back."""
    running = []
    for future in futures:
        inner = getattr(future, "wrapped_future", None)   # threads: a concurrent future; Dask: a distributed one
        if isinstance(inner, concurrent.futures.Future) and inner.cancel():
            continue   # had not started
        if not _done(future):
            running.append(future)
    if not running:
        return
    logger.warning("job stopped: waiting up to %.0f s for %d running task(s) to stop", STOP_GRACE_SECONDS,
                   len(running))
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for future in running:
        future.wait(max(0.0, deadline - time.monotonic()))
    left = [f for f in running if not _done(f)]
    if left:
        logger.error("%d task(s) still running %.0f s after the job stopped; DEST's lease is given back anyway "
                     "(they stop at their next check of the job)", len(left), STOP_GRACE_SECONDS)


def _done(future: Any) -> bool:
    inner = getattr(future, "wrapped_future", None)
    return inner.done() if inner is not None else future.state.is_final()


def _link(uri: str) -> str:
    return uri if "://" in uri else f"file://{uri}"


if __name__ == "__main__":
    colorize_archive(source="samples/archive", dest="var/colour", db_url="sqlite:///var/provenance.db")
