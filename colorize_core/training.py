"""Training loop: L -> ab on an assembled dataset (see datasets.py).

Random rescaled crops and flips of colour images. Each architecture declares its objective
(models/registry.py): ``regression`` (smooth-L1 on ab, AdamW, one-cycle), ``pix2pix`` (L1
pre-training of the generator, then the conditional GAN loss plus lambda * L1 against a 70x70
PatchGAN, Adam 2e-4 with beta1 0.5) or ``classification`` (Zhang et al.: cross-entropy on
soft-encoded ab bins weighted by class rebalancing). Checkpoints go to
``out/checkpoint.pt`` every ``checkpoint_every`` steps and a run started again on the same
``out`` resumes from there. The result is a weights file plus a model card (JSON and
Markdown) listing the data sources with checksums and licences, every hyperparameter, the
figures per evaluation and the weights sha256.
"""

from __future__ import annotations

import json
import os
import platform
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from colorize_core import __version__
from colorize_core.color import lab_to_rgb, rgb_to_lab
from colorize_core.colorizer import pick_device
from colorize_core.datasets import SourceRecord, listing_sha256, load_records, split_bucket
from colorize_core.metrics import psnr
from colorize_core.errors import DatasetError, ModelError, TrainingError
from colorize_core.models import architectures, build_model, inference_options
from colorize_core.models import zhang
from colorize_core.models.pix2pix import PatchDiscriminator
from colorize_core.weights import file_sha256, save_weights

# The learning rate each objective uses unless one is given (pix2pix's is the paper's).
DEFAULT_LR = {"regression": 3e-4, "classification": 3e-4, "pix2pix": 2e-4}


@dataclass
class TrainConfig:
    arch: str = "unet-pretrained"
    arch_options: dict[str, Any] = field(default_factory=dict)
    steps: int = 3000
    batch_size: int = 12
    crop: int = 192
    lr: float | None = None       # None: the objective's default (DEFAULT_LR)
    weight_decay: float = 1e-5
    freeze_encoder: bool = True
    val_every_tenth: int = 0      # picture groups whose bucket (datasets.split_bucket) is this residue are held out
    eval_every: int = 250
    checkpoint_every: int = 250
    seed: int = 0
    device: str = "auto"
    gan_lambda: float = 100.0           # pix2pix: weight of L1 beside the GAN loss
    pretrain_fraction: float = 0.5      # pix2pix: share of the steps spent on L1 pre-training
    rebalance_lambda: float = zhang.REBALANCE_LAMBDA  # classification: mix with the uniform prior


# What a resumed run must share with the run that wrote the checkpoint (else the card would
# describe a training that did not happen); the total of steps and the device may change.
RESUME_MUST_MATCH = ("arch", "batch_size", "crop", "lr", "weight_decay", "freeze_encoder", "val_every_tenth", "seed",
                     "gan_lambda", "pretrain_fraction", "rebalance_lambda")


def _run_identity(config: TrainConfig, options: dict[str, Any], records: list[SourceRecord]) -> dict[str, Any]:
    return {**{k: getattr(config, k) for k in RESUME_MUST_MATCH},
            "arch_options": {k: v for k, v in options.items() if k != "encoder_weights"},  # the file's path may move
            "dataset_listing_sha256": listing_sha256(records)}


def _check_resume(ckpt: Path, saved: dict[str, Any] | None, identity: dict[str, Any]) -> None:
    if saved is None:  # a checkpoint from before runs were recorded
        return
    changed = [f"{k} {saved.get(k)!r} (now {v!r})" for k, v in identity.items() if saved.get(k) != v]
    if changed:
        raise TrainingError(f"{ckpt} is from a run with {'; '.join(changed)}: resume with the same settings and "
                            "dataset, or train into a new OUT (only the number of steps and the device may change)")


def encoder_options(arch: str, encoder: str | None, encoder_weights: str | None) -> dict[str, Any]:
    """The architecture options that choose a pretrained encoder and its weights file; raises
    ModelError when ``arch`` has no such options."""
    options = {k: v for k, v in (("encoder", encoder), ("encoder_weights", encoder_weights)) if v}
    declared = architectures()[arch].defaults if arch in architectures() else {}
    if options and "encoder" not in declared:
        raise ModelError(f"architecture {arch!r} has no pretrained encoder to choose (unet-pretrained has)")
    return options


