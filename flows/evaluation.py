"""The evaluation flow: every model on the same held-out split, with and without refinement,
beside the gray and mean-ab baselines; a table, an HTML page of side-by-sides, artifacts."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from colorize_core import ColorizeError, Colorizer
from colorize_core.evaluation import (build_report, check_disjoint, evaluate_baselines, evaluate_predictor,
                                      format_table, load_held_out, model_labels, new_report_id, write_report,
                                      write_thumbs)
from colorize_core.settings import get_settings
from colorize_core.storage import local_folder, open_location
from colorize_core.weights import resolve
from flows.handback import hand_back

_defaults = get_settings()


@task(name="evaluate-baselines", retries=1, retry_delay_seconds=5, cache_policy=NO_CACHE)
def evaluate_baselines_task(dataset: str, dest: str, report_id: str, residue: int, limit: int | None,
                            s3_endpoint: str | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(the held-out images, the baselines' per-image rows)."""
    thumbs: dict[str, bytes] = {}
    with local_folder(dataset, s3_endpoint) as data:
        images, rows = evaluate_baselines(load_held_out(data, residue, limit), thumbs)
    write_thumbs(open_location(dest, s3_endpoint), report_id, thumbs)
    return images, rows


@task(name="evaluate-model", tags=["gpu"], retries=1, retry_delay_seconds=5, cache_policy=NO_CACHE)
def evaluate_model_task(dataset: str, dest: str, report_id: str, model: str, label: str, refine: list[str],
                        residue: int, limit: int | None, work_size: int, device: str,
                        s3_endpoint: str | None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(the model's description, its per-image rows, labelled ``label``); a model that cannot be
    evaluated (unknown, unreadable, trained on held-out images) is described with its error
    and has no rows."""
    logger = get_run_logger()
    thumbs: dict[str, bytes] = {}
    try:
        colorizer = Colorizer.load(model, device=device, work_size=work_size)
        with local_folder(dataset, s3_endpoint) as data:
            held_out = load_held_out(data, residue, limit)
            description = {**colorizer.describe(), "label": label, "reference": model,
                           "disjoint": check_disjoint(colorizer.weights.card, held_out)}
            rows = []
            for method in refine:
                logger.info("evaluating %s (refine %s) on %d images", label, method, len(held_out.images))
                rows += evaluate_predictor(colorizer, held_out, method, thumbs=thumbs, label=label)
    except ColorizeError as exc:
        logger.error("model %s not evaluated: %s", model, exc)
        return {"name": model, "error": str(exc)}, []
    write_thumbs(open_location(dest, s3_endpoint), report_id, thumbs)
    return description, rows


@task(name="write-evaluation", retries=2, retry_delay_seconds=[2, 10], cache_policy=NO_CACHE)
def write_evaluation_task(dataset: str, dest: str, report_id: str, residue: int, images: list[dict[str, Any]],
                          models: list[dict[str, Any]], per_image: list[dict[str, Any]],
                          s3_endpoint: str | None) -> dict[str, Any]:
    report = build_report(report_id, dataset, residue, images, models, per_image)
    uris = write_report(open_location(dest, s3_endpoint), report)
    table = format_table(report["table"])
    create_markdown_artifact(key="colorizer-evaluation", markdown=table, description=f"evaluation {report_id}")
    if uris["html"].startswith(("http://", "https://", "s3://", "file://", "/")):
        create_link_artifact(key="colorizer-evaluation-page", link=uris["html"], description="side-by-sides")
    return {"id": report_id, **uris, "table": report["table"], "markdown": table, "models": models}


def _identify(model: str) -> tuple[str | None, str | None]:
    """(name, weights sha256) of a model reference; (None, None) if it does not resolve (the
    model's task then reports why)."""
    try:
        weights = resolve(model)
    except ColorizeError:
        return None, None
    return weights.name, weights.sha256


@flow(name="evaluate-colorizer", log_prints=True)
def evaluate_colorizer(dataset: str, dest: str, models: list[str] = ["default"],  # noqa: B006
                       refine: list[str] = ["none", "flood"], residue: int = 0,  # noqa: B006
                       limit: int | None = None, work_size: int = _defaults.work_size,
                       device: str = _defaults.device,
                       s3_endpoint: str | None = _defaults.s3_endpoint) -> dict[str, Any]:
    """Evaluate ``models`` (names or .pt paths) on the held-out split (sha256 residue
    ``residue`` mod 10) of the dataset at ``dataset`` (a folder or s3:// prefix made by
    `colorize dataset`), each with every ``refine`` method, beside the gray and mean-ab
    baselines. Writes ``DEST/eval/<id>/`` (report.json, report.md, index.html, thumbs/)."""
    open_location(dataset, s3_endpoint).check()  # a missing dataset fails here, before anything is written
    labelled, notes = model_labels([(m, *_identify(m)) for m in models])
    for note in notes:
        get_run_logger().warning(note)
    report_id = new_report_id()
    baselines = evaluate_baselines_task.submit(dataset, dest, report_id, residue, limit, s3_endpoint)
    results = [evaluate_model_task.submit(dataset, dest, report_id, m, label, refine, residue, limit, work_size,
                                          device, s3_endpoint) for m, label in labelled]
    images, per_image = baselines.result()
    per_image = list(per_image)
    descriptions = []
    for future in results:
        description, rows = future.result()
        descriptions.append(description)
        per_image += rows
    summary = write_evaluation_task(dataset, dest, report_id, residue, images, descriptions, per_image, s3_endpoint)
    get_run_logger().info("evaluation %s\n%s", report_id, summary["markdown"])
    return hand_back(summary)
