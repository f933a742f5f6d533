"""Photo-flow throughput divided by bare ``Colorizer.colorize_batch`` throughput (goal >= 0.8).

    python bench/bench_photo_flow.py [--images 64] [--size 1024x768] [--batch 8]

Both sides colorize the same images with the same model in the same process, side by side:
bare = decoded arrays through ``colorize_batch`` in batches (decoding not timed); flow = the
whole ``colorize-archive`` flow from files on disk to labelled files, provenance rows and the
manifest, timed from the flow call to its return (the Prefect API is already up, as on a
deployment). Each refinement setting is compared like for like: the flow with ``--refine none``
against ``colorize_batch(...)``, the flow with ``--refine flood`` against
``colorize_batch(..., refine_method="flood")``; the flood flow against the bare model without
refinement is printed too. Fixed per-run costs of Prefect (~3 s: flow-run and task-run creation
against the API) weigh on small jobs; ``--images`` sets the job size.
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


def make_images(folder: Path, n: int, size: tuple[int, int]) -> list[np.ndarray]:
    names = ["astronaut", "coffee", "chelsea", "camera", "rocket"]
    arrays = []
    for i in range(n):
        img = getattr(skimage.data, names[i % len(names)])()
        im = Image.fromarray(img).convert("L").resize(size)
        if i % 2:
            im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)  # distinct content, distinct sha256
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=90)
        (folder / f"box{i // 16}").mkdir(parents=True, exist_ok=True)
        (folder / f"box{i // 16}" / f"scan{i:04d}.jpg").write_bytes(buf.getvalue())
        arrays.append(np.asarray(im))
    return arrays


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--size", default="1024x768")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))

    from prefect.testing.utilities import prefect_test_harness

    from colorize_core import Colorizer
    from flows.archive import colorize_archive
    from tasks.photos import cached_colorizer

    with tempfile.TemporaryDirectory() as tmp, prefect_test_harness(server_startup_timeout=60):
        src = Path(tmp) / "src"
        arrays = make_images(src, args.images, size)
        colorizer: Colorizer = cached_colorizer("default", "auto", 256)  # the flow's own cached model
        colorizer.colorize_batch(arrays[: args.batch])  # warm-up
        print(f"{args.images} images {size[0]}x{size[1]}, batch {args.batch}, device {colorizer.device}")
        results: dict[str, list[float]] = {"bare-none": [], "bare-flood": [], "flow-none": [], "flow-flood": []}
        for rnd in range(args.rounds):
            for refine in ("none", "flood"):
                t0 = time.perf_counter()
                for i in range(0, len(arrays), args.batch):
                    colorizer.colorize_batch(arrays[i:i + args.batch], refine_method=refine)
                results[f"bare-{refine}"].append(args.images / (time.perf_counter() - t0))
                dest, db = Path(tmp) / f"out-{refine}-{rnd}", f"sqlite:///{tmp}/prov-{refine}-{rnd}.db"
                t0 = time.perf_counter()
                summary = colorize_archive(source=str(src), dest=str(dest), db_url=db, refine=refine,
                                           batch_size=args.batch)
                elapsed = time.perf_counter() - t0
                assert summary["counts"]["done"] == args.images, summary
                results[f"flow-{refine}"].append(args.images / elapsed)
        best = {name: max(values) for name, values in results.items()}
        for name, values in results.items():
            print(f"{name:11s} {best[name]:6.2f} images/s (rounds: {', '.join(f'{v:.2f}' for v in values)})")
        print(f"RATIO flow/bare (goal >= 0.8): refine none {best['flow-none'] / best['bare-none']:.2f}, "
              f"refine flood {best['flow-flood'] / best['bare-flood']:.2f}; "
              f"flood flow / bare model without refinement {best['flow-flood'] / best['bare-none']:.2f}")


if __name__ == "__main__":
    main()
