"""Exports for archive systems: IIIF Presentation 3, PREMIS 3 XML, W3C PROV-JSON."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from colorize_core.archive import JobSettings, plan, process_batch
from colorize_core.colorizer import Colorizer
from colorize_core.exports import PREMIS_NS, iiif_canvas, write_exports
from colorize_core.images import NOTE
from colorize_core.provenance import ProvenanceStore
from colorize_core.review import decide, decisions_of
from colorize_core.storage import open_location
from tests.conftest import SAMPLES, bad_inputs

BASE = "https://media.example.org/colour"


def _job(tmp_path, copy: bool = False):  # noqa: ANN001, ANN202
    """A job of two photos and a broken file, the first rejected; with ``copy`` the same photo
    in a second folder too (the same content in two places, as archives have)."""
    src = tmp_path / "src"
    (src / "box").mkdir(parents=True)
    for name in ("chelsea cat.png", "chelsea-sepia.jpg"):
        (src / "box" / name).write_bytes((SAMPLES / "animals" / name).read_bytes())
    if copy:
        (src / "copies").mkdir()
        (src / "copies" / "chelsea cat.png").write_bytes((SAMPLES / "animals" / "chelsea cat.png").read_bytes())
    (src / "broken.jpg").write_bytes(bad_inputs()["truncated.jpg"])
    store = ProvenanceStore(f"sqlite:///{tmp_path}/p.db")
    settings, colorizer = JobSettings(), Colorizer.load("default", device="cpu")
    s, d = open_location(str(src)), open_location(str(tmp_path / "dest"))
    job = store.start_job(s.uri, d.uri, settings.params(colorizer.sha256, "film"), "k", "default",
                          colorizer.sha256, {}, None)
    todo, _, _ = plan(s, d, store, job, settings, colorizer.sha256)
    process_batch(todo, s, d, store, job, settings, colorizer)
    store.finish_job(job, "completed_with_failures")
    done = [r for r in store.job_items(job) if r["status"] == "done"]
    decide(store, done[0]["id"], "rejected", "Bea Curator", "too warm", {"refine": "none"})
    return store, job, d


def _ids(node, found):  # noqa: ANN001, ANN202
    if isinstance(node, dict):
        if "id" in node:
            found.append(node["id"])
        for v in node.values():
            _ids(v, found)
    elif isinstance(node, list):
        for v in node:
            _ids(v, found)
    return found


def _language_maps_ok(node) -> bool:  # noqa: ANN001
    if isinstance(node, dict):
        for key in ("label", "summary", "value"):
            if key in node and isinstance(node[key], dict):
                if not all(isinstance(v, list) and all(isinstance(x, str) for x in v) for v in node[key].values()):
                    return False
        return all(_language_maps_ok(v) for v in node.values())
    if isinstance(node, list):
        return all(_language_maps_ok(v) for v in node)
    return True


def test_a_4k_scans_canvas_names_the_access_copys_own_size(tmp_path):
    """A film scanned at 4K full aperture: its canvas has the scan's size, the access copy (scaled
    to fit what players decode) its own, and a master its full size."""
    dest = open_location(str(tmp_path / "dest"))
    job = {"id": "j", "source": str(tmp_path / "src")}
    it = {"media_type": "film", "status": "done", "width": 4096, "height": 3112, "rel_path": "reel.mov",
          "sha256": "0" * 64, "model_name": "default", "model_sha256": "1" * 64, "decision": None,
          "thumbnails": {}, "film": {"media": {"duration": 2.0}}, "source_uri": str(tmp_path / "src/reel.mov"),
          "colour": {"uri": str(tmp_path / "dest/reel.mp4"), "kind": "access"}}
    canvas = iiif_canvas(it, 1, job, dest, BASE)
    body = canvas["items"][0]["items"][0]["body"]
    assert (canvas["width"], canvas["height"]) == (4096, 3112) and (body["width"], body["height"]) == (3032, 2304)
    it["colour"] = {"uri": str(tmp_path / "dest/reel.mkv"), "kind": "master"}
    body = iiif_canvas(it, 1, job, dest, BASE)["items"][0]["items"][0]["body"]
    assert (body["width"], body["height"], body["duration"]) == (4096, 3112, 2.0)


def test_iiif_manifest_structure(tmp_path):
    store, job, dest = _job(tmp_path)
    uris = write_exports(store, job, dest, ("iiif",), BASE)
    m = json.loads(open(uris["iiif"]).read())
    assert m["@context"] == "http://iiif.io/api/presentation/3/context.json" and m["type"] == "Manifest"
    assert m["id"] == f"{BASE}/manifests/{job}/iiif.json"
    assert NOTE in m["requiredStatement"]["value"]["en"][0]
    assert _language_maps_ok(m)
    ids = _ids(m, [])
    assert all(i.startswith("https://") for i in ids) and len(ids) == len(set(ids))
    assert len(m["items"]) == 2   # the two photos done; the broken one has no canvas
    for canvas in m["items"]:
        assert canvas["type"] == "Canvas" and isinstance(canvas["width"], int) and isinstance(canvas["height"], int)
        page = canvas["items"][0]
        assert page["type"] == "AnnotationPage"
        anno = page["items"][0]
        assert anno["type"] == "Annotation" and anno["motivation"] == "painting" and anno["target"] == canvas["id"]
        choice = anno["body"]
        assert choice["type"] == "Choice" and [b["label"]["en"][0].split(" ")[0] for b in choice["items"]] == [
            "Colorized", "Original"]
        colour = choice["items"][0]
        assert colour["type"] == "Image" and colour["id"].startswith(f"{BASE}/box/chelsea")
        assert (colour["width"], colour["height"]) == (canvas["width"], canvas["height"])
    reviews = [c["metadata"][2]["value"]["en"][0] for c in m["items"]]
    assert sorted(reviews) == ["not reviewed", "rejected"]


def test_premis_and_prov_exports(tmp_path):
    store, job, dest = _job(tmp_path)
    uris = write_exports(store, job, dest, ("premis", "prov"))
    root = ET.parse(uris["premis"]).getroot()
    q = lambda t: f"{{{PREMIS_NS}}}{t}"  # noqa: E731
    assert root.tag == q("premis") and root.get("version") == "3.0"
    kinds = [child.tag.split("}")[1] for child in root]
    assert kinds == sorted(kinds, key=["object", "event", "agent"].index)   # PREMIS's order
    items = store.job_items(job)
    n_outputs = sum(len(r["outputs"]) for r in items)
    assert kinds.count("object") == len(items) + n_outputs
    digests = {o.find(f"{q('objectCharacteristics')}/{q('fixity')}/{q('messageDigest')}").text
               for o in root.iter(q("object")) if o.find(f"{q('objectCharacteristics')}/{q('fixity')}") is not None}
    assert {r["sha256"] for r in items if r["sha256"]} <= digests
    agents = {a.find(f"{q('agentIdentifier')}/{q('agentIdentifierValue')}").text for a in root.iter(q("agent"))}
    event_agents = {e.find(f"{q('linkingAgentIdentifier')}/{q('linkingAgentIdentifierValue')}").text
                    for e in root.iter(q("event"))}
    assert event_agents <= agents and "person:Bea Curator" in agents
    types = [e.find(q("eventType")).text for e in root.iter(q("event"))]
    assert {"ingest", "colorize", "write", "review", "validate"} <= set(types)
    assert all(v.text.startswith(("file://", "s3://")) for v in root.iter(q("objectIdentifierValue")))

    from prov.model import ProvDocument

    doc = ProvDocument.deserialize(content=open(uris["prov"]).read(), format="json")
    records = doc.get_records()
    names = {type(r).__name__ for r in records}
    assert {"ProvEntity", "ProvActivity", "ProvAgent", "ProvDerivation", "ProvGeneration", "ProvUsage",
            "ProvAssociation"} <= names
    people = [r for r in records if type(r).__name__ == "ProvAgent" and "Bea" in str(r.identifier)]
    assert people


def test_exports_are_written_a_page_of_items_at_a_time_and_say_what_one_page_says(tmp_path, monkeypatch):
    """A nightly job over an archive has an item per original: PREMIS and PROV read its items a
    page at a time and the IIIF manifest reads its spooled manifest an item at a time, so what
    they hold does not grow with the job. Their documents do not depend on the page size."""
    from prov.model import ProvDocument

    from colorize_core import exports, provenance
    from colorize_core.manifest import build_manifest

    store, job, dest = _job(tmp_path, copy=True)
    done = [r["id"] for r in store.job_items(job) if r["status"] == "done"]
    decide(store, done[-1], "approved", "Bea Curator")   # her second decision: one agent
    read = lambda uris: {kind: Path(uri).read_bytes() for kind, uri in uris.items()}  # noqa: E731
    whole = read(write_exports(store, job, dest, ("iiif", "premis", "prov"), BASE))
    monkeypatch.setattr(exports, "in_chunks", lambda values, size: provenance.in_chunks(values, 1))
    monkeypatch.setattr(provenance, "IN_CHUNK", 1)   # and the manifest's items one at a time
    paged = read(write_exports(store, job, dest, ("iiif", "premis", "prov"), BASE))
    assert paged["iiif"] == whole["iiif"] and paged["premis"] == whole["premis"]

    manifest = build_manifest(store, job)   # the IIIF manifest as json.dumps of it held whole
    canvases = [c for n, it in enumerate(manifest["items"], 1)
                if (c := exports.iiif_canvas(it, n, manifest["job"], dest, BASE)) is not None]
    assert len(canvases) == 3
    assert whole["iiif"] == json.dumps({**exports.iiif_head(manifest["job"], dest, BASE, 3), "items": canvases},
                                       indent=1, ensure_ascii=False).encode()

    def unique_keys(pairs):  # noqa: ANN001, ANN202
        assert len({k for k, _ in pairs}) == len(pairs), "a key given twice"
        return dict(pairs)

    docs = [ProvDocument.deserialize(content=v["prov"].decode(), format="json") for v in (whole, paged)]
    assert docs[0] == docs[1]
    prov = json.loads(paged["prov"], object_pairs_hook=unique_keys)
    assert json.dumps(prov, indent=1, ensure_ascii=False).encode() == paged["prov"]   # laid out as json.dumps
    cat = store.job_items(job)[0]
    assert cat["rel_path"] == "box/chelsea cat.png"
    twice = prov["entity"][f"colorize:sha256-{cat['sha256']}"]   # one content, two places: two records
    assert sorted(r["prov:location"].rsplit("/", 2)[-2] for r in twice) == ["box", "copies"]
    assert prov["agent"]["colorize:person-Bea%20Curator"]["colorize:name"] == "Bea Curator"
    decisions = [k for k in prov["activity"] if "-review-" in k]
    associations = 1 + len(store.job_items(job)) + 2   # the job's, each item's, each decision's
    assert len(decisions) == 2 and len(prov["wasAssociatedWith"]) == associations


def test_a_decision_writes_the_iiif_manifest_again_with_the_urls_it_was_written_with(tmp_path):
    """The IIIF manifest shows each canvas's review decision: a decision taken after it was
    written renders it again, with the public URLs it was written with (recorded as the job's
    export event). A job whose DEST holds none gets none."""
    from sqlalchemy import select

    from colorize_core.exports import EXPORT
    from colorize_core.manifest import refresh_jobs
    from colorize_core.provenance import Event

    store, job, dest = _job(tmp_path)
    sources = "https://media.example.org/scans"
    uri = write_exports(store, job, dest, ("iiif",), BASE, sources)["iiif"]
    reviews = lambda m: sorted(c["metadata"][2]["value"]["en"][0] for c in m["items"])  # noqa: E731
    assert reviews(json.loads(Path(uri).read_bytes())) == ["not reviewed", "rejected"]
    def recorded() -> list[tuple[int | None, dict]]:
        with store.session() as s:
            return [(e.item_id, e.detail) for e in s.scalars(select(Event).where(Event.job_id == job,
                                                                                  Event.type == EXPORT))]

    written = (None, {"kind": "iiif", "uri": uri, "base_url": BASE, "source_base_url": sources})
    assert recorded() == [written]

    done = [r["id"] for r in store.job_items(job) if r["status"] == "done"]
    waiting = next(i for i in done if not decisions_of(store, [i]))   # the photo not yet decided
    decide(store, waiting, "approved", "Bea Curator")
    assert refresh_jobs(store, [job]) == {job: None}
    assert recorded() == [written, written]   # written again, recorded, with the same URLs
    m = json.loads(Path(uri).read_bytes())
    assert reviews(m) == ["approved", "rejected"] and m["id"] == f"{BASE}/manifests/{job}/iiif.json"
    originals = [c["items"][0]["items"][0]["body"]["items"][1]["id"] for c in m["items"]]
    assert all(o.startswith(f"{sources}/box/chelsea") for o in originals)

    Path(uri).unlink()   # none in DEST: none written
    refresh_jobs(store, [job])
    assert not Path(uri).exists() and len(recorded()) == 2


def test_cli_export_writes_all_three(tmp_path):
    store, job, _ = _job(tmp_path)
    r = subprocess.run([sys.executable, "-m", "colorize_cli.main", "export", job, "--db", store.url, "--base-url", BASE],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert [line.split(":")[0] for line in r.stdout.splitlines()] == ["iiif", "premis", "prov"]
    r = subprocess.run([sys.executable, "-m", "colorize_cli.main", "export", job, "--db", store.url, "--what", "pdf"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "unknown export" in r.stderr


def test_a_jobs_manifest_whose_own_write_failed_is_written_again_by_export(tmp_path):
    """A job that ended without its manifest (DEST full, S3 unreachable at its end: its items are
    recorded): `colorize export JOB --what manifest` writes its pages, and DEST's index as it is
    DEST's newest job; a job still running is refused (it writes its own)."""
    store, job, dest = _job(tmp_path)   # its items recorded, no manifest written
    pages = tmp_path / "dest" / "manifests" / job
    assert not (pages / "manifest.html").exists() and not (tmp_path / "dest" / "manifest.json").exists()
    r = subprocess.run([sys.executable, "-m", "colorize_cli.main", "export", job, "--db", store.url, "--what",
                        "manifest"], capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [f"manifest: {pages / 'manifest.html'}", f"manifest json: {pages / 'manifest.json'}",
                                     f"index: {tmp_path / 'dest' / 'manifest.html'}"]
    listed = json.loads((pages / "manifest.json").read_text())
    assert listed["job"]["id"] == job and len(listed["items"]) == 3
    assert json.loads((tmp_path / "dest" / "manifest.json").read_text())["job"]["id"] == job   # the index
    assert "Bea Curator" in (pages / "manifest.html").read_text()   # the decision taken meanwhile
    running = store.start_job(str(tmp_path / "src"), dest.uri, {}, "k", "default", "m" * 64, {}, None)
    r = subprocess.run([sys.executable, "-m", "colorize_cli.main", "export", running, "--db", store.url, "--what",
                        "manifest"], capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 2 and "still running" in r.stderr and not (tmp_path / "dest" / "manifests" / running).exists()
