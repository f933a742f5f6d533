"""Streamed film colorization: decode -> colorize in batches -> smooth -> refine -> encode.

No frame touches the disk and memory holds a few batches, whatever the film's length. A film (or
a range of its frames: the archive flow's unit of work) is cut into shots first
(:func:`find_cuts`, a quick pass at thumbnail size); the temporal smoother resets at every
cut. Flicker is Lai et al.'s warping error of each shot, before and after smoothing, measured
at the model's working size on the model's colour (refinement excluded): it is what smoothing
changes, at a cost the pipeline can always afford.
"""

from __future__ import annotations

import contextlib
import functools
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from colorize_core.color import lab_to_rgb, luminance, printing_density_luminance, resize_ab
from colorize_core.colorizer import Colorizer
from colorize_core.film import Encoder, FilmInfo, carry_notes, decode_gray, frame_times
from colorize_core.images import NOTE
from colorize_core.metrics import colourfulness
from colorize_core.refine import refine
from colorize_core.temporal import (TemporalParams, TemporalSmoother, is_cut, l_to_u8, pair_warping_error,
                                   thread_flow_pair)

CUT_SIZE = 128  # long side of the frames cut detection looks at
RENDER_WORKERS = min(8, os.cpu_count() or 1)  # threads that upsample, refine and convert frames to RGB

_T = TypeVar("_T")
_R = TypeVar("_R")


@dataclass
class ShotStats:
    start: int
    end: int
    warping_error: float | None = None
    warping_error_unsmoothed: float | None = None
    colourfulness: float | None = None


@dataclass
class FilmResult:
    frames: int
    cuts: list[int]
    seconds: float
    colourfulness: float
    warping_error: float | None = None
    warping_error_unsmoothed: float | None = None
    flags: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)   # what the renditions convert or leave out of the source
    shots: list[ShotStats] = field(default_factory=list)
    stills: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # frame -> (gray, rgb)

    def as_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "stills"}
        d["shots"] = [s.__dict__ for s in self.shots]
        return d


def seen_luminance(info: FilmInfo) -> Callable[[np.ndarray], np.ndarray]:
    """The L a film's frames are seen by (the cut pass, the model, the smoother's flow, flood-fill's
    regions): a log scan's display view, else their own L, which is always the outputs' L."""
    if info.printing_density is None:
        return luminance
    return functools.partial(printing_density_luminance, conversion=info.printing_density)


def find_cuts(info: FilmInfo) -> list[int]:
    """Frame numbers where a new shot starts (frame 0 excluded), from a pass over the film
    decoded at thumbnail size."""
    scale = CUT_SIZE / max(info.width, info.height)
    size = (max(2, round(info.width * scale / 2) * 2), max(2, round(info.height * scale / 2) * 2))
    cuts, prev = [], None
    seen = seen_luminance(info)
    for n, gray in enumerate(decode_gray(info, size=size)):
        small = l_to_u8(seen(gray))
        if prev is not None and is_cut(prev, small):
            cuts.append(n)
        prev = small
    return cuts


_END = object()


def _close(it: Iterator[Any]) -> None:
    close = getattr(it, "close", None)
    if close is not None:
        close()


def _in_thread(source: Iterator[_T], backlog: int, name: str) -> Iterator[_T]:
    """The items of ``source``, made in a thread of their own so that making them overlaps the
    consumer's work (the model and OpenCV release the GIL); at most ``backlog`` wait, whatever
    the film's length. An error in ``source`` is raised here; when the consumer stops early
    (close this generator), the thread stops and ``source`` is closed."""
    ready: queue.Queue = queue.Queue(maxsize=backlog)
    stop = threading.Event()

    def put(x: Any) -> bool:
        while not stop.is_set():
            try:
                ready.put(x, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for x in source:
                if not put(x):
                    return
            put(_END)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            put(exc)

    worker = threading.Thread(target=run, name=name, daemon=True)
    worker.start()
    try:
        while (x := ready.get()) is not _END:
            if isinstance(x, BaseException):
                raise x
            yield x
    finally:
        stop.set()
        while worker.is_alive():  # unblock a thread waiting on a full queue
            with contextlib.suppress(queue.Empty):
                ready.get(timeout=0.1)
        worker.join()
        _close(source)


def _predicted(frames: Iterator[np.ndarray], colorizer: Colorizer, batch_size: int,
               view: Callable[[np.ndarray], np.ndarray] = luminance,
               ) -> Iterator[tuple[np.ndarray, ...]]:
    """(frame, L, L seen, L small, ab small) per frame: L seen is of ``view``, the L the model
    sees (:func:`seen_luminance`; the same array as L when that is the frame's own), and L small
    is of it. Decoding and the model run in a thread one batch ahead, so that smoothing,
    rendering and encoding overlap the next model call; at most two batches wait."""

    def predict(batch: list[np.ndarray]) -> list[tuple[np.ndarray, ...]]:
        lums = [luminance(f) for f in batch]
        seen = lums if view is luminance else [view(f) for f in batch]
        return list(zip(batch, lums, seen, *zip(*colorizer.predict_ab_small(seen))))

    def batches() -> Iterator[list[tuple[np.ndarray, ...]]]:
        try:
            batch: list[np.ndarray] = []
            for frame in frames:
                batch.append(frame)
                if len(batch) == batch_size:
                    yield predict(batch)
                    batch = []
            if batch:
                yield predict(batch)
        finally:
            _close(frames)  # stops the decoder process when the consumer gave up early

    with contextlib.closing(_in_thread(batches(), 2, "colorize-film-model")) as ready:
        for batch in ready:
            yield from batch


def _ordered(items: Iterator[_T], fn: Callable[[_T], _R], workers: int) -> Iterator[tuple[_T, _R]]:
    """(item, fn(item)) for each of ``items``, in order, ``fn`` running in a pool of ``workers``
    threads while ``items`` are pulled in a thread of their own (:func:`_in_thread`); at most
    ``4 * workers`` items are in flight. The first error, from ``items`` or ``fn``, is raised in
    the consumer; closing this generator closes ``items``."""
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="colorize-film-render") as pool:

        def submitted() -> Iterator[tuple[_T, Future]]:
            try:
                for item in items:
                    yield item, pool.submit(fn, item)
            finally:
                _close(items)  # stops the model's thread and the decoder

        try:
            with contextlib.closing(_in_thread(submitted(), 4 * workers, "colorize-film-smooth")) as ready:
                for item, result in ready:
                    yield item, result.result()
        finally:
            pool.shutdown(cancel_futures=True)


