"""The archive flow end to end under a real Prefect API: folders and S3, SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import boto3
import pytest
import tifffile
from PIL import Image
from sqlalchemy import func, select

from colorize_core.archive import JobSettings, plan, process_batch
from colorize_core.colorizer import Colorizer
from colorize_core.errors import JobStoppedError, StorageError
from colorize_core.exports import PREMIS_NS, write_exports
from colorize_core.manifest import build_manifest
from colorize_core.provenance import Event, Item, JobWatch, Output, ProvenanceStore
from colorize_core.storage import LocalLocation, open_location
from tests.conftest import SAMPLES, bad_inputs, colour_photo_bytes, sidecar_xmp, tricky_good_inputs

pytestmark = pytest.mark.slow
HOSTILE_NAME = "<img src=x onerror=alert(1)> & co.png"  # HTML in a file name (no "/" possible)


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    """The sample archive plus every bad and tricky input, and a photo already in colour."""
    src = tmp_path / "source"
    shutil.copytree(SAMPLES, src)
    for name, data in {**bad_inputs(), **tricky_good_inputs()}.items():
        (src / "odd" / name).parent.mkdir(parents=True, exist_ok=True)
        (src / "odd" / name).write_bytes(data)
    (src / "colour" / "astronaut-colour.jpg").parent.mkdir()
    (src / "colour" / "astronaut-colour.jpg").write_bytes(colour_photo_bytes())
    shutil.copy(src / "animals" / "chelsea cat.png", src / "animals" / HOSTILE_NAME)
    (src / "film").mkdir(exist_ok=True)
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10:duration=0.5",
                    str(src / "film" / "reel 1.mp4")], check=True)
    (src / "bag-info.txt").write_text("Source-Organization: Harbour Museum\n")   # beside the scans: skipped
    (src / "portraits" / "astronaut.xmp").write_text(sidecar_xmp("Eileen Collins, 1999"))   # its XMP sidecar
    (src / "links").mkdir()   # what a listing cannot give as a file: recorded, never dropped
    (src / "links" / "volume 2").symlink_to(tmp_path)               # skipped: not followed
    (src / "links" / "moved.tif").symlink_to(tmp_path / "nowhere.tif")   # failed: broken
    os.mkfifo(src / "links" / "pipe.jpg")                              # failed: no regular file
    return src


def run_flow(**kwargs):  # noqa: ANN003, ANN201
    from flows.archive import colorize_archive

    return colorize_archive(batch_size=4, **kwargs)


def test_flow_colorizes_good_items_records_bad_ones_and_goes_on(prefect_api, archive, tmp_path):
    dest, db = tmp_path / "dest", f"sqlite:///{tmp_path}/prov.db"
    summary = run_flow(source=str(archive), dest=str(dest), db_url=db)
    good = 6 + 4 + 1 + 1  # samples (5 photos, a film), tricky-but-valid inputs, the hostile file name, a film
    assert summary["counts"] == {"done": good, "skipped": 1 + 1 + 2, "failed": len(bad_inputs()) + 2}
    assert summary["status"] == "completed_with_failures"

    manifest = json.loads((dest / "manifest.json").read_text())
    assert manifest["schema"] == "colorize-manifest/1" and manifest["job"]["id"] == summary["job_id"]
    items = {it["rel_path"]: it for it in manifest["items"]}
    assert len(items) == good + 1 + 1 + 2 + len(bad_inputs()) + 2
    # A .jpg holding text (odd/notes.jpg) still fails; a photo's XMP sidecar goes into its rendition.
    assert items["bag-info.txt"]["status"] == "skipped" and "a document or metadata file" in items["bag-info.txt"]["reason"]
    assert items["portraits/astronaut.xmp"]["reason"].startswith("the XMP sidecar of portraits/astronaut.jpg")
    assert b"Eileen Collins, 1999" in Image.open(dest / "portraits" / "astronaut.jpg").info["xmp"]
    assert items["links/volume 2"]["status"] == "skipped" and items["links/volume 2"]["source_uri"].endswith("2/")
    assert "not followed" in items["links/volume 2"]["reason"]
    assert items["links/moved.tif"]["error_type"] == "NotFoundError"
    assert "broken symbolic link to " + str(tmp_path / "nowhere.tif") in items["links/moved.tif"]["error"]
    assert "not a regular file" in items["links/pipe.jpg"]["error"]
    film = items.pop("film/reel 1.mp4")
    assert film["status"] == "done" and film["media_type"] == "film" and film["film"]["media"]["frames"] == 5
    assert [r["kind"] for r in film["renditions"]] == ["master", "access"]
    assert [Path(r["uri"]).relative_to(dest).as_posix() for r in film["renditions"]] == ["film/reel 1.mkv",
                                                                                        "film/reel 1.mp4"]
    assert film["film"]["stills"] and film["film"]["shots"][0]["warping_error"] is not None
    assert not (dest / "manifests" / "segments").exists() or not list((dest / "manifests" / "segments").rglob("*.m*"))
    assert "empty file" in items["odd/empty.jpg"]["error"]
    assert "not a recognised image" in items["odd/notes.jpg"]["error"]
    assert "animated GIF" in items["odd/animated.gif"]["error"]
    assert items["odd/huge.png"]["error_type"] == "MediaTooLargeError"
    assert "truncated" in items["odd/truncated.jpg"]["error"]
    assert items["colour/astronaut-colour.jpg"]["status"] == "skipped"
    assert "already-colour" in items["colour/astronaut-colour.jpg"]["flags"]
    # Every done item: output at the same relative path, same size, checksum as recorded.
    assert items["film/two shots.mp4"]["film"]["media"]["cuts"] == [36]
    assert [st["frame"] for st in items["film/two shots.mp4"]["film"]["stills"]] == [18, 54]   # one per shot
    for rel, it in items.items():
        if it["status"] != "done" or it["media_type"] == "film":
            continue
        out = Path(it["colour"]["uri"])
        assert out.relative_to(dest).as_posix() == rel
        assert hashlib.sha256(out.read_bytes()).hexdigest() == it["colour"]["sha256"]
        assert hashlib.sha256((archive / rel).read_bytes()).hexdigest() == it["sha256"]
        assert Image.open(out).size == Image.open(archive / rel).size
        assert it["colourfulness"] > 0
    assert Image.open(dest / "odd/palette-alpha.png").mode == "RGBA"
    assert items["odd/master12.jp2"]["bit_depth"] == 12 and items["odd/master12.jp2"]["format"] == "JPEG2000"
    # Originals untouched: nothing written into the source.
    assert not list(archive.rglob(".colorize-tmp*"))
    assert items["portraits/astronaut.jpg"]["params"]["refine"] == "flood"
    html = (dest / "manifest.html").read_text()
    assert "<img src=x onerror" not in html and "&lt;img src=x onerror=alert(1)&gt; &amp; co.png" in html
    assert (dest / "manifests" / summary["job_id"] / "manifest.json").is_file()
    iiif = json.loads((dest / "manifests" / summary["job_id"] / "iiif.json").read_text())
    assert iiif["type"] == "Manifest" and len(iiif["items"]) == good   # a canvas per photo and film done
    assert {c["items"][0]["items"][0]["body"]["items"][0]["type"] for c in iiif["items"]} == {"Image", "Video"}

    store = ProvenanceStore(db)
    with store.session() as s:
        done = s.scalars(select(Item).where(Item.job_id == summary["job_id"], Item.status == "done")).all()
        assert len(done) == good
        for it in done:
            if it.media_type == "film":
                assert {o.kind for o in it.outputs} == {"master", "access", "thumb-original", "thumb-colour"}
                assert {e.type for e in it.events} >= {"ingest", "validate", "colorize", "temporal-smoothing",
                                                       "refine", "encode", "write"}
                continue
            assert len(it.model_sha256) == 64 and it.params["refine"] == "flood" and it.params_key
            assert {o.kind for o in it.outputs} == {"colour", "thumb-original", "thumb-colour"}
            assert {e.type for e in it.events} >= {"ingest", "colorize", "refine", "write"}
        failed = s.scalars(select(Item).where(Item.status == "failed")).all()
        assert all(f.error and f.error_type for f in failed)
        job = store.job(summary["job_id"])
        assert job.flow_run_id and job.software["torch"] and job.finished_at

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[job.flow_run_id])))
    kinds = {a.key: a for a in arts}
    assert kinds["colorize-archive-summary"].type == "table"
    assert summary["job_id"] in str(kinds["colorize-archive-summary"].data)
    assert f"manifests/{summary['job_id']}/manifest.html" in str(kinds["colorize-archive-manifest"].data)


def test_rerun_skips_items_already_done_and_force_never_overwrites(prefect_api, tmp_path, monkeypatch):
    dest, db = tmp_path / "dest", f"sqlite:///{tmp_path}/prov.db"
    first = run_flow(source=str(SAMPLES), dest=str(dest), db_url=db)
    assert first["counts"] == {"done": 6, "skipped": 0, "failed": 0}
    before = {p: p.read_bytes() for p in dest.rglob("*") if p.is_file() and "manifest" not in p.name}
    again = run_flow(source=str(SAMPLES), dest=str(dest), db_url=db)
    assert again["counts"] == {"done": 0, "skipped": 6, "failed": 0}
    manifest = json.loads((dest / "manifest.json").read_text())
    assert all(it["colour"] and it["done_in_job"] == first["job_id"] for it in manifest["items"])
    calls: list[int] = []   # the worker's COLORIZE_BATCH_PIXELS reaches its batches: one photo per model call
    predict = Colorizer.predict
    monkeypatch.setattr(Colorizer, "predict", lambda self, lums: calls.append(len(lums)) or predict(self, lums))
    monkeypatch.setenv("COLORIZE_BATCH_PIXELS", "1")
    forced = run_flow(source=str(SAMPLES), dest=str(dest), db_url=db, force=True)
    assert forced["counts"]["done"] == 6 and calls == [1] * 5
    monkeypatch.undo()
    for path, data in before.items():
        assert path.read_bytes() == data  # nothing overwritten
    keys = {it["media_type"]: it["params_key"][:8] for it in json.loads((dest / "manifest.json").read_text())["items"]}
    assert len(list(dest.rglob(f"*.{keys['photo']}.*"))) == 5, keys
    assert len(list(dest.rglob(f"*.{keys['film']}.*"))) == 2, keys   # the film's master and access copy
    # A different refinement is a different parameter set: done again, beside the others.
    other = run_flow(source=str(SAMPLES), dest=str(dest), db_url=db, refine="none")
    assert other["counts"]["done"] == 6


def test_interrupted_run_rerun_finishes_the_rest_without_duplicates(prefect_api, tmp_path):
    dest, db = tmp_path / "dest", f"sqlite:///{tmp_path}/prov.db"
    store = ProvenanceStore(db)
    settings = JobSettings()
    colorizer = Colorizer.load()
    src, dst = open_location(str(SAMPLES)), open_location(str(dest))
    # A job that crashed after its first batch: two items done, the job left "running".
    job_id = store.start_job(str(SAMPLES), str(dest), settings.params(colorizer.sha256, "film"),
                             settings.key(colorizer.sha256, "film"), "default", colorizer.sha256, {}, None)
    todo, _, _ = plan(src, dst, store, job_id, settings, colorizer.sha256)
    process_batch(todo[:2], src, dst, store, job_id, settings, colorizer)
    summary = run_flow(source=str(SAMPLES), dest=str(dest), db_url=db)
    assert summary["counts"] == {"done": 4, "skipped": 2, "failed": 0}
    with store.session() as s:
        per_source = s.execute(select(Item.source_uri, func.count()).where(Item.status == "done")
                               .group_by(Item.source_uri)).all()
        assert len(per_source) == 6 and all(n == 1 for _, n in per_source)
    outputs = [p for p in dest.rglob("*") if p.is_file() and "manifest" not in str(p.relative_to(dest))]
    assert len(outputs) == 5 + 2


def test_a_signal_at_a_tasks_very_start_is_recorded_as_the_cancellation_it_is(prefect_api, tmp_path, monkeypatch):
    """SIGTERM (Prefect cancelling the run) while Prefect is creating a task run: Prefect's own
    crash handling then raises "Task run is not set" in its place. The job is still recorded
    cancelled, not crashed, and gives DEST back; the run ends as the stop it was."""
    import signal

    import prefect.task_engine
    from prefect.exceptions import TerminationSignal

    create = prefect.task_engine._create_task_run_locally

    def signalled_at(task, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        if task.name == "plan-items":   # the signal lands while the run of plan-items is created
            raise TerminationSignal(signal.SIGTERM)
        return create(task, *args, **kwargs)

    monkeypatch.setattr(prefect.task_engine, "_create_task_run_locally", signalled_at)
    from flows.archive import colorize_archive

    # Prefect passes a SIGTERM it stopped a flow for on to the handler it found: here, not the
    # default (which would end pytest), one that notes it.
    passed_on: list[int] = []
    before = signal.signal(signal.SIGTERM, lambda signum, frame: passed_on.append(signum))
    dest, db = tmp_path / "dest", f"sqlite:///{tmp_path}/prov.db"
    try:
        with pytest.raises(TerminationSignal):
            colorize_archive(source=str(SAMPLES), dest=str(dest), db_url=db)
    finally:
        signal.signal(signal.SIGTERM, before)
    store = ProvenanceStore(db)
    [job] = store.jobs()
    assert job["status"] == "cancelled" and store.dest_lease(str(dest)) is None
    assert passed_on == [signal.SIGTERM]   # the process ends as a SIGTERM'd one would


def test_retried_batch_does_not_record_items_twice(tmp_path):
    db = f"sqlite:///{tmp_path}/prov.db"
    store, settings, colorizer = ProvenanceStore(db), JobSettings(), Colorizer.load()
    src, dst = open_location(str(SAMPLES)), open_location(str(tmp_path / "dest"))
    job_id = store.start_job("s", "d", {}, "k", "default", colorizer.sha256, {}, None)
    todo, _, _ = plan(src, dst, store, job_id, settings, colorizer.sha256)
    first = process_batch(todo, src, dst, store, job_id, settings, colorizer)
    retry = process_batch(todo, src, dst, store, job_id, settings, colorizer)
    assert len(first) == 5 and retry == []
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(Item).where(Item.job_id == job_id)) == 5


def test_xmp_sidecars_go_into_their_photos_renditions_and_an_edited_one_makes_its_photo_one_to_do_again(tmp_path):
    """``photo.xmp`` (Adobe's name) or ``photo.jpg.xmp`` (darktable's) beside a photo: its
    metadata goes into the colour rendition, and its version and content are part of the photo's.
    A sidecar that fits two photos goes into neither, with the reason; one that fits none is done
    as any other file (skipped: no image)."""
    src, dest = tmp_path / "source", tmp_path / "dest"
    (src / "box 1").mkdir(parents=True)
    shutil.copy(SAMPLES / "portraits" / "astronaut.jpg", src / "box 1" / "astronaut.jpg")
    (src / "box 1" / "astronaut.xmp").write_text(sidecar_xmp("Eileen Collins, 1999"))
    shutil.copy(SAMPLES / "animals" / "chelsea cat.png", src / "box 1" / "cat.png")
    shutil.copy(SAMPLES / "animals" / "chelsea-sepia.jpg", src / "box 1" / "cat.jpg")
    (src / "box 1" / "cat.png.xmp").write_text(sidecar_xmp("Chelsea"))
    (src / "box 1" / "cat.xmp").write_text(sidecar_xmp("Which cat?"))   # cat.png's or cat.jpg's: neither
    (src / "box 1" / "finding aid.xmp").write_text(sidecar_xmp("Box 1"))  # of no photo
    store, settings, colorizer = ProvenanceStore(f"sqlite:///{tmp_path}/prov.db"), JobSettings(), Colorizer.load()
    s, d = open_location(str(src)), open_location(str(dest))

    def run() -> tuple[str, list, dict]:
        job_id = store.start_job("s", "d", {}, "k", "default", colorizer.sha256, {}, None)
        todo, _, _ = plan(s, d, store, job_id, settings, colorizer.sha256)
        process_batch(todo, s, d, store, job_id, settings, colorizer)
        return job_id, todo, {it["rel_path"]: it for it in build_manifest(store, job_id)["items"]}

    job, todo, items = run()
    assert {e.rel: getattr(e, "xmp", None) for e in todo} == {
        "box 1/astronaut.jpg": "box 1/astronaut.xmp", "box 1/cat.png": "box 1/cat.png.xmp", "box 1/cat.jpg": None,
        "box 1/finding aid.xmp": None}
    carried = "the XMP sidecar of box 1/{}: its metadata is carried into that photo's colour rendition"
    assert {rel: it["reason"] for rel, it in items.items() if rel.endswith(".xmp") and it["status"] == "skipped"} == {
        "box 1/astronaut.xmp": carried.format("astronaut.jpg"), "box 1/cat.png.xmp": carried.format("cat.png"),
        "box 1/cat.xmp": ("an XMP sidecar that may be of box 1/cat.jpg or box 1/cat.png: carried into none; "
                          "name it after its photo (cat.jpg.xmp)"),
        "box 1/finding aid.xmp": ("not a photograph or film: a document or metadata file (.xmp), and its content "
                                  "is no image either")}
    assert [items[rel]["status"] for rel in ("box 1/astronaut.jpg", "box 1/cat.png", "box 1/cat.jpg")] == ["done"] * 3
    assert b"Eileen Collins, 1999" in Image.open(dest / "box 1" / "astronaut.jpg").info["xmp"]
    assert b"Chelsea" in Image.open(dest / "box 1" / "cat.png").info["xmp"]
    assert b"cat?" not in Image.open(dest / "box 1" / "cat.jpg").info["xmp"]
    side = (src / "box 1" / "astronaut.xmp").read_bytes()
    assert items["box 1/astronaut.jpg"]["xmp_sidecar"] == {"rel": "box 1/astronaut.xmp", "size": len(side),
                                                          "sha256": hashlib.sha256(side).hexdigest()}
    assert items["box 1/astronaut.jpg"]["notes"] == ["the XMP sidecar astronaut.xmp carried over"]
    assert items["box 1/cat.jpg"]["xmp_sidecar"] is None
    first = (dest / "box 1" / "astronaut.jpg").read_bytes()
    # PREMIS: the photo's events name its sidecar as a source too; PROV: the rendition derives from it.
    exports = write_exports(store, job, d, ("premis", "prov"))
    side_uri = s.uri_of("box 1/astronaut.xmp")
    premis = ET.parse(exports["premis"]).getroot()
    q = f"{{{PREMIS_NS}}}"
    sources = [{lo.findtext(f"{q}linkingObjectIdentifierValue") for lo in ev.iter(f"{q}linkingObjectIdentifier")
                if lo.findtext(f"{q}linkingObjectRole") == "source"} for ev in premis.iter(f"{q}event")]
    photo_uri = Path(s.uri_of("box 1/astronaut.jpg")).as_uri()
    assert [links for links in sources if photo_uri in links] == [{photo_uri, Path(side_uri).as_uri()}] * 5
    prov = json.loads(Path(exports["prov"]).read_text())
    side_id = "colorize:sha256-" + hashlib.sha256(side).hexdigest()
    out_id = "colorize:sha256-" + items["box 1/astronaut.jpg"]["colour"]["sha256"]
    assert prov["entity"][side_id]["colorize:kind"] == "xmp-sidecar"
    assert any(r["prov:generatedEntity"] == out_id and r["prov:usedEntity"] == side_id
               for r in prov["wasDerivedFrom"].values())

    again, todo, _ = run()   # unchanged: planning skips the photos as it always has
    assert [e.rel for e in todo] == ["box 1/finding aid.xmp"]
    with store.session() as session:   # the skip record names the sidecar too (a relocation reads it back)
        assert session.scalar(select(Item.media).where(Item.job_id == again, Item.rel_path == "box 1/astronaut.jpg")) \
            == {"xmp_sidecar": items["box 1/astronaut.jpg"]["xmp_sidecar"]}
    os.utime(src / "box 1" / "astronaut.xmp", ns=(0, 10**18))   # touched, not changed: read, and skipped
    _, todo, items = run()
    assert [e.rel for e in todo] == ["box 1/astronaut.jpg", "box 1/finding aid.xmp"]
    assert "(same content)" in items["box 1/astronaut.jpg"]["reason"]
    (src / "box 1" / "astronaut.xmp").write_text(sidecar_xmp("Eileen Collins at Kennedy, 1999"))   # catalogued again
    _, todo, items = run()
    assert items["box 1/astronaut.jpg"]["status"] == "done"
    out = Path(items["box 1/astronaut.jpg"]["colour"]["uri"])
    assert out.name.startswith("astronaut.") and out.name != "astronaut.jpg"   # beside the first, never over it
    assert b"Eileen Collins at Kennedy, 1999" in Image.open(out).info["xmp"]
    assert (dest / "box 1" / "astronaut.jpg").read_bytes() == first


def test_a_job_whose_manifest_cannot_be_written_says_so_and_how_to_write_it_later(prefect_api, tmp_path):
    """DEST refuses the manifest at the job's very end (here a file where its folder must be; a
    full disk alike): the items stay recorded, the flow fails naming the job and the command that
    writes the manifest later, and that command does once DEST takes it."""
    src, dest, db = tmp_path / "src", tmp_path / "dest", f"sqlite:///{tmp_path}/prov.db"
    src.mkdir()
    shutil.copy(SAMPLES / "portraits" / "astronaut.jpg", src / "astronaut.jpg")
    dest.mkdir()
    (dest / "manifests").write_bytes(b"in the way")
    with pytest.raises(StorageError, match=r"ended completed_with_failures, its items recorded, but its manifest "
                                           r"could not be written \(cannot write .*`colorize export (\S+) --what "
                                           r"manifest` writes it") as raised:
        run_flow(source=str(src), dest=str(dest), db_url=db)
    job = re.search(r"colorize export (\S+) --what", str(raised.value))[1]
    store = ProvenanceStore(db)
    assert [i["status"] for i in store.job_items(job)] == ["failed"]   # its thumbnails could not be written either
    (dest / "manifests").unlink()
    r = subprocess.run([sys.executable, "-m", "colorize_cli.main", "export", job, "--what", "manifest", "--db", db],
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    assert json.loads((dest / "manifests" / job / "manifest.json").read_text())["job"]["id"] == job


def test_a_bagit_bags_payload_is_verified_against_its_manifest_as_it_is_read(prefect_api, tmp_path):
    """A bag (RFC 8493) in SOURCE: each photo and film in its payload is checked against the
    strongest manifest as the job reads it. A file damaged since bagging fails; one the manifest
    leaves out is done, flagged for a reviewer; one listed and not there is recorded missing; a
    bag with no manifest fails, and its payload is done unchecked, flagged so. A manifest-*.txt that is no bag's is a file like any other."""
    src, dest = tmp_path / "source", tmp_path / "dest"
    bag = src / "accession 12"
    (bag / "data" / "reels").mkdir(parents=True)
    shutil.copy(SAMPLES / "portraits" / "astronaut.jpg", bag / "data" / "astronaut.jpg")
    shutil.copy(SAMPLES / "animals" / "chelsea cat.png", bag / "data" / "cat.png")
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10:duration=0.5",
                    str(bag / "data" / "reels" / "reel 1.mp4")], check=True)
    (bag / "data" / "reels" / "reel 2").mkdir()   # a frame sequence: each of its files is checked
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10:duration=0.3",
                    str(bag / "data" / "reels" / "reel 2" / "f%04d.png")], check=True)
    (bag / "data" / "reels" / "reel 2" / "sequence.json").write_text('{"frame_rate": "10"}')
    (bag / "bagit.txt").write_text("BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n")
    listed = ["astronaut.jpg", "cat.png", "reels/reel 1.mp4",
              *(f"reels/reel 2/{p.name}" for p in sorted((bag / "data" / "reels" / "reel 2").iterdir()))]
    for algorithm in ("sha512", "md5"):
        lines = [f"{hashlib.new(algorithm, (bag / 'data' / name).read_bytes()).hexdigest()}  data/{name}"
                 for name in listed]
        (bag / f"manifest-{algorithm}.txt").write_text("\n".join([*lines, f"{'0' * 128}  data/lost.tif"
                                                                  if algorithm == "sha512" else ""]) + "\n")
    with open(bag / "data" / "cat.png", "ab") as damaged:   # after bagging
        damaged.write(b"\0")
    shutil.copy(SAMPLES / "animals" / "chelsea-sepia.jpg", bag / "data" / "added later.jpg")
    (src / "unbagged" / "data").mkdir(parents=True)
    (src / "unbagged" / "bagit.txt").write_text("BagIt-Version: 1.0\n")   # and no manifest
    shutil.copy(SAMPLES / "portraits" / "astronaut.jpg", src / "unbagged" / "data" / "astronaut.jpg")
    (src / "manifest-md5.txt").write_text("not a bag's\n")
    summary = run_flow(source=str(src), dest=str(dest), db_url=f"sqlite:///{tmp_path}/prov.db")
    items = {it["rel_path"]: it for it in json.loads((dest / "manifest.json").read_text())["items"]}
    outcome = {rel: (it["status"], it["error"] or it["reason"]) for rel, it in items.items()}
    here = "accession 12/"
    assert outcome[here + "data/cat.png"][0] == "failed" and items[here + "data/cat.png"]["error_type"] == \
        "ChecksumMismatchError"
    assert outcome[here + "data/cat.png"][1].startswith(
        f"{here}data/cat.png does not match its bag's {here}manifest-sha512.txt: sha512 ")
    assert outcome[here + "data/lost.tif"] == ("failed", f"listed in {here}manifest-sha512.txt but not in the bag: missing")
    assert outcome[here + "manifest-sha512.txt"] == ("skipped", ("the payload manifest of the BagIt bag accession 12: "
                                                     "the 8 files it lists are verified against it as they are read"))
    assert outcome[here + "manifest-md5.txt"] == ("skipped", ("a payload manifest of the BagIt bag accession 12: "
                                                  "manifest-sha512.txt, the strongest, is the one verified"))
    assert outcome[here + "bagit.txt"][0] == "skipped"
    assert outcome["unbagged/bagit.txt"] == ("failed", ("the BagIt bag unbagged has no payload manifest that can be "
                                                        "used (manifest-sha256.txt, ...): its payload is not verified"))
    assert outcome["manifest-md5.txt"][0] == "skipped" and "a document or metadata file" in outcome["manifest-md5.txt"][1]
    for rel in ("data/astronaut.jpg", "data/reels/reel 1.mp4", "data/reels/reel 2", "data/added later.jpg"):
        assert items[here + rel]["status"] == "done", items[here + rel]
    assert items[here + "data/added later.jpg"]["attention"] == ["not-in-bag-manifest"]
    # done unchecked, and flagged so for a reviewer
    assert items["unbagged/data/astronaut.jpg"]["status"] == "done"
    assert items["unbagged/data/astronaut.jpg"]["attention"] == ["not-in-bag-manifest"]
    assert summary["counts"] == {"done": 5, "skipped": 4, "failed": 3}
    with ProvenanceStore(f"sqlite:///{tmp_path}/prov.db").session() as session:
        checks = {rel: detail.get("verified") for rel, detail in session.execute(
            select(Item.rel_path, Event.detail).join(Event, Event.item_id == Item.id)
            .where(Event.type == "ingest", Event.outcome == "success"))}
    assert checks == {here + "data/astronaut.jpg": True, here + "data/reels/reel 1.mp4": True,
                      here + "data/reels/reel 2": True,
                      here + "data/added later.jpg": False, "unbagged/data/astronaut.jpg": False,
                      "manifest-md5.txt": None}


