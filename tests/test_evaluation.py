"""The evaluation: metrics against hand-computed values, the train/test guard, and the
evaluate-colorizer flow through `colorize eval` with its table, report and side-by-sides."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import skimage.data
from click.testing import CliRunner

from colorize_core.evaluation import (EvaluationError, check_disjoint, image_metrics, load_held_out,
                                      pixel_accuracy)
from colorize_core.training import TrainConfig, train
from colorize_core.weights import resolve
from colorize_cli.main import cli


def test_pixel_accuracy_is_the_area_under_the_cumulative_ab_error_curve():
    truth = np.zeros((4, 4, 2), np.float32)
    assert pixel_accuracy(truth, truth) == 1.0
    off = truth + np.float32([6.0, 8.0])  # every pixel 10 away: within for t = 10..150
    assert pixel_accuracy(off, truth) == pytest.approx(141 / 151)
    half = truth.copy()
    half[:2] = 200.0  # half the pixels beyond every threshold
    assert pixel_accuracy(half, truth) == pytest.approx(0.5)


def test_metrics_of_a_perfect_and_of_a_gray_output():
    truth = skimage.data.astronaut()[::4, ::4]
    perfect = image_metrics(truth, truth)
    assert perfect["ssim"] == pytest.approx(1.0) and perfect["ciede2000"] == 0.0 and perfect["pa"] == 1.0
    gray = np.repeat(skimage.color.rgb2gray(truth)[..., None] * 255, 3, axis=2).round().astype(np.uint8)
    worse = image_metrics(gray, truth)
    assert worse["psnr"] < perfect["psnr"] and worse["ciede2000"] > 5 and worse["colourfulness"] < 1
    assert worse["pa"] < 1.0


def test_a_model_trained_on_held_out_images_is_refused(dataset):
    held = load_held_out(dataset, residue=0)
    assert check_disjoint({"train_sha256": [r.sha256 for r in held.train_records]}, held).startswith("verified")
    with pytest.raises(EvaluationError, match="trained on 1 of the held-out"):
        check_disjoint({"name": "leaky", "train_sha256": [held.records[0].sha256]}, held)
    assert check_disjoint({}, held) == "unverified"


def test_eval_command_compares_models_with_baselines_and_writes_the_report(prefect_api, dataset, tmp_path):
    config = TrainConfig(arch="autoencoder", steps=2, batch_size=2, crop=64, eval_every=2, checkpoint_every=2)
    good = train(dataset, tmp_path / "good", "tiny", config, log=lambda _s: None)
    leaky = train(dataset, tmp_path / "leaky", "leaky", config, log=lambda _s: None)
    card = json.loads(leaky.with_suffix(".json").read_text())
    card["train_sha256"] += [r.sha256 for r in load_held_out(dataset).records]  # as if it had seen them
    leaky.with_suffix(".json").write_text(json.dumps(card))
    dest = tmp_path / "dest"

    result = CliRunner().invoke(cli, ["eval", str(dataset), str(dest), "--model", str(good), "--model", str(leaky),
                                      "--refine", "none,flood", "--device", "cpu"])
    assert result.exit_code == 1, result.output  # one model refused: the rest still evaluated
    assert "not evaluated: " in result.output and "held-out images" in result.output
    (run,) = (dest / "eval").iterdir()
    report = json.loads((run / "report.json").read_text())
    rows = [r["row"] for r in report["table"]]
    assert rows == ["baseline-gray", "baseline-mean-ab", "tiny", "tiny+flood"]
    by_row = {r["row"]: r for r in report["table"]}
    assert by_row["baseline-gray"]["colourfulness"] < 0.05  # neutral up to 8-bit rounding
    assert by_row["baseline-mean-ab"]["colourfulness"] > 1.0
    assert all(r["images"] == len(report["images"]) for r in report["table"])
    held = {r.sha256 for r in load_held_out(dataset).records}
    assert {i["sha256"] for i in report["images"]} == held
    assert report["models"][0]["disjoint"].startswith("verified") and "error" in report["models"][1]
    assert by_row["tiny+flood"]["disjoint"].startswith("verified")
    page = (run / "index.html").read_text()
    for image in report["images"]:
        for col in ["truth", *rows]:
            assert (run / "thumbs" / image["sha256"][:12] / f"{col}.jpg").is_file()
            assert f"thumbs/{image['sha256'][:12]}/{col}.jpg" in page.replace("&#x2B;", "+")
    assert "| tiny+flood |" in (run / "report.md").read_text()

    # Another "tiny" (other weights) is told apart, not pooled with the first; the same weights
    # given twice are evaluated once.
    other = train(dataset, tmp_path / "other", "tiny", replace(config, seed=1), log=lambda _s: None)
    again = CliRunner().invoke(cli, ["eval", str(dataset), str(dest), "--model", str(good), "--model", str(other),
                                     "--model", str(good), "--refine", "none", "--device", "cpu"])
    assert again.exit_code == 0, again.output
    runs = sorted((dest / "eval").iterdir())
    assert len(runs) == 2 and runs[0] == run  # a new report beside the first, nothing replaced
    report = json.loads((runs[1] / "report.json").read_text())
    shas = [resolve(str(w)).sha256[:8] for w in (good, other)]
    assert [r["row"] for r in report["table"]][2:] == [f"tiny@{shas[0]}", f"tiny@{shas[1]}"]
    assert all(r["images"] == len(report["images"]) for r in report["table"])

    bad = CliRunner().invoke(cli, ["eval", str(tmp_path / "missing"), str(dest)])
    assert bad.exit_code == 2 and "does not exist" in bad.output
    assert CliRunner().invoke(cli, ["eval", str(dataset), str(dest), "--model", "nope"]).exit_code == 2
    assert CliRunner().invoke(cli, ["eval", str(dataset), str(dest), "--refine", "blur"]).exit_code == 2
    assert len(list((dest / "eval").iterdir())) == 2


def test_a_card_without_checksums_is_checked_by_its_dataset_and_residue(dataset):
    held = load_held_out(dataset, residue=0, limit=1)
    card = {"name": "old", "dataset_listing_sha256": held.listing_sha256, "config": {"val_every_tenth": 0}}
    assert check_disjoint(card, held) == "verified (same dataset and residue)"
    with pytest.raises(EvaluationError, match="held out residue 3"):
        check_disjoint({**card, "config": {"val_every_tenth": 3}}, held)


def test_the_table_does_not_judge_a_model_whose_training_images_are_unknown():
    from colorize_core.evaluation import build_report, format_table

    images = [{"sha256": "0" * 64, "colourfulness": 40.0}]
    metrics = {"psnr": 30.0, "ssim": 0.9, "ciede2000": 2.0, "colourfulness": 40.0, "pa": 0.99}
    gray = {"psnr": 20.0, "ciede2000": 10.0}
    per_image = [{"row": row, **metrics, **(gray if row == "baseline-gray" else {})}
                 for row in ("baseline-gray", "old", "old+flood", "new")]
    models = [{"label": "old", "disjoint": "unverified"}, {"label": "new", "disjoint": "verified (training checksums)"}]
    table = format_table(build_report("r", "d", 0, images, models, per_image)["table"]).splitlines()
    assert table[3].startswith("| old |") and table[3].endswith("| not judged: training images unknown |")
    assert table[4].startswith("| old+flood |") and table[4].endswith("| not judged: training images unknown |")
    assert table[5].startswith("| new |") and table[5].endswith("| all |")


def test_models_sharing_a_name_get_distinct_rows_and_repeats_are_evaluated_once():
    from colorize_core.evaluation import model_labels

    labelled, notes = model_labels([("a/m.pt", "m", "11" * 32), ("b/m.pt", "m", "22" * 32), ("x", "x", "33" * 32),
                                    ("m2.pt", "m", "11" * 32), ("nope", None, None)])
    assert labelled == [("a/m.pt", "m@11111111"), ("b/m.pt", "m@22222222"), ("x", "x"), ("nope", "nope")]
    assert notes == ["m2.pt has the same weights as a/m.pt (sha256 111111111111...): evaluated once"]
