"""Fixity checks: `colorize verify` and the verify-fixity flow read back every recorded output,
name what is missing, changed or unreadable, list unrecorded files, and record PREMIS events."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from sqlalchemy import select

from colorize_core.provenance import Event, Item, Output, ProvenanceStore, Shot
from tests.conftest import SAMPLES, small_archive
from tests.test_archive_flow import run_flow
from tests.test_cli import colorize

pytestmark = pytest.mark.slow


def _fixity_events(store: ProvenanceStore) -> list[Event]:
    with store.session() as s:
        return list(s.scalars(select(Event).where(Event.type == "fixity check").order_by(Event.id)))


def _done_outputs(store: ProvenanceStore) -> list[tuple[int, str, str]]:
    with store.session() as s:
        q = select(Item.id, Output.kind, Output.uri).join(Output).where(Item.status == "done").order_by(Output.id)
        return [tuple(row) for row in s.execute(q)]


def run_check(check, **kwargs):  # noqa: ANN001, ANN003, ANN201
    """A check flow's (verify, relocate) final state, and the summary it handed back, as the
    commands take it (flows.handback): a state from the API may carry no data."""
    from flows.handback import receiving

    with receiving() as received:
        state = check(**kwargs, return_state=True)
    return state, received.summary(state)


def _iiif_says(path: Path, label: str) -> dict[str, str]:
    """Per canvas (by its label, the item's path) of a IIIF manifest, its metadata value ``label``."""
    return {c["label"]["none"][0]: m["value"]["en"][0] for c in json.loads(path.read_text())["items"]
            for m in c["metadata"] if m["label"]["en"] == [label]}


def test_verify_reads_back_every_output_and_names_what_is_missing_changed_or_unrecorded(prefect_api, tmp_path):
    src, dest, db = tmp_path / "src", tmp_path / "dest", f"sqlite:///{tmp_path}/p.db"
    small_archive(src, "animals", "portraits", "still-life")
    env = {"PREFECT_API_URL": prefect_api}
    r = colorize("run", str(src), str(dest), "--db", db, "--json", env=env)
    assert r.returncode == 0, r.stderr
    first = json.loads(r.stdout[r.stdout.index("{"):])["job_id"]
    r = colorize("run", str(src), str(dest), "--db", db, "--json", env=env)   # everything skipped as done
    second = json.loads(r.stdout[r.stdout.index("{"):])
    assert second["counts"] == {"done": 0, "skipped": 5, "failed": 0}
    store = ProvenanceStore(db)
    outputs = _done_outputs(store)
    assert {kind for _, kind, _ in outputs} == {"colour", "thumb-original", "thumb-colour", "master", "access"}
    with store.session() as s:   # the film's stills (original and colour per shot), on its manifest page
        stills = sum(2 * len(sh.stills) for sh in s.scalars(select(Shot).where(Shot.item_id.is_not(None))))
    assert stills >= 2

    # All intact: every output counted, one success event per item, nothing unrecorded (the
    # manifests/ folder and the index are the system's own).
    r = colorize("verify", str(dest), "--db", db, "--chunk-size", "2", "--json", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    summary = json.loads(r.stdout[r.stdout.index("{"):])
    assert summary["items"] == 5 and summary["problems"] == []
    assert summary["counts"] == {"intact": len(outputs) + stills, "missing": 0, "changed": 0, "unreadable": 0}
    assert summary["unrecorded"] == {"files": [], "interrupted": [], "looked": True}
    events = _fixity_events(store)
    assert len(events) == 5 and {e.outcome for e in events} == {"success"}
    assert {e.job_id for e in events} == {first} and events[0].detail["algorithm"] == "SHA-256"
    # A rolling check: nothing is due a day after every item was checked.
    r = colorize("verify", str(dest), "--db", db, "--unchecked-for", "1", "--max-items", "3", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 item(s) (not checked since " in r.stdout and "at most 3), 0 output(s) read back" in r.stdout
    assert len(_fixity_events(store)) == 5

    # Damage: one colour rendition gone, one changed, one unreadable (a folder in its place), a
    # stray file beside them and one in the reserved manifests/ folder.
    colour = {Path(uri).name: Path(uri) for _, kind, uri in outputs if kind == "colour"}
    colour["astronaut.jpg"].unlink()
    with open(colour["chelsea cat.png"], "ab") as fh:
        fh.write(b"\0")
    colour["coffee-16bit.tif"].unlink()
    colour["coffee-16bit.tif"].mkdir()
    (dest / "animals" / "stray.jpg").write_bytes(b"not ours")
    (dest / "manifests" / "notes.txt").write_text("the system's own folder")

    # The second job skipped every item as done: it shows the first job's outputs, checked again.
    r = colorize("verify", "--job", second["job_id"], "--db", db, env=env)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"MISSING    {colour['astronaut.jpg']}" in r.stdout
    assert f"CHANGED    {colour['chelsea cat.png']}: recorded sha256" in r.stdout
    assert f"UNREADABLE {colour['coffee-16bit.tif']}: cannot read" in r.stdout
    assert "colour of portraits/astronaut.jpg (item " in r.stdout and f"job {first})" in r.stdout
    assert f"UNRECORDED {dest / 'animals' / 'stray.jpg'} (8 bytes)" in r.stdout and "notes.txt" not in r.stdout
    assert f"{len(outputs) + stills - 3} intact, 1 missing, 1 changed, 1 unreadable" in r.stdout
    failed = {e.item_id: e.detail["not_intact"] for e in _fixity_events(store)[5:] if e.outcome == "failure"}
    assert sorted(p["status"] for found in failed.values() for p in found) == ["changed", "missing", "unreadable"]
    assert len(_fixity_events(store)) == 10
    # Reviewers see it: the damaged items need attention on their job's page and on DEST's index.
    r = colorize("review", "list", first, "--db", db, "--json")
    flagged = {it["rel_path"] for it in json.loads(r.stdout) if "damaged" in it["attention"]}
    assert flagged == {"portraits/astronaut.jpg", "animals/chelsea cat.png", "still-life/coffee-16bit.tif"}
    index = json.loads((dest / "manifest.json").read_text())
    assert index["job"]["id"] == second["job_id"]
    assert sum("damaged" in it["attention"] for it in index["items"]) == 3
    assert "colour missing" in (dest / "manifests" / first / "manifest.html").read_text()
    # And its IIIF manifest, written again: each canvas says what the latest check found.
    found = _iiif_says(dest / "manifests" / first / "iiif.json", "Fixity check")
    assert len(found) == 5 and found["portraits/astronaut.jpg"].startswith("colour missing (")
    assert found["animals/chelsea cat.png"].startswith("colour changed (")
    assert found["still-life/coffee-16bit.tif"].startswith("colour unreadable (")
    assert sum(said.startswith("intact (") for said in found.values()) == 2

    # What the check recorded is in the job's PREMIS export, linked to the outputs it read.
    r = colorize("export", first, "--what", "premis", "--db", db)
    assert r.returncode == 0, r.stderr
    premis = (dest / "manifests" / first / "premis.xml").read_text()
    assert premis.count("<premis:eventType>fixity check</premis:eventType>") == 10

    # Usage errors: exit 2, with what the database does know.
    r = colorize("verify", str(tmp_path / "elsewhere"), "--db", db)
    assert r.returncode == 2 and "nothing is recorded done" in r.stderr and str(dest) in r.stderr
    r = colorize("verify", "--job", "no-such-job", "--db", db)
    assert r.returncode == 2 and "no job no-such-job" in r.stderr
    r = colorize("verify", "--db", db)
    assert r.returncode == 2 and "give DEST" in r.stderr
    assert len(_fixity_events(store)) == 10

    # Repair: the damaged items written again from their originals, each with its own
    # parameters; the old ones are linked to the new and no longer checked; nothing overwritten.
    # One original has gone from SOURCE meanwhile: recorded failed with the reason, never dropped.
    (src / "still-life" / "coffee-16bit.tif").rename(tmp_path / "coffee-16bit.tif")
    r = colorize("run", str(dest), "--redo-damaged", "--db", db, "--json", env=env)
    assert r.returncode == 1, r.stdout[-2000:] + r.stderr[-2000:]
    repair = json.loads(r.stdout[r.stdout.index("{"):])
    assert repair["counts"] == {"done": 2, "skipped": 0, "failed": 1}
    r = colorize("review", "list", repair["job_id"], "--db", db, "--json")
    gone = next(it for it in json.loads(r.stdout) if it["status"] == "failed")
    assert gone["rel_path"] == "still-life/coffee-16bit.tif" and "is no longer in the source" in gone["error"]
    r = colorize("verify", str(dest), "--db", db, "--json", env=env)
    assert r.returncode == 1
    assert [p["status"] for p in json.loads(r.stdout[r.stdout.index("{"):])["problems"]] == ["unreadable"]
    (tmp_path / "coffee-16bit.tif").rename(src / "still-life" / "coffee-16bit.tif")
    r = colorize("run", str(dest), "--redo-damaged", "--db", db, "--json", env=env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert json.loads(r.stdout[r.stdout.index("{"):])["counts"] == {"done": 1, "skipped": 0, "failed": 0}
    assert colour["astronaut.jpg"].is_file()                             # where it was missing
    assert colour["chelsea cat.png"].read_bytes().endswith(b"\0")      # the changed file is left as it was
    assert len(list((dest / "animals").glob("chelsea cat.*.png"))) == 1  # and the new one beside it
    with store.session() as s:
        kinds = {(e.type, e.job_id) for e in s.scalars(select(Event).where(Event.type.in_(["repair", "replaced"])))}
    assert {kind for kind, _ in kinds} == {"repair", "replaced"} and len({job for _, job in kinds}) == 2
    r = colorize("review", "list", first, "--db", db, "--json")
    assert not [it for it in json.loads(r.stdout) if "damaged" in it["attention"]]
    assert (dest / "manifests" / first / "manifest.html").read_text().count("Damaged; written again as item") == 3
    superseded = _iiif_says(dest / "manifests" / first / "iiif.json", "Superseded")
    assert sorted(superseded) == ["animals/chelsea cat.png", "portraits/astronaut.jpg", "still-life/coffee-16bit.tif"]
    assert all(said.startswith("damaged; written again as item ") for said in superseded.values())
    page = (dest / "manifests" / repair["job_id"] / "manifest.html").read_text()
    assert page.count("whose outputs a fixity check found damaged") == 2 and "written again from their originals" in page
    r = colorize("verify", str(dest), "--db", db, "--json", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    again = json.loads(r.stdout[r.stdout.index("{"):])
    assert again["items"] == 5 and again["problems"] == []
    assert [f["rel"] for f in again["unrecorded"]["files"]] == ["animals/stray.jpg"]
    # A write killed mid-way leaves its partial copy, hidden, beside its target: listed, kept
    # unless asked, never taken for an output.
    partial = dest / "portraits" / ".colorize-tmp-k2j4xq9a.jpg"
    partial.write_bytes(b"\xff\xd8 partial")
    r = colorize("verify", str(dest), "--db", db, env=env)
    assert r.returncode == 0 and (f"INTERRUPTED {partial} (10 bytes): the partial copy of a write that did not finish, "
                                  f"kept (--remove-interrupted removes it)") in r.stdout, r.stdout + r.stderr
    r = colorize("verify", str(dest), "--db", db, "--no-unrecorded", "--remove-interrupted", env=env)
    assert r.returncode == 2 and "--remove-interrupted needs" in r.stderr and partial.exists()
    r = colorize("verify", str(dest), "--db", db, "--remove-interrupted", "--json", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    found = json.loads(r.stdout[r.stdout.index("{"):])["unrecorded"]
    assert found["interrupted"] == [{"rel": "portraits/.colorize-tmp-k2j4xq9a.jpg", "uri": str(partial), "size": 10,
                                     "removed": True}]
    assert not partial.exists() and (dest / "portraits").is_dir()
    r = colorize("run", str(dest), "--redo-damaged", "--db", db, env=env)
    assert r.returncode == 2 and "no damaged items" in r.stderr


def test_verify_fixity_flow_on_s3_with_postgresql_fails_its_run_on_damage(prefect_api, s3_endpoint, bucket, pg_url):
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.fixity import verify_fixity

    client = boto3.client("s3", endpoint_url=s3_endpoint)
    for name in ("portraits/astronaut.jpg", "animals/chelsea-sepia.jpg"):
        client.put_object(Bucket=bucket, Key=f"scans/{name}", Body=(SAMPLES / name).read_bytes())
    dest = f"s3://{bucket}/colour"
    assert run_flow(source=f"s3://{bucket}/scans", dest=dest, db_url=pg_url)["counts"]["done"] == 2
    store = ProvenanceStore(pg_url)
    outputs = _done_outputs(store)

    state, summary = run_check(verify_fixity, dest=dest, db_url=pg_url, s3_endpoint=s3_endpoint)
    assert state.is_completed(), state.message
    assert summary["counts"]["intact"] == len(outputs) and summary["unrecorded"]["files"] == []

    client.delete_object(Bucket=bucket, Key="colour/portraits/astronaut.jpg")
    client.put_object(Bucket=bucket, Key="colour/animals/chelsea-sepia.jpg", Body=b"overwritten")
    client.put_object(Bucket=bucket, Key="colour/animals/stray.png", Body=b"x")
    client.put_object(Bucket=bucket, Key="colour/animals/.colorize-tmp-left", Body=b"x")  # hidden: not listed
    state, summary = run_check(verify_fixity, dest=dest, db_url=pg_url, s3_endpoint=s3_endpoint)
    assert state.is_failed() and "2 output(s) of 2 item(s)" in state.message and "1 missing, 1 changed" in state.message
    assert {p["uri"]: p["status"] for p in summary["problems"]} == {
        f"{dest}/portraits/astronaut.jpg": "missing", f"{dest}/animals/chelsea-sepia.jpg": "changed"}
    changed = next(p for p in summary["problems"] if p["status"] == "changed")
    assert changed["found_size"] == len(b"overwritten") and changed["recorded_size"] > 1000
    assert summary["unrecorded"]["files"] == [{"rel": "animals/stray.png", "uri": f"{dest}/animals/stray.png",
                                               "size": 1}]
    assert summary["unrecorded"]["interrupted"] == []   # S3 objects are put whole or not at all
    with get_client(sync_client=True) as api:
        arts = api.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["verify-fixity-problems"])))
    assert any(f"{dest}/portraits/astronaut.jpg" in a.data for a in arts)

    # While a job holds DEST, files it has not recorded yet would look unrecorded: not looked for.
    store.take_dest(dest, "job-writing-now", {"host": "elsewhere"}, stale_after=300)
    found = run_check(verify_fixity, dest=dest, db_url=pg_url, s3_endpoint=s3_endpoint)[1]["unrecorded"]
    assert found["looked"] is False and "job-writing-now is writing" in found["why"]
    store.release_dest(dest, "job-writing-now")


def test_a_thumbnail_already_in_dest_is_recorded_as_it_is_there(tmp_path):
    """Thumbnails are named by what they show and written once; one there already (made by
    another encoder version, say) is recorded with its own checksum, so a fixity check of the
    later item finds it intact."""
    import numpy as np

    from colorize_core.archive import THUMBS, write_thumbnail
    from colorize_core.storage import open_location

    dest = open_location(str(tmp_path))
    first = write_thumbnail(dest, np.zeros((32, 32, 3), np.uint8), name="a" * 24)
    again = write_thumbnail(dest, np.full((32, 32, 3), 200, np.uint8), name="a" * 24)
    assert again == first
    assert dest.digest(f"{THUMBS}/{'a' * 24}.jpg")[:2] == (first["sha256"], first["size"])


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_damaged_items_are_those_whose_latest_check_failed_and_that_nothing_replaced(backend, tmp_path, request):
    from colorize_core.errors import FixityError
    from colorize_core.fixity import EVENT, damaged, damaged_sources, repair_groups

    store = ProvenanceStore(request.getfixturevalue("pg_url") if backend == "postgresql" else f"sqlite:///{tmp_path}/p.db")
    jobs = {src: store.start_job(src, "/d", {}, "k" * 64, "default", "0" * 64, {}, None) for src in ("/a", "/b")}
    outcomes = {"damaged": ["failure"], "restored": ["failure", "success"], "redone": ["failure"],
                "replaced": ["success", "failure"], "unchecked": [], "elsewhere": ["failure"]}
    ids = {}
    for name, checks in outcomes.items():
        src = "/b" if name == "elsewhere" else "/a"
        item = Item(job_id=jobs[src], source_uri=f"{src}/{name}.jpg", rel_path=f"{name}.jpg", dest="/d", status="done",
                    params={"refine": "none"}, params_key="k" * 64, model_name="default", model_sha256="0" * 64)
        events = [Event(type=EVENT, outcome=o, agent="test") for o in checks]
        events += [Event(type=kind, outcome="success", agent="test") for kind in
                   {"redone": ["superseded"], "replaced": ["replaced"]}.get(name, [])]
        store.add_items([(item, events)])
        ids[name] = item.id
    assert [it.rel_path for it in damaged(store, "/d")] == ["damaged.jpg", "elsewhere.jpg"]
    assert damaged(store, "/elsewhere") == []
    assert damaged_sources(store, "/d") == ["/a", "/b"]
    [(settings, items)] = repair_groups(store, "/a", "/d")
    assert settings.refine == "none" and [it.id for it in items] == [ids["damaged"]]
    with pytest.raises(FixityError, match=r"2 from elsewhere: /a, /b"):
        repair_groups(store, "/c", "/d")
    with pytest.raises(FixityError, match=r"every output its latest fixity check read was intact"):
        repair_groups(store, "/a", "/elsewhere")


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_rolling_check_takes_the_items_not_checked_lately_up_to_a_cap(backend, tmp_path, request):
    from datetime import timedelta

    from colorize_core.fixity import EVENT, Scope, item_ranges
    from colorize_core.provenance import utcnow

    store = ProvenanceStore(request.getfixturevalue("pg_url") if backend == "postgresql" else f"sqlite:///{tmp_path}/p.db")
    job = store.start_job("/a", "/d", {}, "k" * 64, "default", "0" * 64, {}, None)
    now, ids = utcnow(), {}
    for name, days_ago in {"never": None, "last-month": 30, "last-week": 7, "yesterday": 1, "today": 0}.items():
        item = Item(job_id=job, source_uri=f"/a/{name}.jpg", rel_path=f"{name}.jpg", dest="/d", status="done",
                    params={}, params_key="k" * 64, model_name="default", model_sha256="0" * 64)
        events = [] if days_ago is None else [Event(type=EVENT, outcome="success", agent="test",
                                                     at=now - timedelta(days=days_ago, minutes=1))]
        store.add_items([(item, events)])
        ids[name] = item.id

    def due(days: float, cap: int | None = None) -> list[int]:
        ranges = item_ranges(store, Scope("/d", checked_before=now - timedelta(days=days)), 2, cap)
        return [i for first, last in ranges for i in sorted(ids.values()) if first <= i <= last]

    assert due(6) == [ids["never"], ids["last-month"], ids["last-week"]]
    assert due(0.5) == [ids["never"], ids["last-month"], ids["last-week"], ids["yesterday"]]
    assert due(60) == [ids["never"]]
    assert due(6, cap=2) == [ids["never"], ids["last-month"]]
    assert len(item_ranges(store, Scope("/d"), 2)) == 3   # without a cut-off: all five, two per range
