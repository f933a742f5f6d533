"""Film: probing, streamed colorization into master and access copy, audio kept bit-exact,
temporal smoothing, cuts, and bad input. Clips are generated with ffmpeg's lavfi sources."""

from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

from colorize_core import Colorizer
from colorize_core.color import KODAK, PrintingDensity, luminance, printing_density_luminance
from colorize_core.errors import CorruptMediaError, StorageError, UnsupportedMediaError
from colorize_core.film import (Encoder, _copy_streams, carry_notes, decode_gray, dpx_header, frame_rate, frame_times,
                                 join_segments, printing_density_of, printing_density_override, probe, probe_sequence,
                                 picture_input, seek_point, stream_info, write_failed)
from colorize_core import film, film_pipeline
from colorize_core.film_pipeline import colorize_film
from colorize_core.images import NOTE
from colorize_core.manifest import attention
from tests.conftest import add_dpx_industry_headers, audio_digest, ffmpeg, video_stream



@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:  # noqa: ANN001
    d = tmp_path_factory.mktemp("clips")
    c = {name: d / name for name in ("pan.mp4", "cut.mkv", "odd.mp4", "vfr.mp4")}
    gray = "format=gray,format=yuv420p"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=192x144:rate=25:duration=2", "-f", "lavfi", "-i",
           "sine=frequency=440:duration=2", "-vf", gray, "-c:v", "libx264", "-c:a", "aac", "-shortest", str(c["pan.mp4"]))
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=24:duration=1", "-f", "lavfi", "-i",
           "mandelbrot=size=160x120:rate=24", "-f", "lavfi", "-i", "sine=frequency=300:duration=2",
           "-filter_complex", "[1:v]trim=duration=1,setpts=PTS-STARTPTS[m];[0:v][m]concat=n=2:v=1,format=gray[v]",
           "-map", "[v]", "-map", "2:a", "-c:v", "ffv1", "-c:a", "flac", str(c["cut.mkv"]))
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=10:duration=1", "-vf", "scale=161:121,format=gray",
           "-c:v", "libx264", "-pix_fmt", "yuv444p", str(c["odd.mp4"]))
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=128x96:rate=25:duration=2", "-f", "lavfi", "-i",
           "sine=frequency=500:duration=3", "-vf", "setpts='if(lt(N,25),N/25,1+(N-25)/12.5)/TB'," + gray,
           "-fps_mode", "vfr", "-c:v", "libx264", "-c:a", "aac", str(c["vfr.mp4"]))
    # Stored sideways with a display rotation of 90 degrees.
    ffmpeg("-i", str(c["pan.mp4"]), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(d / "rotated.mp4"))
    c["rotated.mp4"] = d / "rotated.mp4"
    return c


@pytest.fixture(scope="module")
def colorizer() -> Colorizer:
    return Colorizer.load("default", device="cpu")


def test_probe_describes_the_film(clips):
    info = probe(clips["pan.mp4"])
    assert (info.width, info.height, info.frames, str(info.fps)) == (192, 144, 50, "25")
    assert info.audio and info.audio[0]["codec"] == "aac" and not info.flags
    assert "odd-dimensions" in probe(clips["odd.mp4"]).flags
    assert "variable-frame-rate" in probe(clips["vfr.mp4"]).flags


def test_master_and_access_copy_keep_frames_rate_and_audio_bit_exact(clips, colorizer, tmp_path):
    info = probe(clips["pan.mp4"])
    outs = [tmp_path / "master.mkv", tmp_path / "access.mp4"]
    result = colorize_film(info, outs, colorizer)
    assert result.frames == 50
    for out in outs:
        v = video_stream(out)
        assert int(v["nb_read_packets"]) == 50 and v["r_frame_rate"] == "25/1" and _first_field(out) == "P"
        assert audio_digest(out) == audio_digest(clips["pan.mp4"])
    assert video_stream(outs[0])["codec_name"] == "ffv1" and video_stream(outs[1])["codec_name"] == "h264"
    # The colour master keeps the original's CIE L (lossless FFV1 of the rendered RGB).
    src = np.stack(list(decode_gray(info)))
    rgb = np.frombuffer(subprocess.run(["ffmpeg", "-v", "error", "-i", str(outs[0]), "-fps_mode", "passthrough",
                                        "-f", "rawvideo", "-pix_fmt",
                                        "rgb24", "-"], capture_output=True, check=True).stdout, np.uint8)
    rgb = rgb.reshape(50, info.height, info.width, 3)
    err = np.abs(luminance(rgb.reshape(-1, info.width, 3)) - luminance(src.reshape(-1, info.width)))
    assert np.median(err) < 0.5 and np.percentile(err, 99) < 3.0
    assert result.colourfulness > 5
    assert not list(tmp_path.glob(".colorize-tmp*"))


def test_renditions_declare_their_colour_and_are_converted_by_the_matrix_they_declare(clips, tmp_path):
    """The master is sRGB and says so; the access copy and ProRes are converted to Y'CbCr with
    BT.709's matrix and tagged BT.709, so a player reads back the colour that was written."""
    info = probe(clips["pan.mp4"])
    red = np.zeros((info.height, info.width, 3), np.uint8)
    red[:] = (200, 40, 40)
    expected = {".mkv": ("gbr", "iec61966-2-1", "pc"), ".mp4": ("bt709", "bt709", "tv"), ".mov": ("bt709", "bt709", "tv")}
    for suffix, (space, trc, rng) in expected.items():
        enc = Encoder(info, tmp_path / f"red{suffix}", audio=False)
        for _ in range(3):
            enc.write(red)
        out = enc.close()
        v = video_stream(out)
        assert (v["color_space"], v["color_primaries"], v["color_transfer"], v["color_range"]) == \
            (space, "bt709", trc, rng), suffix
        back = np.frombuffer(subprocess.run(["ffmpeg", "-v", "error", "-i", str(out), "-frames:v", "1", "-f", "rawvideo",
                                             "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout, np.uint8)
        assert np.abs(back.reshape(-1, 3).mean(axis=0) - (200, 40, 40)).max() < 4, suffix
    # BT.709's luma of (200, 40, 40) in limited range is 79.6; BT.601's would be 91.4.
    luma = subprocess.run(["ffmpeg", "-v", "error", "-i", str(tmp_path / "red.mp4"), "-frames:v", "1", "-vf",
                           "extractplanes=y", "-f", "rawvideo", "-"], capture_output=True, check=True).stdout
    assert abs(np.frombuffer(luma, np.uint8).mean() - 79.6) < 1.5


def _pcm(path: Path) -> bytes:
    """The decoded sound of ``path`` (every audio stream), as 32-bit samples."""
    return subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-map", "0:a", "-f", "s32le", "-"],
                          capture_output=True, check=True).stdout


def test_a_rendition_the_disk_refuses_is_a_storage_error_even_when_ffmpeg_says_it_succeeded(clips):
    """ffmpeg 5.1 exits 0 when its last write fails (a disk that fills up at the file's trailer):
    the file it leaves is truncated. Its words are read, and a full disk is StorageError, not a
    corrupt film. /dev/full is a disk with no room, for real."""
    info = probe(clips["cut.mkv"])
    video = picture_input(info, True, str(clips["cut.mkv"]))["v"]
    with pytest.raises(StorageError, match=r"(?s)copying failed: .*No space left on device.* refused it"):
        _copy_streams(video, info, Path("/dev/full"), "matroska", audio=True, note="", action="copying")
    assert isinstance(write_failed("encoder stopped: Invalid data found", Path("x")), CorruptMediaError)


def test_sound_a_rendition_cannot_hold_is_encoded_and_noted(colorizer, tmp_path):
    """A scan delivered as QuickTime with 24-bit PCM, or as Matroska with FLAC: the master copies
    the sound bit-exact; the MP4 access copy, which cannot hold it, gets AAC; ProRes, which cannot
    hold FLAC, gets PCM with the same samples; the notes say which."""
    pcm, flac = tmp_path / "scan.mov", tmp_path / "scan.mkv"
    for path, codec in ((pcm, "pcm_s24le"), (flac, "flac")):
        ffmpeg("-f", "lavfi", "-i", "testsrc2=size=128x96:rate=24:duration=0.5,format=gray", "-f", "lavfi", "-i",
               "sine=frequency=440:duration=0.5:sample_rate=48000", "-c:v", "ffv1", "-c:a", codec, str(path))
    outs = [tmp_path / "pcm.mkv", tmp_path / "pcm.mp4", tmp_path / "pcm.mov"]
    result = colorize_film(probe(pcm), outs, colorizer)
    assert audio_digest(outs[0]) == audio_digest(outs[2]) == audio_digest(pcm)
    assert [st["codec_name"] for st in stream_info(outs[1])["streams"] if st["codec_type"] == "audio"] == ["aac"]
    assert result.notes == [".mp4: audio stream 1 (pcm_s24le) encoded to AAC at 96 kb/s: "
                            "an MP4 file cannot hold pcm_s24le"]
    assert "streams-not-carried" not in result.flags
    result = colorize_film(probe(flac), [tmp_path / "flac.mov"], colorizer)
    assert result.notes == [".mov: audio stream 1 (flac) decoded to pcm_s16le (the same samples): "
                            "a mov file cannot hold flac"]
    assert _pcm(tmp_path / "flac.mov") == _pcm(flac)


def _first_pts(path: Path, stream: str) -> float:
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", stream, "-show_entries", "packet=pts_time",
                          "-of", "csv=p=0", str(path)], capture_output=True, text=True, check=True).stdout
    return min(float(x.strip(",")) for x in out.split())


