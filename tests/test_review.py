"""Review: list, approve, reject with a redo request, `run --redo-rejected`, and bad requests
that change nothing."""

from __future__ import annotations

import json
import shutil

import pytest
from sqlalchemy import func, select

from colorize_core.errors import ReviewError
from colorize_core.provenance import Event, Item, ProvenanceStore
from colorize_core.review import parse_redo
from tests.conftest import SAMPLES, bad_inputs
from tests.test_cli import colorize

pytestmark = pytest.mark.slow


def test_redo_parameters_are_checked():
    assert parse_redo(["refine=none", "work-size=320", "temporal=false", "strength=0.5"]) == {
        "refine": "none", "work_size": 320, "temporal": False, "strength": 0.5}
    for bad, text in (("refine=sparkly", "expected one of"), ("colour=red", "unknown parameter"),
                      ("refine", "key=value"), ("work_size=100", "multiple of 32"), ("strength=2", "from 0"),
                      ("model=nope", "unknown model")):
        with pytest.raises(ReviewError, match=text):
            parse_redo([bad])


def test_review_decisions_and_redo_of_rejected_items(prefect_api, tmp_path):
    src, dest, db = tmp_path / "src", tmp_path / "dest", f"sqlite:///{tmp_path}/p.db"
    shutil.copytree(SAMPLES / "animals", src)
    (src / "broken.jpg").write_bytes(bad_inputs()["truncated.jpg"])
    env = {"PREFECT_API_URL": prefect_api}
    r = colorize("run", str(src), str(dest), "--db", db, "--json", env=env)
    job = json.loads(r.stdout[r.stdout.index("{"):])["job_id"]

    r = colorize("review", "list", job, "--db", db, "--json")
    assert r.returncode == 0, r.stderr
    items = {it["rel_path"]: it for it in json.loads(r.stdout)}
    cat, sepia, broken = items["chelsea cat.png"]["id"], items["chelsea-sepia.jpg"]["id"], items["broken.jpg"]["id"]
    assert items["broken.jpg"]["attention"] == ["failed"]

    store = ProvenanceStore(db)

    def reviews() -> int:
        with store.session() as s:
            return s.scalar(select(func.count()).select_from(Event).where(Event.type == "review"))

    # Bad requests: clear messages, exit 2, nothing recorded.
    for args, text in ((["approve", "999999", "--by", "Ann"], "no item 999999"),
                       (["approve", str(broken), "--by", "Ann"], "no colour rendition"),
                       (["reject", str(cat), "--by", "Ann", "--note", "x", "--redo", "refine=sparkly"], "expected one of"),
                       (["reject", str(cat), "--by", "Ann", "--note", "x", "--redo", "colour=red"], "unknown parameter"),
                       (["list", "no-such-job"], "no job")):
        r = colorize("review", *args, "--db", db)
        assert r.returncode == 2 and text in r.stderr, (args, r.stderr)
    assert reviews() == 0
    r = colorize("run", "--redo-rejected", job, "--db", db, env=env)
    assert r.returncode == 2 and "no rejected items" in r.stderr

    r = colorize("review", "approve", str(cat), "--by", "Ann Archivist", "--note", "good fur", "--db", db)
    assert r.returncode == 0, r.stderr
    r = colorize("review", "reject", str(sepia), "--by", "Ann Archivist", "--note", "blotchy",
                 "--redo", "refine=none", "--db", db)
    assert r.returncode == 0 and "--redo-rejected" in r.stdout, r.stderr
    manifest = json.loads((dest / "manifest.json").read_text())
    by_rel = {it["rel_path"]: it for it in manifest["items"]}
    assert by_rel["chelsea cat.png"]["decision"] == "approved"
    assert by_rel["chelsea-sepia.jpg"]["review"][0] | {"at": None} == {
        "by": "Ann Archivist", "decision": "rejected", "note": "blotchy", "redo": {"refine": "none"},
        "requested_in_job": job, "at": None}
    assert "rejected" in by_rel["chelsea-sepia.jpg"]["attention"]
    assert "blotchy" in (dest / "manifest.html").read_text()
    old_output = dest / "chelsea-sepia.jpg"
    old_bytes = old_output.read_bytes()

    r = colorize("run", "--redo-rejected", job, "--db", db, "--json", env=env)
    assert r.returncode == 0, r.stderr
    redo = json.loads(r.stdout[r.stdout.index("{"):])
    assert redo["counts"] == {"done": 1, "skipped": 0, "failed": 0}
    assert old_output.read_bytes() == old_bytes   # the rejected output stays, the new one is beside it
    with store.session() as s:
        new = s.scalars(select(Item).where(Item.job_id == redo["job_id"])).one()
        assert new.rel_path == "chelsea-sepia.jpg" and new.params["refine"] == "none"
        assert {e.type: e.detail["item_id"] for e in new.events if e.type == "redo"} == {"redo": sepia}
        old = s.get(Item, sepia)
        assert [e.detail["item_id"] for e in old.events if e.type == "superseded"] == [new.id]
        assert new.outputs[0].uri != str(old_output)
    items = {it["rel_path"]: it for it in json.loads((dest / "manifest.json").read_text())["items"]}
    assert items["chelsea-sepia.jpg"]["redo"]["supersedes"]["item_id"] == sepia
    r = colorize("run", "--redo-rejected", job, "--db", db, env=env)
    assert r.returncode == 2 and "no rejected items" in r.stderr   # redone once, not again
    # DEST's index is the latest job's: a decision on the first job's item leaves it so.
    r = colorize("review", "reject", str(cat), "--by", "Bo", "--note", "second look: too orange", "--db", db)
    assert r.returncode == 0, r.stderr
    index = json.loads((dest / "manifest.json").read_text())
    assert index["job"]["id"] == redo["job_id"] and "too orange" not in (dest / "manifest.html").read_text()
    first = {it["rel_path"]: it for it in json.loads((dest / "manifests" / job / "manifest.json").read_text())["items"]}
    assert first["chelsea cat.png"]["decision"] == "rejected" and first["chelsea cat.png"]["review"][-1]["by"] == "Bo"
    r = colorize("review", "approve", str(new.id), "--by", "Bo", "--db", db)     # the latest job's item
    assert r.returncode == 0, r.stderr
    index = json.loads((dest / "manifest.json").read_text())
    assert index["job"]["id"] == redo["job_id"] and index["items"][0]["decision"] == "approved"


