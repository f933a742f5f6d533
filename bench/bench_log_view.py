"""What the model's display view of a log film scan is worth.

    python bench/bench_log_view.py [DATASET] [--model default] [--limit 0]

Film scanners write DPX frames in printing density (Cineon log) code values: a flat, gray-washed
picture until graded. The film flow shows the model such frames through Kodak's standard
printing-density-to-display conversion (`printing_density_luminance`) and keeps the scan's own
L in the outputs. This takes the held-out colour images of DATASET (built by `colorize dataset`;
default build/data-v3), writes each one's gray as 10-bit printing-density code values (the
conversion run backwards, in 16-bit frames as the decoder gives them), and predicts ab five ways:

- display: from the image's own gray L (what the model sees of a graded picture);
- log as-is: from the L of the code values read as if they were display values (before);
- log, display view: from the printing-density view of the code values (now);
- other, Kodak's view: a scan calibrated otherwise (black 64, white 760) seen through Kodak's
  points (what a scanner's declared calibration was left unused for);
- other, declared view: the same scan seen through its own points, as its DPX headers, a
  sequence.json or `--printing-density` declare them (now).

Each prediction is put together with the image's true L and scored against the colour image
(PSNR, CIEDE2000, colourfulness and its ratio to the truth's, PA): the colour alone is compared.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from colorize_core.color import (KODAK, PrintingDensity, lab_to_rgb, luminance,  # noqa: E402
                                 printing_density_luminance)
from colorize_core.colorizer import Colorizer  # noqa: E402
from colorize_core.evaluation import image_metrics, load_held_out  # noqa: E402
from colorize_core.metrics import colourfulness  # noqa: E402


# A scanner calibrated otherwise than Kodak's points: more room below black and above white.
OTHER = PrintingDensity(black=64.0, white=760.0, gamma=0.6)


def printing_density(lum: np.ndarray, conversion: PrintingDensity = KODAK) -> np.ndarray:
    """16-bit gray frames holding the 10-bit printing-density code values of L (0-100)."""
    y = np.where(lum > 8.0, ((lum + 16.0) / 116.0) ** 3, lum / 903.3)   # CIE L* to relative luminance
    slope = conversion.density / conversion.gamma
    gain = 1.0 / (1.0 - 10.0 ** ((conversion.black - conversion.white) * slope))
    cv = conversion.white + np.log10((y + gain - 1.0) / gain) / slope
    return np.round(np.round(np.clip(cv, 0, 1023)) / 1023.0 * 65535.0).astype(np.uint16)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", nargs="?", default="build/data-v3")
    ap.add_argument("--model", default="default")
    ap.add_argument("--limit", type=int, default=0, help="at most this many held-out images (0: all)")
    args = ap.parse_args()
    held = load_held_out(Path(args.dataset), limit=args.limit or None)
    colorizer = Colorizer.load(args.model, device="cpu")
    ways = ("display", "log as-is", "log, display view", "other, Kodak's view", "other, declared view")
    scores: dict[str, list[dict[str, float]]] = {w: [] for w in ways}
    view_error, truth_colour = [], []
    t0 = time.perf_counter()
    for rgb in held.images:
        lum = luminance(rgb)
        scan, other = printing_density(lum), printing_density(lum, OTHER)
        seen = {"display": lum, "log as-is": luminance(scan), "log, display view": printing_density_luminance(scan),
                "other, Kodak's view": printing_density_luminance(other),
                "other, declared view": printing_density_luminance(other, OTHER)}
        view_error.append(float(np.abs(seen["log, display view"] - lum).mean()))
        truth_colour.append(colourfulness(rgb))
        for way, ab in zip(ways, colorizer.predict_ab([seen[w] for w in ways])):
            scores[way].append(image_metrics(lab_to_rgb(lum, ab, np.dtype(np.uint8)), rgb))
    truth = statistics.mean(truth_colour)
    print(f"{len(held.images)} held-out images of {args.dataset}, model {args.model}, "
          f"{time.perf_counter() - t0:.0f} s")
    print(f"display view's L against the true L: mean |error| {statistics.mean(view_error):.2f} "
          f"(the 10-bit code values' rounding and the clipped toe)")
    print(f"{'model sees':<22} {'PSNR dB':>8} {'CIEDE2000':>10} {'colourful':>10} {'ratio':>6} {'PA':>6}")
    for way in ways:
        m = {k: statistics.mean(s[k] for s in scores[way]) for k in scores[way][0]}
        print(f"{way:<22} {m['psnr']:>8.2f} {m['ciede2000']:>10.2f} {m['colourfulness']:>10.1f} "
              f"{m['colourfulness'] / truth:>6.2f} {m['pa']:>6.3f}")


if __name__ == "__main__":
    main()
