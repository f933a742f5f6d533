"""External runners, tested with models this project exports itself: onnxruntime for ONNX
(both input conventions) and OpenCV DNN for Zhang et al.'s Caffe layout, against the same
model run by torch; the descriptor's checksum guard; external models in the archive's CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from click.testing import CliRunner

from colorize_core import Colorizer, ModelError
from colorize_core.color import luminance
from colorize_core.models import build_model
from colorize_core.weights import available_models, resolve, save_weights
from colorize_cli.main import cli

LUM = luminance(skimage.data.astronaut()[::2, ::2])


def _random_model(folder: Path, arch: str, name: str) -> Path:
    """Weights of a randomly initialised model with non-trivial batch-norm statistics."""
    torch.manual_seed(1)
    net, options = build_model(arch, {"pretrained": False} if arch == "unet-pretrained" else {})
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.1, 0.1)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.pt"
    # fp32: the comparison is of runners, not of storage precision
    save_weights(path, arch, options, net.state_dict(), half=False)
    return path


def _ab(model: str, work_size: int = 256) -> np.ndarray:
    return Colorizer.load(model, device="cpu", work_size=work_size).predict_ab_small([LUM])[0][1]


@pytest.fixture(scope="module")
def zhang_pt(tmp_path_factory) -> Path:
    return _random_model(tmp_path_factory.mktemp("zhang"), "zhang-classifier", "zc")


def test_opencv_caffe_runner_gives_the_torch_models_colours(zhang_pt, tmp_path):
    result = CliRunner().invoke(cli, ["export-model", str(zhang_pt), str(tmp_path), "--format", "caffe"])
    assert result.exit_code == 0, result.output
    descriptor = tmp_path / "zc-caffe.json"
    card = json.loads(descriptor.read_text())
    assert card["runner"] == "opencv-caffe" and card["rh_scale"] == pytest.approx(1 / 0.38)
    assert np.load(tmp_path / card["cluster_centres"]).shape == (313, 2)
    prototxt = (tmp_path / card["prototxt"]).read_text()
    for layer in ('"data_l"', '"conv8_313"', '"conv8_313_rh"', '"class8_313_rh"', '"class8_ab"'):
        assert layer in prototxt
    colorizer = Colorizer.load(str(descriptor), device="cpu", work_size=224)
    assert colorizer.arch == "external:opencv-caffe" and colorizer.sha256 == card["weights_sha256"]
    ref, got = _ab(str(zhang_pt), 224), _ab(str(descriptor), 224)
    assert np.abs(ref).max() > 2.0  # a model that colours, so that agreement means something
    assert np.abs(ref - got).max() < 0.01
    # A second export under the same name replaces nothing.
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    again = CliRunner().invoke(cli, ["export-model", str(zhang_pt), str(tmp_path), "--format", "caffe"])
    assert again.exit_code == 2 and "already holds zc-caffe.prototxt" in again.output
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


@pytest.mark.parametrize("arch", ["unet-pretrained", "zhang-classifier"])
def test_onnx_runner_gives_the_torch_models_colours(tmp_path, arch):
    pt = _random_model(tmp_path / "pt", arch, "m")
    for convention, size, tolerance in (("l_unit", None, 0.01), ("gray_rgb", 256, 0.5)):
        args = ["export-model", str(pt), str(tmp_path / "x"), "--name", f"m-{convention}", "--input", convention]
        result = CliRunner().invoke(cli, args + (["--input-size", str(size)] if size else []))
        assert result.exit_code == 0, result.output
        got = _ab(str(tmp_path / "x" / f"m-{convention}.json"))
        assert np.abs(_ab(str(pt)) - got).max() < tolerance, convention


def test_caffe_export_is_refused_for_other_architectures(tmp_path):
    pt = _random_model(tmp_path, "autoencoder", "ae")
    result = CliRunner().invoke(cli, ["export-model", str(pt), str(tmp_path / "x"), "--format", "caffe"])
    assert result.exit_code == 2 and "zhang-classifier" in result.output


def test_an_external_model_with_changed_or_missing_files_is_refused(zhang_pt, tmp_path, monkeypatch):
    CliRunner().invoke(cli, ["export-model", str(zhang_pt), str(tmp_path), "--format", "caffe", "--name", "zc"])
    monkeypatch.setenv("COLORIZE_MODEL_DIRS", str(tmp_path))
    assert "zc" in available_models() and resolve("zc").runner == "opencv-caffe"
    model = tmp_path / "zc.caffemodel"
    model.write_bytes(model.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(ModelError, match="sha256"):
        resolve("zc")
    model.unlink()
    with pytest.raises(ModelError, match="missing"):
        resolve("zc")


def test_colorize_image_runs_an_exported_model(zhang_pt, tmp_path):
    CliRunner().invoke(cli, ["export-model", str(zhang_pt), str(tmp_path / "m"), "--name", "zc-onnx"])
    src = tmp_path / "in.png"
    from PIL import Image

    Image.fromarray(skimage.data.camera()[::4, ::4]).save(src)
    result = CliRunner().invoke(cli, ["image", str(src), str(tmp_path / "out.png"), "--model",
                                      str(tmp_path / "m" / "zc-onnx.json")])
    assert result.exit_code == 0, result.output
    assert np.asarray(Image.open(tmp_path / "out.png")).shape == (128, 128, 3)
