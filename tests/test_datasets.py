"""Training sets: picture groups that keep every version of a picture on one side of the
held-out split, and an archive's own colour photographs indexed from a folder or S3."""

from __future__ import annotations

import io
import json
from pathlib import Path

import boto3
import cv2
import numpy as np
import skimage.data
import tifffile
from click.testing import CliRunner

from colorize_cli.main import cli
from colorize_core import datasets
from colorize_core.datasets import SourceRecord, near_duplicate_groups, split_bucket
from colorize_core.training import split
from tests.conftest import bad_inputs, encode, gray_photo


def _record(sha: str, group: str = "") -> SourceRecord:
    return SourceRecord(file=f"images/{sha[:6]}.png", sha256=sha, origin="t", origin_sha256=sha, path=sha[:6],
                        original_sha256=sha, licence="t", group=group)


def _hashes(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return datasets._dhash(gray), datasets._dhash(gray[:, ::-1])


def test_the_split_keeps_every_version_of_a_picture_on_one_side():
    rng = np.random.default_rng(0)
    shas = [f"{int(x):064x}" for x in rng.integers(0, 2**62, 200)]
    records = [_record(sha, group=f"picture-{i // 4}") for i, sha in enumerate(shas)]  # 50 pictures, 4 versions
    for residue in range(10):
        train, held = split(records, residue)
        assert {r.group for r in train}.isdisjoint({r.group for r in held})
        assert len(train) + len(held) == 200
    assert sum(len(split(records, r)[1]) for r in range(10)) == 200  # each group is held out under one residue
    # Datasets made before groups were recorded split by the image's own sha256, as they did.
    old = [_record(sha) for sha in shas]
    assert [split_bucket(r) for r in old] == [int(sha[:8], 16) % 10 for sha in shas]


def test_near_duplicates_other_sizes_and_mirror_images_are_one_picture():
    photos = [skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea(), skimage.data.rocket()]
    astronaut = photos[0]
    versions = [cv2.resize(astronaut, (200, 200), interpolation=cv2.INTER_AREA),  # another size
                np.ascontiguousarray(astronaut[:, ::-1]),                         # a mirror image
                np.clip(astronaut.astype(np.int16) + 12, 0, 255).astype(np.uint8)]  # brighter
    roots = near_duplicate_groups([_hashes(p) for p in photos + versions])
    assert roots[4:] == [0, 0, 0]
    assert len(set(roots[:4])) == 4  # different photographs stay apart


def _put_collection(s3_endpoint: str, bucket: str) -> dict[str, bytes]:
    sixteen = io.BytesIO()
    tifffile.imwrite(sixteen, skimage.data.coffee().astype(np.uint16) * 257, photometric="rgb")
    cat = skimage.data.chelsea()
    rgba = np.dstack([cat, np.full(cat.shape[:2], 255, np.uint8)])
    rgba[:, :40, 3] = 0  # a transparent margin, cut off
    files = {
        "colour/astronaut.jpg": encode(skimage.data.astronaut(), "JPEG", quality=92),
        "copies/astronaut.jpg": encode(skimage.data.astronaut(), "JPEG", quality=92),  # the same file again
        "colour/astronaut-small.jpg": encode(cv2.resize(skimage.data.astronaut(), (256, 256)), "JPEG"),
        "colour/scan16.tif": sixteen.getvalue(),
        "colour/cat.png": encode(rgba, "PNG"),
        "bw/camera.png": encode(gray_photo(size=200), "PNG"),
        "bw/truncated.jpg": bad_inputs()["truncated.jpg"],
        "notes.txt": b"scanned 1962\n",
    }
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    for key, data in files.items():
        s3.put_object(Bucket=bucket, Key=f"donated/{key}", Body=data)
    return files


def test_an_archives_colour_photos_from_s3_become_a_dataset_with_licence_groups_and_what_was_left_out(
        s3_endpoint, bucket, tmp_path):
    files = _put_collection(s3_endpoint, bucket)
    out = tmp_path / "ds"
    source = f"s3://{bucket}/donated"
    runner = CliRunner()
    r = runner.invoke(cli, ["dataset", str(out), "--from", source, "--licence", "CC-BY-4.0 (the donor)",
                            "--s3-endpoint", s3_endpoint])
    assert r.exit_code == 0, r.output
    assert f"    4  collection:{source}" in r.output
    assert "4 images of 3 pictures" in r.output
    records = {rec.path: rec for rec in datasets.load_records(out)}
    assert set(records) == {"colour/astronaut.jpg", "colour/astronaut-small.jpg", "colour/scan16.tif",
                            "colour/cat.png"}
    assert records["colour/astronaut-small.jpg"].group == records["colour/astronaut.jpg"].group
    for path, rec in records.items():
        assert rec.licence == "CC-BY-4.0 (the donor)" and rec.origin == f"collection:{source}"
        assert rec.original_sha256 == datasets._sha256(files[path])
        assert rec.sha256 == datasets._sha256((out / rec.file).read_bytes())
    cat = cv2.imread(str(out / records["colour/cat.png"].file))
    assert cat.shape[1] == skimage.data.chelsea().shape[1] - 40  # the transparent margin is cut off
    skipped = {s["path"]: s["reason"] for s in json.loads((out / "skipped.json").read_text())}
    assert skipped["bw/camera.png"] == "no colour (grayscale)"
    assert skipped["bw/truncated.jpg"].startswith("unreadable: truncated or corrupt JPEG")
    assert skipped["notes.txt"] == "not an image file (by its name)"
    assert skipped["copies/astronaut.jpg"] == "the same file: colour/astronaut.jpg is kept"
    assert "left out: unreadable" in r.output

    # Nothing is overwritten: a second run into the same folder is refused.
    again = runner.invoke(cli, ["dataset", str(out), "--from", source, "--licence", "x", "--s3-endpoint", s3_endpoint])
    assert again.exit_code == 2 and "already holds a dataset" in again.output
    assert runner.invoke(cli, ["dataset", str(tmp_path / "b"), "--from", source]).exit_code == 2  # no --licence

    # Training on it records the collection and its licence in the model card.
    r = runner.invoke(cli, ["train", str(out), str(tmp_path / "run"), "--name", "donor", "--steps", "2",
                            "--batch-size", "2", "--crop", "64", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    card = json.loads((tmp_path / "run" / "donor.json").read_text())
    assert [s["origin"] for s in card["sources"]] == [f"collection:{source}"]
    assert "CC-BY-4.0 (the donor)" in (tmp_path / "run" / "donor.md").read_text()


def test_a_folder_that_is_not_a_dataset_is_a_usage_error_before_anything_is_written(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(encode(skimage.data.astronaut(), "JPEG"))
    (folder / "b.jpg").symlink_to(tmp_path / "moved.jpg")   # a broken link is left out, with why
    runner = CliRunner()
    r = runner.invoke(cli, ["train", str(folder), str(tmp_path / "run"), "--steps", "2"])
    assert r.exit_code == 2 and "has no sources.json" in r.output and "--from FOLDER --licence" in r.output
    assert not (tmp_path / "run").exists()
    r = runner.invoke(cli, ["eval", str(folder), str(tmp_path / "eval")])
    assert r.exit_code == 2 and "has no sources.json" in r.output
    # A collection with fewer than two usable photographs says so, and lists what it left out.
    r = runner.invoke(cli, ["dataset", str(tmp_path / "ds"), "--from", str(folder), "--licence", "CC0"])
    assert r.exit_code == 2 and "1 usable image(s), a dataset needs at least 2" in r.output
    [left] = json.loads((tmp_path / "ds" / "skipped.json").read_text())
    assert left["path"] == "b.jpg" and left["reason"].startswith("not listed: a broken symbolic link to ")
    assert not (tmp_path / "ds" / "sources.json").exists()


def test_the_dataset_flow_builds_into_s3_and_training_reads_it_from_there(prefect_api, s3_endpoint, bucket, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.datasets import build_dataset
    from flows.training import train_colorizer

    _put_collection(s3_endpoint, bucket)
    out = f"s3://{bucket}/datasets/donor"
    summary = build_dataset(out=out, source=f"s3://{bucket}/donated", licence="CC0", s3_endpoint=s3_endpoint)
    assert summary["images"] == 4 and summary["pictures"] == 3
    assert summary["left_out"] == {"no colour (grayscale)": 1, "unreadable": 1, "not an image file (by its name)": 1,
                                   "the same file": 1}
    keys = {o["Key"] for o in boto3.client("s3", endpoint_url=s3_endpoint).list_objects_v2(
        Bucket=bucket, Prefix="datasets/donor/")["Contents"]}
    assert {"datasets/donor/sources.json", "datasets/donor/skipped.json"} <= keys and len(keys) == 6
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["dataset"])))
    assert any("4 images of 3 pictures" in a.data and "| unreadable | 1 |" in a.data for a in arts)

    # Never over an existing dataset; a licence without a source (or the reverse) is refused.
    state = build_dataset(out=out, source=f"s3://{bucket}/donated", licence="CC0", s3_endpoint=s3_endpoint,
                          return_state=True)
    assert state.is_failed() and "already holds a dataset" in state.message
    assert build_dataset(out=str(tmp_path / "x"), licence="CC0", return_state=True).is_failed()

    result = train_colorizer(dataset=out, out=str(tmp_path / "run"), name="donor", steps=2, batch_size=2, crop=64,
                             device="cpu", s3_endpoint=s3_endpoint)
    card = json.loads(Path(result["card"]).read_text())
    assert card["train_images"] + card["held_out_images"] == 4
