"""Architectures by name.

Adding an architecture is adding a module that calls :func:`register`; nothing else is
edited. Every architecture maps a batch of L (N, 1, H, W, scaled to [0, 1]) to ab
(N, 2, H, W, in CIE Lab units), H and W multiples of the module's ``size_multiple`` (its
deepest stride; the Colorizer pads its inputs to that), and declares its options, which are
saved inside every weights file so that a model can be rebuilt and its outputs reproduced.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from colorize_core.errors import ModelError


@dataclass(frozen=True)
class Architecture:
    name: str
    build: Callable[..., nn.Module]
    defaults: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    objective: str = "regression"  # how training.py trains it: regression | pix2pix | classification


_ARCHITECTURES: dict[str, Architecture] = {}


def register(name: str, defaults: dict[str, Any], description: str = "", objective: str = "regression") -> Callable:
    """Decorator: register ``build(**options) -> nn.Module`` under ``name``."""

    def wrap(build: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _ARCHITECTURES:
            raise ValueError(f"architecture {name!r} is registered twice")
        _ARCHITECTURES[name] = Architecture(name, build, dict(defaults), description, objective)
        return build

    return wrap


def architectures() -> dict[str, Architecture]:
    return dict(_ARCHITECTURES)


def build_model(name: str, options: dict[str, Any] | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Build architecture ``name``; returns the module and the full option set used.

    Raises ModelError for an unknown name or an option the architecture does not declare.
    """
    try:
        arch = _ARCHITECTURES[name]
    except KeyError:
        known = ", ".join(sorted(_ARCHITECTURES)) or "none"
        raise ModelError(f"unknown architecture {name!r} (known: {known})") from None
    full = dict(arch.defaults)
    unknown = set(options or {}) - set(full)
    if unknown:
        raise ModelError(f"architecture {name!r} has no option(s) {sorted(unknown)}")
    full.update(options or {})
    return arch.build(**full), full


def inference_options(options: dict[str, Any]) -> dict[str, Any]:
    """The options that rebuild a trained model: its pretrained parts are in its own weights,
    so nothing pretrained is loaded again (and no user's file path is kept)."""
    if "pretrained" not in options:
        return dict(options)
    return {**options, "pretrained": False, **({"encoder_weights": None} if "encoder_weights" in options else {})}
