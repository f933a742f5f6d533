"""Film through ffmpeg-python pipes: probe, stream gray frames out, stream colour frames in.

ffmpeg and ffprobe only ever read local files through a whitelist of container demuxers, so a
playlist (HLS) or a concat script renamed ``.mp4`` is refused instead of followed. Frames are
decoded upright (display rotation applied) with ``fps_mode=passthrough`` (no frame dropped or
duplicated), and every audio stream is copied, bit-exact, into each colour rendition whose
container holds it, with the source's subtitles, chapters, descriptive metadata and timecode
(:func:`carried`).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import math
import os
import re
import struct
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import IO, Any, NamedTuple

import ffmpeg
import numpy as np
import PIL.Image

from colorize_core.color import KODAK, PrintingDensity, gray_to_srgb, profile_name, rgb_neutral
from colorize_core.errors import (
    ColorizeError,
    CorruptMediaError,
    MediaTooLargeError,
    StorageError,
    UnsupportedMediaError,
)
from colorize_core.images import JP2_SIGNATURE
from colorize_core.storage import new_file_beside

FILM_SUFFIXES = {".mp4", ".m4v", ".mov", ".mkv", ".avi", ".mxf", ".webm", ".mts", ".ts", ".mpg", ".mpeg", ".dv"}
SAFE_DEMUXERS = ("mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,mxf,mpegts,mpeg,dv,mjpeg,yuv4mpegpipe,nut,flv,ogg")
# Containers whose index ffmpeg seeks by, so -ss lands on the key frame at or before its target
INDEXED_DEMUXERS = ("mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm")
SAFETY = {"protocol_whitelist": "file,pipe", "format_whitelist": SAFE_DEMUXERS}
SEQUENCE_SUFFIXES = {".dpx", ".tif", ".tiff", ".png", ".jp2", ".j2c"}   # .jp2/.j2c: JPEG 2000
SEQUENCE_SAFETY = {"protocol_whitelist": "file", "format_whitelist": "image2"}
# A frame sequence's sound comes as a file beside its frames (BWF/WAV, AIFF, FLAC).
SOUND_SUFFIXES = {".wav", ".bwf", ".aif", ".aiff", ".flac"}
SOUND_SAFETY = {"protocol_whitelist": "file", "format_whitelist": "wav,w64,aiff,flac"}
FRAME_NAME = re.compile(r"^(?P<prefix>.*?)(?P<number>\d+)(?P<ext>\.[A-Za-z][A-Za-z0-9]*)$")
# A DPX image element's transfer characteristic (SMPTE 268M, by its code). Film scanners write
# printing density or logarithmic code values: a flat picture until graded. The model is shown
# them through Kodak's display conversion; the renditions keep the code values (flagged
# ``log-encoded``, their transfer left unstated).
DPX_TRANSFERS = ("user-defined", "printing density", "linear", "logarithmic", "unspecified video", "SMPTE 274M",
                 "ITU-R 709-4", "ITU-R 601-5 B/G", "ITU-R 601-5 M", "NTSC composite", "PAL composite", "Z linear",
                 "Z homogeneous")
LOG_TRANSFERS = frozenset({"printing density", "logarithmic"})
# Subtitle codecs each rendition's container takes as they are; a text subtitle it does not take
# is converted to the container's text format (its words and times kept); a bitmap one cannot be.
TEXT_SUBTITLES = frozenset({"subrip", "ass", "ssa", "webvtt", "mov_text", "text"})
SUBTITLES_KEPT = {"matroska": (frozenset({"subrip", "ass", "ssa", "webvtt", "hdmv_pgs_subtitle", "dvd_subtitle",
                                          "dvb_subtitle"}), "srt"),
                  "mp4": (frozenset({"mov_text"}), "mov_text"),
                  "mov": (frozenset({"mov_text"}), "mov_text")}
# The largest picture the common H.264 decoders take (level 5.2's 4096x2304: Windows' decoder, so
# Edge and Firefox there, and most hardware). The access copy of a larger scan (a 35 mm frame at
# 4K full aperture, 4096x3112) is scaled to fit, turned to the picture's orientation; the master
# and ProRes keep every pixel.
ACCESS_MAX = (4096, 2304)


def access_size(width: int, height: int) -> tuple[int, int] | None:
    """The MP4 access copy's frame size when a ``width`` x ``height`` picture must be scaled to fit
    :data:`ACCESS_MAX` (even numbers, for 4:2:0); None when it fits as it is."""
    box = ACCESS_MAX if width >= height else ACCESS_MAX[::-1]
    if width <= box[0] and height <= box[1]:
        return None
    scale = min(box[0] / width, box[1] / height)
    return max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)


# Audio codecs each rendition's container takes as they are (Matroska: all). A stream another
# container cannot hold is encoded: to AAC in the MP4 access copy (a lossy copy anyway), to PCM in
# QuickTime (lossless from the decoded sound); the Matroska master always copies it bit-exact.
PCM = frozenset(f"pcm_{t}" for t in ("s16le", "s16be", "s24le", "s24be", "s32le", "s32be", "f32le", "f32be",
                                     "f64le", "f64be", "u8", "s8"))
LOSSLESS_AUDIO = frozenset({"flac", "alac", "wavpack", "tta", "mlp", "truehd"})
AUDIO_KEPT = {"mp4": frozenset({"aac", "mp3", "mp2", "ac3", "eac3", "alac", "opus"}),
              "mov": frozenset({"aac", "mp3", "mp2", "ac3", "eac3", "alac"}) | PCM}
# Container tags that describe the file, not the film: the muxer writes its own.
TECHNICAL_TAGS = frozenset({"major_brand", "minor_version", "compatible_brands", "encoder", "creation_time",
                            "duration", "timecode"})
_DEEP = re.compile(r"(9|10|12|14|16)(le|be)$|^(rgb48|rgba64|bgr48|bgra64|gray16|ya16)")
RENDITIONS = {
    # FFV1 version 3, intra-only with slice CRCs, planar RGB: lossless colour, the archival master.
    ".mkv": {"vcodec": "ffv1", "level": 3, "g": 1, "slicecrc": 1, "slices": 4, "pix_fmt": "gbrp", "f": "matroska"},
    # H.264 access copy that starts playing before it is fully downloaded.
    ".mp4": {"vcodec": "libx264", "preset": "medium", "crf": 18, "pix_fmt": "yuv420p", "movflags": "+faststart",
             "f": "mp4"},
    # ProRes 422 HQ, for workflows that want it as master.
    ".mov": {"vcodec": "prores_ks", "profile:v": 3, "pix_fmt": "yuv422p10le", "f": "mov"},
}
# QuickTime and MP4 state where a stream starts (a picture after its sound) in the movie's time
# scale, ffmpeg's default 1000: a thousandth of a second, rounded down. Ticks of 1/90000 s keep a
# sound's or a picture's lead as the source's MPEG-TS clock gives it.
MOVIE_TIMESCALE = 90_000
# The colour frames are sRGB. The master stores them as they are and says so; the Y'CbCr
# renditions convert them with the BT.709 matrix to limited range and are tagged BT.709
# throughout, so that players do not guess (an untagged file is read as BT.601 by some and
# BT.709 by others: a visible hue shift). Names as ffmpeg's ``setparams`` filter takes them.
SRGB = {"colorspace": "gbr", "color_primaries": "bt709", "color_trc": "iec61966-2-1", "range": "pc"}
BT709 = {"colorspace": "bt709", "color_primaries": "bt709", "color_trc": "bt709", "range": "tv"}
COLOUR = {".mkv": SRGB, ".mp4": BT709, ".mov": BT709}


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
    bit_depth: int = 8         # 8, or 16 when the source holds more than 8 bits per sample
    start_time: float = 0.0    # the container's start: ffmpeg's -ss is relative to it
    video_start: float = 0.0   # the first frame's time (later than start_time when the sound starts first)
    sequence: dict[str, Any] | None = None   # frame sequences: pattern, start_number
    times: list[float] | None = field(default=None, repr=False)   # frame times, when probe read them
    keys: list[float] | None = field(default=None, repr=False)    # key frames' times, when probe read them
    genpts: bool = False               # frames without presentation times: ffmpeg generates them (fflags +genpts)
    indexed: bool = field(default=False, repr=False)  # MP4/MOV or Matroska: sought by its index (seek_point)
    restarts_at: int | None = None     # the packet (in file order) where the picture's timestamps go back, if they do
    unseekable_at: int | None = None   # a frame that decoding from a seek does not reach (seek_trial), if one was found
    subtitles: list[dict[str, Any]] = field(default_factory=list)  # index, codec, language
    chapters: int = 0
    timecode: str | None = None        # of the first frame (QuickTime tmcd track, MXF or Matroska tag)
    tags: dict[str, str] = field(default_factory=dict)   # the container's descriptive tags (title, ...), lower case
    not_carried: list[str] = field(default_factory=list)  # the source's streams no rendition holds
    sound: str | None = None           # a frame sequence's sound file (its audio streams are ``audio``)
    transfer: str | None = None        # a DPX sequence's declared transfer characteristic (DPX_TRANSFERS)
    printing_density: PrintingDensity | None = None   # how log frames are viewed; None: not log-encoded
    field_order: str = "progressive"   # an interlaced source's field shown first: tt (top) or bb (bottom)
    fields_from: float | None = None   # an interlaced source that starts progressive: the first fields seen (s)

    @property
    def picture_offset(self) -> float:
        """Seconds from the start of the source's streams to its first frame: a whole-film
        rendition starts its picture that much after its sound and subtitles, as the source does."""
        return max(0.0, self.video_start - self.start_time) if not self.sequence else 0.0

    @property
    def carries_source(self) -> bool:
        """Whether a whole-film rendition reads the source again for streams beside the picture
        (a frame sequence: its sound file)."""
        if self.sequence:
            return bool(self.sound and self.audio)
        return bool(self.audio or self.subtitles or self.chapters or self.tags)

    def sound_input(self) -> Any:
        """The input the sound and the other streams come from: the film, or a sequence's sound file."""
        return ffmpeg.input(self.sound, **SOUND_SAFETY) if self.sequence else self.input()

    @property
    def log_encoded(self) -> bool:
        """Whether the frames hold log (printing-density) code values, not a picture for display."""
        return self.printing_density is not None

    @property
    def deep(self) -> bool:
        return self.bit_depth > 8

    def input(self) -> Any:
        """This film as an ffmpeg-python input node (restricted to local, plain files)."""
        if self.sequence:
            return ffmpeg.input(self.sequence["pattern"], f="image2", framerate=str(self.fps),
                                start_number=self.sequence["start_number"], **SEQUENCE_SAFETY)
        return ffmpeg.input(self.path, **SAFETY)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, without the frame times (a long film has a great many)."""
        d = asdict(self)
        d["fps"], d["avg_fps"] = str(self.fps), str(self.avg_fps)
        d.pop("times")
        d.pop("keys")
        d.pop("indexed")   # like the times: what planning units needs, not a fact to record
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FilmInfo:
        pd = d.get("printing_density")
        return cls(**{**d, "fps": Fraction(d["fps"]), "avg_fps": Fraction(d["avg_fps"]),
                      "printing_density": PrintingDensity(**pd) if pd else None})


def _seconds(*values: Any) -> float | None:
    """The first of ffprobe's times ``values`` that is one ("N/A" and missing are not), in seconds."""
    for value in values:
        try:
            return float(value)
        except (TypeError, ValueError):
            continue
    return None


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


