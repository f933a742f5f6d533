"""The registry's architectures and their training objectives: shapes, Zhang et al.'s bins,
soft encoding, rebalancing and annealed mean, pix2pix's adversarial phase."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data
import torch

from colorize_core import Colorizer
from colorize_core.models import architectures, build_model, zhang
from colorize_core.training import TrainConfig, _Classification, train

TRAINABLE = ["unet-pretrained", "pix2pix", "zhang-classifier", "autoencoder"]


@pytest.mark.parametrize("arch", TRAINABLE)
def test_every_architecture_maps_l_to_ab_of_the_same_size(arch):
    options = {"pretrained": False} if "pretrained" in architectures()[arch].defaults else {}
    net, _ = build_model(arch, options)
    with torch.no_grad():
        ab = net.eval()(torch.rand(2, 1, 64, 96))
    assert ab.shape == (2, 2, 64, 96)
    assert float(ab.abs().max()) <= 110.0


def _gamut_ab() -> np.ndarray:
    v = np.linspace(0, 1, 33, dtype=np.float32)
    rgb = np.stack(np.meshgrid(v, v, v, indexing="ij"), -1).reshape(-1, 1, 3)
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab).reshape(-1, 3)[:, 1:]


def test_zhang_bins_are_313_grid_points_covering_the_srgb_gamut():
    bins = zhang.ab_bins()
    assert bins.shape == (313, 2)
    assert np.all(bins % 10 == 0) and len({tuple(b) for b in bins}) == 313
    # Every sRGB colour's ab falls in the 10x10 cell of some bin (nearest bin within 5 on each axis).
    gamut = _gamut_ab()
    nearest = np.abs(gamut[:, None, :] - bins[None]).max(-1).min(1)
    assert nearest.max() <= 5.0 + 1e-3


def test_soft_encoding_spreads_over_the_five_nearest_bins():
    bins = torch.from_numpy(zhang.ab_bins())
    ab = torch.tensor([[30.0, -20.0], [33.0, -24.0]]).T.reshape(1, 2, 1, 2)
    target, nearest = zhang.soft_encode(ab, bins)
    assert torch.allclose(target.sum(1), torch.ones(1, 1, 2))
    assert ((target > 0).sum(1) == 5).all()
    on_bin = int(((bins - torch.tensor([30.0, -20.0])).abs().sum(1) == 0).nonzero())
    assert int(nearest[0, 0, 0]) == on_bin == int(target[0, :, 0, 0].argmax())
    assert float(target[0, on_bin, 0, 0]) > float(target[0, on_bin, 0, 1])  # the second is further from it


def test_rebalancing_weights_favour_rare_colours_with_expectation_one():
    bins = zhang.ab_bins()
    counts = np.ones(len(bins))
    gray = int(np.abs(bins).sum(1).argmin())
    counts[gray] = 10_000
    w = zhang.rebalance_weights(counts, 0.5)
    far = int(np.abs(bins).sum(1).argmax())
    assert w[gray] < 1.0 < w[far]
    # Normalised so that the weights' expectation under the smoothed prior is 1; with lambda = 1
    # (uniform prior only) every class weighs the same.
    assert np.allclose(zhang.rebalance_weights(counts, 1.0), 1.0)


def test_annealed_mean_lies_between_the_mean_and_the_mode():
    net = zhang.ZhangClassifier(width=8)
    bins = net.bins
    a = int(((bins - torch.tensor([40.0, 40.0])).abs().sum(1) == 0).nonzero())
    b = int(((bins - torch.tensor([-40.0, -40.0])).abs().sum(1) == 0).nonzero())
    logits = torch.full((1, 313, 1, 1), -20.0)
    logits[0, a], logits[0, b] = np.log(0.7), np.log(0.3)
    mean = (0.7 * bins[a] + 0.3 * bins[b])
    annealed = net.decode(logits, (1, 1))[0, :, 0, 0]
    net.temperature = 1.0
    assert torch.allclose(net.decode(logits, (1, 1))[0, :, 0, 0], mean, atol=1e-3)
    assert mean[0] < annealed[0] < 40.0  # pulled toward the mode, not all the way


def test_classification_objective_learns_a_colour():
    torch.manual_seed(0)
    net = zhang.ZhangClassifier(width=8)
    lab = np.zeros((64, 64, 3), np.float32)
    lab[..., 0] = np.random.default_rng(0).uniform(30, 70, (64, 64))
    lab[..., 1:] = (35.0, -25.0)
    objective = _Classification(net, TrainConfig(steps=60, lr=1e-2, weight_decay=0.0), torch.device("cpu"), [lab])
    lum = torch.from_numpy(lab[None, None, ..., 0] / 100.0)
    ab = torch.from_numpy(np.ascontiguousarray(lab[..., 1:].transpose(2, 0, 1))[None])
    for step in range(60):
        net.train()
        objective.step(lum, ab, step)
    with torch.no_grad():
        pred = net.eval()(lum).mean(dim=(2, 3))[0]
    assert torch.allclose(pred, torch.tensor([35.0, -25.0]), atol=6.0), pred


@pytest.mark.parametrize("arch", ["pix2pix", "zhang-classifier", "autoencoder"])
def test_each_objective_trains_resumes_and_writes_a_loadable_model(dataset, tmp_path, arch):
    config = TrainConfig(arch=arch, steps=4, batch_size=2, crop=64, eval_every=2, checkpoint_every=2)
    weights = train(dataset, tmp_path / "run", "m", config, command="test", log=lambda _s: None)
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["objective"]
    if arch == "pix2pix":  # L1 pre-training for 2 steps, then 2 adversarial: D's Adam took 2 steps
        moments = state["opt_d"]["state"]
        assert moments and all(int(s["step"]) == 2 for s in moments.values())
    lines: list[str] = []
    assert train(dataset, tmp_path / "run", "m", config, log=lines.append) == weights
    assert "resumed from step 4" in lines
    colorizer = Colorizer.load(str(weights), device="cpu")
    assert colorizer.arch == arch
    assert colorizer.colorize(skimage.data.camera()[:64, :96]).shape == (64, 96, 3)