@pytest.mark.parametrize("suffix", [".mov", ".ts"])
def test_a_picture_that_starts_after_its_sound_keeps_its_sync(colorizer, tmp_path, suffix):
    """A reel whose picture starts 0.3 s after its sound (a capture, or an edit list): the colour
    renditions, written at once or joined from segments, start the picture as late, each frame
    once (MP4 used to fill the gap with copies of the first frame, and lose the sync). In the
    MPEG-TS capture the lead is not a whole number of frames (the AAC encoder's delay is in it):
    it is kept to the millisecond too, not rounded to a frame."""
    src = tmp_path / f"capture{suffix}"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=1.5", "-itsoffset", "0.3", "-f", "lavfi", "-i",
           "testsrc2=size=128x96:rate=24:duration=1,format=gray", "-map", "1:v", "-map", "0:a", "-c:v", "libx264",
           "-c:a", "aac", "-fps_mode", "passthrough", str(src))
    info = probe(src)
    lead = _first_pts(src, "v:0") - _first_pts(src, "a:0")
    assert info.frames == 24 and lead > 0.25 and info.picture_offset > 0.25
    outs = [tmp_path / "late.mkv", tmp_path / "late.mp4", tmp_path / "late.mov"]
    colorize_film(info, outs, colorizer)
    segment = tmp_path / "segment.mp4"
    colorize_film(info, [segment], colorizer, audio=False)
    outs.append(join_segments(info, [segment], tmp_path / "joined.mp4"))
    for out in outs:
        assert int(video_stream(out)["nb_read_packets"]) == 24, out.name
        # Matroska keeps times to the millisecond; MP4 and QuickTime to 1/90000 s (MOVIE_TIMESCALE)
        error = _first_pts(out, "v:0") - _first_pts(out, "a:0") - lead
        assert abs(error) < (0.001 if out.suffix == ".mkv" else 0.0003), (out.name, error)


CHAPTERS = """;FFMETADATA1
title=Reel one
comment=Nitrate print, reel 1 of 3
[CHAPTER]
TIMEBASE=1/1000
START=0
END=1000
title=Harbour
[CHAPTER]
TIMEBASE=1/1000
START=1000
END=2000
title=Market
"""


def _subtitle_text(path: Path, index: int) -> str:
    return subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-map", f"0:s:{index}", "-f", "srt", "-"],
                          capture_output=True, text=True, check=True).stdout


def test_subtitles_chapters_tags_and_timecode_are_carried_and_the_rest_is_noted(clips, colorizer, tmp_path):
    """A reel with sound, French subtitles, chapters, a title, a comment, a timecode, and a font
    attachment and a second picture no rendition holds: the master copies the subtitles, the
    access copy converts them to MP4's text format, both keep chapters, tags and timecode, and
    what is converted or left out is said (notes, flag)."""
    (tmp_path / "fr.srt").write_text("1\n00:00:00,200 --> 00:00:01,500\nBonjour le port\n")
    (tmp_path / "meta.txt").write_text(CHAPTERS)
    (tmp_path / "font.ttf").write_bytes(b"\0" * 64)
    src = tmp_path / "reel.mkv"
    ffmpeg("-i", str(clips["pan.mp4"]), "-i", str(tmp_path / "fr.srt"), "-i", str(tmp_path / "meta.txt"),
           "-f", "lavfi", "-i", "color=c=gray:size=64x48:rate=25:duration=2",
           "-map", "0:v", "-map", "0:a", "-map", "1", "-map", "3", "-map_metadata", "2", "-map_chapters", "2",
           "-c:v:0", "copy", "-c:v:1", "ffv1", "-c:a", "copy", "-c:s", "srt", "-metadata:s:s:0", "language=fre",
           "-timecode", "10:00:00:00", "-attach", str(tmp_path / "font.ttf"),
           "-metadata:s:t", "mimetype=application/x-truetype-font", str(src))
    info = probe(src)
    assert info.subtitles == [{"index": 2, "codec": "subrip", "language": "fre"}]
    assert info.chapters == 2 and info.timecode == "10:00:00:00"
    assert info.tags == {"title": "Reel one", "comment": "Nitrate print, reel 1 of 3"}
    assert info.not_carried == ["stream 3 (video, ffv1)", "stream 4 (attachment, ttf)"]
    assert "streams-not-carried" in info.flags

    outs = [tmp_path / "master.mkv", tmp_path / "access.mp4"]
    result = colorize_film(info, outs, colorizer)
    for out in outs:
        meta = stream_info(out)
        kinds = [st["codec_type"] for st in meta["streams"] if st["codec_type"] != "data"]
        assert kinds == ["video", "audio", "subtitle"]          # one picture: the colour one
        assert audio_digest(out) == audio_digest(src)
        sub = next(st for st in meta["streams"] if st["codec_type"] == "subtitle")
        assert sub["tags"]["language"] == "fre" and "Bonjour le port" in _subtitle_text(out, 0)
        chapters = subprocess.run(["ffprobe", "-v", "error", "-show_chapters", "-of", "json", str(out)],
                                  capture_output=True, text=True, check=True).stdout
        assert [c["tags"]["title"] for c in json.loads(chapters)["chapters"]] == ["Harbour", "Market"]
        tags = {k.lower(): v for k, v in meta["format"]["tags"].items()}
        assert tags["title"] == "Reel one"
        assert tags["comment"].startswith(NOTE) and tags["comment"].endswith("Nitrate print, reel 1 of 3")
    assert [st["codec_name"] for st in stream_info(outs[0])["streams"] if st["codec_type"] == "subtitle"] == ["subrip"]
    assert [st["codec_name"] for st in stream_info(outs[1])["streams"] if st["codec_type"] == "subtitle"] == ["mov_text"]
    assert {k.lower(): v for k, v in stream_info(outs[0])["format"]["tags"].items()}["timecode"] == "10:00:00:00"
    tmcd = [st for st in stream_info(outs[1])["streams"] if st.get("codec_tag_string") == "tmcd"]
    assert [st["tags"]["timecode"] for st in tmcd] == ["10:00:00:00"]
    assert result.notes == ["stream 3 (video, ffv1) not carried: no rendition holds it",
                            "stream 4 (attachment, ttf) not carried: no rendition holds it",
                            ".mp4: subtitle stream 2 (subrip, fre) converted to mov_text: its text and times kept, "
                            "not its styling"]
    assert "streams-not-carried" in result.flags
    assert attention({"status": "done", "flags": result.flags, "colourfulness": 20.0}) == ["streams-not-carried"]

    # The access copy made from it, in turn: its timecode track and chapter track are carried,
    # not reported; its text subtitles go into the next master as SubRip.
    again = probe(outs[1])
    assert again.timecode == "10:00:00:00" and again.chapters == 2 and not again.not_carried
    result = colorize_film(again, [tmp_path / "again.mkv"], colorizer)
    assert result.notes == [".mkv: subtitle stream 2 (mov_text, fre) converted to srt: its text and times kept, "
                            "not its styling"]
    assert "Bonjour le port" in _subtitle_text(tmp_path / "again.mkv", 0)


