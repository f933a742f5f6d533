"""Streamed film colorization: decode -> colorize in batches -> smooth -> refine -> encode.

No frame touches the disk and memory holds one batch, whatever the film's length. Cuts reset
the temporal smoother; flicker is measured as Lai et al.'s warping error before (frames
colorized independently) and after smoothing when asked.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from colorize_core.color import lab_to_rgb, luminance, resize_ab
from colorize_core.colorizer import Colorizer
from colorize_core.film import Encoder, FilmInfo, decode_gray
from colorize_core.images import NOTE
from colorize_core.metrics import colourfulness
from colorize_core.refine import refine
from colorize_core.temporal import TemporalParams, TemporalSmoother, WarpingError, is_cut, l_to_u8


@dataclass
class FilmResult:
    frames: int
    cuts: list[int]
    seconds: float
    colourfulness: float
    warping_error: float | None = None
    warping_error_unsmoothed: float | None = None
    flags: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _batches(frames: Iterator[np.ndarray], size: int) -> Iterator[list[np.ndarray]]:
    batch: list[np.ndarray] = []
    for frame in frames:
        batch.append(frame)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def colorize_film(info: FilmInfo, outputs: list[Path], colorizer: Colorizer, *, temporal: bool = True,
                  temporal_params: TemporalParams = TemporalParams(), refine_method: str = "none",
                  batch_size: int = 8, measure_flicker: bool = False,
                  on_frame: Callable[[int], None] | None = None) -> FilmResult:
    """Colorize ``info``'s film into each of ``outputs`` (rendition by extension), in one pass.

    Raises CorruptMediaError (truncated input, encoder failure) or UnsupportedMediaError; on
    error no output file is left behind.
    """
    started = time.time()
    encoders = [Encoder(info, out, note=NOTE) for out in outputs]
    smoother = TemporalSmoother(temporal_params)
    flicker = WarpingError() if measure_flicker else None
    flicker_raw = WarpingError() if measure_flicker and temporal else None
    cuts: list[int] = []
    colour_sum, colour_n, index = 0.0, 0, 0
    prev_small: np.ndarray | None = None
    try:
        for batch in _batches(decode_gray(info), batch_size):
            lums = [luminance(f) for f in batch]
            for frame, lum, (l_small, ab_small) in zip(batch, lums, colorizer.predict_ab_small(lums)):
                small_u8 = l_to_u8(l_small)
                if prev_small is not None and is_cut(prev_small, small_u8):
                    cuts.append(index)
                    smoother.reset()
                    for meter in (flicker, flicker_raw):
                        if meter is not None:
                            meter.reset()
                prev_small = small_u8
                ab = smoother(l_small, ab_small) if temporal else ab_small
                full = refine(lum, resize_ab(ab, *lum.shape), refine_method)
                rgb = lab_to_rgb(lum, full, np.uint8)
                for enc in encoders:
                    enc.write(rgb)
                if flicker is not None:
                    flicker.add(frame, rgb.astype(np.float32) / 255)
                if flicker_raw is not None:
                    raw = lab_to_rgb(lum, refine(lum, resize_ab(ab_small, *lum.shape), refine_method), np.uint8)
                    flicker_raw.add(frame, raw.astype(np.float32) / 255)
                if index % 12 == 0:
                    colour_sum += colourfulness(rgb)
                    colour_n += 1
                index += 1
                if on_frame is not None:
                    on_frame(index)
        for enc in encoders:
            enc.close()
    except BaseException:
        for enc in encoders:
            enc.abort()
        raise
    result = FilmResult(frames=index, cuts=cuts, seconds=time.time() - started,
                        colourfulness=colour_sum / max(colour_n, 1), flags=list(info.flags))
    if flicker is not None:
        result.warping_error = flicker.value
        result.warping_error_unsmoothed = flicker_raw.value if flicker_raw is not None else flicker.value
    return result