FIELD_NAMES = {"tt": "top", "bb": "bottom"}
FIELD_SAMPLES = 16   # key frames, spread over the film, whose fields probe reads


def _field_order(path: str, video: dict[str, Any], keys: list[float]) -> tuple[str, float | None]:
    """Whether a film is interlaced and which field it shows first: "tt" (top), "bb" (bottom) or
    "progressive"; and when its first frame read is progressive but a later one is not (a
    programme after a progressive leader, a capture that changes mode), the later one's time in
    seconds from the first key frame (else None). Read from decoded frames, as players go by
    (ffprobe's stream-level order misses some interlaced H.264 and calls bottom-first H.264
    "tt"): :data:`FIELD_SAMPLES` of the key frames at ``keys`` (their times, in order), the first
    and the last among them, only key frames decoded. Each is read from the key frame before it:
    a seek in an MPEG-TS capture can land past its target. Else from the stream's order (its
    first letter: the field coded first). One interlaced frame makes the film interlaced: coding
    progressive frames as fields costs little; coding two fields as one picture bleeds colour
    from one into the other."""
    picks = sorted({i * (len(keys) - 1) // (FIELD_SAMPLES - 1) for i in range(FIELD_SAMPLES)}) if keys else []
    intervals = [f"%{keys[j] + 0.001:.6f}" if j == 0 else f"{keys[j - 1]:.6f}%{keys[j] + 0.001:.6f}" for j in picks]
    try:
        frames = ffmpeg.probe(path, select_streams=str(video["index"]), read_intervals=",".join(intervals) or "%+#1",
                              skip_frame="nokey", show_frames=None,
                              show_entries="frame=best_effort_timestamp_time,interlaced_frame,top_field_first",
                              **SAFETY).get("frames", [])
    except ffmpeg.Error:
        frames = []
    frames = [(_seconds(f.get("best_effort_timestamp_time")), f) for f in frames if "interlaced_frame" in f]
    if frames:
        # In time order; a frame without a time (the last a decoder with B-frames gives out) after them
        frames.sort(key=lambda tf: (tf[0] is None, tf[0] or 0.0))
        fields = next(((t, f) for t, f in frames if int(f["interlaced_frame"])), None)
        if fields is None:
            return "progressive", None
        order = "tt" if int(fields[1].get("top_field_first", 1)) else "bb"
        if fields[1] is frames[0][1] or fields[0] is None or frames[0][0] is None or not keys:
            return order, None
        return order, round(max(0.0, fields[0] - keys[0]), 3)
    order = video.get("field_order", "progressive")
    return (order[0] * 2 if order in ("tt", "bb", "tb", "bt") else "progressive"), None


def probe(path: str | Path, max_pixels: int = 250_000_000) -> FilmInfo:
    """Describe a film. Raises CorruptMediaError, UnsupportedMediaError, MediaTooLargeError."""
    path = str(path)
    if os.path.getsize(path) == 0:
        raise CorruptMediaError("empty file (0 bytes)")
    try:
        meta = ffmpeg.probe(path, show_chapters=None, **SAFETY)
        packets = ffmpeg.probe(path, show_entries="packet=stream_index,pts_time,dts_time,duration_time,flags",
                               **SAFETY)
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
    ends: dict[int, float] = {}    # per stream: where its last packet ends
    frames, times, keys = 0, [], []
    latest, restarts_at = -math.inf, None   # the picture's latest time so far; where its times go back
    for pkt in packets.get("packets", []):
        index = int(pkt.get("stream_index", -1))
        if index == video["index"] and str(pkt.get("flags", "")).startswith("K"):
            key = _seconds(pkt.get("pts_time"), pkt.get("dts_time"))  # AVI with B-frames: decoding times only
            if key is not None:
                keys.append(key)
        if _discarded(pkt):
            continue
        frames += index == video["index"]
        if index == video["index"] and (t := _seconds(pkt.get("pts_time"), pkt.get("dts_time"))) is not None:
            # B-frames come before the frames they follow, by a few frames: not by a second or more
            if restarts_at is None and t < latest - max(1.0, 16 / float(fps or avg or 25)):
                restarts_at = frames - 1
            latest = max(latest, t)
        pts = _seconds(pkt.get("pts_time"))
        if pts is None:
            continue
        end = pts + (_seconds(pkt.get("duration_time")) or 0.0)
        ends[index] = max(ends.get(index, end), end)
        if index == video["index"]:
            times.append(pts)
    if frames == 0:
        raise CorruptMediaError("the video stream holds no frames")
    _check_complete(video, meta.get("format", {}), ends, frames, fps or avg)
    duration = _video_duration(video) or float(meta.get("format", {}).get("duration") or 0)
    field_order, fields_from = _field_order(path, video, sorted(keys))
    info = FilmInfo(path=path, width=width, height=height, rotation=rotation, fps=fps or avg, avg_fps=avg or fps,
                    frames=frames, duration=duration, codec=video.get("codec_name", "?"),
                    pix_fmt=video.get("pix_fmt", "?"), sar=video.get("sample_aspect_ratio", "1:1") or "1:1",
                    color_range=video.get("color_range", "unknown"), interlaced=field_order != "progressive",
                    vfr=bool(fps and avg and abs(float(fps) - float(avg)) > 0.01 * float(fps)),
                    audio=_audio_streams(meta))
    info.bit_depth = 16 if _DEEP.search(info.pix_fmt) else 8
    info.field_order, info.fields_from = field_order, fields_from
    info.start_time = float(meta.get("format", {}).get("start_time") or 0)
    info.indexed = meta.get("format", {}).get("format_name") in INDEXED_DEMUXERS
    _other_streams(info, meta, video["index"])
    if len(times) != frames:  # decoding times only (AVI, MPEG-PS with B-frames): as ffmpeg's decoder times them
        times, keys = _packet_times(path, video["index"], genpts=True)
        info.genpts = len(times) == frames
    if len(times) == frames:
        info.times = sorted(times)
    info.keys = sorted(keys)
    info.video_start = min(times) if times else info.start_time
    if restarts_at is not None:   # files joined end to end: the times do not address frames
        info.restarts_at = restarts_at
        info.flags.append("timestamps-restart")
    if info.interlaced:
        info.flags.append("interlaced")
    if info.vfr:
        info.flags.append("variable-frame-rate")
    if width % 2 or height % 2:
        info.flags.append("odd-dimensions")
    return info


def _other_streams(info: FilmInfo, meta: dict[str, Any], video_index: int) -> None:
    """Fill in what a film holds beside its picture and sound: subtitles, chapters, timecode,
    descriptive tags, and a description of each stream no rendition can carry (flagged)."""
    info.chapters = len(meta.get("chapters") or [])
    tags = (meta.get("format") or {}).get("tags") or {}
    for k, v in tags.items():  # names as MP4 and Matroska both take them (Matroska's come in capitals)
        if k.lower() not in TECHNICAL_TAGS:
            info.tags.setdefault(k.lower(), str(v))
    timecodes = [tags.get(k) for k in tags if k.lower() == "timecode"]
    for st in meta.get("streams", []):
        kind, codec, index = st.get("codec_type", "?"), st.get("codec_name", "?"), st["index"]
        st_tags = st.get("tags") or {}
        if st_tags.get("timecode"):
            timecodes.insert(0, st_tags["timecode"])
        if index == video_index or kind == "audio":
            continue
        if kind == "subtitle":
            info.subtitles.append({"index": index, "codec": codec, "language": st_tags.get("language", "und")})
        elif kind == "data" and st.get("codec_tag_string") == "tmcd":
            continue  # the timecode track: written again from its timecode
        elif kind == "data" and st.get("codec_tag_string") == "text" and info.chapters:
            continue  # QuickTime's chapter track: the chapters are carried
        else:
            what = "cover picture" if (st.get("disposition") or {}).get("attached_pic") else kind
            info.not_carried.append(f"stream {index} ({what}, {codec})")
    info.timecode = next((t for t in timecodes if t), None)
    if info.not_carried:
        info.flags.append("streams-not-carried")


@dataclass
class Carried:
    """What a rendition carries from the source beside the colour picture (:func:`carried`)."""
    streams: list[Any]          # the source's streams to map (ffmpeg-python), after the picture
    options: dict[str, Any]     # output options: codecs of those streams
    metadata: dict[str, str]    # global tags to write (ffmpeg's own copy of the first input's is off)
    notes: list[str]            # what is converted or left out, for the manifest and the CLI
    left_out: bool = False      # a stream of the source this rendition cannot hold

    def command(self, node: Any, out: Path | str) -> list[str]:
        """``node``'s ffmpeg command line (an ffmpeg-python output to ``out``) with the tags."""
        args = node.compile()
        at = len(args) - 1 - args[::-1].index(str(out))
        tags = [x for k, v in self.metadata.items() for x in ("-metadata", f"{k}={v}")]
        return [*args[:at], *tags, *args[at:]]


def carried(info: FilmInfo, fmt: str, note: str = "", whole: bool = True) -> Carried:
    """What a whole-film rendition in container ``fmt`` (``matroska``, ``mp4``, ``mov``) carries
    from the source beside the colour picture. Every audio stream is copied where the container
    takes it (else encoded: :data:`AUDIO_KEPT`, which the notes say); each subtitle
    stream is copied, or converted when it is text the container does not take as it is, or
    left out (a bitmap subtitle in MP4), which the notes say; chapters (input 1: the source)
    and the descriptive tags come along, the comment tag becoming ``note`` followed by the
    source's own; the timecode is written again (a QuickTime timecode track, a Matroska tag).
    Not ``whole`` (a shot segment, or a picture to be retimed): only the comment."""
    metadata = {} if not whole else {k: v for k, v in info.tags.items() if k != "comment"}
    comment = "\n".join(x for x in (note, info.tags.get("comment", "") if whole else "") if x)
    if comment:
        metadata["comment"] = comment
    options: dict[str, Any] = {"map_metadata:g": -1}
    if whole and info.timecode:
        options["timecode"] = info.timecode
    if not whole or not info.carries_source:
        return Carried([], options, metadata, [])
    source = info.sound_input()
    streams = [source["a" if info.audio else "a?"]]  # "a?": the source is an input even without sound
    options["map_chapters"] = 1
    notes: list[str] = []
    for k, a in enumerate(info.audio):
        label = f"audio stream {a['index']} ({a['codec']})"
        if fmt not in AUDIO_KEPT or a["codec"] in AUDIO_KEPT[fmt]:
            options[f"c:a:{k}"] = "copy"
        elif fmt == "mp4":
            rate = min(96 * int(a.get("channels") or 2), 512)
            options.update({f"c:a:{k}": "aac", f"b:a:{k}": f"{rate}k"})
            notes.append(f"{label} encoded to AAC at {rate} kb/s: an MP4 file cannot hold {a['codec']}")
        else:  # lossless sound keeps its samples; a lossy one's decoded samples get 24 bits
            lossless = a["codec"] in LOSSLESS_AUDIO or str(a["codec"]).startswith("pcm_")
            pcm = "pcm_s16le" if lossless and 0 < int(a.get("bits") or 0) <= 16 else "pcm_s24le"
            options[f"c:a:{k}"] = pcm
            same = " (the same samples)" if lossless else ""
            notes.append(f"{label} decoded to {pcm}{same}: a {fmt} file cannot hold {a['codec']}")
    kept, text_format = SUBTITLES_KEPT.get(fmt, (frozenset(), ""))
    n, left_out = 0, False
    for sub in info.subtitles:
        label = f"subtitle stream {sub['index']} ({sub['codec']}, {sub['language']})"
        if sub["codec"] in kept:
            options[f"c:s:{n}"] = "copy"
        elif sub["codec"] in TEXT_SUBTITLES and text_format:
            options[f"c:s:{n}"] = text_format
            notes.append(f"{label} converted to {text_format}: its text and times kept, not its styling")
        else:
            notes.append(f"{label} not carried: a {fmt} file cannot hold it")
            left_out = True
            continue
        streams.append(source[str(sub["index"])])
        n += 1
    return Carried(streams, options, metadata, notes, left_out)


def picture_input(info: FilmInfo, whole: bool, *args: Any, **kwargs: Any) -> Any:
    """``ffmpeg.input(*args, **kwargs)`` for a rendition's picture; for a ``whole``-film one
    (:func:`carried`), delayed by the source's :attr:`~FilmInfo.picture_offset` so that it keeps
    its sync with the sound (ffmpeg starts each input at 0: a picture that starts after its sound
    would start with it)."""
    offset = _picture_delay(info, whole)
    if offset:
        kwargs["itsoffset"] = f"{offset:.6f}"
    return ffmpeg.input(*args, **kwargs)


def _picture_delay(info: FilmInfo, whole: bool) -> float:
    """Seconds a ``whole``-film rendition's picture starts after its other streams (0: none)."""
    offset = info.picture_offset if whole and info.carries_source else 0.0
    return offset if offset > 0.0005 else 0.0


def delayed_frames(info: FilmInfo, whole: bool, rate: Fraction, video: Any, opts: dict[str, Any]) -> Any:
    """The encoder's ``video`` (raw frames from a pipe at ``rate``), delayed as
    :func:`picture_input` delays a file's picture. A pipe's time base is one frame, so
    ``itsoffset`` would round the delay to a whole frame (up to half a frame out of sync, as
    an MPEG-TS capture's 23 ms lead became 42 ms): the frames are given ticks of at most 0.1 ms,
    a whole number of them per frame, and are encoded in that time base (``opts``)."""
    offset = _picture_delay(info, whole)
    if not offset:
        return video
    tb = Fraction(1, rate.numerator * math.ceil(10_000 / rate.numerator))
    opts["enc_time_base"] = f"{tb.numerator}:{tb.denominator}"
    return video.filter("settb", f"{tb.numerator}/{tb.denominator}").filter("setpts", f"PTS+{round(offset / tb)}")


def carry_notes(info: FilmInfo, suffixes: Iterable[str]) -> tuple[list[str], list[str]]:
    """What whole-film renditions ``suffixes`` convert or leave out of the source (streams, and a
    log scan's transfer, left unstated): (notes, the film's flags, with ``streams-not-carried``
    where one of them leaves a stream out)."""
    notes = [f"{what} not carried: no rendition holds it" for what in info.not_carried]
    if info.printing_density is not None:
        pd = info.printing_density
        notes.append(f"frames are log-encoded ({pd.origin}): the model was shown them through the "
                     f"printing-density-to-display conversion ({pd.describe()}); the renditions keep "
                     "the scan's code values, with primaries and transfer unstated: grade them for display")
    if info.interlaced and info.fields_from is not None:
        notes.append(f"interlaced from about {info.fields_from:.1f} s (the key frames read before it are progressive): "
                     f"every rendition is coded and tagged as fields, {FIELD_NAMES[info.field_order]} first, throughout")
    if info.restarts_at is not None:
        notes.append(f"the picture's timestamps go back at frame {info.restarts_at} of the file (recordings joined "
                     "end to end?): its frames are colorized in file order, in one unit of work, and the renditions "
                     "time them at the frame rate")
    if info.unseekable_at is not None:
        notes.append(f"decoding from a seek to frame {info.unseekable_at} gave other frames than decoding from the "
                     "start (the container's times do not address its frames): its frames are colorized in file "
                     "order, in one unit of work")
    deeper = (info.sequence or {}).get("deeper_frames")
    if deeper:
        shown = ", ".join(deeper["first"]) + (" ..." if deeper["count"] > len(deeper["first"]) else "")
        notes.append(f"{deeper['count']} of the {info.frames} frames ({shown}) hold more than 8 bits per sample "
                     "and the first does not: all are decoded at 16 bits, as the FFV1 master keeps them")
    profile = (info.sequence or {}).get("profile")
    if profile and "unusable" in profile:
        notes.append(f"the frames' {profile['space']} ICC profile {profile['name']!r} cannot be used "
                     f"({profile['unusable']}): their values are read as sRGB's")
    elif profile:
        how = "their values converted to sRGB's gray" if profile["space"] == "gray" else \
            "not sRGB: their tones converted to sRGB's through its neutral tone curve"
        notes.append(f"the frames carry the {profile['space']} ICC profile {profile['name']!r}, {how}, so that the "
                     "colour renditions show the scan's tones as a colour-managed viewer shows them")
    flags = list(info.flags)
    for suffix in suffixes:
        if suffix.lower() == ".mp4" and (size := access_size(info.width, info.height)) is not None:
            notes.append(f"{suffix}: the access copy is scaled to {size[0]}x{size[1]} from {info.width}x{info.height}, "
                         f"its aspect kept: the largest pictures common H.264 players decode are "
                         f"{ACCESS_MAX[0]}x{ACCESS_MAX[1]}; the master keeps every pixel")
        carry = carried(info, RENDITIONS[suffix.lower()]["f"])
        notes += [f"{suffix}: {n}" for n in carry.notes]
        if carry.left_out and "streams-not-carried" not in flags:
            flags.append("streams-not-carried")
    return notes, flags


def attach_sound(info: FilmInfo, path: str | Path) -> FilmInfo:
    """Give a frame sequence the sound in ``path`` (a BWF/WAV, AIFF or FLAC file, starting with
    the first frame): its audio streams are carried like a film's. Raises CorruptMediaError."""
    path = str(path)
    if Path(path).suffix.lower() not in SOUND_SUFFIXES:
        raise UnsupportedMediaError(f"{Path(path).name}: a sound file is .wav, .bwf, .aif, .aiff or .flac")
    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        raise CorruptMediaError(f"sound file {Path(path).name} is missing or empty")
    try:
        meta = ffmpeg.probe(path, **SOUND_SAFETY)
    except ffmpeg.Error as exc:
        msg = (exc.stderr or b"").decode("utf-8", "replace").strip().splitlines()
        raise CorruptMediaError(f"sound file {Path(path).name} is not readable: "
                                f"{msg[-1] if msg else 'ffprobe failed'}") from None
    info.audio = _audio_streams(meta)
    if not info.audio:
        raise CorruptMediaError(f"sound file {Path(path).name} holds no audio stream")
    info.sound = path
    return info


def _audio_streams(meta: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"index": s["index"], "codec": s.get("codec_name"), "channels": s.get("channels"),
             "sample_rate": s.get("sample_rate"), "bits": int(s.get("bits_per_raw_sample") or s.get("bits_per_sample") or 0)}
            for s in meta.get("streams", []) if s.get("codec_type") == "audio"]


def _video_duration(video: dict[str, Any]) -> float | None:
    """The video stream's own declared duration (MP4: stream duration; Matroska: its tag)."""
    if video.get("duration") not in (None, "N/A"):
        return float(video["duration"])
    tag = (video.get("tags") or {}).get("DURATION")
    if tag:
        h, m, sec = tag.split(":")
        return int(h) * 3600 + int(m) * 60 + float(sec)
    return None


def _check_complete(video: dict[str, Any], fmt: dict[str, Any], ends: dict[int, float], frames: int,
                    rate: Fraction) -> None:
    """Raise CorruptMediaError when the packets stop well before the declared duration: the
    video's own, or else the file's (then every stream must stop short: sound that runs on
    after the picture is not a truncation). Matroska's durations (its segment's, and the
    DURATION tags ffmpeg writes) are where its timeline ends, counted from 0: one remuxed with
    -copyts keeps a capture's broadcast times, and starts at 1001 s of a declared 1003 s."""
    start = float(fmt.get("start_time") or 0)
    zero = start if fmt.get("format_name") == "matroska,webm" else 0.0
    interval = 1 / float(rate) if rate else 0.04
    own = _video_duration(video)
    if own:
        declared, reached = own - zero, ends.get(video["index"], start) - start
    else:
        declared = float(fmt.get("duration") or 0) - zero
        reached = max(ends.values(), default=start) - start
    if declared and reached < declared - max(0.02 * declared, 3 * interval):
        raise CorruptMediaError(f"truncated film: {frames} frames present, ending at {reached:.2f} s of the "
                                f"{declared:.2f} s declared")


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


def frame_times(info: FilmInfo) -> list[float]:
    """Every frame's presentation time (seconds, container clock), in display order: from the
    probe's own pass over the packets when it made ``info``, else read again."""
    if info.sequence:
        return [i / float(info.fps) for i in range(info.frames)]
    if info.times is not None:
        return info.times
    times = sorted(_packet_times(info.path, "v:0", info.genpts)[0])
    if len(times) != info.frames:
        raise CorruptMediaError(f"{len(times)} frame timestamps for {info.frames} frames: cannot address shots")
    return times


def _packet_times(path: str, stream: int | str, genpts: bool) -> tuple[list[float], list[float]]:
    """The presentation times of ``stream``'s packets, and of its key frames' (seconds; packets
    without one left out); ``genpts``: generated where a packet has only a decoding time."""
    try:
        out = ffmpeg.probe(path, select_streams=str(stream), show_entries="packet=pts_time,flags",
                           **({"fflags": "+genpts"} if genpts else {}), **SAFETY)
    except ffmpeg.Error as exc:
        raise _probe_error(exc) from None
    times, keys = [], []
    for pkt in out.get("packets", []):
        t = _seconds(pkt.get("pts_time"))
        if t is not None:
            if str(pkt.get("flags", "")).startswith("K"):
                keys.append(t)
            if not _discarded(pkt):
                times.append(t)
    return times, keys


def _discarded(pkt: dict[str, Any]) -> bool:
    """Whether a packet is decoded but never shown: cut off by the container's edit list (an MP4
    trimmed without re-encoding keeps the frames from the key frame before its cut). It is no
    frame of the film, though it is a key frame to decode from."""
    return "D" in str(pkt.get("flags", ""))[1:]


class Seek(NamedTuple):
    """Where decoding from a frame other than the first begins (:func:`seek_point`)."""
    start: float      # the -ss position (seconds after the container's start time): at or before a key frame
    keep_from: float | None  # the container time from which decoded frames are kept (None: all)


def seek_point(times: list[float], start: int, start_time: float = 0.0, keys: list[float] | None = None,
               indexed: bool = False) -> Seek:
    """How to begin decoding exactly at frame ``start`` (``times``: every frame's time; ``keys``:
    the key frames', ``info.keys``; ``indexed``: ``info.indexed``). Frames are kept by their own
    times from half-way between the frame and the one before: rounding never drops or adds one.
    An indexed container (MP4, MOV, Matroska) is sought a quarter frame past the key frame at or
    before the frame, and ffmpeg lands on that key frame (in a Matroska with B-frames, on the one
    before it: ffmpeg steps its seek back 3/23 s there). A stream without an index (MPEG-TS,
    MPEG-PS) or with decoding times only (AVI) is sought by estimate: the seek may land past its
    target, and the frames before the next key frame are lost or undecodable (a shot that started
    frames late, or failed). There decoding starts at the key frame before the one at or before
    the frame: a key frame more, against such an overshoot."""
    if start <= 0:
        return Seek(0.0, None)
    keep_from = (times[start - 1] + times[start]) / 2
    begin = keep_from
    before = [k for k in keys or [] if k <= times[start]]
    if before and indexed:   # a quarter frame past the key frame: its time, rounded either way
        begin = before[-1] + (times[start] - times[start - 1]) / 4
    elif before:
        begin = before[-2] - (times[start] - times[start - 1]) / 2 if len(before) >= 2 else start_time
    return Seek(max(0.0, begin - start_time), keep_from)


def seek_trial(info: FilmInfo, times: list[float]) -> int | None:
    """The first of a few frames a unit of work starting there would not decode right, or None.
    A unit seeks (:func:`seek_point`) and must give the frames decoding from the start gives.
    Tried where seeking first matters, around the film's second key frame: just before it (a
    frame shown before a key frame, decoded after it) and just after. Some files' times do not
    address their frames: H.264 in an MXF written by ffmpeg gives its packets no presentation
    order, so frames kept by time were a frame or more off, silently. Frames are compared at
    96 pixels wide: cheap, and enough to tell frames apart."""
    later = [k for k in info.keys or [] if k > times[0]]
    if info.sequence or not later:   # one key frame: every unit decodes from the film's start
        return None
    second = next((i for i, t in enumerate(times) if t >= later[0]), len(times))
    tries = sorted({k for k in (second - 1, second + 2) if 0 < k < info.frames})
    if not tries:
        return None
    width = min(96, info.width) // 2 * 2
    size = (width, max(2, round(width * info.height / info.width / 2) * 2))
    reference = list(decode_gray(info, 0, min(max(tries) + 3, info.frames), size=size))
    for k in tries:
        count = min(3, info.frames - k)
        try:
            got = list(decode_gray(info, k, count, seek=seek_point(times, k, info.start_time, info.keys, info.indexed),
                                   size=size))
        except CorruptMediaError:
            return k
        if not all(np.array_equal(a, b) for a, b in zip(got, reference[k:k + count], strict=True)):
            return k
    return None


def decode_gray(info: FilmInfo, start: int = 0, count: int | None = None, seek: Seek | float | None = None,
                size: tuple[int, int] | None = None) -> Iterator[np.ndarray]:
    """Stream frames [start, start + count) as HxW luma (uint8, or uint16 for deep sources),
    upright, without dropping or duplicating; ``size`` (w, h) scales them (cut detection).
    Starting past frame 0 in a film file needs ``seek``, :func:`seek_point` of ``start``."""
    count = info.frames - start if count is None else count
    if start and info.sequence:
        node = ffmpeg.input(info.sequence["pattern"], f="image2", framerate=str(info.fps),
                            start_number=info.sequence["start_number"] + start, **SEQUENCE_SAFETY)
    elif start:
        if seek is None:
            raise ValueError("decoding from a frame other than the first needs its seek point")
        seek = Seek(*seek) if isinstance(seek, (list, tuple)) else Seek(seek, None)  # a plan's JSON; a bare -ss
        # -ss 0 is left out: in an AVI with B-frames it gives the first frame another time. Frames
        # kept by their times are not also cut at -ss (which may be past a unit's key frame)
        node = ffmpeg.input(info.path, **({"ss": f"{seek.start:.6f}"} if seek.start > 0 else {}),
                            **({"noaccurate_seek": None} if seek.keep_from is not None else {}),
                            **({"fflags": "+genpts"} if info.genpts else {}), **SAFETY)
    else:
        node = info.input()
    deep = info.deep and size is None
    width, height = size or (info.width, info.height)
    video = node["v:0"]
    kept = bool(start and not info.sequence and seek.keep_from is not None)
    if kept:  # by the frames' own times, the container's (-copyts)
        video = video.filter("select", f"gte(t,{seek.keep_from:.6f})")
    if size is not None:
        video = video.filter("scale", width, height, flags="area")
    proc = (ffmpeg.output(video, "pipe:", format="rawvideo", pix_fmt="gray16le" if deep else "gray",
                          fps_mode="passthrough", sn=None, **{"frames:v": count})
            .global_args("-nostdin", "-loglevel", "error", *(["-copyts"] if kept else []))
            .run_async(pipe_stdout=True, pipe_stderr=True))
    drain = _Drain(proc.stderr)
    drain.start()
    dtype = np.dtype("<u2") if deep else np.dtype(np.uint8)
    frame_bytes = width * height * dtype.itemsize
    icc = ((info.sequence or {}).get("profile") or {}).get("icc")
    table = _gray_table(icc, "uint16" if deep else "uint8") if icc else None   # frames in another space than sRGB
    got = 0
    try:
        while got < count:
            buf = proc.stdout.read(frame_bytes)
            if len(buf) < frame_bytes:
                break
            got += 1
            frame = np.frombuffer(buf, dtype).reshape(height, width).astype(dtype.newbyteorder("="), copy=False)
            yield frame if table is None else table[frame]
    finally:
        proc.stdout.close()
        code = proc.wait()
        drain.join()
    if code != 0 or got == 0:
        raise CorruptMediaError(f"decoding failed after {start + got} of {info.frames} frames: {drain.text.strip()}")
    if got < count:
        raise CorruptMediaError(f"truncated film: decoded {start + got} of {info.frames} frames "
                                f"({drain.text.strip()})")


def dpx_header(path: str | Path) -> dict[str, Any]:
    """What a DPX frame's headers (SMPTE 268M) declare: ``size`` (width, height), ``bits`` (per
    sample), ``transfer``
    (the first image element's transfer characteristic, by name: "printing density",
    "logarithmic", "linear"...) and
    ``density`` (per 10-bit code value, from its reference low and high codes and quantities)
    from the image header; ``rate`` (a Fraction), ``timecode`` ("HH:MM:SS:FF", ";FF" when
    drop-frame) and ``black`` and ``white`` (reference black and white as 10-bit code values,
    where scanners declare a log scan's calibration) from the motion-picture and television
    headers; each only when set."""
    with open(path, "rb") as fh:
        head = fh.read(2048)
    if len(head) < 32 or head[:4] not in (b"SDPX", b"XPDS"):
        return {}
    order = ">" if head[:4] == b"SDPX" else "<"
    out: dict[str, Any] = {}
    if len(head) >= 808:
        width, height = struct.unpack(order + "II", head[772:780])
        if 0 < width < 0xFFFFFFFF and 0 < height < 0xFFFFFFFF:
            out["size"] = (width, height)
        if head[801] < len(DPX_TRANSFERS):
            out["transfer"] = DPX_TRANSFERS[head[801]]
        if head[803] in (1, 8, 10, 12, 16):
            out["bits"] = head[803]
        bits = head[803] if 1 <= head[803] <= 32 else 10
        to_10bit = 1023 / (2 ** bits - 1)   # header code values are the element's, at its bit depth
        low, low_q, high, high_q = struct.unpack(order + "IfIf", head[784:800])
        if (0xFFFFFFFF not in (low, high) and high > low and math.isfinite(low_q) and math.isfinite(high_q)
                and high_q > low_q):
            out["density"] = (high_q - low_q) / ((high - low) * to_10bit)
    image_offset, = struct.unpack(order + "I", head[4:8])
    generic, industry = struct.unpack(order + "II", head[24:32])
    generic = 1664 if generic in (0, 0xFFFFFFFF) else generic
    if industry in (0, 0xFFFFFFFF) or industry < 384 or generic + 384 > min(image_offset, len(head)):
        return out  # no industry headers (ffmpeg writes none)
    film_rate, = struct.unpack(order + "f", head[generic + 60:generic + 64])
    tc, = struct.unpack(order + "I", head[generic + 256:generic + 260])
    tv_rate, = struct.unpack(order + "f", head[generic + 276:generic + 280])
    for value in (film_rate, tv_rate):
        if math.isfinite(value) and 1 <= value <= 1000:
            out["rate"] = _nominal_rate(value)
            break
    if tc != 0xFFFFFFFF:
        digits = [(tc >> shift) & 0xFF for shift in (24, 16, 8, 0)]   # BCD hours, minutes, seconds, frames
        h, m, sec, f = ((d >> 4 & mask) * 10 + (d & 0xF) for d, mask in zip(digits, (0x3, 0x7, 0x7, 0x3)))
        if all((d & 0xF) <= 9 for d in digits) and h < 24 and m < 60 and sec < 60 and f < 60:
            out["timecode"] = f"{h:02d}:{m:02d}:{sec:02d}{';' if digits[3] & 0x40 else ':'}{f:02d}"
    black, = struct.unpack(order + "f", head[generic + 288:generic + 292])
    white, = struct.unpack(order + "f", head[generic + 300:generic + 304])
    if len(head) >= 808 and math.isfinite(black) and math.isfinite(white) and 0 <= black < white:
        out["black"], out["white"] = black * to_10bit, white * to_10bit
    return out


def printing_density_of(header: dict[str, Any], override: bool | dict[str, float] | None = None,
                        told_by: str = "sequence.json") -> PrintingDensity | None:
    """How a sequence's frames are viewed for display, or None when they are not log-encoded:
    log when the DPX ``header`` (:func:`dpx_header`) declares a log transfer, unless ``override``
    (from ``told_by``: a sequence.json, an option) says true, false or gives values
    (:func:`printing_density_override`). Each value comes from the override, else from the
    headers of a log scan (those no scan could have are ignored, and the note says so), else
    from Kodak's standard conversion. Raises UnsupportedMediaError when the result is not a
    conversion (the override's values against the headers')."""
    declared = header.get("transfer") in LOG_TRANSFERS
    if override is False or (override is None and not declared):
        return None
    given = override if isinstance(override, dict) else {}
    from_header = {k: header[k] for k in ("black", "white", "density") if k in header and k not in given} \
        if declared else {}
    ignored = ""
    try:
        PrintingDensity(**{**_values(KODAK), **from_header})
    except ValueError as exc:
        from_header, ignored = {}, f"; the DPX headers' reference values ignored ({exc})"
    values = {**_values(KODAK), **from_header, **given}
    parts = [f"{_and(names)} from {who}" for who, names in ((told_by, [k for k in values if k in given]),
                                                             ("the DPX headers", [k for k in values if k in from_header]))
             if names]
    if len(values) > len(given) + len(from_header):
        parts.append("the rest Kodak's standard values" if parts else "Kodak's standard values")
    why = f"DPX transfer: {header['transfer']}" if declared else f"printing density, as {told_by} says"
    origin = f"{why}; {', '.join(parts)}{ignored}"
    try:
        return PrintingDensity(**values, origin=origin)
    except ValueError as exc:
        raise UnsupportedMediaError(f"{told_by}: {exc}") from None


def printing_density_override(value: Any) -> bool | dict[str, float]:
    """A sequence.json's ``printing_density``: true (log, values from the headers or Kodak's),
    false (not log, whatever the headers say) or an object of some of ``black``, ``white``
    (10-bit code values), ``density`` (per code value) and ``gamma``. Raises ValueError."""
    if isinstance(value, bool):
        return value
    names = set(_values(KODAK))
    if not isinstance(value, dict) or not value or set(value) - names:
        raise ValueError(f"printing_density must be true, false or an object of {_and(sorted(names), 'or')}, "
                         f"not {json.dumps(value)}")
    for name, v in value.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"printing_density {name} must be a number, not {json.dumps(v)}")
    return {k: float(v) for k, v in value.items()}