def test_cuts_reset_smoothing_and_lossless_audio_is_copied(clips, colorizer, tmp_path):
    info = probe(clips["cut.mkv"])
    result = colorize_film(info, [tmp_path / "m.mkv"], colorizer)
    assert result.frames == 48 and result.cuts == [24]
    assert audio_digest(tmp_path / "m.mkv") == audio_digest(clips["cut.mkv"])


def test_temporal_smoothing_lowers_flicker(clips, colorizer, tmp_path):
    info = probe(clips["pan.mp4"])
    smooth = colorize_film(info, [tmp_path / "s.mkv"], colorizer, measure_flicker=True)
    assert smooth.warping_error < smooth.warping_error_unsmoothed


def test_threaded_stages_change_nothing(clips, colorizer, tmp_path, monkeypatch):
    """Smoothing, rendering and measuring run in threads beside the model: the frames written and
    the figures measured are those of one thread, frame for frame."""
    info = probe(clips["cut.mkv"])
    runs = {}
    for workers in (1, 4):
        monkeypatch.setattr(film_pipeline, "RENDER_WORKERS", workers)
        out = tmp_path / f"w{workers}.mkv"
        result = colorize_film(info, [out], colorizer, measure_flicker=True, stills=[0, 30])
        runs[workers] = (result, [f.copy() for f in decode_gray(probe(out))], list(result.stills))
    (one, frames_one, stills_one), (four, frames_four, stills_four) = runs[1], runs[4]
    assert len(frames_one) == len(frames_four) == 48 and stills_one == stills_four == [0, 30]
    assert all(np.array_equal(a, b) for a, b in zip(frames_one, frames_four))
    assert [s.__dict__ for s in one.shots] == [s.__dict__ for s in four.shots]
    assert len(one.shots) == 2 and all(s.warping_error is not None for s in one.shots)


def test_ordered_stage_keeps_order_raises_errors_and_stops_early():
    import threading
    import time

    def slow_square(x: int) -> int:
        time.sleep(0.001 * (x % 3))  # later items finish first
        return x * x

    assert list(film_pipeline._ordered(iter(range(50)), slow_square, 4)) == [(x, x * x) for x in range(50)]

    def boom(x: int) -> int:
        if x == 7:
            raise CorruptMediaError("frame 7")
        return x

    with pytest.raises(CorruptMediaError, match="frame 7"):
        list(film_pipeline._ordered(iter(range(20)), boom, 3))

    def items():
        yield 1
        raise UnsupportedMediaError("decoder gave up")

    with pytest.raises(UnsupportedMediaError, match="decoder gave up"):
        list(film_pipeline._ordered(items(), slow_square, 2))

    closed = threading.Event()

    def endless():
        try:
            n = 0
            while True:
                yield n
                n += 1
        finally:
            closed.set()

    stage = film_pipeline._ordered(endless(), slow_square, 2)
    assert [next(stage) for _ in range(5)] == [(x, x * x) for x in range(5)]
    stage.close()  # the consumer gives up: the source is closed, no thread is left behind
    assert closed.is_set()
    assert not [t for t in threading.enumerate() if t.name.startswith(("colorize-film-smooth", "colorize-film-render"))]


def test_odd_and_vfr_sources_keep_every_frame(clips, colorizer, tmp_path):
    for name, frames in (("odd.mp4", 10), ("vfr.mp4", 50)):
        info = probe(clips[name])
        out = tmp_path / f"{name}.mkv"
        assert colorize_film(info, [out, tmp_path / f"{name}.mp4"], colorizer).frames == frames
        v = video_stream(out)
        assert int(v["nb_read_packets"]) == frames and (v["width"], v["height"]) == (info.width, info.height)
    assert (video_stream(tmp_path / "odd.mp4.mp4")["width"], video_stream(tmp_path / "odd.mp4.mp4")["height"]) == (162, 122)
    vfr_in, vfr_out = stream_info(clips["vfr.mp4"]), stream_info(tmp_path / "vfr.mp4.mp4")
    assert abs(float(vfr_out["format"]["duration"]) - float(vfr_in["format"]["duration"])) < 0.1
    # Every frame at its own time (Matroska keeps milliseconds), the audio bit-exact.
    source_times = frame_times(probe(clips["vfr.mp4"]))
    for out in (tmp_path / "vfr.mp4.mkv", tmp_path / "vfr.mp4.mp4"):
        times = frame_times(probe(out))
        drift = max(abs((a - times[0]) - (b - source_times[0])) for a, b in zip(times, source_times))
        assert len(times) == 50 and drift <= 0.0011, (out, drift)
        assert audio_digest(out) == audio_digest(clips["vfr.mp4"])


def test_a_scan_larger_than_players_decode_gets_an_access_copy_scaled_to_fit(clips, colorizer, tmp_path,
                                                                             monkeypatch):
    """The access copy of a picture beyond ACCESS_MAX (4K full aperture, 4096x3112, beyond H.264
    level 5.2's 4096x2304), here a box made small: scaled to fit, turned to the picture's
    orientation, in even sizes, its display aspect kept exactly, and said in a note; the master
    keeps every pixel. A DV frame (720x576, 16:15 pixels) keeps its pixel aspect through it."""
    monkeypatch.setattr(film, "ACCESS_MAX", (128, 72))
    dv = tmp_path / "dv.avi"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=720x576:rate=25:duration=0.2,format=gray", "-target", "pal-dv",
           "-aspect", "4:3", str(dv))
    for name, src, size in (("odd", clips["odd.mp4"], (94, 72)), ("upright", clips["rotated.mp4"], (72, 96)),
                            ("dv", dv, (90, 72))):
        info = probe(src)
        outs = [tmp_path / f"{name}.mkv", tmp_path / f"{name}.mp4"]
        colorize_film(info, outs, colorizer)
        master, access = video_stream(outs[0]), video_stream(outs[1])
        assert (master["width"], master["height"]) == (info.width, info.height), name
        assert (access["width"], access["height"]) == size, name
        sar = Fraction(*map(int, info.sar.split(":"))) if info.sar not in ("0:1", "1:1", "N/A") else Fraction(1)
        shown = Fraction(access["width"]) * Fraction(access.get("sample_aspect_ratio", "1:1").replace(":", "/")) \
            / access["height"]
        assert shown == sar * info.width / info.height, name
        note = f".mp4: the access copy is scaled to {size[0]}x{size[1]} from {info.width}x{info.height}, its aspect kept"
        assert any(n.startswith(note) for n in carry_notes(info, [".mkv", ".mp4"])[0]), name