def test_a_batch_of_large_scans_goes_through_the_model_a_few_at_a_time(tmp_path, monkeypatch):
    """Decoded photos wait for the model together: a batch is cut short once they hold
    batch_pixels between them, so that a chunk of large scans is not all held at once; every
    photo is still done, and the model's ab is made full size only for the photo being finished."""
    store, settings, colorizer = ProvenanceStore(f"sqlite:///{tmp_path}/prov.db"), JobSettings(), Colorizer.load()
    calls: list[list[int]] = []
    predict = colorizer.predict

    def counted(lums: list) -> list:
        calls.append([lum.size for lum in lums])
        got = predict(lums)
        assert all(max(p.small_ab.shape[:2]) <= colorizer.work_size for p in got)
        return got

    monkeypatch.setattr(colorizer, "predict", counted)
    job_id = store.start_job("s", "d", {}, "k", "default", colorizer.sha256, {}, None)
    src, dst = open_location(str(SAMPLES)), open_location(str(tmp_path / "dest"))
    todo, _, _ = plan(src, dst, store, job_id, settings, colorizer.sha256)
    budget = 300_000
    process_batch(todo, src, dst, store, job_id, settings, colorizer, model_batch=8, batch_pixels=budget)
    assert sum(len(c) for c in calls) == len(todo) >= 4 and len(calls) > 1
    assert all(sum(c[:-1]) < budget for c in calls), calls   # the batch flushed as soon as it reached the budget
    assert [i["status"] for i in store.job_items(job_id)] == ["done"] * len(todo)