def _values(pd: PrintingDensity) -> dict[str, float]:
    return {"black": pd.black, "white": pd.white, "density": pd.density, "gamma": pd.gamma}


def _and(names: list[str], word: str = "and") -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} {word} {names[-1]}"


def _ntsc_rate(value: float) -> Fraction | None:
    """The NTSC rate (24000/1001, 30000/1001, ...) that ``value`` (23.976, 23.98, 29.97...) is
    written for, or None."""
    for whole in (24, 30, 48, 60, 120):
        if abs(value - whole * 1000 / 1001) < 0.005:
            return Fraction(whole * 1000, 1001)
    return None


def _nominal_rate(value: float) -> Fraction:
    """A header's frame rate (a 32-bit float) as the rate it stands for: 23.976 is 24000/1001."""
    return _ntsc_rate(value) or Fraction(value).limit_denominator(1000)


def frame_rate(value: Fraction | str | int | float) -> Fraction:
    """A frame rate as people write it (an option, a sequence.json, a job setting): 24, "25",
    "24000/1001", or a decimal. The NTSC rates' decimals (23.976, 23.98, 29.97, 59.94...) are taken
    as the rates they are written for (24000/1001...): played at 23.98 instead, a film would drift
    from its 24000/1001 sound by 0.6 s an hour (at 23.976, by 3.6 ms). Raises ValueError."""
    rate = None
    if isinstance(value, Fraction):
        rate = value
    elif isinstance(value, (str, int, float)) and not isinstance(value, bool):
        text = str(value).strip()
        try:
            rate = Fraction(text)
        except (ValueError, ZeroDivisionError):
            rate = None
        if rate is not None and rate.denominator != 1 and "/" not in text:
            rate = _ntsc_rate(float(rate)) or rate
    if rate is None or rate <= 0:
        raise ValueError(f"a frame rate is a positive number such as 24, 25, 23.976 or 24000/1001, "
                         f"not {value!r}")
    return rate