def test_rotated_source_is_written_upright_and_displays_as_the_source(clips, colorizer, tmp_path):
    info = probe(clips["rotated.mp4"])
    assert (info.rotation in (90, -90, 270)) and (info.width, info.height) == (144, 192)
    out = tmp_path / "r.mkv"
    colorize_film(info, [out], colorizer)
    v = video_stream(out)
    assert (v["width"], v["height"]) == (144, 192) and not probe(out).rotation
    src = np.stack(list(decode_gray(info)))
    got = np.stack(list(decode_gray(probe(out))))
    assert got.shape == src.shape and np.abs(got.astype(int) - src).mean() < 3


def test_the_model_sees_a_log_scan_graded_and_the_outputs_keep_its_own_l(colorizer, tmp_path, monkeypatch):
    """DPX frames in printing density: the model is shown Kodak's display conversion of them
    (reference white 685 at L 100, black 95 at L 0), and the master keeps the scan's own L."""
    code = np.array([[95, 300, 470, 685, 900]], dtype=np.float64)
    view = printing_density_luminance(np.round(code / 1023 * 65535).astype(np.uint16))[0]
    assert view[0] < 0.01 and 40 < view[2] < 55 and abs(view[3] - 100) < 0.01 and view[4] == 100
    assert np.all(np.diff(view[:4]) > 0)
    with pytest.raises(UnsupportedMediaError):
        printing_density_luminance(np.zeros((2, 2, 3), np.uint16))
    scans = tmp_path / "scans"
    scans.mkdir()
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=24:duration=0.25", "-vf", "format=gray16le",
           str(scans / "s%04d.dpx"))
    for frame in scans.iterdir():
        add_dpx_industry_headers(frame, rate=24.0, transfer=1)
    info = probe_sequence(scans, 24)
    assert info.log_encoded and info.flags == ["log-encoded"]
    seen: list[np.ndarray] = []
    model = colorizer.predict_ab_small
    monkeypatch.setattr(colorizer, "predict_ab_small", lambda lums: seen.extend(lums) or model(lums))
    colorize_film(info, [tmp_path / "c.mkv"], colorizer)
    frames = list(decode_gray(info))
    assert len(seen) == len(frames) == 6
    for lum, frame in zip(seen, frames):
        assert np.array_equal(lum, printing_density_luminance(frame)) and not np.allclose(lum, luminance(frame))
    master = np.frombuffer(subprocess.run(["ffmpeg", "-v", "error", "-i", str(tmp_path / "c.mkv"), "-f", "rawvideo",
                                           "-pix_fmt", "rgb48le", "-"], capture_output=True, check=True).stdout, "<u2")
    kept = luminance(master.reshape(6 * 48, 64, 3)) - luminance(np.concatenate(frames))
    assert np.percentile(np.abs(kept), 99) < 0.5
    # Flood-fill finds its regions in the view too.
    regions: list[np.ndarray] = []
    flood = film_pipeline.refine
    monkeypatch.setattr(film_pipeline, "refine", lambda lum, *rest: regions.append(lum) or flood(lum, *rest))
    colorize_film(info, [tmp_path / "f.mkv"], colorizer, refine_method="flood")
    views = [printing_density_luminance(f) for f in frames]   # rendered in a pool: in any order
    assert len(regions) == 6 and all(any(np.array_equal(r, v) for v in views) for r in regions)


def _first_field(path: Path) -> str:
    """Which field the first decoded frame of ``path`` shows first: T, B, or P (progressive)."""
    log = subprocess.run(["ffmpeg", "-v", "info", "-i", str(path), "-vf", "showinfo", "-frames:v", "1", "-f", "null",
                          "-"], capture_output=True, text=True, check=True).stderr
    return re.search(r"showinfo.* i:([TBP?])", log)[1]


def test_interlaced_source_is_flagged_and_its_renditions_keep_its_fields(colorizer, tmp_path):
    """A bottom-field-first transfer of a video tape, in H.264 coded as fields (ffprobe's stream
    says "tt" or nothing for such a stream, as its timing SEI does; its frames' field times say
    bottom first): flagged, and every
    rendition keeps the two fields in their order (tagged, the Y'CbCr ones coded as fields),
    joined from segments or retimed from a variable rate too."""
    src, vfr = tmp_path / "tape.mp4", tmp_path / "tape-vfr.mp4"
    fields = ["format=gray,format=yuv420p,setfield=bff", "-flags", "+ildct+ilme", "-c:v", "libx264"]
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=128x96:rate=25:duration=0.4", "-vf", *fields, str(src))
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=128x96:rate=25:duration=0.8", "-vf",
           "setpts='if(lt(N,10),N/25,0.4+(N-10)/12.5)/TB'," + fields[0], *fields[1:], "-fps_mode", "vfr", str(vfr))
    info = probe(src)
    assert info.flags == ["interlaced"] and info.field_order == "bb" and _first_field(src) == "B"
    assert info.fields_from is None and carry_notes(info, [".mkv"]) == ([], ["interlaced"])  # fields from the start
    outs = [tmp_path / "c.mkv", tmp_path / "c.mp4", tmp_path / "c.mov"]
    colorize_film(info, outs, colorizer)
    segment = tmp_path / "segment.mkv"
    colorize_film(info, [segment], colorizer, audio=False)
    outs.append(join_segments(info, [segment], tmp_path / "joined.mkv"))
    vfr_info = probe(vfr)
    assert vfr_info.flags == ["interlaced", "variable-frame-rate"] and vfr_info.field_order == "bb"
    colorize_film(vfr_info, [tmp_path / "v.mkv"], colorizer)
    for out in [*outs, tmp_path / "v.mkv"]:
        assert _first_field(out) == "B", out.name
        # and so says the stream: an H.264 access copy's timing SEI too (pic_struct 4, bottom then
        # top), which ffprobe reads here and some players go by, where the source's says top first
        assert video_stream(out)["field_order"] == "bb", out.name
    assert int(video_stream(outs[3])["nb_read_packets"]) == 10
    assert frame_times(probe(tmp_path / "v.mkv")) == pytest.approx(frame_times(vfr_info), abs=0.0011)


