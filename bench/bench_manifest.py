"""A large job's views: building and writing its manifest, approving its items, on SQLite or PostgreSQL.

    python bench/bench_manifest.py [--items 20000] [--db URL]

Records a job of ``items`` photos done (each with its rendition and two review thumbnails),
then a nightly job that skipped them all (a skip record per original, pointing at the first
job's item, as every nightly run over an archive records), in SQLite in the temporary folder
unless --db names another database (an empty one). Then times, for the nightly job:
  build    colorize_core.manifest.build_manifest (the provenance look-ups);
  write    write_manifest (build, then render manifest.json and the HTML contact sheet's pages,
           and write them with DEST's index), with the files' sizes;
  approve  colorize review approve --job as the CLI runs it (review.take_decisions), then the
           manifests rendered again (manifest.refresh_jobs).
Prints seconds, items/s and the process's peak resident memory after each step (the views
are built whole in memory: they grow with the job).
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

from sqlalchemy import insert, select

from colorize_core.manifest import build_manifest, refresh_jobs, write_manifest
from colorize_core.provenance import Item, Output, ProvenanceStore
from colorize_core.review import take_decisions
from colorize_core.storage import open_location


def _peak_mib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=20000)
    ap.add_argument("--db", default=None)
    args = ap.parse_args()
    n = args.items
    with tempfile.TemporaryDirectory(prefix="bench-manifest-") as tmp:
        dest = open_location(str(Path(tmp) / "dest"))
        Path(dest.uri).mkdir()
        store = ProvenanceStore(args.db or f"sqlite:///{tmp}/p.db")
        params = {"refine": "flood", "work_size": 256, "model": "default"}
        common = dict(dest=dest.uri, params=params, params_key="k" * 64, model_name="default", model_sha256="0" * 64,
                      media_type="photo", sha256="b" * 64, size=4_000_000, format="TIFF", width=3000, height=2000)
        rel = [f"box-{i // 1000:03d}/photo-{i:07d}.tif" for i in range(n)]
        first = store.start_job("/scans", dest.uri, params, "k" * 64, "default", "0" * 64, {}, None)
        nightly = store.start_job("/scans", dest.uri, params, "k" * 64, "default", "0" * 64, {}, None)
        t0 = time.perf_counter()
        with store.session() as s:
            s.execute(insert(Item), [dict(job_id=first, source_uri=f"/scans/{r}", rel_path=r, status="done",
                                          colourfulness=30.0, **common) for r in rel])
            ids = s.scalars(select(Item.id).where(Item.job_id == first).order_by(Item.id)).all()
            s.execute(insert(Output), [dict(item_id=i, kind=kind, uri=dest.uri_of(f"{r}.{kind}"), sha256="a" * 64,
                                            size=1) for i, r in zip(ids, rel)
                                       for kind in ("colour", "thumb-original", "thumb-colour")])
            s.execute(insert(Item), [dict(job_id=nightly, source_uri=f"/scans/{r}", rel_path=r, status="skipped",
                                          reason="already done", previous_item_id=i, **common)
                                     for i, r in zip(ids, rel)])
        store.finish_job(first, "completed")
        store.finish_job(nightly, "completed")
        print(f"{n} items done and {n} skip records, database {store.url.split(':')[0]}: recorded in "
              f"{time.perf_counter() - t0:.1f} s; peak memory {_peak_mib()} MiB")

        def report(step: str, seconds: float, extra: str = "") -> None:
            print(f"{step:<8} {seconds:7.1f} s  {n / seconds:8.0f} items/s  peak memory {_peak_mib()} MiB{extra}")

        t0 = time.perf_counter()
        manifest = build_manifest(store, nightly)
        report("build", time.perf_counter() - t0)
        assert len(manifest["items"]) == n
        del manifest
        t0 = time.perf_counter()
        write_manifest(store, nightly, dest)
        pages = sorted(Path(dest.uri, "manifests", nightly).glob("manifest*.html"))
        html = sum(p.stat().st_size for p in pages) / 2**20
        data = os.path.getsize(Path(dest.uri, "manifest.json")) / 2**20
        first_page = os.path.getsize(Path(dest.uri, "manifest.html")) / 2**20
        report("write", time.perf_counter() - t0, f"; manifest.json {data:.0f} MiB, contact sheet {len(pages)} pages, "
                                                  f"{html:.0f} MiB in all, {first_page:.1f} MiB the first")
        t0 = time.perf_counter()
        decisions, _ = take_decisions(store, "approved", "Bench", job_id=nightly)
        approved = time.perf_counter() - t0
        assert len(decisions) == n
        refresh_jobs(store, [nightly, first])
        report("approve", time.perf_counter() - t0, f" ({approved:.1f} s the decisions, the rest the two jobs' "
                                                    "manifests rendered again)")


if __name__ == "__main__":
    main()
