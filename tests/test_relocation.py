"""Relocation: DEST copied to other storage; `colorize relocate` and the relocate-dest flow read
the copy back and point the provenance database's records at it, or refuse and change nothing."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from urllib.parse import quote

import boto3
import pytest
from sqlalchemy import func, select

from colorize_core.provenance import Event, Item, Job, Output, ProvenanceStore, Shot
from tests.conftest import SAMPLES, sidecar_xmp, small_archive
from tests.test_archive_flow import run_flow
from tests.test_cli import colorize
from tests.test_fixity import run_check

pytestmark = pytest.mark.slow


def _records(store: ProvenanceStore) -> dict[str, list]:
    """Every URI the records hold for a destination, and the events: to compare before and after."""
    with store.session() as s:
        return {"jobs": sorted(s.scalars(select(Job.dest))), "items": sorted(s.scalars(select(Item.dest))),
                "outputs": sorted(s.scalars(select(Output.uri))),
                "shots": sorted(json.dumps([sh.dest, sh.segments, sh.stills], sort_keys=True)
                                for sh in s.scalars(select(Shot))),
                "events": [(e.type, e.item_id) for e in s.scalars(select(Event).order_by(Event.id))]}


def _json(stdout: str) -> dict:
    return json.loads(stdout[stdout.index("{"):])


def test_relocate_follows_a_copied_dest_or_refuses_and_changes_nothing(prefect_api, tmp_path):
    src, old, db = tmp_path / "src", tmp_path / "colour", f"sqlite:///{tmp_path}/p.db"
    new = tmp_path / "nouvelle étagère"   # not ASCII: the records are rewritten by character, not byte
    small_archive(src, "animals", "portraits")
    env = {"PREFECT_API_URL": prefect_api}
    r = colorize("run", str(src), str(old), "--db", db, "--json", env=env)
    assert r.returncode == 0, r.stderr
    job = _json(r.stdout)["job_id"]
    assert colorize("export", job, "--what", "premis", "--db", db).returncode == 0
    store = ProvenanceStore(db)
    before = _records(store)
    assert len(before["outputs"]) > 8 and before["shots"] and all(u.startswith(f"{old}/") for u in before["outputs"])

    # Usage errors: exit 2, nothing changed.
    for args, said in [((str(tmp_path / "elsewhere"), str(new)), "nothing is recorded done"),
                       ((str(old), str(new)), "does not exist"),
                       ((str(old), str(old)), "where the records already point"),
                       ((str(old), str(old / "inner")), "one is inside the other")]:
        r = colorize("relocate", *args, "--db", db, env=env)
        assert r.returncode == 2 and said in r.stderr, (args, r.stderr)
    assert str(old) in colorize("relocate", str(tmp_path / "elsewhere"), str(new), "--db", db, env=env).stderr

    # A copy with an output missing and one changed: refused, and the records are as they were.
    shutil.copytree(old, new)
    colour = sorted(Path(u).relative_to(old) for u in before["outputs"] if Path(u).suffix in (".jpg", ".png")
                    and "manifests" not in u)
    (new / colour[0]).unlink()
    (new / colour[1]).write_bytes(b"half a copy")
    r = colorize("relocate", str(old), str(new), "--db", db, env=env)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"MISSING    {new / colour[0]}" in r.stdout and f"CHANGED    {new / colour[1]}: recorded sha256" in r.stdout
    assert "not relocated: nothing was changed" in r.stdout
    assert _records(store) == before
    assert store.dest_lease(str(old)) is None and store.dest_lease(str(new)) is None   # both given back

    # While a job holds DEST, no relocation: exit 1, naming the job.
    store.take_dest(str(old), "job-writing-now", {"host": "elsewhere"}, stale_after=300)
    r = colorize("relocate", str(old), str(new), "--db", db, env=env)
    assert r.returncode == 1 and "job-writing-now" in r.stderr
    store.release_dest(str(old), "job-writing-now")

    # Accepted as damaged: relocated; those two are recorded damaged at the new place.
    r = colorize("relocate", str(old), str(new), "--db", db, "--accept-damaged", "--json", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    summary = _json(r.stdout)
    assert summary["relocated"] and summary["moved"]["items_not_intact"] == 2 and summary["jobs"] == [job]
    after = _records(store)
    assert after["jobs"] == [str(new)] and set(after["items"]) == {str(new)}
    assert after["outputs"] == sorted(u.replace(str(old), str(new), 1) for u in before["outputs"])
    assert after["shots"] != before["shots"] and str(old) not in "".join(after["shots"])
    events = after["events"][len(before["events"]):]
    per_item = [(t, i) for t, i in events if i is not None]
    assert sorted({t for t, _ in per_item}) == ["fixity check", "transfer"]
    assert len(per_item) == 2 * summary["items"] and after["events"][:len(before["events"])] == before["events"]
    assert [t for t, i in events if i is None] == ["export", "export"]   # the PREMIS and the IIIF written again
    r = colorize("review", "list", job, "--db", db, "--json")
    flagged = {it["rel_path"] for it in json.loads(r.stdout) if "damaged" in it["attention"]}
    assert len(flagged) == 2
    # The views at the new place name it: the pages, the index and the PREMIS export written before.
    for page in ("manifest.json", f"manifests/{job}/manifest.json"):
        text = (new / page).read_text()
        assert str(new) in text and str(old) not in text
    premis = (new / "manifests" / job / "premis.xml").read_text()
    iiif = (new / "manifests" / job / "iiif.json").read_text()   # written again with the URL it had: DEST's
    assert f"file://{quote(str(new))}/" in iiif and f"file://{quote(str(old))}/" not in iiif
    assert premis.count("<premis:eventType>transfer</premis:eventType>") == summary["items"]
    assert f"file://{quote(str(old))}/" not in premis and f"file://{quote(str(new))}/" in premis
    # Stopped after its commit, before the views (or retried then): run again, it renders them.
    for page in ("manifest.json", f"manifests/{job}/manifest.json"):
        shutil.copy(old / page, new / page)
    r = colorize("relocate", str(old), str(new), "--db", db, env=env)
    assert r.returncode == 0 and f"{old} was relocated to {new} already (relocation " in r.stdout, r.stdout + r.stderr
    assert str(old) not in (new / "manifest.json").read_text()
    again = _records(store)   # nothing changed but the PREMIS and IIIF exports, written again and recorded
    assert again == {**after, "events": again["events"]} and again["events"] == [*after["events"], *[("export", None)] * 2]

    # The old place is no longer a destination: a job writing there (a schedule not updated yet)
    # would do everything again beside the files left there, so it is refused, naming the new one.
    r = colorize("verify", str(old), "--db", db, env=env)
    assert r.returncode == 2 and f"was relocated to {new} at " in r.stderr
    r = colorize("run", str(src), str(old), "--db", db, env=env)
    assert r.returncode == 2 and f"{old} was relocated to {new} at " in r.stderr and "write there" in r.stderr
    r = colorize("relocate", str(old), str(tmp_path / "other"), "--db", db, env=env)
    assert r.returncode == 2 and f"was relocated to {new}" in r.stderr
    r = colorize("jobs", "--dest", str(old), "--db", db)
    assert r.returncode == 0 and f"no jobs for {old} in {db}: it was relocated to {new} at " in r.stdout, r.stdout
    r = colorize("jobs", "--dest", str(new), "--db", db)
    assert job in r.stdout and f"-> {new}" in r.stdout
    # The new one is, and a run there skips what is done.
    r = colorize("run", str(src), str(new), "--db", db, "--json", env=env)
    assert r.returncode == 0 and _json(r.stdout)["counts"] == {"done": 0, "skipped": 4, "failed": 0}, r.stderr
    r = colorize("run", str(new), "--redo-damaged", "--db", db, "--json", env=env)
    assert r.returncode == 0 and _json(r.stdout)["counts"]["done"] == 2, r.stdout[-2000:] + r.stderr[-2000:]
    r = colorize("verify", str(new), "--db", db, "--json", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    checked = _json(r.stdout)   # the changed copy stays, recorded as the replaced item's
    assert checked["items"] == 4 and checked["problems"] == [] and checked["unrecorded"]["files"] == []
    assert (old / colour[0]).is_file()   # the old place is never written to or removed

    # Two destinations are never merged: a place that is one already is refused.
    (tmp_path / "other").mkdir()
    store.start_job(str(src), str(tmp_path / "other"), {}, "k" * 64, "default", "0" * 64, {}, None)
    r = colorize("relocate", str(new), str(tmp_path / "other"), "--db", db, env=env)
    assert r.returncode == 2 and "would merge two destinations" in r.stderr


def test_a_local_dest_relocated_to_s3_with_postgresql(prefect_api, s3_endpoint, bucket, pg_url, tmp_path):
    """The usual migration: a local DEST copied into a bucket (here with boto3, as `aws s3 sync`
    would), then relocated; the new place checks intact and nothing there is unrecorded."""
    from flows.fixity import verify_fixity
    from flows.relocation import relocate_dest

    src, old = tmp_path / "src", tmp_path / "colour"
    shutil.copytree(SAMPLES / "animals", src / "animals")
    assert run_flow(source=str(src), dest=str(old), db_url=pg_url)["counts"]["done"] == 2
    new = f"s3://{bucket}/archive/colour-é"
    state, summary = run_check(relocate_dest, old=str(old), new=new, db_url=pg_url, s3_endpoint=s3_endpoint)
    assert state.is_failed() and "nothing was changed" in state.message   # nothing copied yet: all missing
    assert summary["counts"]["intact"] == 0
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    for path in old.rglob("*"):
        if path.is_file():
            client.put_object(Bucket=bucket, Key=f"archive/colour-é/{path.relative_to(old)}", Body=path.read_bytes())
    state, summary = run_check(relocate_dest, old=str(old), new=new, db_url=pg_url, s3_endpoint=s3_endpoint,
                               chunk_size=1)
    assert state.is_completed(), state.message
    assert summary["problems"] == [] and summary["moved"]["items"] == summary["moved"]["transferred"] == 2
    store = ProvenanceStore(pg_url)
    with store.session() as s:
        uris = list(s.scalars(select(Output.uri)))
        events = [(e.type, e.outcome, e.detail) for e in s.scalars(select(Event).where(Event.type.in_(
            ["transfer", "fixity check"])).order_by(Event.id))]
    assert sorted((t, o) for t, o, _ in events) == [("fixity check", "success")] * 2 + [("transfer", "success")] * 2
    assert all(d["to"] == new for t, _, d in events if t == "transfer")
    assert uris and all(u.startswith(f"{new}/") for u in uris)
    shutil.rmtree(old)   # the old place gone: nothing refers to it
    from colorize_core.errors import RelocationError

    with pytest.raises(RelocationError, match="was relocated to"):   # a deployment's schedule still naming it
        run_flow(source=str(src), dest=str(old), db_url=pg_url)
    state, found = run_check(verify_fixity, dest=new, db_url=pg_url, s3_endpoint=s3_endpoint)
    assert state.is_completed(), state.message
    assert found["counts"]["intact"] == len(uris) and found["unrecorded"]["files"] == []
    page = json.loads(client.get_object(Bucket=bucket, Key="archive/colour-é/manifest.json")["Body"].read())
    assert page["job"]["dest"] == new and all(it["colour"]["uri"].startswith(new) for it in page["items"])


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_dest_relocated_away_is_refused_until_relocated_back(backend, tmp_path, request):
    from datetime import timedelta

    from colorize_core.errors import RelocationError
    from colorize_core.provenance import Relocation, utcnow

    url = request.getfixturevalue("pg_url") if backend == "postgresql" else f"sqlite:///{tmp_path}/p.db"
    store = ProvenanceStore(url)
    assert store.relocated_away("/a") is None
    t = utcnow()
    with store.session() as s:
        s.add(Relocation(id="r1", old="/a", new="/b", at=t, items=1, outputs=1, not_intact=0))
    assert store.relocated_away("/a").id == "r1" and store.relocated_away("/b") is None
    with pytest.raises(RelocationError, match="/a was relocated to /b at .* \\(relocation r1\\)"):
        store.check_not_relocated("/a")
    with store.session() as s:   # moved back later: /a is a destination again, /b is not
        s.add(Relocation(id="r2", old="/b", new="/a", at=t + timedelta(days=1), items=1, outputs=1, not_intact=0))
    assert store.relocated_away("/a") is None and store.relocated_away("/b").id == "r2"
    store.check_not_relocated("/a")
    # A source's folders move with it: a job reading /s/box-1 after /s moved is refused; a DEST's do not.
    with store.session() as s:
        s.add(Relocation(id="r3", kind="source", old="/s", new="/t", at=t, items=1, outputs=0, not_intact=0))
    assert store.relocated_away("/s/box-1", "source").id == "r3" and store.relocated_away("/s/box-1") is None
    assert store.relocated_away("/s") is None and store.relocated_away("/t/box-1", "source") is None
    with pytest.raises(RelocationError, match="/s/box-1 was relocated to /t .* read from there"):
        store.check_not_relocated("/d", "/s/box-1")


def test_relocate_source_follows_copied_originals_photos_films_and_frame_sequences(prefect_api, tmp_path):
    src, dest, db = tmp_path / "scans", tmp_path / "colour", f"sqlite:///{tmp_path}/p.db"
    new = tmp_path / "new store" / "scans"
    small_archive(src, "animals")
    (src / "film" / "reel-2").mkdir()
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10:duration=0.4",
                    str(src / "film" / "reel-2" / "f%04d.png")], check=True)
    (src / "film" / "reel-2" / "sequence.json").write_text('{"frame_rate": "10"}')
    (src / "animals" / "chelsea-sepia.xmp").write_text(sidecar_xmp("Chelsea"))   # part of the photo: read back too
    env = {"PREFECT_API_URL": prefect_api}
    r = colorize("run", str(src), str(dest), "--db", db, "--json", env=env)
    assert r.returncode == 0 and _json(r.stdout)["counts"]["done"] == 4, r.stdout[-2000:] + r.stderr[-2000:]
    store = ProvenanceStore(db)

    def sources() -> dict[str, list[str]]:
        with store.session() as s:
            return {"items": sorted(s.scalars(select(Item.source_uri))), "jobs": sorted(s.scalars(select(Job.source))),
                    "shots": sorted(s.scalars(select(Shot.source_uri)))}

    # Not while a job is reading it, or a folder in it (its records would name the old place after the move).
    (tmp_path / "other").mkdir()
    reading = store.start_job(str(src / "animals"), str(tmp_path / "other"), {}, "k" * 64, "default", "0" * 64, {},
                              None)
    store.take_dest(str(tmp_path / "other"), reading, {"host": "elsewhere"}, stale_after=300)
    new.mkdir(parents=True)
    r = colorize("relocate", "--source", str(src), str(new), "--db", db, env=env)
    assert r.returncode == 2 and f"job {reading} is reading {src} now" in r.stderr, r.stderr
    store.release_dest(str(tmp_path / "other"), reading)
    store.finish_job(reading, "completed")
    new.rmdir()

    before = sources()
    assert f"{src}/film/reel-2/" in before["items"] and before["shots"] and f"{src}/animals" in before["jobs"]

    # The copy with a frame of the sequence changed and a photo missing: refused, nothing changed.
    shutil.copytree(src, new)
    (new / "film" / "reel-2" / "f0002.png").write_bytes((new / "film" / "reel-2" / "f0001.png").read_bytes())
    (new / "animals" / "chelsea cat.png").unlink()
    (new / "animals" / "chelsea-sepia.xmp").write_text(sidecar_xmp("Which cat?"))
    r = colorize("relocate", "--source", str(src), str(new), "--db", db, env=env)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"CHANGED    {new}/film/reel-2/: recorded sha256" in r.stdout and "original of film/reel-2" in r.stdout
    assert f"MISSING    {new}/animals/chelsea cat.png" in r.stdout and "5 original(s) read back" in r.stdout
    assert f"CHANGED    {new}/animals/chelsea-sepia.xmp" in r.stdout
    assert "xmp-sidecar of animals/chelsea-sepia.jpg" in r.stdout
    assert sources() == before

    # Copied again, by a tool that gives the copies new modification times: relocated. Every record
    # of an original names the new place, and a job reading the old one is refused; one reading
    # the new place finds everything done, by the size and version read there: it reads nothing.
    shutil.rmtree(new)
    shutil.copytree(src, new, copy_function=shutil.copyfile)
    assert (new / "film" / "reel-2" / "f0001.png").stat().st_mtime_ns != \
        (src / "film" / "reel-2" / "f0001.png").stat().st_mtime_ns
    r = colorize("relocate", "--source", str(src), str(new), "--db", db, "--json", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    summary = _json(r.stdout)
    assert summary["counts"]["intact"] == 5 and summary["moved"]["transferred"] == 4   # 4 originals, a sidecar
    assert summary["moved"]["versions_taken"] == 4
    assert sources() == {k: sorted(u.replace(str(src), str(new), 1) for u in v) for k, v in before.items()}
    with store.session() as s:
        transfers = list(s.scalars(select(Event).where(Event.type == "transfer")))
    assert len(transfers) == 4 and {e.detail["object"] for e in transfers} == {"original"}
    assert str(new) in (dest / "manifest.json").read_text() and f'"{src}/' not in (dest / "manifest.json").read_text()
    r = colorize("run", str(src), str(dest), "--db", db, env=env)
    assert r.returncode == 2 and f"{src} was relocated to {new} at " in r.stderr and "read from there" in r.stderr
    r = colorize("run", str(new), str(dest), "--db", db, "--json", env=env)
    assert r.returncode == 0 and _json(r.stdout)["counts"] == {"done": 0, "skipped": 5, "failed": 0}, r.stderr
    with store.session() as s:
        job = s.scalar(select(Job.id).where(Job.source == str(new)).order_by(Job.started_at.desc()).limit(1))
        reasons = list(s.scalars(select(Item.reason).where(Item.job_id == job, Item.rel_path.not_like("%.xmp"))))
        read = s.scalar(select(func.count()).select_from(Event).where(Event.job_id == job, Event.type == "ingest"))
    assert len(reasons) == 4 and all("unchanged: same size and version" in why for why in reasons), reasons
    assert read == 0
    # A file changed at the new place since is read again, and done again: its version is not the one taken.
    (new / "animals" / "chelsea cat.png").write_bytes((src / "animals" / "chelsea cat.png").read_bytes())
    r = colorize("run", str(new), str(dest), "--db", db, "--json", env=env)
    assert r.returncode == 0 and _json(r.stdout)["counts"] == {"done": 0, "skipped": 5, "failed": 0}, r.stderr
    with store.session() as s:
        job = s.scalar(select(Job.id).where(Job.source == str(new)).order_by(Job.started_at.desc()).limit(1))
        reasons = sorted(s.scalars(select(Item.reason).where(Item.job_id == job)))
    assert sum("(same content)" in why for why in reasons) == 1, reasons
    r = colorize("relocate", "--source", str(src), str(new), "--db", db, env=env)
    assert r.returncode == 0 and "already" in r.stdout, r.stdout + r.stderr
    r = colorize("relocate", "--source", str(tmp_path / "elsewhere"), str(new), "--db", db, env=env)
    assert r.returncode == 2 and "no original under" in r.stderr and str(new) in r.stderr


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_relocate_records_one_check_per_item_whatever_the_number_of_damaged_ones(backend, tmp_path, request,
                                                                                  monkeypatch):
    """The events are recorded range by range, the damaged items' left out of the successes: no
    statement carries more ids than a range (SQLite's and PostgreSQL's limits on bound values)."""
    import colorize_core.relocation as relocation
    from colorize_core.fixity import Scope
    from colorize_core.storage import open_location

    url = request.getfixturevalue("pg_url") if backend == "postgresql" else f"sqlite:///{tmp_path}/p.db"
    store = ProvenanceStore(url)
    old, new = open_location(str(tmp_path / "old")), open_location(str(tmp_path / "new"))
    job = store.start_job("/src", old.uri, {}, "k" * 64, "default", "0" * 64, {}, None)
    rows = []
    for n in range(25):
        item = Item(job_id=job, source_uri=f"/src/{n}.jpg", rel_path=f"{n}.jpg", dest=old.uri, status="done",
                    params_key="k" * 64, model_name="default", model_sha256="0" * 64)
        item.outputs = [Output(kind="colour", uri=old.uri_of(f"box/{n}.jpg"), sha256="a" * 64, size=1)]
        rows.append((item, []))
    store.add_items(rows)
    with store.session() as s:
        ids = list(s.scalars(select(Item.id).order_by(Item.id)))
    damaged = [ids[3], ids[12], ids[13], ids[24]]
    problems = [{"item_id": i, "job_id": job, "source": "x", "kind": "colour", "uri": "u", "status": "missing"}
                for i in damaged]
    monkeypatch.setattr(relocation, "EVENT_RANGE", 10)
    moved = relocation.relocate(store, old, new, Scope(old.uri), problems)
    assert moved["items"] == moved["outputs"] == moved["transferred"] == 25 and moved["items_not_intact"] == 4
    with store.session() as s:
        checks = {e.item_id: e.outcome for e in s.scalars(select(Event).where(Event.type == "fixity check"))}
        counts = {t: s.scalar(select(func.count()).select_from(Event).where(Event.type == t))
                  for t in ("fixity check", "transfer")}
        uris = set(s.scalars(select(Output.uri)))
    assert len(checks) == 25 and counts == {"fixity check": 25, "transfer": 25}
    assert {i for i, outcome in checks.items() if outcome == "failure"} == set(damaged)
    assert uris == {new.uri_of(f"box/{n}.jpg") for n in range(25)}


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_relocated_originals_take_the_versions_read_at_the_new_place(backend, tmp_path, request, monkeypatch):
    """Each original read intact at the new place gives its version there to the done items of
    the same content (every DEST and parameter set), and to nothing else: not to its older content,
    not to skip records (history), not to an original not intact."""
    from colorize_core import relocation
    from colorize_core.storage import open_location

    url = request.getfixturevalue("pg_url") if backend == "postgresql" else f"sqlite:///{tmp_path}/p.db"
    store = ProvenanceStore(url)
    (tmp_path / "src").mkdir()
    (tmp_path / "new").mkdir()
    old, new = open_location(str(tmp_path / "src")), open_location(str(tmp_path / "new"))
    job = store.start_job(old.uri, "/d1", {}, "k" * 64, "default", "0" * 64, {}, None)

    def item(name: str, dest: str, sha: str, size: int, status: str = "done") -> tuple[Item, list]:
        return (Item(job_id=job, source_uri=old.uri_of(name), rel_path=name, dest=dest, status=status,
                     sha256=sha * 64, size=size, version_tag="old", params_key="k" * 64, model_name="default",
                     model_sha256="0" * 64), [])

    store.add_items([item("a.jpg", "/d1", "a", 10), item("a.jpg", "/d2", "a", 10),
                     item("a.jpg", "/d1", "a", 10, "skipped"), item("b.jpg", "/d1", "b", 5),
                     item("b.jpg", "/d1", "c", 6), item("c.jpg", "/d1", "e", 7)])
    with store.session() as s:
        a1, a2, a_skip, b_then, b_now, c = s.scalars(select(Item.id).order_by(Item.id))
    monkeypatch.setattr(relocation, "EVENT_RANGE", 1)   # a statement per original
    scope = relocation.SourceScope(old.uri)
    problems = [{"item_id": c, "job_id": job, "source": "c.jpg", "kind": "original", "uri": "u", "status": "missing"}]
    # The versions name the items in scope, each original's newest record (of a: its skip record).
    moved = relocation.relocate_source(store, old, new, scope, problems,
                                       versions=[[a_skip, "1700"], [b_now, "etag-2"]])
    assert moved["versions_taken"] == 2 and moved["transferred"] == 3
    with store.session() as s:
        tags = {i: tag for i, tag in s.execute(select(Item.id, Item.version_tag))}
        uris = set(s.scalars(select(Item.source_uri)))
        transfer = s.scalar(select(Event.detail).where(Event.type == "transfer", Event.item_id == a_skip))
    assert tags == {a1: "1700", a2: "1700", a_skip: "old", b_then: "old", b_now: "etag-2", c: "old"}
    assert uris == {new.uri_of(n) for n in ("a.jpg", "b.jpg", "c.jpg")}
    assert transfer["version_tags"].startswith("the new place's")
