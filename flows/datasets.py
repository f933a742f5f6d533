"""The dataset flow: assemble a training set (the packaged sources, or an archive's own colour
photographs) into a folder or s3:// prefix that `train-colorizer` and `evaluate-colorizer` read."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from colorize_core.datasets import build_dataset as build_dataset_in
from colorize_core.errors import DatasetError
from colorize_core.settings import get_settings
from colorize_core.storage import LocalLocation, open_location


@task(name="build-dataset", cache_policy=NO_CACHE)
def build_dataset_task(out: str, source: str | None, licence: str | None, debs: str | None,
                       s3_endpoint: str | None) -> dict[str, Any]:
    """Build into ``out`` directly when it is a folder; for an S3 prefix, build in a temporary
    folder and upload (never replacing an object there)."""
    logger = get_run_logger()
    dest = open_location(out, s3_endpoint)
    debs_dir = Path(debs) if debs else None
    if isinstance(dest, LocalLocation):
        result = build_dataset_in(dest.root, source, licence, debs_dir, s3_endpoint)
    else:
        if dest.exists("sources.json"):
            raise DatasetError(f"{out} already holds a dataset (sources.json): give a new prefix")
        with tempfile.TemporaryDirectory(prefix="colorize-dataset-") as tmp:
            result = build_dataset_in(Path(tmp), source, licence, debs_dir, s3_endpoint)
            files = sorted(p for p in Path(tmp).rglob("*") if p.is_file() and "debs" not in p.relative_to(tmp).parts)
            # sources.json last: a prefix without it is not (yet) a dataset.
            for path in sorted(files, key=lambda p: p.name == "sources.json"):
                rel = path.relative_to(tmp).as_posix()
                dest.put_file_new(rel, path, "application/json" if rel.endswith(".json") else "image/png")
            logger.info("uploaded %d files to %s", len(files), out)
    summary = {"dataset": out, "images": len(result.records), "pictures": result.pictures,
               "origins": result.origins(), "left_out": result.left_out()}
    rows = "\n".join(f"| {origin} | {n} |" for origin, n in summary["origins"].items())
    skipped = "\n".join(f"| {reason} | {n} |" for reason, n in summary["left_out"].items()) or "| - | 0 |"
    create_markdown_artifact(key="dataset", description=f"dataset {out}", markdown=(
        f"# Dataset `{out}`\n\n{summary['images']} images of {summary['pictures']} pictures.\n\n"
        f"| origin | images |\n|---|---|\n{rows}\n\n| left out | files |\n|---|---|\n{skipped}\n\n"
        "Every image's checksums and licence are in sources.json; every file left out, with why, in skipped.json.\n"))
    logger.info("%d images of %d pictures; %d files left out (skipped.json)", summary["images"], summary["pictures"],
                len(result.skipped))
    return summary


@flow(name="build-dataset", log_prints=True)
def build_dataset(out: str, source: str | None = None, licence: str | None = None, debs: str | None = None,
                  s3_endpoint: str | None = get_settings().s3_endpoint) -> dict[str, Any]:
    """Assemble a training set into ``out`` (a folder or s3:// prefix that holds no dataset yet):
    with ``source`` (a folder or s3:// prefix of colour photographs) and its ``licence``, an
    archive's own photographs; without, the packaged sources (Debian packages from ``debs`` on
    the worker, or apt-get download). Writes images/, sources.json and skipped.json."""
    return build_dataset_task(out, source, licence, debs, s3_endpoint)