class _ShotMeter:
    """Per-shot flicker (before/after smoothing) and colourfulness, reset at every cut. Fed in
    order (one thread); each frame pair's flicker is computed in ``pool`` (pairs are independent)
    and summed in order, so the figures do not depend on the number of threads."""

    def __init__(self, temporal: bool, pool: ThreadPoolExecutor | None) -> None:
        self.temporal, self.pool = temporal, pool  # no pool: no flicker measured
        self.shots: list[ShotStats] = []
        self.colour_sum = self.colour_n = 0
        self._pairs: deque[Future] = deque()

    def start(self, frame: int) -> None:
        self.close(frame)
        self.shots.append(ShotStats(frame, frame))
        self._colour: list[float] = []
        self._prev: tuple[np.ndarray, np.ndarray, np.ndarray | None] | None = None
        self._after = self._before = 0.0
        self._n = 0

    def add(self, frame: int, l_small: np.ndarray, ab_raw: np.ndarray, ab: np.ndarray, rgb: np.ndarray) -> None:
        shot = self.shots[-1]
        if (frame - shot.start) % 12 == 0:
            self._colour.append(colourfulness(rgb))
        if self.pool is not None:
            cur = (l_to_u8(l_small), _unit_rgb(l_small, ab), _unit_rgb(l_small, ab_raw) if self.temporal else None)
            if self._prev is not None and self._prev[0].shape == cur[0].shape:
                self._pairs.append(self.pool.submit(_pair_flicker, self._prev, cur))
                while len(self._pairs) > 4 * RENDER_WORKERS:  # a bounded backlog
                    self._take()
            self._prev = cur
        shot.end = frame + 1

    def _take(self) -> None:
        errors = self._pairs.popleft().result()
        if errors is not None:
            self._after += errors[0]
            self._before += errors[1]
            self._n += 1

    def close(self, frame: int) -> None:
        if not self.shots:
            return
        while self._pairs:
            self._take()
        shot = self.shots[-1]
        if self._colour:
            shot.colourfulness = float(np.mean(self._colour))
            self.colour_sum += sum(self._colour)
            self.colour_n += len(self._colour)
        if self._n:
            shot.warping_error = self._after / self._n
            shot.warping_error_unsmoothed = self._before / self._n

    def mean(self, attr: str) -> float | None:
        """Frame-pair-weighted mean over shots."""
        pairs = [(getattr(s, attr), s.end - s.start - 1) for s in self.shots if getattr(s, attr) is not None]
        total = sum(n for _, n in pairs)
        return sum(v * n for v, n in pairs) / total if total else None


def _unit_rgb(lum: np.ndarray, ab: np.ndarray) -> np.ndarray:
    return lab_to_rgb(lum, ab, np.uint8).astype(np.float32) / 255


def _pair_flicker(prev: tuple[np.ndarray, np.ndarray, np.ndarray | None],
                  cur: tuple[np.ndarray, np.ndarray, np.ndarray | None]) -> tuple[float, float] | None:
    """(after, before smoothing) warping error of one frame pair, on one flow of the original L
    (the before rendering is absent when nothing was smoothed: then both are the same)."""
    back, valid = thread_flow_pair()(prev[0], cur[0], 1.0)
    after = pair_warping_error(prev[1], cur[1], back, valid)
    if after is None:
        return None
    before = after if cur[2] is None else pair_warping_error(prev[2], cur[2], back, valid)
    return after, before if before is not None else after