def declared_rate(folder: str | Path, names: list[str] | None = None) -> Fraction | None:
    """The frame rate a DPX sequence's first frame declares in its headers, or None."""
    folder = Path(folder)
    names = sorted(names if names is not None else (p.name for p in folder.iterdir() if p.is_file()))
    first = next((n for n in names if n.lower().endswith(".dpx") and FRAME_NAME.match(n)), None)
    return dpx_header(folder / first).get("rate") if first else None


def _join_widths(groups: dict[tuple[str, str, int], dict[int, str]]) -> dict[tuple[str, str, int], dict[int, str]]:
    """Numbered frames of one name, grouped by the width of their number, joined where they are
    one sequence: numbers not padded (``f9.png``, ``f10.png``) or padded to a width they outgrow
    (``f9999.dpx``, ``f10000.dpx``), which ffmpeg's ``%0Nd`` (N the narrowest) reads in order.
    Numbers padded to different widths (``f01``, ``f001``) stay apart."""
    by_name: dict[tuple[str, str], list[int]] = {}
    for prefix, ext, width in groups:
        by_name.setdefault((prefix, ext), []).append(width)
    joined = {}
    for (prefix, ext), widths in by_name.items():
        narrow = min(widths)
        one = all(len(str(n)) == width for width in widths if width > narrow for n in groups[prefix, ext, width])
        if one and len(widths) > 1:
            joined[prefix, ext, narrow] = {n: name for width in widths for n, name in groups[prefix, ext, width].items()}
        else:
            joined.update({(prefix, ext, width): groups[prefix, ext, width] for width in widths})
    return joined