def test_a_capture_interlaced_after_a_progressive_start_is_interlaced_and_says_from_when(colorizer, tmp_path):
    """An MPEG-TS capture whose first 10 frames are progressive (a leader) and the 20 after them
    bottom-field-first: interlaced, bottom first, from 0.4 s (the first frame alone said
    progressive); the renditions are fields throughout, and the notes say so. A progressive
    capture of several key frames stays progressive."""
    parts = []
    for name, duration, fields in [("leader", 0.4, []), ("programme", 0.8, ["setfield=bff"])]:
        parts.append(tmp_path / f"{name}.ts")
        ffmpeg("-f", "lavfi", "-i", f"testsrc2=size=128x96:rate=25:duration={duration}", "-vf",
               ",".join(["format=gray,format=yuv420p", *fields]), *(["-flags", "+ildct+ilme"] if fields else []),
               "-c:v", "libx264", "-g", "5", str(parts[-1]))
    listing = tmp_path / "parts.txt"
    listing.write_text("".join(f"file '{part}'\n" for part in parts))
    src = tmp_path / "capture.ts"
    ffmpeg("-f", "concat", "-safe", "0", "-i", str(listing), "-c", "copy", str(src))
    assert _first_field(src) == "P"
    info = probe(src)
    assert info.flags == ["interlaced"] and info.field_order == "bb" and info.fields_from == pytest.approx(0.4)
    notes, flags = carry_notes(info, [".mkv", ".mp4"])
    assert flags == ["interlaced"]
    assert notes == [("interlaced from about 0.4 s (the key frames read before it are progressive): every rendition is "
                      "coded and tagged as fields, bottom first, throughout")]
    result = colorize_film(info, [tmp_path / "c.mkv", tmp_path / "c.mp4"], colorizer)
    assert result.notes == notes and result.flags == ["interlaced"]
    for out in [tmp_path / "c.mkv", tmp_path / "c.mp4"]:
        assert _first_field(out) == "B" and int(video_stream(out)["nb_read_packets"]) == 30, out.name
    leader = probe(parts[0])
    assert leader.flags == [] and leader.field_order == "progressive" and leader.fields_from is None


def test_an_avi_with_b_frames_whose_packets_have_no_presentation_times(colorizer, tmp_path):
    """AVI stores decoding times only: with B-frames (an Xvid capture) ffprobe gives most packets
    and every frame no presentation time. Its fields are read from its key frames all the same:
    a capture of 25 progressive frames then 25 bottom-field-first ones is interlaced, from about
    1 s; the progressive part alone is not, and it is colorized whole."""
    parts = []
    for name, fields in [("leader", ""), ("tape", ",setfield=bff")]:
        parts.append(tmp_path / f"{name}.avi")
        ffmpeg("-f", "lavfi", "-i", f"testsrc2=size=160x120:rate=25:duration=1{fields}", "-c:v", "mpeg4", "-bf", "2",
               "-g", "12", *(["-flags", "+ildct+ilme", "-top", "0"] if fields else []), str(parts[-1]))
    listing = tmp_path / "parts.txt"
    listing.write_text("".join(f"file '{part}'\n" for part in parts))
    capture = tmp_path / "capture.avi"
    ffmpeg("-f", "concat", "-safe", "0", "-i", str(listing), "-c", "copy", str(capture))
    info = probe(capture)
    assert info.frames == 50 and info.genpts and len(info.times) == 50   # each frame's time as ffmpeg decodes it
    assert info.flags == ["interlaced"] and info.field_order == "bb" and 0.9 <= info.fields_from <= 1.5
    info = probe(parts[0])
    assert info.frames == 25 and info.flags == [] and info.field_order == "progressive"
    # The picture starts when ffmpeg's own transcode starts it (one frame in: the B-frames' delay)
    ffmpeg("-i", str(parts[0]), "-c:v", "ffv1", str(tmp_path / "ffmpeg.mkv"))
    assert info.picture_offset == pytest.approx(_first_pts(tmp_path / "ffmpeg.mkv", "v:0"), abs=0.001)
    colorize_film(info, [tmp_path / "leader.mkv"], colorizer)
    assert int(video_stream(tmp_path / "leader.mkv")["nb_read_packets"]) == 25


@pytest.mark.parametrize("name, codec", [("capture.ts", ["-c:v", "libx264", "-bf", "3"]),
                                         ("tape.ts", ["-c:v", "mpeg2video", "-bf", "2", "-flags", "+ildct+ilme"]),
                                         ("dvd.mpg", ["-c:v", "mpeg2video", "-bf", "2"]),
                                         ("xvid.avi", ["-c:v", "mpeg4", "-bf", "2"]),
                                         ("master.mp4", ["-c:v", "libx264", "-bf", "3"]),
                                         ("open-gop.mp4", ["-c:v", "libx264", "-bf", "3", "-x264-params",
                                                           "keyint=10:min-keyint=10:open-gop=1:scenecut=0"]),
                                         ("mpeg2.mov", ["-c:v", "mpeg2video", "-bf", "2"]),
                                         ("master.mkv", ["-c:v", "libx264", "-bf", "3"])])
def test_a_unit_of_work_starts_at_its_own_frame_in_any_container(tmp_path, name, codec):
    """A shot unit decodes from its first frame, seeking: every frame, the same as decoding the
    film from its start. MPEG-TS and MPEG-PS have no index, so ffmpeg's seek may land past its
    target (units began frames late, or failed: "truncated film"); AVI and MPEG-PS with B-frames
    give most packets no presentation time (units were refused: "cannot address shots"). An
    indexed container is sought from the key frame at or before the unit, not one more: its
    open GOPs' leading frames (shown before their key frame, decoded after it) are among them."""
    src = tmp_path / name
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=128x96:rate=25:duration=1.6", "-g", "10", *codec, str(src))
    info = probe(src)
    times = frame_times(info)
    whole = list(decode_gray(info))
    assert len(times) == len(whole) == info.frames == 40
    assert info.indexed == (src.suffix in (".mp4", ".mov", ".mkv"))
    wrong, early = [], []
    for k in range(1, info.frames):
        n = min(3, info.frames - k)
        seek = seek_point(times, k, info.start_time, info.keys, info.indexed)
        part = list(decode_gray(info, k, n, seek=seek))
        if len(part) != n or not all(np.array_equal(a, b) for a, b in zip(part, whole[k:k + n])):
            wrong.append(k)
        # indexed: no key frame more than the unit needs (a GOP more to decode)
        if info.indexed and seek.start < max(key for key in info.keys if key <= times[k]) - 1e-6:
            early.append(k)
    assert (wrong, early) == ([], [])


def test_an_mp4_trimmed_without_re_encoding_is_the_frames_it_shows(colorizer, tmp_path):
    """A clip cut with ``ffmpeg -ss ... -c copy`` keeps the packets from the key frame before its
    cut, and an edit list hides them: they are decoded, never shown. They are no frames of the
    film (it was refused as "truncated film: decoded 67 of 75 frames"), yet its units seek from
    them, and its access copy keeps the sound its edit list hides, as the source does."""
    reel, clip = tmp_path / "reel.mp4", tmp_path / "clip.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=128x96:rate=25:duration=4", "-f", "lavfi", "-i", "sine=duration=4",
           "-c:v", "libx264", "-bf", "3", "-g", "25", "-c:a", "aac", "-shortest", str(reel))
    ffmpeg("-ss", "1.3", "-i", str(reel), "-c", "copy", str(clip))
    packets = int(video_stream(clip)["nb_read_packets"])
    info = probe(clip)
    whole = list(decode_gray(info))
    assert info.frames == len(whole) == len(frame_times(info)) < packets
    assert min(info.keys) < 0 == info.video_start       # the hidden key frame, decoded from
    times = frame_times(info)
    for k in (1, 5, 20, info.frames - 3):
        part = list(decode_gray(info, k, 3, seek=seek_point(times, k, info.start_time, info.keys, info.indexed)))
        assert all(np.array_equal(a, b) for a, b in zip(part, whole[k:k + 3], strict=True)), k
    out = tmp_path / "colour.mp4"
    colorize_film(info, [out], colorizer)
    assert int(video_stream(out)["nb_read_packets"]) == info.frames
    assert _first_pts(out, "v:0") == pytest.approx(0, abs=0.001)
    assert audio_digest(out) == audio_digest(clip)


