"""The training flow: train a colorizer on an assembled dataset, with checkpoints, resume and a
model card; progress visible as a Prefect progress artifact."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE

from colorize_core.settings import get_settings
from colorize_core.storage import local_folder
from colorize_core.training import TrainConfig, encoder_options, train


@task(name="train-model", tags=["gpu"], retries=1, retry_delay_seconds=10, cache_policy=NO_CACHE)
def train_model(dataset: str, out: str, name: str, config: dict[str, Any], s3_endpoint: str | None) -> dict[str, Any]:
    """Train (a retry resumes from the last checkpoint under ``out``)."""
    logger = get_run_logger()
    artifact = create_progress_artifact(progress=0.0, description=f"training {name}")
    cfg = TrainConfig(**config)

    shown = [0]

    def progress(step: int, steps: int, loss: float) -> None:  # noqa: ARG001
        percent = 100 * step // steps
        if percent != shown[0]:  # one API call per whole percent, not per step
            shown[0] = percent
            update_progress_artifact(artifact_id=artifact, progress=100.0 * step / steps)

    with local_folder(dataset, s3_endpoint) as data:
        weights = train(data, Path(out), name, cfg, command=f"prefect flow train-colorizer (dataset {dataset})",
                        log=logger.info, progress=progress)
    return {"weights": str(weights), "card": str(weights.with_suffix(".json"))}


@flow(name="train-colorizer", log_prints=True)
def train_colorizer(dataset: str, out: str, name: str = "model", arch: str = "unet-pretrained", steps: int = 3000,
                    batch_size: int = 12, crop: int = 192, lr: float | None = None, device: str = "auto",
                    checkpoint_every: int = 100, encoder: str | None = None, encoder_weights: str | None = None,
                    s3_endpoint: str | None = get_settings().s3_endpoint) -> dict[str, Any]:
    """Train model ``name`` (architecture ``arch``) on the dataset at ``dataset`` (a folder or
    s3:// prefix made by `colorize dataset`) into the local folder ``out``: checkpoints every
    ``checkpoint_every`` steps (an interrupted run resumes), then ``NAME.pt`` with its card.
    For unet-pretrained, ``encoder`` (efficientnet-lite0, resnet18, vgg16) and
    ``encoder_weights``, a weights file on the worker, choose the ImageNet encoder."""
    config = TrainConfig(arch=arch, arch_options=encoder_options(arch, encoder, encoder_weights), steps=steps,
                         batch_size=batch_size, crop=crop, lr=lr, device=device, checkpoint_every=checkpoint_every)
    return train_model(dataset, out, name, config.__dict__, s3_endpoint)