def probe_sequence(folder: str | Path, fps: Fraction | str | float, max_pixels: int = 250_000_000,
                   names: list[str] | None = None, printing_density: bool | dict[str, float] | None = None,
                   told_by: str = "sequence.json") -> FilmInfo:
    """Describe a frame sequence: numbered DPX/TIFF/PNG/JPEG 2000 frames in ``folder`` (``names``: the
    files, if already listed) played at ``fps``; log-encoded as :func:`printing_density_of`
    says (``printing_density``: the override ``told_by`` gives). A missing frame number is an
    error that names the missing frames."""
    folder = Path(folder)
    names = sorted(names if names is not None else (p.name for p in folder.iterdir() if p.is_file()))
    groups: dict[tuple[str, str, int], dict[int, str]] = {}
    for name in names:
        m = FRAME_NAME.match(name)
        if m and m["ext"].lower() in SEQUENCE_SUFFIXES:
            groups.setdefault((m["prefix"], m["ext"], len(m["number"])), {})[int(m["number"])] = name
    groups = _join_widths(groups)
    if not groups:
        raise UnsupportedMediaError(f"{folder}: no numbered DPX, TIFF, PNG or JPEG 2000 frames (name0001.dpx, ...)")
    (prefix, ext, width), frames = max(groups.items(), key=lambda kv: len(kv[1]))
    if len(groups) > 1:
        others = ", ".join(f"{p}{'#' * w}{e} ({len(f)})" for (p, e, w), f in groups.items() if (p, e, w) != (prefix, ext, width))
        raise UnsupportedMediaError(f"{folder}: more than one numbered sequence ({prefix}{'#' * width}{ext} "
                                    f"({len(frames)}), {others}): put each in its own folder")
    first, last = min(frames), max(frames)
    missing = [n for n in range(first, last + 1) if n not in frames]
    if missing:
        shown = ", ".join(f"{prefix}{n:0{width}d}{ext}" for n in missing[:10])
        raise CorruptMediaError(f"frame sequence {prefix}{'#' * width}{ext} has {len(missing)} missing frame(s) "
                                f"between {first} and {last}: {shown}{' ...' if len(missing) > 10 else ''}")
    rate = frame_rate(fps)
    deep_frames, icc = _check_frame_headers(folder, [frames[n] for n in range(first, last + 1)],
                                            f"{prefix}{'#' * width}{ext}")
    pattern = image2_path(folder, f"{prefix.replace('%', '%%')}%0{width}d{ext}")
    try:   # the first frame by its own name, not as a pattern (a '%' in it is a '%')
        meta = ffmpeg.probe(str(folder / frames[first]), **{"protocol_whitelist": "file", "pattern_type": "none"})
    except ffmpeg.Error as exc:
        raise _probe_error(exc) from None
    video = next((s for s in meta.get("streams", []) if s.get("codec_type") == "video"), None)
    if video is None or not video.get("width"):
        raise CorruptMediaError(f"{frames[first]}: not a decodable frame")
    w, h = int(video["width"]), int(video["height"])
    if w * h > max_pixels:
        raise MediaTooLargeError(f"declared frame size {w}x{h} exceeds the limit of {max_pixels / 1e6:.0f} MP; "
                                 "refused before decoding")
    pix_fmt = video.get("pix_fmt", "?")
    deep_first = bool(_DEEP.search(pix_fmt))
    count = last - first + 1
    info = FilmInfo(path=str(folder), width=w, height=h, rotation=0, fps=rate, avg_fps=rate, frames=count,
                    duration=count / float(rate), codec=video.get("codec_name", "?"), pix_fmt=pix_fmt,
                    sar="1:1", color_range=video.get("color_range", "unknown"), interlaced=False, vfr=False,
                    bit_depth=16 if deep_first or deep_frames else 8,
                    sequence={"pattern": pattern, "start_number": first})
    if deep_frames and not deep_first:   # decoded at 16 bits, not at the first frame's 8
        info.sequence["deeper_frames"] = {"count": len(deep_frames), "first": deep_frames[:5]}
    if icc is not None:
        info.sequence["profile"] = _frames_profile(icc)
    if w % 2 or h % 2:
        info.flags.append("odd-dimensions")
    header = dpx_header(folder / frames[first]) if ext.lower() == ".dpx" else {}
    info.timecode, info.transfer = header.get("timecode"), header.get("transfer")
    info.printing_density = printing_density_of(header, printing_density, told_by)
    if info.log_encoded:
        info.flags.append("log-encoded")
    return info