def test_a_batch_of_a_stopped_job_stops_before_its_next_photo(tmp_path, monkeypatch):
    """Ctrl-C, a cancellation, or another job taking DEST over: the job's row says it is no
    longer running, and its batches stop there, whatever process they run in."""
    monkeypatch.setattr(JobWatch, "EVERY", 0)   # read the job's status before every photo
    store, settings, colorizer = ProvenanceStore(f"sqlite:///{tmp_path}/prov.db"), JobSettings(), Colorizer.load()
    dest = tmp_path / "dest"
    job_id = store.start_job("s", "d", {}, "k", "default", colorizer.sha256, {}, None)

    class CancelledWhileReading(LocalLocation):   # the job is cancelled while its third photo is read
        reads = 0

        def read(self, rel: str) -> bytes:
            CancelledWhileReading.reads += 1
            if self.reads == 3:
                store.finish_job(job_id, "cancelled", if_running=True)
            return super().read(rel)

    src, dst = CancelledWhileReading(SAMPLES), open_location(str(dest))
    todo, _, _ = plan(src, dst, store, job_id, settings, colorizer.sha256)
    with pytest.raises(JobStoppedError, match=f"job {job_id} is cancelled"):
        process_batch(todo, src, dst, store, job_id, settings, colorizer, model_batch=2)
    # The first two went through the model before; the third, read, is neither written nor
    # recorded (not a failure of the photo: the next run does it), and the rest are not read.
    items = store.job_items(job_id)
    assert [i["status"] for i in items] == ["done", "done"] and CancelledWhileReading.reads == 3
    written = [p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()]
    assert sorted(p for p in written if not p.startswith("manifests/")) == sorted(e.rel for e in todo[:2])
    with pytest.raises(JobStoppedError):   # a batch that starts after: nothing at all
        process_batch(todo[2:], src, dst, store, job_id, settings, colorizer)
    assert len(store.job_items(job_id)) == 2


