"""Model registry: importing this package registers every architecture module."""

from colorize_core.models import unet_pretrained  # noqa: F401  (registers "unet-pretrained")
from colorize_core.models.registry import architectures, build_model, register

__all__ = ["architectures", "build_model", "register"]