def _tones(icc: bytes) -> bytes | None:
    """The gray profile through which the decoded (gray) values of frames carrying ``icc`` are
    read as sRGB's, as a photo's are: a gray space's own profile; an RGB space's neutral tone
    curve (:func:`color.rgb_neutral`); None for sRGB's own and for other spaces. ValueError
    for a profile that cannot be used."""
    if icc[16:20] == b"GRAY":
        return icc
    return rgb_neutral(icc) if icc[16:20] == b"RGB " else None


def _read_through(icc: bytes) -> bool:
    """Whether frames carrying ``icc`` have their values read through it (one that cannot be
    used, noted, counts: their tones are not sRGB's)."""
    try:
        return _tones(icc) is not None
    except ValueError:
        return True


def _frames_profile(icc: bytes) -> dict[str, Any]:
    """What a sequence's plan keeps of the ICC profile its frames carry: its name, space and
    sha256, and the gray profile of its tones (:func:`_tones`; a unit of work reads its frames
    through it), or why it cannot be used (the values are then read as sRGB's)."""
    kept: dict[str, Any] = {"sha256": hashlib.sha256(icc).hexdigest(), "name": profile_name(icc),
                            "space": "gray" if icc[16:20] == b"GRAY" else "RGB"}
    try:
        tones = _tones(icc)
        gray_to_srgb(np.zeros((1, 1), np.uint8), tones)
    except ValueError as exc:
        return {**kept, "unusable": str(exc)}
    return {**kept, "icc": base64.b64encode(tones).decode("ascii")}


