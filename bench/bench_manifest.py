"""A large job's views: its manifest, exports and review list, approving its items, on SQLite or PostgreSQL.

    python bench/bench_manifest.py [--items 20000] [--db URL] [--steps write,build,iiif,premis,prov,list,approve]

Records a job of ``items`` photos done (each with its rendition, two review thumbnails and the
four events the flow records: ingest, colorize, refine, write), then a nightly job that skipped
them all (a skip record per original, pointing at the first job's item, with its ingest and skip
events, as every nightly run over an archive records), in SQLite in the temporary folder unless
--db names another database (an empty one). Then times each step in a fresh process of its own
(so that its peak memory is its own):
  write    write_manifest as the flow runs it, for the nightly job: manifest.json and the HTML
           contact sheet's pages, with DEST's index, built a page of the database at a time;
  build    colorize_core.manifest.build_manifest for the nightly job, the manifest held whole;
  iiif     the IIIF export of the nightly job, as the flow writes it after every job;
  premis   `colorize export --what premis` of the first job (its items, outputs and events);
  prov     `colorize export --what prov` of the first job;
  list     `colorize review list --csv` of the nightly job (a review sheet), to /dev/null;
  approve  colorize review approve --job as the CLI runs it (review.take_decisions), then the
           manifests rendered again (manifest.refresh_jobs).
Prints seconds, items/s and the step's process's peak resident memory, with what that process
held before the step (the interpreter and the libraries).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import insert, select

from colorize_core.exports import write_exports
from colorize_core.manifest import build_manifest, refresh_jobs, write_manifest
from colorize_core.provenance import Event, Item, Output, ProvenanceStore
from colorize_core.review import take_decisions
from colorize_core.storage import open_location

STEPS = ("write", "build", "iiif", "premis", "prov", "list", "approve")


def _peak_mib() -> int:
    """This process's peak resident memory: Linux's VmHWM, which starts afresh with the process's
    program (ru_maxrss carries the parent's over a fork and exec)."""
    try:
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:")) >> 10
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10


def record(store: ProvenanceStore, dest: str, n: int) -> tuple[str, str]:
    """The two jobs: ``n`` photos done, then a nightly job of ``n`` skip records."""
    location = open_location(dest)
    params = {"refine": "flood", "work_size": 256, "model": "default"}
    common = dict(dest=dest, params=params, params_key="k" * 64, model_name="default", model_sha256="0" * 64,
                  media_type="photo", sha256="b" * 64, size=4_000_000, format="TIFF", width=3000, height=2000)
    done_events = [("ingest", "colorize", {"bytes": 4_000_000, "sha256": "b" * 64}),
                   ("colorize", "model default sha256:" + "0" * 64, {"work_size": 256, "device": "cpu"}),
                   ("refine", "colorize", {"method": "flood", "params": {}}),
                   ("write", "colorize", {"uri": "file:///dest/photo.tif", "sha256": "a" * 64, "seconds": 1.5})]
    rel = [f"box-{i // 1000:03d}/photo-{i:07d}.tif" for i in range(n)]
    first = store.start_job("/scans", dest, params, "k" * 64, "default", "0" * 64, {}, None)
    nightly = store.start_job("/scans", dest, params, "k" * 64, "default", "0" * 64, {}, None)
    with store.session() as s:
        s.execute(insert(Item), [dict(job_id=first, source_uri=f"/scans/{r}", rel_path=r, status="done",
                                      colourfulness=30.0, **common) for r in rel])
        ids = s.scalars(select(Item.id).where(Item.job_id == first).order_by(Item.id)).all()
        s.execute(insert(Output), [dict(item_id=i, kind=kind, uri=location.uri_of(f"{r}.{kind}"), sha256="a" * 64,
                                        size=1) for i, r in zip(ids, rel)
                                   for kind in ("colour", "thumb-original", "thumb-colour")])
        s.execute(insert(Event), [dict(job_id=first, item_id=i, type=kind, outcome="success", agent=agent,
                                       detail=detail) for i in ids for kind, agent, detail in done_events])
        s.execute(insert(Item), [dict(job_id=nightly, source_uri=f"/scans/{r}", rel_path=r, status="skipped",
                                      reason="already done", previous_item_id=i, **common)
                                 for i, r in zip(ids, rel)])
        skips = s.scalars(select(Item.id).where(Item.job_id == nightly).order_by(Item.id)).all()
        s.execute(insert(Event), [dict(job_id=nightly, item_id=i, type=kind, outcome="success", agent="colorize",
                                       detail={"previous_item": p} if kind == "skip" else {"bytes": 4_000_000})
                                  for i, p in zip(skips, ids) for kind in ("ingest", "skip")])
    store.finish_job(first, "completed")
    store.finish_job(nightly, "completed")
    return first, nightly


def step(name: str, n: int, db: str, dest: str, first: str, nightly: str) -> None:
    """One step, in this (fresh) process; prints its line."""
    store, location, before = ProvenanceStore(db), open_location(dest), _peak_mib()
    t0 = time.perf_counter()
    if name == "write":
        write_manifest(store, nightly, location)
        seconds = time.perf_counter() - t0
        pages = sorted(Path(dest, "manifests", nightly).glob("manifest*.html"))
        html = sum(p.stat().st_size for p in pages) / 2**20
        data = os.path.getsize(Path(dest, "manifest.json")) / 2**20
        first_page = os.path.getsize(Path(dest, "manifest.html")) / 2**20
        extra = (f"; manifest.json {data:.0f} MiB, contact sheet {len(pages)} pages, {html:.0f} MiB in all, "
                 f"{first_page:.1f} MiB the first")
    elif name == "build":
        assert len(build_manifest(store, nightly)["items"]) == n
        seconds, extra = time.perf_counter() - t0, ""
    elif name in ("iiif", "premis", "prov"):
        job = nightly if name == "iiif" else first
        path = write_exports(store, job, location, (name,), "https://media.example.org")[name]
        seconds, extra = time.perf_counter() - t0, f"; {os.path.getsize(path) / 2**20:.0f} MiB"
    elif name == "list":
        from colorize_cli.main import cli

        with open(os.devnull, "w") as sys.stdout:
            cli.main(["review", "list", nightly, "--db", db, "--csv"], standalone_mode=False)
        sys.stdout = sys.__stdout__
        seconds, extra = time.perf_counter() - t0, ""
    else:
        decisions, _ = take_decisions(store, "approved", "Bench", job_id=nightly)
        approved = time.perf_counter() - t0
        assert len(decisions) == n
        refresh_jobs(store, [nightly, first])
        seconds = time.perf_counter() - t0
        extra = f" ({approved:.1f} s the decisions, the rest the two jobs' manifests rendered again)"
    print(f"{name:<8} {seconds:7.1f} s  {n / seconds:8.0f} items/s  peak memory {_peak_mib()} MiB "
          f"({before} MiB before the step){extra}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=20000)
    ap.add_argument("--db", default=None)
    ap.add_argument("--steps", default=",".join(STEPS), help="which steps, in order (default: all)")
    ap.add_argument("--step", choices=STEPS, help=argparse.SUPPRESS)   # the child processes' own
    ap.add_argument("--dest", help=argparse.SUPPRESS)
    ap.add_argument("--jobs", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.step:
        step(args.step, args.items, args.db, args.dest, *args.jobs)
        return
    with tempfile.TemporaryDirectory(prefix="bench-manifest-") as tmp:
        dest = str(Path(tmp) / "dest")
        Path(dest).mkdir()
        db = args.db or f"sqlite:///{tmp}/p.db"
        t0 = time.perf_counter()
        jobs = record(ProvenanceStore(db), dest, args.items)
        print(f"{args.items} items done and {args.items} skip records, database {db.split(':')[0]}: recorded in "
              f"{time.perf_counter() - t0:.1f} s", flush=True)
        for name in args.steps.split(","):
            if name not in STEPS:
                raise SystemExit(f"--steps: {name!r} is none of {', '.join(STEPS)}")
            subprocess.run([sys.executable, __file__, "--step", name, "--items", str(args.items), "--db", db,
                            "--dest", dest, "--jobs", *jobs], check=True)


if __name__ == "__main__":
    main()