def test_outputs_a_model_is_unsure_of_are_flagged_for_review_first(prefect_api, tmp_path):
    from tests.test_external import _random_model

    model = _random_model(tmp_path / "m", "zhang-classifier", "unsure")
    card = {"name": "unsure", "confidence_low": 0.9}  # a distribution never that peaked: all flagged
    model.with_suffix(".json").write_text(json.dumps(card))
    src, dest, db = tmp_path / "src", tmp_path / "dest", f"sqlite:///{tmp_path}/p.db"
    shutil.copytree(SAMPLES / "animals", src)
    r = colorize("run", str(src), str(dest), "--db", db, "--model", str(model), "--json",
                 env={"PREFECT_API_URL": prefect_api})
    assert r.returncode == 0, r.stderr
    job = json.loads(r.stdout[r.stdout.index("{"):])["job_id"]
    items = json.loads(colorize("review", "list", job, "--db", db, "--json").stdout)
    done = [it for it in items if it["status"] == "done"]
    assert done and all("low-confidence" in it["attention"] for it in done)
    manifest = json.loads((dest / "manifests" / job / "manifest.json").read_text())
    assert all("low-confidence" in it["attention"] for it in manifest["items"] if it["status"] == "done")
    store = ProvenanceStore(db)
    with store.session() as s:
        details = s.scalars(select(Event.detail).where(Event.type == "colorize")).all()
    assert details and all(0.0 < d["confidence"] < 0.9 for d in details)
