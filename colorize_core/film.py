"""Film through ffmpeg-python pipes: probe, stream gray frames out, stream colour frames in.

ffmpeg and ffprobe only ever read local files through a whitelist of container demuxers, so a
playlist (HLS) or a concat script renamed ``.mp4`` is refused instead of followed. Frames are
decoded upright (display rotation applied) with ``fps_mode=passthrough`` (no frame dropped or
duplicated), and every audio stream is copied, bit-exact, into the colour renditions.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import IO, Any

import ffmpeg
import numpy as np

from colorize_core.errors import CorruptMediaError, MediaTooLargeError, UnsupportedMediaError

FILM_SUFFIXES = {".mp4", ".m4v", ".mov", ".mkv", ".avi", ".mxf", ".webm", ".mts", ".ts", ".mpg", ".mpeg", ".dv"}
SAFE_DEMUXERS = ("mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,mxf,mpegts,mpeg,dv,mjpeg,yuv4mpegpipe,nut,flv,ogg")
SAFETY = {"protocol_whitelist": "file,pipe", "format_whitelist": SAFE_DEMUXERS}
RENDITIONS = {
    # FFV1 version 3, intra-only with slice CRCs, planar RGB: lossless colour, the archival master.
    ".mkv": {"vcodec": "ffv1", "level": 3, "g": 1, "slicecrc": 1, "slices": 4, "pix_fmt": "gbrp", "f": "matroska"},
    # H.264 access copy that starts playing before it is fully downloaded.
    ".mp4": {"vcodec": "libx264", "preset": "medium", "crf": 18, "pix_fmt": "yuv420p", "movflags": "+faststart",
             "f": "mp4"},
    # ProRes 422 HQ, for workflows that want it as master.
    ".mov": {"vcodec": "prores_ks", "profile:v": 3, "pix_fmt": "yuv422p10le", "f": "mov"},
}


@dataclass
class FilmInfo:
    path: str
    width: int                 # as displayed (rotation applied)
    height: int
    rotation: int              # degrees the player rotates the stored frames
    fps: Fraction              # r_frame_rate
    avg_fps: Fraction
    frames: int
    duration: float
    codec: str
    pix_fmt: str
    sar: str
    color_range: str
    interlaced: bool
    vfr: bool
    audio: list[dict[str, Any]] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["fps"], d["avg_fps"] = str(self.fps), str(self.avg_fps)
        return d


def _ratio(text: str | None) -> Fraction:
    try:
        value = Fraction(text or "0/1")
    except (ValueError, ZeroDivisionError):
        return Fraction(0)
    return value


def _probe_error(exc: ffmpeg.Error) -> Exception:
    msg = (exc.stderr or b"").decode("utf-8", "replace").strip().splitlines()
    last = msg[-1] if msg else "ffprobe failed"
    if "whitelist" in last:
        return UnsupportedMediaError(f"not a plain video file (a playlist or script?): {last}")
    return CorruptMediaError(f"not a decodable video: {last}")


def probe(path: str | Path, max_pixels: int = 250_000_000) -> FilmInfo:
    """Describe a film. Raises CorruptMediaError, UnsupportedMediaError, MediaTooLargeError."""
    path = str(path)
    if os.path.getsize(path) == 0:
        raise CorruptMediaError("empty file (0 bytes)")
    try:
        meta = ffmpeg.probe(path, **SAFETY)
        packets = ffmpeg.probe(path, select_streams="v:0", count_packets=None,
                               show_entries="stream=nb_read_packets", **SAFETY)
    except ffmpeg.Error as exc:
        raise _probe_error(exc) from None
    video = next((s for s in meta.get("streams", []) if s.get("codec_type") == "video"
                  and not s.get("disposition", {}).get("attached_pic")), None)
    if video is None:
        kinds = sorted({s.get("codec_type", "?") for s in meta.get("streams", [])}) or ["none"]
        raise UnsupportedMediaError(f"no video stream (streams: {', '.join(kinds)})")
    width, height = int(video.get("width") or 0), int(video.get("height") or 0)
    if width <= 0 or height <= 0:
        raise CorruptMediaError(f"video stream without a frame size ({width}x{height})")
    if width * height > max_pixels:
        raise MediaTooLargeError(f"declared frame size {width}x{height} exceeds the limit of "
                                 f"{max_pixels / 1e6:.0f} MP; refused before decoding")
    rotation = 0
    for side in video.get("side_data_list", []) or []:
        if "rotation" in side:
            rotation = int(side["rotation"])
    rotation = rotation or int(video.get("tags", {}).get("rotate", 0) or 0)
    if abs(rotation) % 180 == 90:
        width, height = height, width
    fps, avg = _ratio(video.get("r_frame_rate")), _ratio(video.get("avg_frame_rate"))
    streams = packets.get("streams") or [{}]
    frames = int(streams[0].get("nb_read_packets") or video.get("nb_frames") or 0)
    if frames == 0:
        raise CorruptMediaError("the video stream holds no frames")
    duration = float(video.get("duration") or meta.get("format", {}).get("duration") or 0)
    declared = duration * float(avg or fps)
    if declared and frames < declared * 0.98 - 1:  # the header promises more than the file holds
        raise CorruptMediaError(f"truncated film: {frames} frames present, about {round(declared)} declared "
                                f"({duration:.2f} s at {float(avg or fps):.3f} frames/s)")
    field_order = video.get("field_order", "progressive")
    info = FilmInfo(path=path, width=width, height=height, rotation=rotation, fps=fps or avg, avg_fps=avg or fps,
                    frames=frames, duration=duration, codec=video.get("codec_name", "?"),
                    pix_fmt=video.get("pix_fmt", "?"), sar=video.get("sample_aspect_ratio", "1:1") or "1:1",
                    color_range=video.get("color_range", "unknown"), interlaced=field_order not in ("progressive", "unknown"),
                    vfr=bool(fps and avg and abs(float(fps) - float(avg)) > 0.01 * float(fps)),
                    audio=[{"index": s["index"], "codec": s.get("codec_name"), "channels": s.get("channels"),
                            "sample_rate": s.get("sample_rate")}
                           for s in meta.get("streams", []) if s.get("codec_type") == "audio"])
    if info.interlaced:
        info.flags.append("interlaced")
    if info.vfr:
        info.flags.append("variable-frame-rate")
    if width % 2 or height % 2:
        info.flags.append("odd-dimensions")
    return info


class _Drain(threading.Thread):
    """Collects a process's stderr without letting the pipe fill up."""

    def __init__(self, stream: IO[bytes]) -> None:
        super().__init__(daemon=True)
        self.stream, self.chunks = stream, []

    def run(self) -> None:
        for chunk in iter(lambda: self.stream.read(8192), b""):
            self.chunks.append(chunk)

    @property
    def text(self) -> str:
        return b"".join(self.chunks).decode("utf-8", "replace")[-2000:]


