"""Flood-fill refinement time per 1920x1080 image (goal: at most 50 ms on a 2-core machine).

    python bench/bench_refine.py [--repeat 15]

L comes from real photographs scaled to 1080p; ab from the default model, as in the flow.
Prints the median and 90th percentile per image, and the share spent labelling regions.
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np
import skimage.data

from colorize_core import Colorizer
from colorize_core.color import luminance
from colorize_core.refine import FloodParams, flood_regions, l_scale, refine_flood


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()
    colorizer = Colorizer.load("default", device="cpu")
    print(f"OpenCV threads: {cv2.getNumThreads()}")
    all_ms, label_ms = [], []
    for name in ("astronaut", "coffee", "chelsea", "camera", "rocket"):
        img = getattr(skimage.data, name)()
        img = cv2.resize(img, (1920, 1080), interpolation=cv2.INTER_CUBIC)
        lum = luminance(img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_RGB2GRAY))
        ab = colorizer.predict_ab([lum])[0]
        refine_flood(lum, ab)  # warm-up
        times, ltimes = [], []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            refine_flood(lum, ab)
            times.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            _, count = flood_regions(lum, FloodParams().threshold / l_scale(lum)[1])
            ltimes.append((time.perf_counter() - t0) * 1000)
        all_ms += times
        label_ms += ltimes
        print(f"{name:10s} 1920x1080: refine median {np.median(times):6.1f} ms, p90 {np.percentile(times, 90):6.1f} ms"
              f" ({count - 1} regions; labelling {np.median(ltimes):.1f} ms)")
    print(f"ALL        refine per 1080p image: median {np.median(all_ms):.1f} ms, p90 {np.percentile(all_ms, 90):.1f} ms "
          f"(goal <= 50 ms); labelling median {np.median(label_ms):.1f} ms")


if __name__ == "__main__":
    main()