class _Objective:
    """One architecture family's training step: its losses, optimisers and schedule."""

    def __init__(self, model: torch.nn.Module, config: TrainConfig, device: torch.device) -> None:
        self.model, self.config, self.device = model, config, device
        self.amp = device.type == "cuda"
        params = [p for p in model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
        self.sched = torch.optim.lr_scheduler.OneCycleLR(self.opt, max_lr=config.lr, total_steps=config.steps,
                                                         pct_start=0.05)
        self.scaler = torch.amp.GradScaler(enabled=self.amp)

    def loss(self, lum: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
        return F.smooth_l1_loss(self.model(lum) / 110.0, ab / 110.0, beta=0.05)

    def step(self, lum: torch.Tensor, ab: torch.Tensor, step: int) -> float:  # noqa: ARG002
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            loss = self.loss(lum, ab)
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt)
        self.scaler.update()
        self.sched.step()
        return float(loss.item())

    def retarget(self, done: int) -> None:
        """Resumed with a new total of steps: the one-cycle schedule is laid over the new total
        from step ``done`` on (a warm restart when the old cycle had already annealed)."""
        self.sched = torch.optim.lr_scheduler.OneCycleLR(self.opt, max_lr=self.config.lr, total_steps=self.config.steps,
                                                         pct_start=0.05, last_epoch=done - 1)

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict(), "sched": self.sched.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.sched.load_state_dict(state["sched"])


class _Classification(_Objective):
    """Cross-entropy against soft-encoded targets at 1/4 resolution, each pixel weighted by
    the rebalancing weight of its nearest bin (weights from the training set's ab counts)."""

    def __init__(self, model: torch.nn.Module, config: TrainConfig, device: torch.device,
                 images: list[np.ndarray]) -> None:
        super().__init__(model, config, device)
        self.bins = torch.from_numpy(zhang.ab_bins(model.classify.out_channels)).to(device)
        counts = np.zeros(len(self.bins), np.float64)
        for lab in images:
            ab = torch.from_numpy(np.ascontiguousarray(lab[::4, ::4, 1:].reshape(-1, 2)))
            counts += np.bincount(torch.cdist(ab, self.bins.cpu()).argmin(1).numpy(), minlength=len(counts))
        self.prior_counts = counts
        self.weights = torch.from_numpy(zhang.rebalance_weights(counts, config.rebalance_lambda)).to(device)

    def loss(self, lum: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
        logits = self.model.logits(lum).float()
        target, nearest = zhang.soft_encode(F.avg_pool2d(ab, 4), self.bins)
        ce = -(target * F.log_softmax(logits, dim=1)).sum(1)
        return (self.weights[nearest] * ce).mean()


class _Pix2Pix(_Objective):
    """L1 pre-training of the generator for ``pretrain_fraction`` of the steps, then pix2pix:
    D learns real (L, ab) pairs from generated ones; G minimises the GAN loss + lambda * L1."""

    def __init__(self, model: torch.nn.Module, config: TrainConfig, device: torch.device, ndf: int) -> None:
        self.model, self.config, self.device = model, config, device
        self.amp = device.type == "cuda"
        self.disc = PatchDiscriminator(ndf).to(device)
        betas = (0.5, 0.999)
        self.opt = torch.optim.Adam(model.parameters(), lr=config.lr, betas=betas)
        self.opt_d = torch.optim.Adam(self.disc.parameters(), lr=config.lr, betas=betas)
        self.scaler = torch.amp.GradScaler(enabled=self.amp)
        self.pretrain = round(config.pretrain_fraction * config.steps)

    def step(self, lum: torch.Tensor, ab: torch.Tensor, step: int) -> float:
        bce = F.binary_cross_entropy_with_logits
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            fake = self.model(lum)
            l1 = F.l1_loss(fake / 110.0, ab / 110.0)
        if step < self.pretrain:
            loss = l1
        else:
            self.disc.train()
            with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
                real_logit, fake_logit = self.disc(lum, ab), self.disc(lum, fake.detach())
                loss_d = 0.5 * (bce(real_logit, torch.ones_like(real_logit))
                                + bce(fake_logit, torch.zeros_like(fake_logit)))
            self.opt_d.zero_grad(set_to_none=True)
            self.scaler.scale(loss_d).backward()
            self.scaler.step(self.opt_d)
            with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
                judged = self.disc(lum, fake)
                loss = bce(judged, torch.ones_like(judged)) + self.config.gan_lambda * l1
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt)
        self.scaler.update()
        return float(l1.item())

    def retarget(self, done: int) -> None:  # noqa: ARG002
        """No schedule to move; the L1 pre-training keeps the length it started with."""

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict(),
                "disc": self.disc.state_dict(), "opt_d": self.opt_d.state_dict(), "pretrain": self.pretrain}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.disc.load_state_dict(state["disc"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.pretrain = state.get("pretrain", self.pretrain)


def split(records: list[SourceRecord], residue: int) -> tuple[list[SourceRecord], list[SourceRecord]]:
    """Deterministic split by picture group (datasets.split_bucket): every version of a picture
    falls on one side. A tiny set still gets one image on each side."""
    if len(records) < 2:
        raise DatasetError(f"a dataset needs at least 2 images, this one has {len(records)}")
    train, val = [], []
    for r in records:
        (val if split_bucket(r) == residue else train).append(r)
    if not val:
        val.append(train.pop())
    if not train:
        train.append(val.pop())
    return train, val


def _load_lab(dataset: Path, records: list[SourceRecord]) -> list[np.ndarray]:
    out = []
    for r in records:
        bgr = cv2.imread(str(dataset / r.file), cv2.IMREAD_COLOR)
        if bgr is None:
            raise DatasetError(f"{dataset / r.file}: listed in sources.json but missing or unreadable")
        out.append(rgb_to_lab(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(np.float32) / 255))
    return out


def _batch(images: list[np.ndarray], size: int, crop: int, rng: random.Random) -> tuple[torch.Tensor, torch.Tensor]:
    lum, ab = [], []
    for _ in range(size):
        lab = images[rng.randrange(len(images))]
        h, w = lab.shape[:2]
        scale = rng.uniform(crop / min(h, w), 1.0) if min(h, w) > crop else crop / min(h, w)
        if scale != 1.0:
            lab = cv2.resize(lab, (max(crop, round(w * scale)), max(crop, round(h * scale))),
                             interpolation=cv2.INTER_AREA)
        h, w = lab.shape[:2]
        y, x = rng.randrange(h - crop + 1), rng.randrange(w - crop + 1)
        patch = lab[y:y + crop, x:x + crop]
        if rng.random() < 0.5:
            patch = patch[:, ::-1]
        lum.append(patch[..., 0] / 100.0)
        ab.append(patch[..., 1:].transpose(2, 0, 1))
    return (torch.from_numpy(np.stack(lum)[:, None].astype(np.float32)),
            torch.from_numpy(np.ascontiguousarray(np.stack(ab)).astype(np.float32)))


def _center(lab: np.ndarray, crop: int) -> np.ndarray:
    h, w = lab.shape[:2]
    s = min(h, w)
    lab = lab[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    return cv2.resize(lab, (crop, crop), interpolation=cv2.INTER_AREA)


@torch.no_grad()
def evaluate(model: torch.nn.Module, val: list[np.ndarray], device: torch.device, crop: int = 256) -> dict[str, float]:
    """Mean ab L1 and RGB PSNR on centre crops, with the gray baseline (ab = 0) beside them."""
    model.eval()
    l1, ours, gray = [], [], []
    for lab in val:
        lab = _center(lab, crop)
        lum = torch.from_numpy(lab[..., 0] / 100.0)[None, None].float().to(device)
        ab = model(lum)[0].permute(1, 2, 0).float().cpu().numpy()
        truth = lab_to_rgb(lab[..., 0], lab[..., 1:], np.uint8)
        l1.append(float(np.abs(ab - lab[..., 1:]).mean()))
        ours.append(psnr(lab_to_rgb(lab[..., 0], ab, np.uint8), truth))
        gray.append(psnr(lab_to_rgb(lab[..., 0], np.zeros_like(ab), np.uint8), truth))
    return {"val_ab_l1": float(np.mean(l1)), "val_psnr": float(np.mean(ours)),
            "val_psnr_gray": float(np.mean(gray))}




def train(dataset: Path, out: Path, name: str, config: TrainConfig, command: str = "",
          log: Callable[[str], None] = print, progress: Callable[[int, int, float], None] | None = None) -> Path:
    """Train, checkpointing under ``out``; returns the path of the final ``out/NAME.pt``.
    ``progress(step, steps, loss)`` is called after every step (after its checkpoint, if any)."""
    device = pick_device(config.device)
    torch.manual_seed(config.seed)
    model, options = build_model(config.arch, config.arch_options)  # first: a bad weights file fails fast
    model.to(device)
    records = load_records(dataset)
    objective_name = architectures()[config.arch].objective
    config = replace(config, lr=config.lr or DEFAULT_LR[objective_name])
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "checkpoint.pt"
    identity = _run_identity(config, options, records)
    state = torch.load(ckpt, map_location=device, weights_only=False) if ckpt.is_file() else None  # our own file
    if state is not None:  # refused before any image is read
        _check_resume(ckpt, state.get("run"), identity)
    train_recs, val_recs = split(records, config.val_every_tenth)
    train_imgs, val_imgs = _load_lab(dataset, train_recs), _load_lab(dataset, val_recs)
    log(f"{len(train_imgs)} training images, {len(val_imgs)} held out; device {device}")
    frozen = config.freeze_encoder and options.get("pretrained") and hasattr(model, "encoder")
    if frozen:
        model.encoder.requires_grad_(False)
    if objective_name == "pix2pix":
        objective: _Objective = _Pix2Pix(model, config, device, options["ndf"])
    elif objective_name == "classification":
        objective = _Classification(model, config, device, train_imgs)
    else:
        objective = _Objective(model, config, device)
    rng = random.Random(config.seed)
    step, history, started = 0, [], time.time()
    before_resume = 0.0  # seconds the run had trained before this session
    extended: list[dict[str, int]] = []  # resumes that changed the total of steps

    if state is not None:
        objective.load_state_dict(state["objective"])
        rng.setstate(state["rng"])
        step, history, extended = state["step"], state["history"], state.get("extended", [])
        before_resume = state.get("seconds", 0.0)
        if state.get("encoder_source"):  # the weights the run started from, not today's file
            model.encoder_source = state["encoder_source"]
        log(f"resumed from step {step}")
        before = state.get("steps") or state["objective"].get("sched", {}).get("total_steps", config.steps)
        if before != config.steps and step < config.steps:
            objective.retarget(step)
            extended.append({"step": step, "steps_before": before, "steps_after": config.steps})
            log(f"the run now has {config.steps} steps, not {before}: the learning-rate schedule is laid over "
                f"the new total from step {step}")

    while step < config.steps:
        model.train()
        if frozen:
            model.encoder.eval()  # keep the pretrained BatchNorm statistics
        lum, ab = _batch(train_imgs, config.batch_size, config.crop, rng)
        loss = objective.step(lum.to(device), ab.to(device), step)
        step += 1
        if step % 25 == 0:
            log(f"step {step}/{config.steps} loss {loss:.4f} ({time.time() - started:.0f}s)")
        if step % config.eval_every == 0 or step == config.steps:
            figures = {"step": step, "train_loss": loss, **evaluate(model, val_imgs, device)}
            history.append(figures)
            log(json.dumps(figures))
        if step % config.checkpoint_every == 0 or step == config.steps:
            tmp = ckpt.with_suffix(".tmp")
            torch.save({"objective": objective.state_dict(), "rng": rng.getstate(), "step": step,
                        "history": history, "encoder_source": getattr(model, "encoder_source", None),
                        "steps": config.steps, "extended": extended, "run": identity,
                        "seconds": before_resume + time.time() - started}, tmp)
            os.replace(tmp, ckpt)
        if progress is not None:
            progress(step, config.steps, loss)

    confidence_low = _confidence_low(model, val_imgs, device)
    weights = out / f"{name}.pt"
    if weights.is_file():  # a run gone on with more steps: said, never silent
        log(f"replacing {weights.name} of the earlier run (sha256 {file_sha256(weights)}); the new card keeps "
            "its history")
    sha = save_weights(weights, config.arch, inference_options(options), model.state_dict())
    write_card(out / name, name, sha, config, records, train_recs, val_recs, history, command,
               before_resume + time.time() - started, str(device), confidence_low, getattr(model, "encoder_source", None), extended)
    return weights


@torch.no_grad()
def _confidence_low(model: torch.nn.Module, val: list[np.ndarray], device: torch.device) -> float | None:
    """For a model with a colour distribution: the 10th percentile of its confidence on the
    held-out images (centre crops, 256 px), below which archive outputs are flagged."""
    if not hasattr(model, "predict_with_confidence"):
        return None
    model.eval()
    conf = [float(model.predict_with_confidence(torch.from_numpy(_center(lab, 256)[..., 0] / 100.0)[None, None]
                                                .float().to(device))[1][0]) for lab in val]
    return float(np.percentile(conf, 10))


def write_card(stem: Path, name: str, sha: str, config: TrainConfig, records: list[SourceRecord],
               train_recs: list[SourceRecord], val_recs: list[SourceRecord], history: list[dict],
               command: str, seconds: float, device: str, confidence_low: float | None = None,
               encoder: dict[str, Any] | None = None, extended: list[dict[str, int]] | None = None) -> None:
    """Model card as JSON (machine-readable, checked at load) and Markdown (for people)."""
    by_origin: dict[str, dict[str, Any]] = {}
    for r in records:
        entry = by_origin.setdefault(r.origin, {"origin": r.origin, "origin_sha256": set(), "licences": set(), "images": 0})
        entry["images"] += 1
        entry["licences"].add(r.licence)
        entry["origin_sha256"].add(r.origin_sha256)
    sources = [{**e, "licences": sorted(e["licences"]), "origin_sha256": sorted(e["origin_sha256"])[:3]
                + ([f"... {len(e['origin_sha256']) - 3} more"] if len(e["origin_sha256"]) > 3 else [])}
               for e in by_origin.values()]
    listing = listing_sha256(records)
    card = {
        "name": name, "arch": config.arch, "weights_sha256": sha, "config": asdict(config),
        "training_command": command, "train_images": len(train_recs), "held_out_images": len(val_recs),
        # Every training image's sha256: evaluation refuses an image the model has seen.
        "train_sha256": sorted(r.sha256 for r in train_recs),
        "dataset_listing_sha256": listing, "sources": sources, "history": history,
        # The pretrained encoder's ImageNet weights (file name, sha256, origin), a source too.
        "encoder_weights": encoder,
        "extended": extended or [],  # resumes with a new total of steps (the schedule restarted there)
        "confidence_low": confidence_low,
        "seconds": round(seconds), "device": device, "software": {
            "colorize": __version__, "torch": torch.__version__, "python": platform.python_version()},
    }
    stem.with_suffix(".json").write_text(json.dumps(card, indent=1))
    last = history[-1] if history else {}
    rows = "\n".join(f"| {s['origin']} | {s['images']} | {', '.join(s['licences'])} |" for s in sources)
    figs = "\n".join(f"| {h['step']} | {h['train_loss']:.4f} | {h['val_ab_l1']:.2f} | {h['val_psnr']:.2f} | "
                     f"{h['val_psnr_gray']:.2f} |" for h in history)
    stem.with_suffix(".md").write_text(f"""# Model card: {name}

Architecture `{config.arch}`; weights sha256 `{sha}`. Predicts CIE Lab ab from L; outputs keep
the original full-resolution L. An algorithmic colorization: plausible colour, not the truth.

## Training
Command: `{command}`
Device {device}, {round(seconds)} s, {config.steps} steps of batch {config.batch_size}, crops {config.crop}px,
lr {config.lr}, objective `{architectures()[config.arch].objective}` (see colorize_core/training.py), options
`{json.dumps(config.arch_options)}`, encoder frozen: {config.freeze_encoder}.
{f"Pretrained encoder weights: `{encoder['file']}` ({encoder['origin']}), sha256 `{encoder['sha256']}`." if encoder else ""}
{len(train_recs)} training images, {len(val_recs)} held out (picture groups in split bucket {config.val_every_tenth} of 10);
dataset listing sha256 `{listing}` (every image's sha256 is in the dataset's sources.json).
{"".join(f"Resumed at step {e['step']} with {e['steps_after']} steps instead of {e['steps_before']}: the "
         "learning-rate schedule was laid over the new total from there. " for e in extended or [])}

## Sources
| origin | images | licences |
|---|---|---|
{rows}

## Figures on the held-out images (centre crops, 256 px)
| step | train loss | ab L1 | RGB PSNR | gray-baseline PSNR |
|---|---|---|---|---|
{figs}

Final: ab L1 {last.get('val_ab_l1', float('nan')):.2f}, PSNR {last.get('val_psnr', float('nan')):.2f} dB
against {last.get('val_psnr_gray', float('nan')):.2f} dB for the gray baseline.
""")