def decode_gray(info: FilmInfo) -> Iterator[np.ndarray]:
    """Stream the film's frames as HxW uint8 luma, upright, without dropping or duplicating."""
    proc = (ffmpeg.input(info.path, **SAFETY)
            .output("pipe:", format="rawvideo", pix_fmt="gray", fps_mode="passthrough", map="0:v:0", sn=None)
            .global_args("-nostdin", "-loglevel", "error")
            .run_async(pipe_stdout=True, pipe_stderr=True))
    drain = _Drain(proc.stderr)
    drain.start()
    size = info.width * info.height
    count = 0
    try:
        while True:
            buf = proc.stdout.read(size)
            if len(buf) < size:
                break
            count += 1
            yield np.frombuffer(buf, np.uint8).reshape(info.height, info.width)
    finally:
        proc.stdout.close()
        code = proc.wait()
        drain.join()
    if code != 0 or count == 0:
        raise CorruptMediaError(f"decoding failed after {count} of {info.frames} frames: {drain.text.strip()}")
    if count < info.frames:
        raise CorruptMediaError(f"truncated film: decoded {count} of {info.frames} frames ({drain.text.strip()})")


class Encoder:
    """Encode RGB frames written with :meth:`write` into ``out`` (rendition by extension),
    copying every audio stream of ``info``'s file; atomic: written beside, renamed on close."""

    def __init__(self, info: FilmInfo, out: Path, audio: bool = True, note: str = "") -> None:
        suffix = out.suffix.lower()
        if suffix not in RENDITIONS:
            raise UnsupportedMediaError(f"no film rendition for {suffix!r} (use {', '.join(RENDITIONS)})")
        self.out, self.info = out, info
        fd, tmp = tempfile.mkstemp(prefix=".colorize-tmp-", suffix=suffix, dir=out.parent)
        os.close(fd)
        self.tmp = Path(tmp)
        opts = dict(RENDITIONS[suffix])
        # Constant-rate sources keep their timestamps exactly; a variable-rate source is written
        # at its average rate (frame count and duration kept, per-frame timing not yet).
        rate = info.avg_fps if info.vfr else info.fps
        frames = ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{info.width}x{info.height}",
                              framerate=str(rate))
        video = frames.video
        if suffix == ".mp4" and (info.width % 2 or info.height % 2):
            video = video.filter("pad", "ceil(iw/2)*2", "ceil(ih/2)*2")  # 4:2:0 needs even sizes
        if info.sar not in ("0:1", "1:1", "N/A"):
            video = video.filter("setsar", info.sar.replace(":", "/"))
        outputs = [video]
        if audio and info.audio:
            outputs.append(ffmpeg.input(info.path, **SAFETY)["a"])
            opts["acodec"] = "copy"
        if note:
            opts["metadata"] = f"comment={note}"
        self.proc = (ffmpeg.output(*outputs, str(self.tmp), **opts)
                     .global_args("-nostdin", "-loglevel", "error", "-y")
                     .run_async(pipe_stdin=True, pipe_stderr=True))
        self.drain = _Drain(self.proc.stderr)
        self.drain.start()
        self.frames = 0

    def write(self, rgb: np.ndarray) -> None:
        try:
            self.proc.stdin.write(np.ascontiguousarray(rgb, dtype=np.uint8).tobytes())
        except BrokenPipeError:
            self.proc.wait()
            self.drain.join()
            raise CorruptMediaError(f"encoder stopped: {self.drain.text.strip()}") from None
        self.frames += 1

    def close(self) -> Path:
        """Finish encoding and move the file into place (never over an existing file)."""
        self.proc.stdin.close()
        code = self.proc.wait()
        self.drain.join()
        if code != 0:
            self.tmp.unlink(missing_ok=True)
            raise CorruptMediaError(f"encoding {self.out.name} failed: {self.drain.text.strip()}")
        try:
            os.link(self.tmp, self.out)
        finally:
            self.tmp.unlink(missing_ok=True)
        return self.out

    def abort(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.tmp.unlink(missing_ok=True)


def stream_info(path: str | Path) -> dict[str, Any]:
    """ffprobe's view of a file's streams (for checks): packets counted, JSON."""
    out = subprocess.run(["ffprobe", "-v", "error", "-count_packets", "-show_streams", "-show_format", "-of", "json",
                          str(path)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)