def colorize_film(info: FilmInfo, outputs: list[Path], colorizer: Colorizer, *, temporal: bool = True,
                  temporal_params: TemporalParams = TemporalParams(), refine_method: str = "none",
                  refine_params: dict[str, Any] | None = None, batch_size: int = 8, measure_flicker: bool = False,
                  start: int = 0, end: int | None = None, cuts: Iterable[int] | None = None,
                  warmup: int = 0, seek: float | None = None, stills: Iterable[int] = (),
                  audio: bool = True, on_frame: Callable[[int], None] | None = None) -> FilmResult:
    """Colorize frames [start, end) of ``info``'s film into each of ``outputs`` (rendition by
    extension), in one pass. ``cuts``: frames where shots start (found with :func:`find_cuts`
    when not given); ``warmup`` frames before ``start`` prime the smoother without being
    written (a long shot split across units; the caller keeps cuts out of them), and ``seek``
    is the :func:`~colorize_core.film.seek_point` of frame ``start - warmup``; ``stills``: frames to keep (gray, colour) for
    the manifest. ``audio``: carry the source's sound, subtitles, chapters, tags and timecode
    (false for shot segments).

    Raises CorruptMediaError (truncated input, encoder failure) or UnsupportedMediaError; on
    error no output file is left behind.
    """
    started = time.time()
    end = info.frames if end is None else min(end, info.frames)
    cut_set = set(find_cuts(info) if cuts is None else cuts)
    first = max(0, start - warmup)
    keep = set(stills)
    whole = start == 0 and end == info.frames
    times = frame_times(info) if info.vfr and audio and whole else None  # each frame keeps its time
    encoders = [Encoder(info, out, audio=audio, note=NOTE, times=times) for out in outputs]
    smoother = TemporalSmoother(temporal_params)
    flicker = ThreadPoolExecutor(max_workers=RENDER_WORKERS, thread_name_prefix="colorize-film-flicker") \
        if measure_flicker else None
    meter = _ShotMeter(temporal, flicker)
    result = FilmResult(frames=0, cuts=[], seconds=0.0, colourfulness=0.0, flags=list(info.flags))
    if audio:
        result.notes, result.flags = carry_notes(info, [out.suffix for out in outputs])
    dtype = np.uint16 if info.deep else np.uint8

    def smoothed() -> Iterator[tuple[Any, ...]]:
        """(index, frame, L, L seen, L small, ab small, ab smoothed) of frames start..end-1, in order."""
        index = first
        for frame, lum, seen, l_small, ab_small in _predicted(decode_gray(info, first, end - first, seek=seek),
                                                              colorizer, batch_size, seen_luminance(info)):
            if index in cut_set and index > first:
                smoother.reset()
                if index > start:
                    result.cuts.append(index)
            if index < start:  # warm-up: prime the smoother only
                if temporal:
                    smoother(l_small, ab_small)
            else:
                yield index, frame, lum, seen, l_small, ab_small, smoother(l_small, ab_small) if temporal else ab_small
            index += 1

    def render(item: tuple[Any, ...]) -> np.ndarray:
        lum, seen, ab = item[2], item[3], item[6]   # flood-fill's regions are found in what the model saw
        return lab_to_rgb(lum, refine(seen, resize_ab(ab, *lum.shape), refine_method, refine_params), dtype)

    index = start
    measuring = ThreadPoolExecutor(max_workers=1, thread_name_prefix="colorize-film-meter")  # in order
    measures: deque[Future] = deque()
    try:
        # Smoothing (in order) runs in a thread of its own, rendering in a pool, measuring in a
        # thread of its own, writing here: with the model's thread, every stage overlaps the others.
        for item, rgb in _ordered(smoothed(), render, RENDER_WORKERS):
            index, frame, _, _, l_small, ab_small, ab = item
            if index == start or index in cut_set:
                measures.append(measuring.submit(meter.start, index))
            for enc in encoders:
                enc.write(rgb)
            measures.append(measuring.submit(meter.add, index, l_small, ab_small, ab, rgb))
            while len(measures) > 4 * RENDER_WORKERS:  # a bounded backlog, whatever the film's length
                measures.popleft().result()
            if index in keep:
                result.stills[index] = (frame.copy(), rgb)
            index += 1
            if on_frame is not None:
                on_frame(index - start)
        while measures:
            measures.popleft().result()
        meter.close(index)
        for enc in encoders:
            enc.close()
    except BaseException:
        for enc in encoders:
            enc.abort()
        raise
    finally:
        measuring.shutdown(cancel_futures=True)
        if flicker is not None:
            flicker.shutdown(cancel_futures=True)
    result.frames, result.seconds, result.shots = index - start, time.time() - started, meter.shots
    result.colourfulness = meter.colour_sum / max(meter.colour_n, 1)
    if measure_flicker:
        result.warping_error = meter.mean("warping_error")
        result.warping_error_unsmoothed = meter.mean("warping_error_unsmoothed")
    return result
