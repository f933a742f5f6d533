"""Model registry: importing this package registers every architecture module."""

from colorize_core.models import autoencoder, pix2pix, unet_pretrained, zhang  # noqa: F401  (each registers itself)
from colorize_core.models.registry import architectures, build_model, inference_options, register

__all__ = ["architectures", "build_model", "inference_options", "register"]
