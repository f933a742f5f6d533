"""Fixity check and relocation throughput, against reading and hashing the same files bare, side by side.

    python bench/bench_fixity.py [--items 2000] [--kib 256] [--per-range 500] [--db URL]

Makes a DEST of ``items`` files of ``kib`` KiB each, records them as done items with one output
each (SQLite in the temporary folder unless --db names another database), then times:
  bare   reading and hashing every file (hashlib.file_digest), nothing else;
  check  colorize_core.fixity.check_range over the item ranges, as the flow's tasks run it
         (the database reads, the comparison and one fixity check event per item recorded);
  relocate  DEST copied to another folder, then colorize_core.relocation: compare_copy over the
         item ranges (the read-back at the new place) and relocate (the one transaction that
         points the records there, with two events per item), timed apart.
Prints items/s and MiB/s of each and their ratio; the page cache is warm for both (the files
were just written), so the figures are the overhead of the check, not the disk's speed.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import tempfile
import time
from pathlib import Path

from colorize_core.fixity import Scope, check_range, item_ranges
from colorize_core.provenance import Item, Output, ProvenanceStore
from colorize_core.relocation import compare_copy, relocate
from colorize_core.storage import open_location


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=2000)
    ap.add_argument("--kib", type=int, default=256)
    ap.add_argument("--per-range", type=int, default=500)
    ap.add_argument("--db", default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-fixity-") as tmp:
        dest = open_location(str(Path(tmp) / "dest"))
        store = ProvenanceStore(args.db or f"sqlite:///{tmp}/p.db")
        job = store.start_job("bench:", dest.uri, {}, "k" * 64, "bench", "0" * 64, {}, None)
        rows = []
        for n in range(args.items):
            rel = f"box-{n // 1000:03d}/photo-{n:07d}.jpg"
            path = Path(dest.uri, rel)
            path.parent.mkdir(parents=True, exist_ok=True)
            data = os.urandom(args.kib * 1024)
            path.write_bytes(data)
            item = Item(job_id=job, source_uri=f"bench:{rel}", rel_path=rel, dest=dest.uri, status="done",
                        params_key="k" * 64, model_name="bench", model_sha256="0" * 64)
            item.outputs = [Output(kind="colour", uri=dest.uri_of(rel), sha256=hashlib.sha256(data).hexdigest(),
                                   size=len(data))]
            rows.append((item, []))
        store.add_items(rows)
        files = sorted(Path(dest.uri).rglob("*.jpg"))
        mib = args.items * args.kib / 1024

        t0 = time.perf_counter()
        for path in files:
            with open(path, "rb") as fh:
                hashlib.file_digest(fh, "sha256")
        bare = time.perf_counter() - t0

        scope = Scope(dest.uri)
        t0 = time.perf_counter()
        ranges = item_ranges(store, scope, args.per_range)
        results = [check_range(store, dest, scope, first, last) for first, last in ranges]
        check = time.perf_counter() - t0
        intact = sum(r["counts"]["intact"] for r in results)
        assert intact == args.items, f"{intact} of {args.items} intact"

        new = open_location(str(Path(tmp) / "moved"))
        shutil.copytree(dest.uri, new.uri)
        for path in Path(new.uri).rglob("*.jpg"):   # the copy's pages in the cache, as the original's are
            path.read_bytes()
        t0 = time.perf_counter()
        compared = [compare_copy(store, dest, new, scope, first, last) for first, last in ranges]
        read_back = time.perf_counter() - t0
        assert sum(r["counts"]["intact"] for r in compared) == args.items
        t0 = time.perf_counter()
        moved = relocate(store, dest, new, scope, [])
        commit = time.perf_counter() - t0
        assert moved["items"] == moved["outputs"] == moved["transferred"] == args.items, moved

    print(f"{args.items} items of {args.kib} KiB ({mib:.0f} MiB), {len(ranges)} ranges, database {store.url.split(':')[0]}")
    print(f"bare hashing: {bare:6.2f} s  {args.items / bare:8.0f} items/s  {mib / bare:7.1f} MiB/s")
    print(f"fixity check: {check:6.2f} s  {args.items / check:8.0f} items/s  {mib / check:7.1f} MiB/s")
    print(f"check / bare time: {check / bare:.2f}")
    print(f"relocation: read-back {read_back:6.2f} s, commit {commit:6.2f} s  "
          f"{args.items / (read_back + commit):8.0f} items/s; relocation / bare time: {(read_back + commit) / bare:.2f}")


if __name__ == "__main__":
    main()