def test_s3_to_s3_with_postgresql_keeps_layout_and_refuses_dotdot_keys(prefect_api, s3_endpoint, bucket, pg_url):
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    keys = {"scans/box 1/ünïcode portrait.jpg": (SAMPLES / "portraits/astronaut.jpg").read_bytes(),
            "scans/box 2/deep/coffee.tif": (SAMPLES / "still-life/coffee-16bit.tif").read_bytes(),
            "scans/../../escape.jpg": (SAMPLES / "portraits/astronaut.jpg").read_bytes(),
            "scans/bad/empty.jpg": b"",
            "scans/box 2/deep/coffee.tif.xmp": sidecar_xmp("Coffee, 1952").encode()}   # its XMP sidecar
    for k, v in keys.items():
        client.put_object(Bucket=bucket, Key=k, Body=v)
    summary = run_flow(source=f"s3://{bucket}/scans", dest=f"s3://{bucket}/colour/run1", db_url=pg_url)
    assert summary["counts"] == {"done": 2, "skipped": 1, "failed": 2}
    written = sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"])
    outside = [k for k in written if not k.startswith(("scans/", "colour/run1/"))]
    assert outside == []
    assert "colour/run1/box 1/ünïcode portrait.jpg" in written
    assert "colour/run1/box 2/deep/coffee.tif" in written
    assert "colour/run1/manifest.json" in written and "colour/run1/manifest.html" in written
    manifest = json.loads(client.get_object(Bucket=bucket, Key="colour/run1/manifest.json")["Body"].read())
    errors = {it["rel_path"]: it for it in manifest["items"] if it["status"] == "failed"}
    assert errors["../../escape.jpg"]["error_type"] == "UnsafePathError"
    assert errors["bad/empty.jpg"]["error_type"] == "CorruptMediaError"
    tif = client.get_object(Bucket=bucket, Key="colour/run1/box 2/deep/coffee.tif")["Body"].read()
    assert b"Coffee, 1952" in tifffile.TiffFile(io.BytesIO(tif)).pages[0].tags[700].value
    with ProvenanceStore(pg_url).session() as s:
        assert s.scalar(select(func.count()).select_from(Item)) == 5
        assert s.scalar(select(func.count()).select_from(Output).where(Output.kind == "colour")) == 2
        assert s.scalar(select(func.count()).select_from(Event)) > 8
    again = run_flow(source=f"s3://{bucket}/scans", dest=f"s3://{bucket}/colour/run1", db_url=pg_url)
    assert again["counts"] == {"done": 0, "skipped": 3, "failed": 2}   # by size and ETags


def test_include_colour_colorizes_colour_inputs_from_their_l(prefect_api, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "colour.jpg").write_bytes(colour_photo_bytes())
    summary = run_flow(source=str(src), dest=str(tmp_path / "d"), db_url=f"sqlite:///{tmp_path}/p.db",
                       include_colour=True)
    assert summary["counts"]["done"] == 1
    item = json.loads((tmp_path / "d" / "manifest.json").read_text())["items"][0]
    assert item["status"] == "done" and "already-colour" in item["flags"]
