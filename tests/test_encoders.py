"""The pretrained encoders of unet-pretrained, against figures recorded from torchvision itself
(tests/torchvision_reference.py says how), and ResNet18/VGG16 weight files a user supplies."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from colorize_core import Colorizer
from colorize_core.errors import ModelError
from colorize_core.models.encoders import build_encoder
from colorize_core.weights import load_weights
from tests.torchvision_reference import REFERENCE, seeded_input, seeded_state

REF = json.loads(REFERENCE.read_text())["models"]


def torchvision_file(folder: Path, name: str, drop_head: bool = False) -> Path:
    """A weights file in torchvision's layout, named the way torchvision names its files (the
    first 8 hex digits of its sha256), filled with the reference's seeded weights."""
    layout = [(k, s, d) for k, s, d in REF[name]["layout"] if not (drop_head and k.startswith("classifier."))]
    tmp = folder / f"{name}.tmp"
    torch.save(seeded_state(layout), tmp)
    path = folder / f"{name}-{hashlib.sha256(tmp.read_bytes()).hexdigest()[:8]}.pth"
    tmp.rename(path)
    return path


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory) -> dict[str, Path]:  # noqa: ANN001
    folder = tmp_path_factory.mktemp("torchvision")
    # VGG16's classifier alone is 500 MB; the file is written without it (it is dropped at load).
    return {"resnet18": torchvision_file(folder, "resnet18"), "vgg16": torchvision_file(folder, "vgg16", True)}


@pytest.mark.parametrize("name", ["resnet18", "vgg16"])
def test_encoder_computes_torchvision_features_from_a_torchvision_weights_file(name, weight_files):
    encoder, source = build_encoder(name, pretrained=True, weights=str(weight_files[name]))
    assert source["sha256"] == hashlib.sha256(weight_files[name].read_bytes()).hexdigest()
    with torch.no_grad():
        feats, full = encoder.eval()(seeded_input())
    ours = ([] if full is None else [full]) + feats
    assert len(ours) == len(REF[name]["taps"])
    for got, want in zip(ours, REF[name]["taps"]):
        flat = got.flatten().double()
        idx = torch.linspace(0, flat.numel() - 1, len(want["samples"])).long()
        assert list(got.shape) == want["shape"]
        np.testing.assert_allclose(flat[idx].numpy(), want["samples"], rtol=1e-4, atol=1e-4)
        assert float(flat.mean()) == pytest.approx(want["mean"], rel=1e-4, abs=1e-5)
        assert float(flat.std()) == pytest.approx(want["std"], rel=1e-4)


def test_encoder_weights_that_do_not_fit_are_refused_with_the_reason(weight_files, tmp_path):
    with pytest.raises(ModelError, match="do not fit ResNet18Encoder: missing 120 key.*unexpected 26 key"):
        build_encoder("resnet18", True, str(weight_files["vgg16"]))
    renamed = tmp_path / "resnet18-deadbeef.pth"
    renamed.write_bytes(weight_files["resnet18"].read_bytes())
    with pytest.raises(ModelError, match="does not start with the deadbeef its name declares"):
        build_encoder("resnet18", True, str(renamed))
    text = tmp_path / "resnet18.pth"
    text.write_text("not weights")
    with pytest.raises(ModelError, match="not a PyTorch state dict"):
        build_encoder("resnet18", True, str(text))
    with pytest.raises(ModelError, match="not found"):
        build_encoder("vgg16", True, str(tmp_path / "absent.pth"))
    with pytest.raises(ModelError, match="not shipped with the project: give the torchvision weights file"):
        build_encoder("vgg16", True, None)


def test_train_unet_on_user_supplied_resnet18_weights_keeps_them_and_records_them(dataset, weight_files, tmp_path):
    cmd = [sys.executable, "-m", "colorize_cli.main", "train", str(dataset), str(tmp_path / "run"), "--name", "rn",
           "--arch", "unet-pretrained", "--encoder", "resnet18", "--steps", "2", "--batch-size", "2",
           "--crop", "64", "--device", "cpu"]
    r = subprocess.run([*cmd, "--encoder-weights", str(weight_files["resnet18"])], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    card = json.loads((tmp_path / "run" / "rn.json").read_text())
    assert card["encoder_weights"] == {"file": weight_files["resnet18"].name, "origin": "supplied by the user",
                                       "sha256": hashlib.sha256(weight_files["resnet18"].read_bytes()).hexdigest()}
    assert weight_files["resnet18"].name in (tmp_path / "run" / "rn.md").read_text()
    arch, options, state = load_weights(tmp_path / "run" / "rn.pt")
    # The model rebuilds without the user's file; the frozen encoder is the file's, unchanged
    # (but for the fp16 in which weights files store floats).
    assert (arch, options["encoder"], options["pretrained"], options["encoder_weights"]) == \
        ("unet-pretrained", "resnet18", False, None)
    supplied = torch.load(weight_files["resnet18"], weights_only=True)
    for key in ("conv1.weight", "layer4.1.bn2.running_var"):
        assert torch.equal(state[f"encoder.{key}"], supplied[key].half().float())
    out = Colorizer.load(str(tmp_path / "run" / "rn.pt"), device="cpu").colorize(np.full((40, 72), 128, np.uint8))
    assert out.shape == (40, 72, 3)

    # A file that does not fit is a usage error, before any data is read or anything written.
    cmd[5] = str(tmp_path / "bad")
    r = subprocess.run([*cmd, "--encoder", "vgg16", "--encoder-weights", str(weight_files["resnet18"])],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "do not fit VGG16Encoder" in r.stderr
    assert not (tmp_path / "bad").exists()
    r = subprocess.run([*cmd[:9], "autoencoder", "--encoder", "vgg16"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "has no pretrained encoder" in r.stderr


def test_training_flow_takes_the_encoder_and_its_weights_file(prefect_api, dataset, weight_files, tmp_path):
    from flows.training import train_colorizer

    result = train_colorizer(dataset=str(dataset), out=str(tmp_path / "run"), name="vgg", steps=2, batch_size=2,
                             crop=64, device="cpu", encoder="vgg16", encoder_weights=str(weight_files["vgg16"]))
    card = json.loads(Path(result["card"]).read_text())
    assert card["config"]["arch_options"]["encoder"] == "vgg16"
    assert card["encoder_weights"]["sha256"] == hashlib.sha256(weight_files["vgg16"].read_bytes()).hexdigest()
    colorizer = Colorizer.load(result["weights"], device="cpu")
    assert colorizer.options["encoder"] == "vgg16"
    assert colorizer.colorize(np.full((33, 65), 90, np.uint8)).shape == (33, 65, 3)