@functools.lru_cache(maxsize=4)
def _gray_table(icc_b64: str, dtype: str) -> np.ndarray:
    """Every value of ``dtype`` (uint8, uint16) converted from a sequence's gray space (its
    frames' tones, :func:`_tones`) to sRGB's gray: a lookup table its decoded frames are read
    through."""
    levels = np.arange(np.iinfo(dtype).max + 1, dtype=dtype)[None, :]
    return gray_to_srgb(levels, base64.b64decode(icc_b64))[0][0]


def image2_path(folder: str | Path, name: str) -> str:
    """The path by which ffmpeg's image2 demuxer reads the frames ``name`` (a pattern such as
    ``f%04d.dpx``, its literal '%' written '%%') in ``folder``, a '%' in the folder's own path
    escaped too (a folder named "reel 100%" is read as it is named)."""
    return os.path.join(str(folder).replace("%", "%%"), name)


class FrameHeader(NamedTuple):
    size: tuple[int, int] | None   # stored (width, height)
    bits: int | None               # per sample
    icc: bytes | None = None       # the ICC profile the frame carries (TIFF, PNG, JPEG 2000)


def frame_header(path: Path) -> FrameHeader:
    """A frame's stored size, bits per sample and ICC profile from its header alone (DPX, PNG and
    JPEG 2000 read here, TIFF and a PNG's profile by Pillow); None for what the header does not
    say (the decoder then says what is wrong with the frame)."""
    if path.suffix.lower() == ".dpx":
        header = dpx_header(path)
        return FrameHeader(header.get("size"), header.get("bits"))
    with open(path, "rb") as fh:
        head = fh.read(4096)
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR" and len(head) > 24:
        icc = None
        if b"iCCP" in head.split(b"IDAT", 1)[0]:   # before the pixels, where PNG puts it
            try:
                with PIL.Image.open(path) as image:
                    icc = image.info.get("icc_profile")
            except Exception:  # noqa: BLE001 - for the decoder to report
                icc = None
        return FrameHeader(struct.unpack(">II", head[16:24]), head[24], icc)
    if head.startswith(JP2_SIGNATURE) or head.startswith(J2K_SIZ):
        return FrameHeader(*_jpeg2000_header(head), _jp2_icc(path, head) if head.startswith(JP2_SIGNATURE) else None)
    try:
        with PIL.Image.open(path) as image:   # TIFF: reads the header only
            size, bits = image.size, image.tag_v2.get(258, 1) if image.format == "TIFF" else None
            icc = image.info.get("icc_profile")
    except Exception:  # noqa: BLE001 - unreadable, or declared huge: for the decoder to report
        return FrameHeader(None, None)
    return FrameHeader(size, max(bits) if isinstance(bits, tuple) and bits else bits, icc or None)


J2K_SIZ = b"\xff\x4f\xff\x51"   # a JPEG 2000 codestream's start and its image and tile size marker


def _jp2_icc(path: Path, head: bytes) -> bytes | None:
    """The ICC profile a JP2 file's colour specification box holds (method 2 or 3), from its
    header (read further than ``head`` when the profile is longer)."""
    at = head.find(b"colr")
    if at < 4 or head[at + 4:at + 5] not in (b"\x02", b"\x03"):
        return None
    length, = struct.unpack(">I", head[at - 4:at])
    if length < 11 or length > 1 << 24:
        return None
    if at - 4 + length > len(head):
        with open(path, "rb") as fh:
            head = fh.read(at - 4 + length)
    return head[at + 7:at - 4 + length] or None


def _jpeg2000_header(head: bytes) -> tuple[tuple[int, int] | None, int | None]:
    """:func:`frame_header` of a JP2 file (its image header box) or a bare codestream (its SIZ
    marker, also read where a JP2's components differ in depth)."""
    ihdr = head.find(b"ihdr") if head.startswith(JP2_SIGNATURE) else -1
    if 0 <= ihdr <= len(head) - 15:
        height, width, _, bpc = struct.unpack(">IIHB", head[ihdr + 4:ihdr + 15])
        if bpc != 255:
            return (width, height), (bpc & 0x7F) + 1
    siz = head.find(J2K_SIZ)
    if not 0 <= siz <= len(head) - 45:
        return None, None
    width, height, x0, y0 = struct.unpack(">IIII", head[siz + 8:siz + 24])
    count, = struct.unpack(">H", head[siz + 40:siz + 42])
    depths = head[siz + 42:siz + 42 + 3 * count:3]   # Ssiz of each component: bits - 1, sign bit
    return (width - x0, height - y0), max((d & 0x7F) + 1 for d in depths) if depths else None


def _check_frame_headers(folder: Path, names: list[str], sequence: str) -> tuple[list[str], bytes | None]:
    """Refuse a sequence whose frames are not all the size of its first: ffmpeg would scale
    the odd ones to fit without a word (a frame from another scan, dropped in the folder); and
    one whose frames differ in their ICC profiles where one of them changes how its values are
    read (:func:`_tones`): the same values would stand for different tones. Returns the names of
    its frames of more than 8 bits per sample, and the ICC profile every frame carries when its
    values are read through it."""
    expected, odd, deep = None, [], []
    profiles: dict[str | None, list[str]] = {}   # by sha256: the frames carrying it
    icc_of: dict[str, bytes] = {}
    for n, name in enumerate(names):
        size, bits, icc = frame_header(folder / name)
        if n == 0:
            expected = size
        elif size is not None and expected is not None and size != expected:
            odd.append((name, size))
        if bits is not None and bits > 8:
            deep.append(name)
        digest = hashlib.sha256(icc).hexdigest() if icc else None
        if digest and digest not in icc_of:
            icc_of[digest] = icc
        profiles.setdefault(digest, []).append(name)
    if odd:
        shown = ", ".join(f"{name} ({w}x{h})" for name, (w, h) in odd[:10])
        raise CorruptMediaError(f"frame sequence {sequence}: {len(odd)} frame(s) not the size of the first "
                                f"({expected[0]}x{expected[1]}): {shown}{' ...' if len(odd) > 10 else ''}")
    read_through = [d for d, icc in icc_of.items() if _read_through(icc)]
    if read_through and len(profiles) > 1:
        held = {d: f"with the ICC profile {profile_name(icc_of[d])!r}" if d else "with no ICC profile" for d in profiles}
        shown = "; ".join(f"{len(frames)} {held[d]} ({frames[0]}{' ...' if len(frames) > 1 else ''})"
                          for d, frames in profiles.items())
        raise UnsupportedMediaError(f"frame sequence {sequence}: its frames carry different ICC profiles, so the same "
                                    f"values stand for different tones ({shown}): convert them to one profile")
    return deep, icc_of[read_through[0]] if read_through else None


