"""Weights files: one ``.pt`` holding the architecture name, its full option set and the
state dict, loaded with ``torch.load(weights_only=True)`` and identified by its sha256.

Named models live in ``colorize_core/weights/NAME.pt`` with a model card ``NAME.json``
(sha256, sources, training command, figures) and ``NAME.md`` beside it; further folders can
be given with ``COLORIZE_MODEL_DIRS``. A path to a ``.pt`` file is accepted as a model too.

External models (run by onnxruntime or OpenCV's DNN module, see models/external.py) are a
descriptor ``NAME.json`` with a ``runner`` key and no ``NAME.pt``: it names the model's files
(relative to itself) and its L-in/ab-out convention; their sha256 identifies the model.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from colorize_core.errors import ModelError

FORMAT = "colorize-weights/1"
PACKAGED_DIR = Path(__file__).parent / "weights"
DEFAULT_MODEL = "default"


@dataclass(frozen=True)
class WeightsFile:
    name: str
    path: Path
    sha256: str
    card: dict[str, Any]

    @property
    def runner(self) -> str | None:
        """None for this project's own .pt weights, else the external runner's name."""
        return self.card.get("runner") if self.path.suffix == ".json" else None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def model_dirs() -> list[Path]:
    extra = [Path(p) for p in os.environ.get("COLORIZE_MODEL_DIRS", "").split(os.pathsep) if p]
    return [*extra, PACKAGED_DIR]


def _is_descriptor(path: Path) -> bool:
    if not path.is_file() or path.with_suffix(".pt").is_file():
        return False
    try:
        return "runner" in json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):
        return False


def available_models() -> list[str]:
    return sorted({p.stem for d in model_dirs() if d.is_dir()
                   for p in [*d.glob("*.pt"), *filter(_is_descriptor, d.glob("*.json"))]})


def _descriptor(path: Path, name: str) -> WeightsFile:
    """An external model's descriptor: its main file's sha256 (checked against the card's)."""
    card = json.loads(path.read_text())
    main = card.get("file") or card.get("caffemodel")
    if not main or not (path.parent / main).is_file():
        raise ModelError(f"{path}: the {card.get('runner')} model's file {main!r} is missing")
    sha = file_sha256(path.parent / main)
    expected = card.get("weights_sha256")
    if expected and expected != sha:
        raise ModelError(f"{path.parent / main} has sha256 {sha}, but {path.name} says {expected}")
    return WeightsFile(name=card.get("name", name), path=path, sha256=sha, card=card)


def resolve(model: str) -> WeightsFile:
    """Find model ``model`` (a name or a path to a .pt file) and check its sha256 against its card.

    Raises ModelError when it cannot be found or its checksum does not match the card.
    """
    candidate = Path(model)
    if candidate.suffix == ".json" and _is_descriptor(candidate):
        return _descriptor(candidate, candidate.stem)
    if candidate.suffix == ".pt" and candidate.is_file():
        card_path = candidate.with_suffix(".json")
        card = json.loads(card_path.read_text()) if card_path.is_file() else {}
        sha = file_sha256(candidate)
        name = card.get("name", candidate.stem)
    else:
        for folder in model_dirs():
            path = folder / f"{model}.pt"
            if path.is_file():
                candidate = path
                break
            if _is_descriptor(folder / f"{model}.json"):
                return _descriptor(folder / f"{model}.json", model)
        else:
            raise ModelError(f"unknown model {model!r} (available: {', '.join(available_models()) or 'none'})")
        card_path = candidate.with_suffix(".json")
        card = json.loads(card_path.read_text()) if card_path.is_file() else {}
        sha = file_sha256(candidate)
        name = model
    expected = card.get("weights_sha256")
    if expected and expected != sha:
        raise ModelError(f"weights {candidate} have sha256 {sha}, but the model card says {expected}")
    return WeightsFile(name=name, path=candidate, sha256=sha, card=card)


def save_weights(path: Path, arch: str, options: dict[str, Any], state_dict: dict[str, torch.Tensor],
                 half: bool = True) -> str:
    """Write a weights file (float tensors stored as fp16 when ``half``); returns its sha256."""
    state = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().contiguous()
             for k, v in state_dict.items()}
    tmp = path.with_suffix(".tmp")
    torch.save({"format": FORMAT, "arch": arch, "options": options, "state_dict": state}, tmp)
    os.replace(tmp, path)
    return file_sha256(path)


def load_weights(path: Path) -> tuple[str, dict[str, Any], dict[str, torch.Tensor]]:
    """Read a weights file written by :func:`save_weights`. Raises ModelError if unreadable."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise ModelError(f"cannot read weights {path}: {exc}") from exc
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ModelError(f"{path} is not a {FORMAT} weights file")
    state = {k: v.float() if v.is_floating_point() else v for k, v in blob["state_dict"].items()}
    return blob["arch"], dict(blob["options"]), state
