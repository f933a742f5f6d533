"""Provenance database on SQLite and on a real PostgreSQL: migrations, records, look-ups."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import inspect, text, update

from colorize_core.errors import DestinationBusyError, JobStoppedError, ProvenanceError
from colorize_core.provenance import (DestinationLease, DestLease, Event, Item, JobWatch, Output, ProvenanceStore,
                                      normalise_url, utcnow)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path) -> ProvenanceStore:  # noqa: ANN001
    if request.param == "sqlite":
        return ProvenanceStore(f"sqlite:///{tmp_path}/sub/dir/prov.db")
    return ProvenanceStore(request.getfixturevalue("pg_url"))


def _item(job_id: str, **kw) -> Item:  # noqa: ANN003
    base = dict(job_id=job_id, source_uri="s3://b/a.jpg", rel_path="a.jpg", dest="s3://b/out", size=10,
                version_tag="etag1", sha256="f" * 64, status="done", params={"refine": "flood"},
                params_key="k1", model_name="default", model_sha256="m" * 64)
    return Item(**{**base, **kw})


def test_migrations_create_the_schema_at_head(store):
    tables = set(inspect(store.engine).get_table_names())
    assert {"jobs", "items", "outputs", "events", "shots", "dest_leases", "relocations", "alembic_version"} <= tables
    with store.engine.connect() as c:
        assert c.execute(text("select version_num from alembic_version")).scalar() == "0004"
    ProvenanceStore(store.url)  # opening again is a no-op migration


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_processes_opening_a_new_database_at_once_migrate_it_once(kind, tmp_path, request):
    """Workers (or two `colorize run`) started together on an empty database: one creates the
    schema, the others wait for it and find it there."""
    url = f"sqlite:///{tmp_path}/new.db" if kind == "sqlite" else request.getfixturevalue("pg_url")
    start = time.time() + 4   # every process imported and waiting: they open the database together
    code = ("import sys, time; from colorize_core.provenance import ProvenanceStore; "
            "time.sleep(max(0, float(sys.argv[2]) - time.time())); ProvenanceStore(sys.argv[1])")
    procs = [subprocess.Popen([sys.executable, "-c", code, url, str(start)], stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, "\n".join(e[-600:] for e in errors)
    with ProvenanceStore(url).engine.connect() as c:
        assert c.execute(text("select version_num from alembic_version")).scalars().all() == ["0004"]


def test_a_database_of_the_first_release_is_upgraded_with_its_rows(tmp_path):
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine

    from colorize_core.provenance import MIGRATIONS

    url = f"sqlite:///{tmp_path}/old.db"
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with create_engine(url).begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
        conn.execute(text("insert into jobs (id, source, dest, params, params_key, model_name, model_sha256, software,"
                          " status, started_at) values ('j1', 's', 'd', '{}', 'k', 'm', 'x', '{}', 'completed',"
                          " '2026-01-01 00:00:00')"))
    upgraded = ProvenanceStore(url)
    assert upgraded.job("j1").status == "completed"
    assert "media" in {c["name"] for c in inspect(upgraded.engine).get_columns("items")}


def test_items_outputs_and_events_are_recorded_and_found(store):
    job = store.start_job("s3://b", "s3://b/out", {"refine": "flood"}, "k1", "default", "m" * 64,
                          {"colorize": "0.1.0"}, "flow-run-1")
    item_id = store.add_item(_item(job), [Output(kind="colour", uri="s3://b/out/a.jpg", sha256="e" * 64, size=5)],
                             [Event(type="ingest", outcome="success", agent="colorize 0.1.0")])
    assert store.find_done("s3://b/a.jpg", "s3://b/out", "k1", "f" * 64).id == item_id
    assert store.find_done("s3://b/a.jpg", "s3://b/out", "k2", "f" * 64) is None
    assert store.find_done("s3://b/a.jpg", "s3://b/out", "k1", "0" * 64) is None
    newer = store.add_item(_item(job, version_tag="etag2"))
    store.add_item(_item(job, source_uri="s3://b/bad.jpg", status="failed"))
    index = store.done_index("s3://b/out", "k1")
    assert set(index) == {"s3://b/a.jpg"} and index["s3://b/a.jpg"].id == newer
    assert index["s3://b/a.jpg"].version_tag == "etag2" and store.done_index("s3://b/out", "k2") == {}
    job2 = store.start_job("s3://b", "s3://b/out", {}, "k1", "default", "m" * 64, {}, None)
    store.add_item(_item(job2, status="skipped", previous_item_id=item_id, reason="already done"))
    rows = store.job_items(job2)
    assert rows[0]["outputs"][0]["uri"] == "s3://b/out/a.jpg" and rows[0]["done_in_job"] == job
    store.add_items([(_item(job2, source_uri=f"s3://b/{i}.jpg", status="skipped"),
                      [Event(type="skip", outcome="success", agent="t")]) for i in range(3)])
    assert len(store.job_items(job2)) == 4
    assert store.recorded_in_job(job2, ["s3://b/a.jpg", "s3://b/other.jpg"]) == {"s3://b/a.jpg"}
    store.finish_job(job, "completed")
    assert store.job(job).status == "completed" and store.job(job).finished_at is not None


def test_urls_are_normalised_and_bad_databases_reported(tmp_path):
    assert normalise_url("postgresql://u@h/db").startswith("postgresql+psycopg://")
    assert normalise_url(str(tmp_path / "x.db")) == f"sqlite:///{tmp_path}/x.db"
    with pytest.raises(ProvenanceError, match="cannot open provenance database"):
        ProvenanceStore("postgresql://nobody@127.0.0.1:1/none")


def test_a_destination_is_held_by_one_job_at_a_time(store):
    dest = "s3://b/out"
    a = store.start_job("s3://b", dest, {}, "k1", "default", "m" * 64, {}, None)
    assert store.take_dest(dest, a, {"host": "scan-1", "pid": 41}, 300) is None
    for refused in (lambda: store.take_dest(dest, "job-b", {"host": "scan-2"}, 300),
                    lambda: store.check_dest(dest, 300)):
        with pytest.raises(DestinationBusyError, match=f"by job {a} \\(host scan-1, pid 41\\).*--take-over {a}"):
            refused()
    store.check_dest("s3://b/other", 300)                # another destination is free
    assert store.take_dest("s3://b/other", "job-b", {}, 300) is None
    assert store.renew_dest(dest, a) and store.dest_lease(dest)["renewals"] == 1
    assert not store.renew_dest(dest, "job-b")
    store.release_dest(dest, "job-b")                    # not job-b's to give back
    assert store.dest_lease(dest)["job_id"] == a
    # A lease not renewed for the lease time was left by a crashed job: taken over, the job marked crashed.
    with store.session() as s:
        s.execute(update(DestLease).where(DestLease.dest == dest).values(renewed_at=utcnow() - timedelta(seconds=301)))
    store.check_dest(dest, 300)
    old = store.take_dest(dest, "job-c", {"host": "scan-3"}, 300)
    assert old["job_id"] == a and old["holder"] == {"host": "scan-1", "pid": 41} and old["marked_crashed"]
    assert store.job(a).status == "crashed" and store.job(a).finished_at is not None
    assert not store.renew_dest(dest, a)                 # the crashed job, back after all, finds it gone
    # A job named as stopped is taken over at once; its lease is fresh, and it has no job row.
    store.check_dest(dest, 300, take_over="job-c")
    assert store.take_dest(dest, "job-d", {}, 300, take_over="job-c")["marked_crashed"] is False
    store.release_dest(dest, "job-d")
    assert store.dest_lease(dest) is None and store.take_dest(dest, "job-e", {}, 300) is None


@pytest.mark.parametrize("stale", [False, True], ids=["free", "stale"])
def test_jobs_taking_a_destination_at_the_same_moment_get_it_once(store, stale):
    dest, n = "/archive/colour", 8
    if stale:   # a crashed job's lease, gone unrenewed for an hour
        store.take_dest(dest, "crashed", {}, 300)
        with store.session() as s:
            s.execute(update(DestLease).values(renewed_at=utcnow() - timedelta(hours=1)))
    ready = threading.Barrier(n)

    def take(job: str) -> str | None:
        ready.wait()
        try:
            store.take_dest(dest, job, {}, 300)
            return job
        except DestinationBusyError:
            return None

    with ThreadPoolExecutor(n) as pool:
        winners = [j for j in pool.map(take, [f"job-{i}" for i in range(n)]) if j]
    assert len(winners) == 1 and store.dest_lease(dest)["job_id"] == winners[0]


def test_a_running_jobs_lease_is_renewed_and_given_back_and_a_lost_one_noticed(store):
    dest = "/archive/colour"

    def wait_for(cond) -> None:  # noqa: ANN001
        deadline = time.monotonic() + 20
        while not cond():
            assert time.monotonic() < deadline
            time.sleep(0.05)

    with DestinationLease(store, dest, "job-a", holder={"pid": 1}, lease_seconds=0.5) as lease:
        assert lease.taken_over is None
        wait_for(lambda: store.dest_lease(dest)["renewals"] >= 3)   # renewed every 0.05 s
        time.sleep(0.6)     # longer than the lease time, yet it is kept fresh
        with pytest.raises(DestinationBusyError):
            store.take_dest(dest, "job-b", {}, 0.5)
    assert store.dest_lease(dest) is None
    with DestinationLease(store, dest, "job-a", holder={}, lease_seconds=0.5) as lease:
        store.take_dest(dest, "job-b", {}, 0.5, take_over="job-a")
        wait_for(lambda: lease.lost)
    assert store.dest_lease(dest)["job_id"] == "job-b"   # not job-a's to give back


def test_the_work_of_a_job_sees_it_stopped_cancelled_or_taken_over(store):
    dest = "/archive/colour"
    for stop in ("cancel", "take over"):
        job = store.start_job("/archive/scans", dest, {}, "k1", "default", "m" * 64, {}, None)
        store.take_dest(dest, job, {}, 300)
        watch, slow = JobWatch(store, job, every=0), JobWatch(store, job, every=60)
        watch.check(), slow.check()   # running
        if stop == "cancel":
            store.finish_job(job, "cancelled", if_running=True)
            store.release_dest(dest, job)
        else:   # another job took DEST over (the lease had run out): this job is marked crashed
            with store.session() as s:
                s.execute(update(DestLease).values(renewed_at=utcnow() - timedelta(seconds=301)))
            store.take_dest(dest, f"after {stop}", {}, 300)
            store.release_dest(dest, f"after {stop}")
        with pytest.raises(JobStoppedError, match=f"job {job} is {'cancelled' if stop == 'cancel' else 'crashed'}"):
            watch.check()
        slow.check()   # read at most once a minute: not yet
    with pytest.raises(JobStoppedError, match="job nobody is not recorded"):
        JobWatch(store, "nobody").check()


def test_a_database_out_of_reach_a_moment_does_not_stop_the_work(tmp_path):
    store = ProvenanceStore(f"sqlite:///{tmp_path}/p.db")
    job = store.start_job("/scans", "/colour", {}, "k1", "default", "m" * 64, {}, None)
    watch = JobWatch(store, job, every=0)
    store.engine.dispose()
    (tmp_path / "p.db").rename(tmp_path / "away.db")
    (tmp_path / "p.db").mkdir()              # the database cannot be opened
    watch.check()                            # no answer: the work goes on
    (tmp_path / "p.db").rmdir()
    (tmp_path / "away.db").rename(tmp_path / "p.db")
    store.finish_job(job, "cancelled", if_running=True)
    with pytest.raises(JobStoppedError):     # the answer, once there is one
        watch.check()


def test_jobs_are_listed_newest_first_with_their_counts_and_leases(store):
    a = store.start_job("s3://b", "s3://b/out", {}, "k1", "default", "m" * 64, {}, None)
    store.add_item(_item(a))
    store.add_item(_item(a, source_uri="s3://b/bad.jpg", status="failed"))
    store.finish_job(a, "completed_with_failures")
    b = store.start_job("s3://b", "s3://b/other", {}, "k1", "default", "m" * 64, {}, "flow-run-2")
    store.take_dest("s3://b/other", b, {"host": "scan-1"}, 300)
    rows = store.jobs()
    assert [r["id"] for r in rows] == [b, a]
    assert rows[0]["status"] == "running" and rows[0]["lease"]["holder"] == {"host": "scan-1"}
    assert rows[0]["counts"] == {"done": 0, "skipped": 0, "failed": 0} and rows[0]["flow_run_id"] == "flow-run-2"
    assert rows[1]["counts"] == {"done": 1, "skipped": 0, "failed": 1} and rows[1]["lease"] is None
    assert rows[1]["finished_at"] >= rows[1]["started_at"]
    assert [r["id"] for r in store.jobs(dest="s3://b/out")] == [a] and [r["id"] for r in store.jobs(limit=1)] == [b]


@pytest.mark.slow
def test_a_job_larger_than_one_statements_parameters_is_shown_whole(pg_url):
    """An archive's nightly job records an item per original. PostgreSQL binds at most 65,535
    parameters per statement: every look-up by a job's item ids goes in parts (IN_CHUNK)."""
    from sqlalchemy import insert, select

    from colorize_core.fixity import latest_checks
    from colorize_core.manifest import build_manifest
    from colorize_core.review import decisions_of, rejected

    store, n = ProvenanceStore(pg_url), 66_000
    first = store.start_job("/scans", "/colour", {"refine": "flood"}, "k1", "default", "m" * 64, {}, None)
    nightly = store.start_job("/scans", "/colour", {"refine": "flood"}, "k1", "default", "m" * 64, {}, None)
    common = dict(dest="/colour", params={"refine": "flood"}, params_key="k1", model_name="default",
                  model_sha256="m" * 64, media_type="photo")
    with store.session() as s:
        s.execute(insert(Item), [dict(job_id=first, source_uri=f"/scans/{i:05d}.tif", rel_path=f"{i:05d}.tif",
                                      status="done", colourfulness=30.0, **common) for i in range(n)])
        done = s.scalars(select(Item.id).where(Item.job_id == first).order_by(Item.id)).all()
        s.execute(insert(Output), [dict(item_id=i, kind="colour", uri=f"/colour/{k:05d}.tif", sha256="e" * 64, size=5)
                                   for k, i in enumerate(done)])
        s.execute(insert(Item), [dict(job_id=nightly, source_uri=f"/scans/{k:05d}.tif", rel_path=f"{k:05d}.tif",
                                      status="skipped", reason="already done", previous_item_id=i, **common)
                                 for k, i in enumerate(done)])
        last = done[-1]
        s.execute(insert(Event), [
            dict(job_id=first, item_id=last, type="review", outcome="success", agent="person:Ann",
                 detail={"decision": "rejected", "note": "too warm", "redo": {}, "requested_in_job": first}),
            dict(job_id=first, item_id=done[0], type="fixity check", outcome="failure", agent="t",
                 detail={"not_intact": [{"status": "missing"}]})])
    store.finish_job(first, "completed")
    store.finish_job(nightly, "completed")

    manifest = build_manifest(store, nightly)
    items = {it["rel_path"]: it for it in manifest["items"]}
    assert len(items) == n and manifest["job"]["counts"]["skipped"] == n
    assert items[f"{n - 1:05d}.tif"]["decision"] == "rejected" and items[f"{n - 1:05d}.tif"]["done_in_job"] == first
    assert items["00000.tif"]["attention"] == ["damaged"] and items["00001.tif"]["attention"] == []
    assert items["00001.tif"]["colour"]["uri"] == "/colour/00001.tif"
    assert list(decisions_of(store, done)) == [last] and list(latest_checks(store, done)) == [done[0]]
    assert [it.id for it, _ in rejected(store, nightly)] == [last]