class Encoder:
    """Encode RGB frames written with :meth:`write` into ``out`` (rendition by extension),
    with what it carries of ``info``'s file (:func:`carried`: sound, subtitles, chapters, tags,
    timecode), unless ``audio`` is false (shot segments); atomic: written beside, linked into
    place on close, never over an existing file."""

    def __init__(self, info: FilmInfo, out: Path, audio: bool = True, note: str = "",
                 times: list[float] | None = None) -> None:
        suffix = out.suffix.lower()
        if suffix not in RENDITIONS:
            raise UnsupportedMediaError(f"no film rendition for {suffix!r} (use {', '.join(RENDITIONS)})")
        self.out, self.info = out, info
        fd, self.tmp = new_file_beside(out.parent, suffix)
        os.close(fd)
        opts = dict(RENDITIONS[suffix], fps_mode="passthrough")  # each frame once, at its time (no CFR fill)
        if info.deep and suffix == ".mkv":
            opts["pix_fmt"] = "gbrp16le"  # the master keeps a deep source's precision
        if info.vfr:
            opts["bf"] = 0  # frames stored in display order, so that they can be retimed
        self.dtype = np.dtype("<u2") if info.deep else np.dtype(np.uint8)
        # Constant-rate sources keep their timestamps exactly. A variable-rate source with its
        # frames' ``times`` is encoded at its average rate, video only, and then given each
        # frame's own time (:func:`_retime`, to the millisecond) and its audio.
        self.times, self.note, self.audio = times, note, audio
        if times is not None:
            opts["f"] = "matroska"
            opts.pop("movflags", None)
            audio, note = False, ""
        if opts["f"] in ("mp4", "mov"):
            opts["movie_timescale"] = MOVIE_TIMESCALE
        rate = info.avg_fps if info.vfr else info.fps
        raw = {"format": "rawvideo", "pix_fmt": "rgb48le" if info.deep else "rgb24", "s": f"{info.width}x{info.height}",
               "framerate": str(rate)}
        video = delayed_frames(info, audio, rate, ffmpeg.input("pipe:", **raw).video, opts)
        sar = info.sar.replace(":", "/") if info.sar not in ("0:1", "1:1", "N/A") else None
        scaled = access_size(info.width, info.height) if suffix == ".mp4" else None
        if scaled is not None:   # a scan larger than players decode; its display aspect kept exactly
            video = video.filter("scale", *scaled, flags="lanczos", interl=int(info.interlaced))
            sar = str((Fraction(sar or 1) * Fraction(info.width * scaled[1], info.height * scaled[0]))
                      .limit_denominator(65535))
        elif suffix == ".mp4" and (info.width % 2 or info.height % 2):
            video = video.filter("pad", "ceil(iw/2)*2", "ceil(ih/2)*2")  # 4:2:0 needs even sizes
        if sar is not None and sar != "1":
            video = video.filter("setsar", sar, max=65535)   # setsar's default rounds to terms under 100
        colour = COLOUR[suffix]
        if info.log_encoded:  # the scan's log code values, kept: not BT.709 or sRGB light
            colour = {**colour, "color_primaries": "unknown", "color_trc": "unknown"}
        if info.interlaced:
            # Frames of two fields stay so, in the source's order: each rendition is tagged with
            # it (players deinterlace as they do the source), the Y'CbCr ones are coded as fields
            # and their chroma subsampled per field (no colour bled between the fields).
            video = video.filter("setfield", "tff" if info.field_order == "tt" else "bff")
            opts["field_order"] = info.field_order
            if suffix != ".mkv":
                opts["flags"] = "+ildct+ilme"
            if opts["vcodec"] == "libx264" and info.field_order == "bb":
                # x264 starts top-field-first and follows the frames' order only in their field
                # times: its pictures' timing SEI would go on saying top first (pic_struct 3),
                # which players that read it (and ffprobe) take for the order.
                opts["x264-params"] = "bff=1"
        if colour["colorspace"] != "gbr":  # RGB to Y'CbCr by the matrix the file is tagged with
            video = video.filter("scale", out_color_matrix=colour["colorspace"], out_range=colour["range"],
                                 interl=int(info.interlaced))
            video = video.filter("format", opts["pix_fmt"])
        video = video.filter("setparams", **colour)
        carry = carried(info, opts["f"], note, whole=audio)
        node = (ffmpeg.output(video, *carry.streams, str(self.tmp), **{**opts, **carry.options})
                .global_args("-nostdin", "-loglevel", "error", "-y"))
        self.proc = subprocess.Popen(carry.command(node, self.tmp), stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        self.drain = _Drain(self.proc.stderr)
        self.drain.start()
        self.frames = 0

    def write(self, rgb: np.ndarray) -> None:
        try:
            self.proc.stdin.write(np.ascontiguousarray(rgb, dtype=self.dtype).tobytes())
        except BrokenPipeError:
            self.proc.wait()
            self.drain.join()
            raise write_failed(f"encoder stopped: {self.drain.text.strip()}", self.tmp) from None
        self.frames += 1

    def close(self) -> Path:
        """Finish encoding and move the file into place (never over an existing file)."""
        self.proc.stdin.close()
        code = self.proc.wait()
        self.drain.join()
        if code != 0 or unfinished(self.drain.text):
            self.tmp.unlink(missing_ok=True)
            raise write_failed(f"encoding {self.out.name} failed: {self.drain.text.strip()}", self.tmp)
        try:
            if self.times is not None:
                with tempfile.TemporaryDirectory(prefix=".colorize-retime-", dir=self.out.parent) as work:
                    final = Path(work) / f"final{self.out.suffix.lower()}"
                    _retime(self.tmp, self.times, self.info, final, self.note, self.audio)
                    os.link(final, self.out)
            else:
                os.link(self.tmp, self.out)
        finally:
            self.tmp.unlink(missing_ok=True)
        return self.out

    def abort(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.tmp.unlink(missing_ok=True)


# What ffmpeg and mkvmerge say when the disk they write to refuses (strerror of ENOSPC, EDQUOT, EFBIG).
_WRITE_REFUSED = ("No space left on device", "Disk quota exceeded", "File too large")


def unfinished(said: str) -> bool:
    """Whether ffmpeg says it could not finish its output file: ffmpeg 5.1 exits 0 when the last
    write (the trailer, the close) fails, as on a disk that fills up then, leaving a truncated file."""
    return "Error writing trailer" in said or "Error closing file" in said


def write_failed(message: str, written: Path) -> ColorizeError:
    """The error of an encoder or muxer that failed writing ``written``: StorageError when its disk
    refused the file (full, over quota), which says nothing of the film; else CorruptMediaError."""
    if any(refused in message for refused in _WRITE_REFUSED):
        return StorageError(f"{message} (the disk holding {written.parent} refused it: free space there, or set "
                            "TMPDIR to a larger disk for the work folders)")
    return CorruptMediaError(message)


def _retime(video: Path, times: list[float], info: FilmInfo, out: Path, note: str, audio: bool) -> None:
    """Give the frames of ``video`` (Matroska, video only, no reordering) the presentation
    ``times`` (seconds, in frame order) with mkvmerge, then write ``out`` in its rendition's
    container with the source's audio copied. Matroska keeps times to the millisecond."""
    suffix = out.suffix.lower()
    stamps = out.parent / "timestamps.txt"
    stamps.write_text("# timestamp format v2\n" + "".join(f"{t * 1000:.3f}\n" for t in times))
    retimed = out.parent / "retimed.mkv"
    done = subprocess.run(["mkvmerge", "-q", "-o", str(retimed), "--timestamps", f"0:{stamps}", str(video)],
                          capture_output=True, text=True)
    if done.returncode >= 2:
        raise write_failed(f"retiming {out.name} failed: {(done.stdout + done.stderr).strip()[-1500:]}", retimed)
    video = picture_input(info, audio, str(retimed))["v"]
    _copy_streams(video, info, out, RENDITIONS[suffix]["f"], audio=audio, note=note,
                  action=f"writing {out.name}")


def _copy_streams(video: Any, info: FilmInfo, out: Path, fmt: str, *, audio: bool, note: str, action: str) -> None:
    """Write the ``video`` stream to ``out`` in container ``fmt`` without re-encoding, with the
    source's sound, subtitles, chapters, tags and timecode (:func:`carried`) when ``audio``."""
    opts: dict[str, Any] = {"c": "copy", "f": fmt}
    if info.interlaced:  # mkvmerge's retiming drops Matroska's interlaced flag
        opts["field_order"] = info.field_order
    if fmt == "mp4":
        opts["movflags"] = "+faststart"
    if fmt in ("mp4", "mov"):
        opts["movie_timescale"] = MOVIE_TIMESCALE
    carry = carried(info, fmt, note, whole=audio)
    node = (ffmpeg.output(video, *carry.streams, str(out), **{**opts, **carry.options})
            .global_args("-nostdin", "-loglevel", "error", "-y"))
    done = subprocess.run(carry.command(node, out), capture_output=True)
    said = done.stderr.decode("utf-8", "replace")
    if done.returncode != 0 or unfinished(said):
        raise write_failed(f"{action} failed: {said.strip()[-1500:]}", out)


def join_segments(info: FilmInfo, segments: list[Path], out: Path, note: str = "",
                  times: list[float] | None = None) -> Path:
    """Join shot segments (same rendition, in order) into ``out`` without re-encoding, with
    what it carries of the source (:func:`carried`); atomic and no-clobber like :class:`Encoder`.
    ``times``: a variable-rate source's frame times, given back to the joined frames."""
    suffix = out.suffix.lower()
    if suffix not in RENDITIONS:
        raise UnsupportedMediaError(f"no film rendition for {suffix!r} (use {', '.join(RENDITIONS)})")
    with tempfile.TemporaryDirectory(prefix="colorize-join-", dir=out.parent) as work:
        listing = Path(work) / "segments.ffconcat"
        lines = ["ffconcat version 1.0"]
        for seg in segments:
            lines.append("file '" + str(Path(seg).resolve()).replace("'", "'\\''") + "'")
        listing.write_text("\n".join(lines) + "\n")
        joined = Path(work) / f"joined{suffix}"
        concat = {"f": "concat", "safe": 0, "protocol_whitelist": "file"}
        action = f"joining {len(segments)} segments into {out.name}"
        if times is None:
            video = picture_input(info, True, str(listing), **concat)["v"]
            _copy_streams(video, info, joined, RENDITIONS[suffix]["f"], audio=True, note=note, action=action)
        else:  # joined as Matroska, video only; then retimed, with the audio
            cfr = Path(work) / "joined-cfr.mkv"
            _copy_streams(ffmpeg.input(str(listing), **concat)["v"], info, cfr, "matroska", audio=False, note="",
                          action=action)
            _retime(cfr, times, info, joined, note, True)
        os.link(joined, out)
    return out


def stream_info(path: str | Path) -> dict[str, Any]:
    """ffprobe's view of a file's streams (for checks): packets counted, JSON."""
    out = subprocess.run(["ffprobe", "-v", "error", "-count_packets", "-show_streams", "-show_format", "-of", "json",
                          str(path)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)