def test_a_matroska_remuxed_with_its_broadcast_times_is_whole_and_a_cut_one_is_not(colorizer, tmp_path):
    """Matroska declares where its timeline ends, counted from 0. A capture remuxed with
    ``-copyts`` keeps its broadcast times: it starts at 1001.4 s of a declared 1003.4 s, and was
    refused as "truncated film: 50 frames present, ending at 2.01 s of the 1003.40 s declared"."""
    capture, remux = tmp_path / "capture.ts", tmp_path / "capture.mkv"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=128x96:rate=25:duration=2", "-f", "lavfi", "-i", "sine=duration=2",
           "-c:v", "libx264", "-bf", "3", "-g", "10", "-c:a", "mp2", "-shortest", "-output_ts_offset", "1000", str(capture))
    ffmpeg("-copyts", "-i", str(capture), "-c", "copy", str(remux))
    info = probe(remux)
    assert info.frames == 50 and info.start_time > 1000
    times = frame_times(info)
    whole = list(decode_gray(info))
    part = list(decode_gray(info, 23, 5, seek=seek_point(times, 23, info.start_time, info.keys, info.indexed)))
    assert all(np.array_equal(a, b) for a, b in zip(part, whole[23:28], strict=True))
    out = tmp_path / "colour.mkv"
    colorize_film(info, [out], colorizer)
    assert int(video_stream(out)["nb_read_packets"]) == 50 and audio_digest(out) == audio_digest(remux)
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(remux.read_bytes()[: remux.stat().st_size // 3])
    with pytest.raises(CorruptMediaError, match="truncated film"):
        probe(cut)


def test_bad_films_raise_clear_errors_and_leave_nothing(clips, colorizer, tmp_path):
    data = clips["pan.mp4"].read_bytes()
    cases = {
        "empty.mp4": (b"", CorruptMediaError, "empty file"),
        "garbage.mp4": (b"not a film at all\n" * 100, CorruptMediaError, "not a decodable video"),
        "playlist.mp4": (b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\nfile:///etc/hostname\n#EXT-X-ENDLIST\n",
                         (CorruptMediaError, UnsupportedMediaError), "not a"),
        "concat.mp4": (f"ffconcat version 1.0\nfile '{clips['pan.mp4']}'\n".encode(),
                       (CorruptMediaError, UnsupportedMediaError), "not a"),
    }
    audio = tmp_path / "audio.mp4"
    ffmpeg("-f", "lavfi", "-i", "sine=duration=1", "-c:a", "aac", str(audio))
    with pytest.raises(UnsupportedMediaError, match="no video stream"):
        probe(audio)
    for name, (content, error, text) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(error, match=text):
            probe(path)
    # Truncated: the header survives, the frames do not.
    trunc = tmp_path / "trunc.mkv"
    full = tmp_path / "full.mkv"
    ffmpeg("-i", str(clips["pan.mp4"]), "-c", "copy", str(full))
    trunc.write_bytes(full.read_bytes()[: len(full.read_bytes()) // 3])
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(CorruptMediaError, match="truncated"):
        colorize_film(probe(trunc), [out / "t.mkv"], colorizer)
    assert list(out.iterdir()) == []
    assert len(data) > 0


def test_cli_video_statuses(clips, tmp_path):
    run = [sys.executable, "-m", "colorize_cli.main", "video"]
    r = subprocess.run([*run, "--flicker", str(clips["pan.mp4"]), str(tmp_path / "o.mp4")], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "50 frames" in r.stdout and "warping error" in r.stdout
    r = subprocess.run([*run, str(clips["pan.mp4"]), str(tmp_path / "o.mp4")], capture_output=True, text=True)
    assert r.returncode == 2 and "--overwrite" in r.stderr
    r = subprocess.run([*run, str(clips["pan.mp4"]), str(tmp_path / "o.avi")], capture_output=True, text=True)
    assert r.returncode == 2
    r = subprocess.run([*run, "--fps", "25", str(clips["pan.mp4"]), str(tmp_path / "f.mkv")], capture_output=True,
                       text=True)   # a film file keeps its own rate: not silently ignored
    assert r.returncode == 2 and "keeps its own frame rate" in r.stderr and not (tmp_path / "f.mkv").exists()
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"")
    r = subprocess.run([*run, str(bad), str(tmp_path / "b.mkv")], capture_output=True, text=True)
    assert r.returncode == 1 and "empty file" in r.stderr


def test_frame_rates_are_read_as_people_write_them():
    ntsc = Fraction(24000, 1001)
    for written, rate in ((24, 24), ("25", 25), (" 24000/1001 ", ntsc), ("23.976", ntsc), ("23.98", ntsc),
                          (23.976, ntsc), ("29.97", Fraction(30000, 1001)), ("59.94", Fraction(60000, 1001)),
                          ("47.952", Fraction(48000, 1001)), ("12.5", Fraction(25, 2)), ("23.5", Fraction(47, 2)),
                          ("2997/125", Fraction(2997, 125)), (Fraction(18), 18)):
        assert frame_rate(written) == rate, written
    for bad in (0, "-24", "0/1", "1/0", "abc", "", "nan", "inf", True, None, [24]):
        with pytest.raises(ValueError, match="a frame rate is a positive number"):
            frame_rate(bad)


@pytest.mark.parametrize("magic,order", [(b"SDPX", ">"), (b"XPDS", "<")])
def test_dpx_headers_give_the_rate_timecode_and_calibration_a_scanner_wrote(tmp_path, magic, order):
    def frame(rate: float, tc: int, industry: int = 384) -> Path:
        head = bytearray(b"\xff" * 2048)
        head[:4] = magic
        head[4:8] = struct.pack(order + "I", 2048)
        head[24:32] = struct.pack(order + "II", 1664, industry)
        head[1724:1728] = struct.pack(order + "f", rate)
        head[1920:1924] = struct.pack(order + "I", tc)
        path = tmp_path / f"f{len(list(tmp_path.iterdir())):04d}.dpx"
        path.write_bytes(bytes(head))
        return path

    assert dpx_header(frame(23.976, 0x01020314)) == {"rate": Fraction(24000, 1001), "timecode": "01:02:03:14"}
    assert dpx_header(frame(29.97, 0x10595947)) == {"rate": Fraction(30000, 1001), "timecode": "10:59:59;07"}
    assert dpx_header(frame(25.0, 0xFFFFFFFF)) == {"rate": Fraction(25)}
    assert dpx_header(frame(float("nan"), 0x0000001A)) == {}           # undefined rate; 1A is not BCD
    assert dpx_header(frame(24.0, 0x01000000, industry=0)) == {}       # no industry headers at all
    scan = frame(24.0, 0xFFFFFFFF)
    for code, name in ((1, "printing density"), (3, "logarithmic"), (2, "linear")):
        data = bytearray(scan.read_bytes())
        data[801] = code                                                  # the image element's transfer
        scan.write_bytes(bytes(data))
        assert dpx_header(scan) == {"transfer": name, "rate": Fraction(24)}
    # A 16-bit printing-density scan declaring 0.002 density per 10-bit code value (its reference
    # codes and densities) and reference black and white at 10-bit 95 and 685 (at its own depth).
    data = bytearray(scan.read_bytes())
    data[801], data[803] = 1, 16
    data[784:800] = struct.pack(order + "IfIf", 0, 0.0, 65535, 2.046)
    data[1952:1956] = struct.pack(order + "f", 95 * 65535 / 1023)
    data[1964:1968] = struct.pack(order + "f", 685 * 65535 / 1023)
    scan.write_bytes(bytes(data))
    got = dpx_header(scan)
    assert got["transfer"] == "printing density" and got["black"] == pytest.approx(95, abs=1e-3)
    assert got["white"] == pytest.approx(685, abs=1e-3) and got["density"] == pytest.approx(0.002, rel=1e-3)
    assert got["bits"] == 16
    data[1952:1956] = data[1964:1968] = struct.pack(order + "f", 0.0)   # zero-filled, as some writers leave it
    data[784:800] = struct.pack(order + "IfIf", 0, 0.0, 0xFFFFFFFF, float("nan"))
    scan.write_bytes(bytes(data))
    assert dpx_header(scan) == {"transfer": "printing density", "bits": 16, "rate": Fraction(24)}


def test_frame_numbers_not_padded_or_outgrowing_their_padding_are_one_sequence(tmp_path):
    """f9.png then f10.png, and f999.dpx then f1000.dpx, are one sequence each, in frame order
    (they had been refused as two sequences); f01 and f001 are two."""
    distinct = ["-f", "lavfi", "-i", "color=c=black:size=64x48:rate=24", "-vf", "format=gray,geq=lum='mod(N*8+X*2,256)'"]
    unpadded, outgrown, apart = (tmp_path / n for n in ("unpadded", "outgrown", "apart"))
    for folder in (unpadded, outgrown, apart):
        folder.mkdir()
    ffmpeg(*distinct, "-frames:v", "12", str(unpadded / "frame_%d.png"))
    info = probe_sequence(unpadded, 24)
    assert info.frames == 12 and info.sequence["start_number"] == 1
    files = [cv2.imread(str(unpadded / f"frame_{n}.png"), cv2.IMREAD_GRAYSCALE) for n in range(1, 13)]
    assert all(np.array_equal(got, want) for got, want in zip(decode_gray(info), files, strict=True))
    assert np.array_equal(next(decode_gray(info, start=9)), files[9])   # a unit's start: frame_10.png
    ffmpeg(*distinct, "-frames:v", "10", "-start_number", "995", str(outgrown / "f%03d.dpx"))
    info = probe_sequence(outgrown, 24)
    assert info.frames == 10 and info.sequence["start_number"] == 995
    ffmpeg(*distinct, "-frames:v", "3", str(apart / "f%02d.png"))
    ffmpeg(*distinct, "-frames:v", "3", str(apart / "f%03d.png"))
    with pytest.raises(UnsupportedMediaError, match="more than one numbered sequence"):
        probe_sequence(apart, 24)


def test_jpeg2000_frame_sequences_are_films(colorizer, tmp_path):
    """Numbered JPEG 2000 frames, in the JP2 file format or as bare codestreams, as film archives
    keep them (16 bits kept in the master)."""
    for ext, fmt in ((".jp2", "gray16le"), (".j2c", "gray")):
        folder = tmp_path / ext[1:]
        folder.mkdir()
        ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=24", "-frames:v", "6", "-vf", f"format={fmt}",
               "-c:v", "libopenjpeg", str(folder / f"scan_%04d{ext}"))
        info = probe_sequence(folder, 24)
        assert (info.frames, info.bit_depth) == (6, 16 if fmt == "gray16le" else 8)
        colorize_film(info, [tmp_path / f"{ext[1:]}.mkv"], colorizer)
        v = video_stream(tmp_path / f"{ext[1:]}.mkv")
        assert int(v["nb_read_packets"]) == 6 and v["pix_fmt"] == ("gbrp16le" if fmt == "gray16le" else "bgr0")


@pytest.mark.parametrize("ext", [".dpx", ".png", ".tif", ".jp2"])
def test_a_sequence_with_a_frame_of_another_size_is_refused_not_rescaled(tmp_path, ext):
    """ffmpeg scales a frame of another size to fit, without a word: a frame from another scan
    dropped in the folder would pass unseen."""
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=24", "-frames:v", "5", "-pix_fmt", "gray",
           str(tmp_path / f"f%03d{ext}"))
    assert probe_sequence(tmp_path, 24).frames == 5
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=80x60:rate=24", "-frames:v", "1", "-pix_fmt", "gray", "-update", "1",
           str(tmp_path / f"f003{ext}"))
    with pytest.raises(CorruptMediaError, match=rf"1 frame\(s\) not the size of the first \(64x48\): f003\{ext} \(80x60\)"):
        probe_sequence(tmp_path, 24)


@pytest.mark.parametrize("ext", [".dpx", ".png", ".tif", ".jp2"])
def test_a_sequence_with_frames_deeper_than_its_first_is_decoded_at_their_depth(colorizer, tmp_path, ext):
    """ffmpeg decodes a sequence at its first frame's pixel format: a rescanned 16-bit frame in an
    8-bit sequence would lose its low bits without a word."""
    ramp = (np.arange(48 * 64).reshape(48, 64) * 13 % 65536).astype("<u2")   # uses all 16 bits
    (tmp_path / "ramp.raw").write_bytes(ramp.tobytes())
    raw = ("-f", "rawvideo", "-pix_fmt", "gray16le", "-s", "64x48", "-i", str(tmp_path / "ramp.raw"))
    codec = ("-c:v", "libopenjpeg") if ext == ".jp2" else ()
    folder = tmp_path / "reel"
    folder.mkdir()
    for n in range(1, 5):
        ffmpeg(*raw, *codec, "-pix_fmt", "gray16le" if n in (2, 4) else "gray", str(folder / f"f{n:03d}{ext}"))
    info = probe_sequence(folder, 24)
    assert info.bit_depth == 16 and info.sequence["deeper_frames"] == {"count": 2, "first": [f"f002{ext}", f"f004{ext}"]}
    frames = list(decode_gray(info))
    assert frames[1].dtype == np.uint16 and np.array_equal(frames[1], ramp) and np.array_equal(frames[3], ramp)
    assert not np.any(frames[0] % 257) and np.abs(frames[0] - ramp.astype(int)).max() <= 257   # the 8-bit ones
    assert f"2 of the 4 frames (f002{ext}, f004{ext}) hold more than 8 bits" in carry_notes(info, [".mkv"])[0][0]
    colorize_film(info, [tmp_path / "reel.mkv"], colorizer)
    assert video_stream(tmp_path / "reel.mkv")["pix_fmt"] == "gbrp16le"
    (folder / f"f002{ext}").unlink()
    (folder / f"f004{ext}").unlink()
    for n in (2, 4):
        ffmpeg(*raw, *codec, "-pix_fmt", "gray", str(folder / f"f{n:03d}{ext}"))
    info = probe_sequence(folder, 24)
    assert info.bit_depth == 8 and "deeper_frames" not in info.sequence and not carry_notes(info, [".mkv"])[0]


def save_frame(path: Path, pixels: np.ndarray, icc: bytes | None = None) -> None:
    """A frame file of ``pixels`` (gray or RGB, 8 or 16 bits) tagged with ``icc``: TIFF and PNG
    by Pillow; JPEG 2000 by OpenJPEG, its colour box replaced by one holding the profile."""
    from PIL import Image

    if path.suffix != ".jp2":
        Image.fromarray(pixels).save(path, **({"icc_profile": icc} if icc else {}))
        return
    import imagecodecs

    data = imagecodecs.jpeg2k_encode(pixels, codecformat=imagecodecs.JPEG2K.CODEC.JP2, reversible=True)
    if icc:
        at = data.index(b"colr") - 4
        old = struct.unpack(">I", data[at:at + 4])[0]
        box = struct.pack(">I", 8 + 3 + len(icc)) + b"colr\x02\x00\x00" + icc
        head = data.index(b"jp2h") - 4
        grown = struct.pack(">I", struct.unpack(">I", data[head:head + 4])[0] - old + len(box))
        data = data[:head] + grown + data[head + 4:at] + box + data[at + old:]
    path.write_bytes(data)


@pytest.mark.parametrize("ext", [".tif", ".png", ".jp2"])
def test_a_sequence_in_a_gray_icc_space_is_read_as_its_tones_in_srgb_gray(colorizer, tmp_path, ext):
    """A film scanned to TIFF, PNG or JPEG 2000 frames tagged with a gray ICC profile (Photoshop's
    "Dot Gain 20%"; here gamma 1.8) has its values converted to sRGB's gray, as a photo's are; a
    frame with another profile in it is refused, not converted with the wrong tones."""
    from colorize_core.color import gray_profile, gray_to_srgb

    gamma18 = gray_profile(1.8, "Gray Gamma 1.8")
    ramp16 = (np.arange(48 * 64).reshape(48, 64) * 21 % 65536).astype(np.uint16)
    for depth, ramp in ((8, (ramp16 >> 8).astype(np.uint8)), (16, ramp16)):
        folder = tmp_path / f"reel{depth}"
        folder.mkdir()
        for n in range(1, 4):
            save_frame(folder / f"f{n:03d}{ext}", ramp, gamma18)
        info = probe_sequence(folder, 24)
        assert info.bit_depth == depth and info.sequence["profile"]["name"] == "Gray Gamma 1.8"
        want, _ = gray_to_srgb(ramp, gamma18)
        frames = list(decode_gray(info))
        assert len(frames) == 3 and all(np.array_equal(f, want) for f in frames)
        mid = ramp.astype(np.float64) / np.iinfo(ramp.dtype).max
        assert np.abs(want.astype(np.float64) - np.iinfo(ramp.dtype).max * mid).max() > 0.05 * np.iinfo(ramp.dtype).max
        assert np.array_equal(next(decode_gray(info, start=2)), want)   # a unit's start
        assert any("gray ICC profile 'Gray Gamma 1.8', their values converted to sRGB's gray" in n
                   for n in carry_notes(info, [".mkv"])[0])
    colorize_film(info, [tmp_path / "reel.mkv"], colorizer)
    assert int(video_stream(tmp_path / "reel.mkv")["nb_read_packets"]) == 3
    (folder / f"f002{ext}").unlink()
    save_frame(folder / f"f002{ext}", ramp16)
    with pytest.raises(UnsupportedMediaError, match=r"different ICC profiles.*2 with the ICC profile 'Gray Gamma 1\.8' "
                                                    rf"\(f001\{ext} \.\.\.\); 1 with no ICC profile \(f002\{ext}\)"):
        probe_sequence(folder, 24)
    (folder / f"f002{ext}").unlink()
    broken = gamma18.replace(b"kTRC", b"xTRC", 1)   # a gray space without its tone curve
    save_frame(folder / f"f002{ext}", ramp16, broken)
    with pytest.raises(UnsupportedMediaError, match="different ICC profiles"):
        probe_sequence(folder, 24)
    for n in (1, 3):
        save_frame(folder / f"f{n:03d}{ext}", ramp16, broken)
    info = probe_sequence(folder, 24)
    assert "unusable" in info.sequence["profile"] and np.array_equal(next(decode_gray(info)), ramp16)
    assert any("gray ICC profile 'Gray Gamma 1.8' cannot be used" in n for n in carry_notes(info, [".mkv"])[0])


@pytest.mark.parametrize("ext", [".tif", ".png"])
def test_a_sequence_of_rgb_frames_in_another_space_than_srgb_has_its_tones_read_as_srgb(tmp_path, ext):
    """A film scanner's RGB frames tagged Adobe RGB: their gray (what the model sees) is read
    through the profile's neutral tone curve, as a photo's tones are; frames tagged sRGB, or
    with no profile, are read as they are."""
    from PIL import Image, ImageCms

    from colorize_core.color import gray_to_srgb, rgb_neutral
    from tests.conftest import ADOBE_RGB_COLORANTS, rgb_profile

    adobe = rgb_profile(563 / 256, ADOBE_RGB_COLORANTS, "Adobe RGB test")
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    ramp = np.tile(np.arange(256, dtype=np.uint8), (48, 1))
    for name, icc in (("adobe", adobe), ("srgb", srgb), ("none", None)):
        folder = tmp_path / name
        folder.mkdir()
        for n in range(1, 3):
            Image.fromarray(np.dstack([ramp] * 3)).save(folder / f"f{n:03d}{ext}",
                                                         **({"icc_profile": icc} if icc else {}))
        info = probe_sequence(folder, 24)
        got = next(decode_gray(info))
        if name == "adobe":
            assert info.sequence["profile"]["name"] == "Adobe RGB test"
            np.testing.assert_array_equal(got, gray_to_srgb(ramp, rgb_neutral(adobe))[0])
            assert np.abs(got.astype(int) - ramp).max() >= 5
            assert any("RGB ICC profile 'Adobe RGB test', not sRGB: their tones converted to sRGB's through its "
                       "neutral tone curve" in n for n in carry_notes(info, [".mkv"])[0])
        else:
            assert "profile" not in info.sequence and np.array_equal(got, ramp) and not carry_notes(info, [".mkv"])[0]



def test_a_log_scan_is_viewed_through_the_calibration_declared_for_it():
    """Kodak's points unless the DPX headers of a log scan declare others; what a sequence.json
    (or --printing-density) says wins; the note says where each value came from."""
    log = {"transfer": "printing density"}
    assert printing_density_of({"transfer": "linear"}) is None and printing_density_of({}) is None
    kodak = printing_density_of(log)
    assert kodak == KODAK and kodak.origin == "DPX transfer: printing density; Kodak's standard values"
    declared = printing_density_of({**log, "black": 64.0, "white": 760.0, "density": 0.002})
    assert (declared.black, declared.white, declared.gamma) == (64, 760, 0.6)
    assert declared.origin.endswith("black, white and density from the DPX headers, the rest Kodak's standard values")
    told = printing_density_of({**log, "black": 64.0, "white": 760.0}, {"white": 700.0, "gamma": 0.5})
    assert (told.black, told.white, told.gamma) == (64, 700, 0.5)
    assert "white and gamma from sequence.json, black from the DPX headers" in told.origin
    assert printing_density_of(log, False) is None                     # the headers overruled
    tiff = printing_density_of({}, True, "--printing-density")        # a log scan in TIFF: no headers
    assert tiff == KODAK and tiff.origin.startswith("printing density, as --printing-density says")
    odd = printing_density_of({**log, "black": 0.0, "white": 1023.0, "density": 0.5})
    assert odd == KODAK and "the DPX headers' reference values ignored" in odd.origin
    with pytest.raises(UnsupportedMediaError, match="sequence.json: .*black 64 and white 50"):
        printing_density_of({**log, "black": 64.0, "white": 760.0}, {"white": 50.0})
    assert printing_density_override(True) is True
    assert printing_density_override({"black": 64, "white": 760}) == {"black": 64.0, "white": 760.0}
    for bad in ({"black": "64"}, {"blak": 64}, {}, [64, 760], "yes", {"gamma": float("inf")}):
        with pytest.raises(ValueError, match="printing_density"):
            printing_density_override(bad)
    with pytest.raises(ValueError, match="gamma"):
        PrintingDensity(gamma=0)
    # The view puts each calibration's black at L 0 and its white at L 100.
    codes = np.round(np.array([[64, 95, 685, 760]]) / 1023 * 65535).astype(np.uint16)
    other = printing_density_luminance(codes, PrintingDensity(black=64, white=760))[0]
    assert other[0] < 0.01 and abs(other[3] - 100) < 0.01 and 0 < other[1] < other[2] < 100
    assert abs(printing_density_luminance(codes)[0][2] - 100) < 0.01 and other[2] < 95   # 685: Kodak's white only
