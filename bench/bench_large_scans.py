"""Peak memory of colorizing a chunk of large scans, with the model batch bounded by pixels
(``COLORIZE_BATCH_PIXELS``, 64 million by default) and unbounded, side by side.

    python bench/bench_large_scans.py [--scans 6] [--size 6000x4000] [--batch 8]

Each side is a fresh process that colorizes the same 16-bit gray TIFF scans through
``process_batch`` (the work of one ``colorize-photo-batch`` task: decode, model, flood
refinement, encode, write, record) with the same model; its peak resident memory comes from
the kernel (``wait4``), its time from the clock. The model alone, loaded and run on a tiny
image, is measured the same way, so that the bytes per pixel of the scans can be printed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHILD = """
import sys, time
from pathlib import Path
from colorize_core import Colorizer
from colorize_core.archive import JobSettings, plan, process_batch
from colorize_core.provenance import ProvenanceStore
from colorize_core.storage import open_location

src, dest, db, batch, pixels = sys.argv[1:6]
colorizer = Colorizer.load()
if src == "-":   # the model alone
    import numpy as np
    colorizer.colorize(np.zeros((64, 64), np.uint8))
    sys.exit(0)
store, settings = ProvenanceStore(db), JobSettings()
job = store.start_job(src, dest, {}, "bench", "default", colorizer.sha256, {}, None)
source, target = open_location(src), open_location(dest)
todo, _, _ = plan(source, target, store, job, settings, colorizer.sha256)
started = time.perf_counter()
results = process_batch(todo, source, target, store, job, settings, colorizer, model_batch=int(batch),
                        batch_pixels=int(pixels))
assert all(r.status == "done" for r in results), [r.detail for r in results if r.status != "done"]
print(f"{time.perf_counter() - started:.1f}")
"""


def make_scans(folder: Path, n: int, size: tuple[int, int]) -> None:
    import tifffile

    w, h = size
    y, x = np.linspace(0, 1, h)[:, None], np.linspace(0, 1, w)[None, :]
    for k in range(n):   # smooth tones with edges: regions for the flood fill, distinct content
        scan = (np.sin(x * (20 + k)) * np.cos(y * 13) * 0.4 + 0.5) * 65535
        tifffile.imwrite(folder / f"scan{k:02d}.tif", scan.astype(np.uint16), compression="zlib")


def run(args: list[str]) -> tuple[float, str]:
    """Peak RSS (MB) and stdout of a child running CHILD with ``args``."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, *args], stdout=subprocess.PIPE, env=env, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"child failed ({proc.returncode}): {args}")
    return usage.ru_maxrss / 1024, out.strip()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scans", type=int, default=6)
    ap.add_argument("--size", default="6000x4000")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--budget", type=int, default=64_000_000, help="COLORIZE_BATCH_PIXELS's default")
    args = ap.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "scans").mkdir()
        make_scans(root / "scans", args.scans, size)
        model_mb, _ = run(["-", "-", "-", "0", "0"])
        pixels = size[0] * size[1]
        print(f"{args.scans} scans of {size[0]}x{size[1]} (16-bit gray), model batch {args.batch}; "
              f"model alone: {model_mb:.0f} MB peak")
        for name, budget in (("bounded", args.budget), ("unbounded", 10 ** 15)):
            dest = root / f"dest-{name}"
            started = time.perf_counter()
            peak, seconds = run([str(root / "scans"), str(dest), f"sqlite:///{root}/{name}.db", str(args.batch),
                                 str(budget)])
            per_pixel = (peak - model_mb) * 1024 * 1024 / pixels
            print(f"  {name:9s} (batch_pixels {budget:.3g}): peak {peak:7.0f} MB, {per_pixel:5.1f} B per pixel of "
                  f"one scan above the model's; process_batch {seconds} s, process {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
