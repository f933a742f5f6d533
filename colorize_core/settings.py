"""One settings object; every field can be set from the environment with the COLORIZE_ prefix."""

from __future__ import annotations

from pydantic import PositiveFloat, PositiveInt
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="COLORIZE_", protected_namespaces=())

    db_url: str = "sqlite:///var/provenance.db"   # COLORIZE_DB_URL; postgresql://... for production
    model: str = "default"                        # COLORIZE_MODEL: registry name or .pt path
    device: str = "auto"                          # auto: CUDA, then CPU
    batch_size: int = 8                           # photos per model call
    batch_pixels: PositiveInt = 64_000_000        # fewer when their pixels add up to this: a batch of large
                                                  # scans is held decoded in the worker's memory
    chunk_size: int = 256                         # photos per colorize task (Prefect task run), at most
    work_size: int = 256                          # model working resolution (multiple of 32)
    refine: str = "flood"
    max_pixels: int = 250_000_000                 # larger declared sizes are refused before decoding
    s3_endpoint: str | None = None                # else boto3's own (AWS_ENDPOINT_URL, profiles)
    task_workers: int = 2                         # batches in flight at once within a flow run
    task_runner: str = "threads"                  # threads | dask (a local cluster) | tcp://scheduler:8786
    lease_seconds: PositiveFloat = 300.0          # a job renews its lease on DEST every tenth of this; one
                                                  # not renewed for this long was a crashed job's: taken over
    exit_grace_seconds: PositiveFloat = 30.0      # after Ctrl-C or a cancellation has stopped a flow, the CLI
                                                  # exits at most this much later, naming what held it up
    manifest_page_items: PositiveInt = 500        # items per page of a job's HTML contact sheet
    public_base_url: str | None = None            # where DEST is published over HTTP(S) (IIIF ids)
    source_base_url: str | None = None            # where the originals are published (IIIF), if they are


def get_settings() -> Settings:
    return Settings()