@pytest.mark.parametrize("where", ["folder", "s3"])
def test_a_jobs_manifest_is_written_a_page_at_a_time_and_reads_as_if_built_whole(where, tmp_path, monkeypatch,
                                                                                  request):
    """A nightly job over an archive has an item per original: write_manifest never holds the
    whole manifest, yet writes the bytes of the whole one, and the contact sheet's pages."""
    import json

    import colorize_core.provenance as provenance
    from colorize_core.manifest import build_manifest, index_job, write_manifest
    from colorize_core.storage import open_location

    if where == "s3":
        dest = open_location(f"s3://{request.getfixturevalue('bucket')}/colour",
                             request.getfixturevalue("s3_endpoint"))
    else:
        dest = open_location(str(tmp_path / "colour"))
        (tmp_path / "colour").mkdir()
    store = ProvenanceStore(f"sqlite:///{tmp_path}/p.db")
    first = store.start_job("/scans", dest.uri, {"refine": "flood"}, "k1", "default", "m" * 64, {}, None)
    job = store.start_job("/scans", dest.uri, {"refine": "flood"}, "k1", "default", "m" * 64, {}, None)
    earlier = store.add_item(_item(first, source_uri="/scans/b.tif", rel_path="b.tif", colourfulness=31.0),
                             [Output(kind=kind, uri=dest.uri_of(f"b.{kind}.jpg"), sha256="e" * 64, size=3)
                              for kind in ("colour", "thumb-original", "thumb-colour")])
    names = ["a.tif", "b.tif", "c \"quoted\".tif", "d.tif", "e/ü é.tif", "f.tif", "g.tif"]
    for name in names:   # done; a skip of the earlier job's b; two failures, one with a line break in its error
        kw = {"status": "done", "colourfulness": 25.0}
        if name == "b.tif":
            kw = {"status": "skipped", "reason": "already done", "previous_item_id": earlier}
        elif name in ("d.tif", "g.tif"):
            kw = {"status": "failed", "error_type": "CorruptMediaError", "error": "truncated\nat byte 12"}
        store.add_item(_item(job, source_uri=f"/scans/{name}", rel_path=name, **kw))
    store.finish_job(job, "completed")
    monkeypatch.setattr(provenance, "IN_CHUNK", 2)   # the database read two items at a time
    monkeypatch.setenv("COLORIZE_MANIFEST_PAGE_ITEMS", "3")

    uris = write_manifest(store, job, dest)
    whole = build_manifest(store, job)
    assert [it["rel_path"] for it in whole["items"]] == names and whole["job"]["attention"] == 2
    assert whole["items"][1]["thumbnails"]["colour"] == dest.uri_of("b.thumb-colour.jpg")
    expected = json.dumps(whole, indent=1, ensure_ascii=False).encode()
    assert dest.read(f"manifests/{job}/manifest.json") == expected == dest.read("manifest.json")
    # The pages: the two failures first, then the rest by path, three a page.
    pages = [dest.read(f"manifests/{job}/{name}").decode() for name in ("manifest.html", "manifest-2.html",
                                                                         "manifest-3.html")]
    shown = [[n for n in ("a.tif", "b.tif", "c &#34;quoted&#34;.tif", "d.tif", "e/ü é.tif", "f.tif", "g.tif")
              if f"<strong>{n}</strong>" in page] for page in pages]
    assert shown == [["a.tif", "d.tif", "g.tif"], ["b.tif", "c &#34;quoted&#34;.tif", "e/ü é.tif"], ["f.tif"]]
    assert pages[0].index("<strong>d.tif</strong>") < pages[0].index("<strong>a.tif</strong>")
    assert not dest.exists(f"manifests/{job}/manifest-4.html") and uris["job_json"].endswith(f"{job}/manifest.json")
    assert dest.read("manifest.html").decode().count('class="item"') == 3 and index_job(dest) == job
    # An empty job: the same bytes as built whole too, and one page, the older ones removed.
    empty = store.start_job("/scans", dest.uri, {"refine": "flood"}, "k1", "default", "m" * 64, {}, None)
    store.finish_job(empty, "completed")
    write_manifest(store, empty, dest)
    assert dest.read("manifest.json") == json.dumps(build_manifest(store, empty), indent=1,
                                                    ensure_ascii=False).encode()
    assert index_job(dest) == empty and dest.read("manifest.json", limit=12) == b'{\n "schema":'
    dest.replace("manifest.json", b'{"job": {"id": "not ours"}}')
    assert index_job(dest) is None
