"""Films in the archive flow: units of shots, segments joined with the original audio, resume
after a crash, frame sequences, S3 and PostgreSQL, and bad films recorded while the job goes on."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

import boto3
import cv2
import numpy as np
import pytest
from sqlalchemy import select

from colorize_core.archive import FilmEntry, JobSettings, plan, read_sidecar
from colorize_core.colorizer import Colorizer
from colorize_core.film import FilmInfo, carry_notes, decode_gray, frame_times, probe, seek_trial, stream_info
from colorize_core.film_archive import assemble_film, colorize_unit, plan_units, prepare_film
from colorize_core.errors import JobStoppedError
from colorize_core.provenance import Item, JobWatch, ProvenanceStore, Shot
from colorize_core.storage import Location, open_location
from tests.conftest import SAMPLES, add_dpx_industry_headers, audio_digest, ffmpeg, video_stream

pytestmark = pytest.mark.slow


def make_reel(path: Path, seconds: float = 2, cut_at: float = 1.25, subtitles: bool = False) -> Path:
    """A gray film with a cut at ``cut_at`` s, 24 frames/s, H.264 with B-frames, AAC audio;
    ``subtitles``: with an English subtitle track, two chapters, a title and a timecode too."""
    path.parent.mkdir(parents=True, exist_ok=True)
    extras: list[str] = []
    work = Path(tempfile.mkdtemp(prefix="reel-"))   # not beside the film: the job would find them
    if subtitles:
        srt, meta = work / "subs.srt", work / "chapters.txt"
        srt.write_text("1\n00:00:01,000 --> 00:00:01,900\nThe harbour, 1931\n")
        meta.write_text(";FFMETADATA1\ntitle=Harbour newsreel\n[CHAPTER]\nTIMEBASE=1/1000\nSTART=0\nEND=1250\n"
                        "title=Quay\n[CHAPTER]\nTIMEBASE=1/1000\nSTART=1250\nEND=2000\ntitle=Boats\n")
        extras = ["-i", str(srt), "-i", str(meta), "-map", "3", "-map_metadata", "4", "-map_chapters", "4",
                  "-c:s", "mov_text", "-metadata:s:s:0", "language=eng", "-timecode", "01:02:03:04"]
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=size=160x120:rate=24:duration={cut_at}", "-f", "lavfi", "-i",
           "mandelbrot=size=160x120:rate=24", "-f", "lavfi", "-i", f"sine=frequency=300:duration={seconds}",
           *extras[:4], "-filter_complex", f"[1:v]trim=duration={seconds - cut_at},setpts=PTS-STARTPTS[m];"
           "[0:v][m]concat=n=2:v=1,format=gray,format=yuv420p[v]", "-map", "[v]", "-map", "2:a", *extras[4:],
           "-c:v", "libx264", "-bf", "3", "-c:a", "aac", str(path))
    shutil.rmtree(work)
    return path


def packets(path: Path, stream: str) -> list[tuple[str, str]]:
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", stream, "-show_entries", "packet=pts_time",
                          "-of", "csv=p=0", str(path)], capture_output=True, text=True, check=True).stdout
    return sorted((line.split(",")[0] for line in out.split()), key=float)


def run_flow(**kwargs):  # noqa: ANN003, ANN201
    from flows.archive import colorize_archive

    return colorize_archive(batch_size=4, **kwargs)


def test_units_group_short_shots_and_split_long_ones():
    s = JobSettings(shot_min_frames=10, shot_max_frames=40, warmup_frames=5)
    units = plan_units(100, [3, 6, 50], s)
    # 0-3 and 3-6 are short: grouped with the first piece of the long shot 6-50
    assert [(u["start"], u["end"], u["warmup"]) for u in units] == [(0, 28, 0), (28, 50, 5), (50, 75, 0), (75, 100, 5)]
    # every frame in exactly one unit, none longer than the maximum, warm-up never across a cut
    covered = [f for u in units for f in range(u["start"], u["end"])]
    assert covered == list(range(100))
    assert all(u["end"] - u["start"] <= 40 for u in units)
    for u in units:
        assert not any(u["start"] - u["warmup"] < c <= u["start"] - 1 for c in [3, 6, 50])
    assert plan_units(7, [], s) == [{"start": 0, "end": 7, "warmup": 0, "cuts": [0]}]


def test_film_in_the_archive_keeps_every_frame_timestamp_and_the_audio(prefect_api, tmp_path):
    src, dest, db = tmp_path / "src", tmp_path / "dest", f"sqlite:///{tmp_path}/p.db"
    reel = make_reel(src / "reels" / "reel one.mp4", subtitles=True)
    summary = run_flow(source=str(src), dest=str(dest), db_url=db, shot_max_frames=15)
    assert summary["counts"] == {"done": 1, "skipped": 0, "failed": 0}
    master, access = dest / "reels" / "reel one.mkv", dest / "reels" / "reel one.mp4"
    for out in (master, access):
        assert int(video_stream(out)["nb_read_packets"]) == 48
        assert audio_digest(out) == audio_digest(reel)
        # Subtitles, chapters, title and timecode come along with the sound.
        again = probe(out)
        assert [(s["codec"], s["language"]) for s in again.subtitles] == [
            ("subrip" if out.suffix == ".mkv" else "mov_text", "eng")]
        assert again.chapters == 2 and again.timecode == "01:02:03:04"
        assert again.tags["title"] == "Harbour newsreel" and not again.not_carried
    assert packets(access, "s:0") == packets(reel, "s:0")
    assert video_stream(master)["codec_name"] == "ffv1" and video_stream(access)["codec_name"] == "h264"
    assert packets(access, "v:0") == packets(reel, "v:0")      # every frame at its original time
    assert packets(access, "a:0") == packets(reel, "a:0")
    assert not list((dest / "manifests" / "segments").iterdir())   # segments removed once joined, and their folder

    item = json.loads((dest / "manifest.json").read_text())["items"][0]
    assert item["notes"] == [".mkv: subtitle stream 2 (mov_text, eng) converted to srt: its text and times kept, "
                             "not its styling"]
    assert "streams-not-carried" not in item["flags"]
    assert item["film"]["media"]["cuts"] == [30] and len(item["film"]["units"]) == 4
    assert [(s["start"], s["end"]) for s in item["film"]["shots"]] == [(0, 15), (15, 30), (30, 39), (39, 48)]
    assert all(s["warping_error"] <= s["warping_error_unsmoothed"] for s in item["film"]["shots"])
    html = (dest / "manifest.html").read_text()
    assert "flicker before smoothing" in html and html.count("alt=\"colour frame") == 4

    again = run_flow(source=str(src), dest=str(dest), db_url=db, shot_max_frames=15)
    assert again["counts"] == {"done": 0, "skipped": 1, "failed": 0}


class PlannedFilm(NamedTuple):
    store: ProvenanceStore
    settings: JobSettings
    colorizer: Colorizer
    source: Location
    dest: Location
    job: str
    plan: dict


def planned_film(tmp_path: Path, shot_frames: int) -> PlannedFilm:
    """A job that has planned ``reel.mp4`` (from :func:`make_reel`) in units of ``shot_frames``."""
    make_reel(tmp_path / "src" / "reel.mp4")
    store = ProvenanceStore(f"sqlite:///{tmp_path}/p.db")
    settings = JobSettings(shot_max_frames=shot_frames, shot_min_frames=shot_frames)
    colorizer = Colorizer.load("default", device="cpu")
    s, d = open_location(str(tmp_path / "src")), open_location(str(tmp_path / "dest"))
    job = store.start_job(s.uri, d.uri, settings.params(colorizer.sha256, "film"), "k", "default",
                          colorizer.sha256, {}, None)
    _, films, _ = plan(s, d, store, job, settings, colorizer.sha256)
    film_plan = prepare_film(films[0], s, d, store, job, settings, "default", colorizer.sha256)
    return PlannedFilm(store, settings, colorizer, s, d, job, film_plan)


def unit_plan(tmp_path: Path, settings: JobSettings) -> dict:
    """The plan a job makes of the one film in ``tmp_path / "src"`` (model "m"), through JSON as a
    task receives it."""
    store = ProvenanceStore(f"sqlite:///{tmp_path}/p.db")
    s, d = open_location(str(tmp_path / "src")), open_location(str(tmp_path / "dest"))
    job = store.start_job(s.uri, d.uri, settings.params("m", "film"), "k", "default", "m", {}, None)
    _, films, _ = plan(s, d, store, job, settings, "m")
    return json.loads(json.dumps(prepare_film(films[0], s, d, store, job, settings, "default", "m")))


def test_the_units_of_an_mpeg_ts_capture_start_at_their_own_frames(tmp_path):
    """A broadcast capture in MPEG-TS (no index: a seek may land past its target) planned in
    units of 10 frames: each unit, decoded as its task does from the plan (its info and seek
    point, through JSON), holds the same frames as the film decoded from its start (its first
    units failed as truncated, others began frames late)."""
    src = tmp_path / "src" / "capture.ts"
    src.parent.mkdir()
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=128x96:rate=25:duration=2", "-f", "lavfi", "-i", "sine=duration=2",
           "-c:v", "libx264", "-bf", "3", "-g", "12", "-c:a", "aac", str(src))
    film_plan = unit_plan(tmp_path, JobSettings(shot_max_frames=10, shot_min_frames=10, warmup_frames=3))
    info = FilmInfo.from_dict({**film_plan["info"], "path": str(src)})
    whole = list(decode_gray(info))
    assert len(whole) == 50 and len(film_plan["units"]) == 5
    for unit in film_plan["units"]:
        first = unit["start"] - unit["warmup"]
        got = list(decode_gray(info, first, unit["end"] - first, seek=unit["seek"]))
        assert len(got) == unit["end"] - first and all(
            np.array_equal(a, b) for a, b in zip(got, whole[first:unit["end"]])), unit


def test_recordings_joined_end_to_end_are_one_unit_of_work_in_file_order(tmp_path):
    """Two MPEG-TS recordings joined with cat: the second's timestamps start again, so times no
    longer address frames (sorted, they interleave the two; a unit seeking its first frame got
    the wrong ones). The film is flagged, the notes say why, and it is planned as one unit,
    which decodes every frame in file order, the cut between them kept for the smoother."""
    parts = []
    for n, picture in enumerate(["testsrc2=size=128x96:rate=25", "mandelbrot=size=128x96:rate=25"]):
        parts.append(tmp_path / f"part{n}.ts")
        ffmpeg("-f", "lavfi", "-i", f"{picture},trim=duration=2", "-f", "lavfi", "-i", "sine=duration=2",
               "-c:v", "libx264", "-bf", "2", "-g", "12", "-c:a", "aac", str(parts[-1]))
    src = tmp_path / "src" / "evening news.ts"
    src.parent.mkdir()
    src.write_bytes(b"".join(part.read_bytes() for part in parts))
    info = probe(src)
    assert info.frames == 100 and info.restarts_at == 50 and info.flags == ["timestamps-restart"]
    assert carry_notes(info, [".mkv"])[0] == [
        ("the picture's timestamps go back at frame 50 of the file (recordings joined end to end?): its frames are "
         "colorized in file order, in one unit of work, and the renditions time them at the frame rate")]
    assert probe(parts[0]).restarts_at is None
    film_plan = unit_plan(tmp_path, JobSettings(shot_max_frames=10, shot_min_frames=10))
    assert [(u["start"], u["end"], u["cuts"]) for u in film_plan["units"]] == [(0, 100, [50])]
    frames = list(decode_gray(FilmInfo.from_dict({**film_plan["info"], "path": str(src)})))
    assert len(frames) == 100
    assert all(np.array_equal(a, b) for a, b in zip(frames, [*decode_gray(probe(parts[0])), *decode_gray(probe(parts[1]))]))


def test_a_film_whose_frames_a_seek_does_not_reach_is_one_unit_of_work(tmp_path):
    """H.264 in an MXF written by ffmpeg gives its packets no presentation order: frames kept by
    their times, after a seek, were a frame or more off (units from frame 2 on gave the wrong
    frames, silently). A trial seek around the second key frame finds it before any unit runs:
    the film is flagged, the notes say why, and it is one unit, decoded in file order. The same
    picture in MXF as MPEG-2, or in MOV, passes the trial."""
    src = tmp_path / "src" / "camera card.mxf"
    src.parent.mkdir()
    picture = ["-f", "lavfi", "-i", "testsrc2=size=128x96:rate=25:duration=3", "-f", "lavfi", "-i", "sine=duration=3",
               "-shortest", "-g", "12", "-bf", "2", "-c:a", "pcm_s16le", "-ar", "48000"]
    ffmpeg(*picture, "-c:v", "libx264", str(src))
    info = probe(src)
    times = frame_times(info)
    assert seek_trial(info, times) == 11
    for name, codec in (("xdcam.mxf", "mpeg2video"), ("camera.mov", "libx264")):
        ffmpeg(*picture, "-c:v", codec, str(tmp_path / name))
        other = probe(tmp_path / name)
        assert seek_trial(other, frame_times(other)) is None, name
    film_plan = unit_plan(tmp_path, JobSettings(shot_max_frames=10, shot_min_frames=10))
    assert [(u["start"], u["end"]) for u in film_plan["units"]] == [(0, 75)]
    planned = FilmInfo.from_dict({**film_plan["info"], "path": str(src)})
    assert planned.flags == ["frames-not-seekable"] and planned.unseekable_at == 11
    assert carry_notes(planned, [".mkv"])[0] == [
        ("decoding from a seek to frame 11 gave other frames than decoding from the start (the container's times do "
         "not address its frames): its frames are colorized in file order, in one unit of work")]


def test_a_crashed_film_job_redoes_only_the_unfinished_shots(prefect_api, tmp_path):
    src, dest, db = tmp_path / "src", tmp_path / "dest", f"sqlite:///{tmp_path}/p.db"
    # The first job planned the film, finished two of its four units, then the machine died.
    p = planned_film(tmp_path, 15)
    store, job1 = p.store, p.job
    assert len(p.plan["units"]) == 4
    for unit in p.plan["units"][:2]:
        assert colorize_unit(p.plan, unit, p.source, p.dest, store, job1, p.settings, p.colorizer)["status"] == "done"

    summary = run_flow(source=str(src), dest=str(dest), db_url=db, shot_max_frames=15)
    assert summary["counts"] == {"done": 1, "skipped": 0, "failed": 0}
    with store.session() as ses:
        shots = ses.scalars(select(Shot).order_by(Shot.start_frame)).all()
        assert [(sh.job_id == job1, sh.status) for sh in shots] == [(True, "done")] * 2 + [(False, "done")] * 2
        film = ses.scalars(select(Item).where(Item.job_id == summary["job_id"])).one()
        assert all(sh.item_id == film.id for sh in shots)
        assert film.status == "done" and film.media["units"] == 4
    assert int(video_stream(dest / "reel.mkv")["nb_read_packets"]) == 48


def test_a_film_with_a_missing_unit_is_recorded_failed_with_the_reason(tmp_path):
    dest = tmp_path / "dest"
    p = planned_film(tmp_path, 24)
    colorize_unit(p.plan, p.plan["units"][0], p.source, p.dest, p.store, p.job, p.settings, p.colorizer)
    result = assemble_film(p.plan, p.source, p.dest, p.store, p.job, p.settings, "default", p.colorizer.sha256)
    assert result.status == "failed" and "not colorized" in result.detail
    assert not (dest / "reel.mkv").exists() and not (dest / "reel.mp4").exists()
    item = p.store.job_items(p.job)[0]   # units whose tasks never finished: no cause to give but that
    assert item["status"] == "failed" and item["media_type"] == "film" and item["error_type"] == "ColorizeError"


def test_a_film_whose_units_could_not_be_written_fails_as_storage_not_as_corrupt(tmp_path):
    """A unit's segment that DEST cannot take (here a file where the segments' folder must be made;
    a full disk alike) fails the unit and the film as StorageError: the film is not corrupt, and no
    partial file is left."""
    p = planned_film(tmp_path, 24)
    (tmp_path / "dest" / "manifests").mkdir(parents=True)
    (tmp_path / "dest" / "manifests" / "segments").write_bytes(b"in the way")
    for unit in p.plan["units"]:
        result = colorize_unit(p.plan, unit, p.source, p.dest, p.store, p.job, p.settings, p.colorizer)
        assert result["status"] == "failed" and result["error"].startswith("cannot write ")
        assert "Not a directory (" in result["error"]   # names the folder it could not make
    result = assemble_film(p.plan, p.source, p.dest, p.store, p.job, p.settings, "default", p.colorizer.sha256)
    item = p.store.job_items(p.job)[0]
    assert item["status"] == "failed" and item["error_type"] == "StorageError", item
    assert f"{len(p.plan['units'])} of {len(p.plan['units'])} shot units not colorized (frames 0-" in item["error"]
    assert sorted(q.name for q in (tmp_path / "dest").rglob("*")) == ["manifests", "segments"]


def test_a_shot_of_a_stopped_job_stops_between_frames_and_leaves_nothing(tmp_path, monkeypatch):
    import colorize_core.film_archive as film_archive

    monkeypatch.setattr(JobWatch, "EVERY", 0)   # the job's status read at every frame
    p = planned_film(tmp_path, 24)
    colorize_film, seen = film_archive.colorize_film, []

    def cancelled_at_frame_5(*args, on_frame=None, **kwargs):  # noqa: ANN002, ANN003, ANN202
        def frame(n: int) -> None:
            seen.append(n)
            if n == 5:
                p.store.finish_job(p.job, "cancelled", if_running=True)
            if on_frame is not None:
                on_frame(n)
        return colorize_film(*args, on_frame=frame, **kwargs)

    monkeypatch.setattr(film_archive, "colorize_film", cancelled_at_frame_5)
    with pytest.raises(JobStoppedError, match="is cancelled"):
        colorize_unit(p.plan, p.plan["units"][0], p.source, p.dest, p.store, p.job, p.settings, p.colorizer)
    assert seen == [1, 2, 3, 4, 5]   # stopped at once, not at the shot's end (24 frames)
    with p.store.session() as s:
        assert s.scalars(select(Shot)).all() == []   # not recorded, neither done nor failed
    assert not (tmp_path / "dest").exists() or not any(p for p in (tmp_path / "dest").rglob("*") if p.is_file())
    for step in (lambda: colorize_unit(p.plan, p.plan["units"][1], p.source, p.dest, p.store, p.job, p.settings,
                                       p.colorizer),
                 lambda: assemble_film(p.plan, p.source, p.dest, p.store, p.job, p.settings, "default",
                                       p.colorizer.sha256),
                 lambda: prepare_film(FilmEntry.from_dict(p.plan["film"]), p.source, p.dest, p.store, p.job,
                                      p.settings, "default", p.colorizer.sha256)):
        with pytest.raises(JobStoppedError):
            step()
    assert p.store.job_items(p.job) == []


def test_frame_sequences_bad_films_and_the_rest_of_the_job(prefect_api, tmp_path):
    src, dest, db = tmp_path / "src", tmp_path / "dest", f"sqlite:///{tmp_path}/p.db"
    # 16-bit DPX scans, no sidecar: a sequence at the default rate (flagged as assumed).
    (src / "scans" / "reel2").mkdir(parents=True)
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=128x96:rate=24:duration=1", "-vf", "format=gray16le",
           str(src / "scans" / "reel2" / "frame%04d.dpx"))
    # PNG frames with a sequence.json giving the rate.
    (src / "scans" / "reel3").mkdir()
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=96x64:rate=25:duration=0.4", "-vf", "format=gray",
           "-start_number", "100", str(src / "scans" / "reel3" / "r3_%06d.png"))
    (src / "scans" / "reel3" / "sequence.json").write_text(json.dumps({"frame_rate": "25", "audio": "mix.wav"}))
    # Their sound: the one file beside reel2's frames; the one reel3's sidecar names (not the other).
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=300:duration=1:sample_rate=48000", "-c:a", "pcm_s24le",
           str(src / "scans" / "reel2" / "reel2.wav"))
    for name, hz in (("mix.wav", 400), ("music.wav", 500)):
        ffmpeg("-f", "lavfi", "-i", f"sine=frequency={hz}:duration=0.4", str(src / "scans" / "reel3" / name))
    # A sound file with no frames beside it.
    (src / "sound").mkdir()
    ffmpeg("-f", "lavfi", "-i", "sine=duration=0.2", str(src / "sound" / "stray.wav"))
    # DPX frames whose headers declare their rate, timecode and a printing-density transfer, as a
    # film scanner writes them.
    (src / "scans" / "reel4").mkdir()
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25:duration=0.4", "-vf", "format=gray",
           str(src / "scans" / "reel4" / "r4_%04d.dpx"))
    for frame in (src / "scans" / "reel4").iterdir():
        add_dpx_industry_headers(frame, rate=25.0, timecode=0x10000000, transfer=1)
    # A sequence with a hole in it.
    (src / "scans" / "holey").mkdir()
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=24:duration=0.5", "-vf", "format=gray",
           str(src / "scans" / "holey" / "h%03d.dpx"))
    (src / "scans" / "holey" / "h005.dpx").unlink()
    # Bad films beside them.
    (src / "bad").mkdir()
    (src / "bad" / "empty.mp4").write_bytes(b"")
    (src / "bad" / "playlist.mp4").write_bytes(b"#EXTM3U\n#EXTINF:2,\nfile:///etc/hostname\n#EXT-X-ENDLIST\n")
    ffmpeg("-f", "lavfi", "-i", "sine=duration=1", "-c:a", "aac", str(src / "bad" / "audio-only.mp4"))
    # A variable-rate film: 25 frames/s for a second, then 12.5.
    (src / "phone").mkdir()
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=128x96:rate=25:duration=2", "-f", "lavfi", "-i",
           "sine=frequency=500:duration=3", "-vf", "setpts='if(lt(N,25),N/25,1+(N-25)/12.5)/TB',format=gray",
           "-fps_mode", "vfr", "-c:v", "libx264", "-c:a", "aac", str(src / "phone" / "vfr.mp4"))
    summary = run_flow(source=str(src), dest=str(dest), db_url=db, shot_max_frames=20)
    assert summary["counts"] == {"done": 4, "skipped": 0, "failed": 6}
    source_times = frame_times(probe(src / "phone" / "vfr.mp4"))
    for out in (dest / "phone" / "vfr.mkv", dest / "phone" / "vfr.mp4"):
        times = frame_times(probe(out))   # joined from 3 segments, each frame back at its own time
        assert len(times) == 50
        assert max(abs((a - times[0]) - (b - source_times[0])) for a, b in zip(times, source_times)) <= 0.0011
        assert audio_digest(out) == audio_digest(src / "phone" / "vfr.mp4")
    items = {it["rel_path"]: it for it in json.loads((dest / "manifest.json").read_text())["items"]}
    assert "frame-rate-assumed" in items["scans/reel2"]["flags"] and items["scans/reel2"]["bit_depth"] == 16
    reel4 = items["scans/reel4"]
    assert reel4["film"]["media"]["fps"] == "25" and "frame-rate-assumed" not in reel4["flags"]
    assert reel4["film"]["media"]["timecode"] == "10:00:00:00" and probe(dest / "scans" / "reel4.mp4").timecode == \
        "10:00:00:00"
    assert "log-encoded" in reel4["flags"] and "log-encoded" in reel4["attention"]
    assert any("DPX transfer: printing density" in n for n in reel4["notes"]), reel4["notes"]
    assert video_stream(dest / "scans" / "reel4.mp4").get("color_transfer", "unknown") == "unknown"
    assert "log-encoded" not in items["scans/reel2"]["flags"]    # ffmpeg's DPX: transfer "linear"
    assert items["scans/reel3"]["film"]["media"]["fps"] == "25" and items["scans/reel3"]["film"]["media"]["frames"] == 10
    assert "missing frame" in items["scans/holey"]["error"] and "h005.dpx" in items["scans/holey"]["error"]
    assert "empty file" in items["bad/empty.mp4"]["error"]
    assert "no video stream" in items["bad/audio-only.mp4"]["error"]
    assert items["bad/playlist.mp4"]["status"] == "failed"
    master = dest / "scans" / "reel2.mkv"
    v = video_stream(master)
    assert v["pix_fmt"] == "gbrp16le" and int(v["nb_read_packets"]) == 24 and v["r_frame_rate"] == "24/1"
    deep = np.frombuffer(subprocess.run(["ffmpeg", "-v", "error", "-i", str(master), "-frames:v", "1", "-f", "rawvideo",
                                         "-pix_fmt", "rgb48le", "-"], capture_output=True, check=True).stdout, "<u2")
    assert np.unique(deep).size > 256 and np.any(deep % 256)   # 16-bit precision, not 8-bit padded
    assert int(video_stream(dest / "scans" / "reel3.mp4")["nb_read_packets"]) == 10
    # The sequences' sound: copied bit-exact into the masters, AAC in the access copies, noted.
    assert audio_digest(master) == audio_digest(src / "scans" / "reel2" / "reel2.wav")
    assert audio_digest(dest / "scans" / "reel3.mkv") == audio_digest(src / "scans" / "reel3" / "mix.wav")
    assert [s["codec_name"] for s in stream_info(dest / "scans" / "reel2.mp4")["streams"]] == ["h264", "aac"]
    assert items["scans/reel2"]["notes"] == [".mp4: audio stream 0 (pcm_s24le) encoded to AAC at 96 kb/s: "
                                             "an MP4 file cannot hold pcm_s24le"]
    assert "does not name: not used" in items["scans/reel3/music.wav"]["error"]
    assert "no frame sequence beside it" in items["sound/stray.wav"]["error"]


def test_a_sequence_json_is_read_strictly():
    assert read_sidecar('{"frame_rate": "24000/1001", "audio": "mix.wav"}') == ("24000/1001", "mix.wav", None)
    assert read_sidecar(b'{"frame_rate": 25, "printing_density": true}') == ("25", None, True)
    assert read_sidecar('{"frame_rate": 23.976}') == ("24000/1001", None, None)   # the rate it is written for
    for text, why in (("[24]", "not a JSON object"), ("{", "not JSON"), ('{"frame_rate": "abc"}', "frame_rate must"),
                      ('{"frame_rate": true}', "frame_rate must"), ('{"frame_rate": "1/0"}', "frame_rate must"),
                      ('{"audio": 3}', "audio must"), ('{"fps": 24, "sound": "a.wav"}', 'unknown keys "fps", "sound"'),
                      ('{"printing_density": "yes"}', "printing_density must")):
        with pytest.raises(ValueError, match=why):
            read_sidecar(text)


def test_a_sequence_json_changed_after_the_job_read_it_leaves_the_film_for_the_next_run(tmp_path):
    """Corrected while a long job runs, between the listing (which read it) and the film's turn:
    done with the old rate under the new file's fingerprint, the film would never be redone."""
    reel = tmp_path / "src" / "reel"
    reel.mkdir(parents=True)
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=24:duration=0.25", "-vf", "format=gray",
           str(reel / "r%03d.png"))
    (reel / "sequence.json").write_text(json.dumps({"frame_rate": "24"}))
    store, settings = ProvenanceStore(f"sqlite:///{tmp_path}/p.db"), JobSettings()
    s, d = open_location(str(tmp_path / "src")), open_location(str(tmp_path / "dest"))

    def job_plan() -> tuple[str, object]:
        job = store.start_job(s.uri, d.uri, {}, "k", "default", "m" * 64, {}, None)
        _, films, _ = plan(s, d, store, job, settings, "m" * 64)
        return job, films[0]

    job, film = job_plan()
    (reel / "sequence.json").write_text(json.dumps({"frame_rate": "25"}))
    result = prepare_film(film, s, d, store, job, settings, "default", "m" * 64)
    assert result.status == "failed" and "sequence.json changed while the job was running" in result.detail
    [item] = store.job_items(job)
    assert item["status"] == "failed" and "left for the next run" in item["error"]
    job, film = job_plan()   # the next run reads the new one, and does the film at 25 frames/s
    assert film.rate == "25"
    film_plan = prepare_film(film, s, d, store, job, settings, "default", "m" * 64)
    assert film_plan["info"]["fps"] == "25" and film_plan["info"]["frames"] == 6


def test_a_sequence_json_belongs_to_its_film_so_a_corrected_one_redoes_it(prefect_api, tmp_path):
    """What a sequence.json says (frame rate, a log scan's conversion) is part of the film: once
    corrected, the next run does the film again, its renditions beside the old ones. A log
    scan is seen through the calibration its DPX headers declare; a printing_density no scan
    could have, like any sequence.json that cannot be followed, is a recorded failure, and the
    job goes on."""
    src, dest, db = tmp_path / "src", tmp_path / "dest", f"sqlite:///{tmp_path}/p.db"
    reel, scan = src / "reel", src / "scan"
    for folder in (reel, scan):
        folder.mkdir(parents=True)
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=24:duration=0.25", "-vf", "format=gray16be",
           str(reel / "r%03d.png"))
    (reel / "sequence.json").write_text(json.dumps({"frame_rate": "24"}))
    # 16-bit DPX whose headers declare printing density, calibrated to black 64 and white 760.
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25:duration=0.2", "-vf", "format=gray16le",
           str(scan / "s%04d.dpx"))
    for frame in scan.iterdir():
        add_dpx_industry_headers(frame, rate=25.0, transfer=1, black=64 * 65535 / 1023, white=760 * 65535 / 1023)
        frame.rename(scan / frame.name.replace("s", "s%d_"))
    scan = scan.rename(src / "scan 100%")   # a '%' is a '%', not a pattern, to ffmpeg too
    summary = run_flow(source=str(src), dest=str(dest), db_url=db)
    assert summary["counts"] == {"done": 2, "skipped": 0, "failed": 0}
    items = {it["rel_path"]: it for it in json.loads((dest / "manifest.json").read_text())["items"]}
    assert "log-encoded" not in items["reel"]["flags"] and "log-encoded" in items["scan 100%"]["flags"]
    assert items["scan 100%"]["film"]["media"]["frames"] == 5
    note = next(n for n in items["scan 100%"]["notes"] if n.startswith("frames are log-encoded"))
    assert "black 64, white 760, 0.002 density per code value, gamma 0.6" in note
    assert "black and white from the DPX headers, the rest Kodak's standard values" in note
    assert run_flow(source=str(src), dest=str(dest), db_url=db)["counts"] == {"done": 0, "skipped": 2, "failed": 0}
    # The reel was a log scan at 25 frames/s after all: its sequence.json corrected.
    (reel / "sequence.json").write_text(json.dumps({"frame_rate": "25",
                                                    "printing_density": {"black": 80, "white": 700, "gamma": 0.55}}))
    # Sidecars that cannot be followed: recorded failures, and the job goes on (a rate of 0 had
    # crashed the film's task; a misspelt key had been ignored).
    sidecars = {"bad": {"frame_rate": "24", "printing_density": {"black": "low"}}, "zero": {"frame_rate": 0},
                "typo": {"framerate": "25"}}
    for name, meta in sidecars.items():
        (src / name).mkdir(exist_ok=True)
        ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=24:duration=0.1", "-vf", "format=gray",
               str(src / name / "b%d.png"))
        (src / name / "sequence.json").write_text(json.dumps(meta))
    summary = run_flow(source=str(src), dest=str(dest), db_url=db)
    assert summary["counts"] == {"done": 1, "skipped": 1, "failed": 3}
    items = {it["rel_path"]: it for it in json.loads((dest / "manifest.json").read_text())["items"]}
    redone = items["reel"]
    assert redone["status"] == "done" and redone["film"]["media"]["fps"] == "25" and "log-encoded" in redone["flags"]
    note = next(n for n in redone["notes"] if n.startswith("frames are log-encoded"))
    assert note.startswith("frames are log-encoded (printing density, as sequence.json says; black, white and gamma "
                           "from sequence.json, the rest Kodak's standard values)")
    assert "black 80, white 700, 0.002 density per code value, gamma 0.55" in note
    master = Path(next(r["uri"] for r in redone["renditions"] if r["kind"] == "master"))
    assert master.parent == dest and master.name != "reel.mkv" and video_stream(master)["r_frame_rate"] == "25/1"
    assert video_stream(dest / "reel.mkv")["r_frame_rate"] == "24/1"   # the first renditions, kept
    assert "printing_density black must be a number" in items["bad/sequence.json"]["error"]
    assert "frame_rate must be a positive rate" in items["zero/sequence.json"]["error"]
    assert 'unknown key "framerate"' in items["typo/sequence.json"]["error"]


def test_films_from_s3_to_s3_with_postgresql(prefect_api, s3_endpoint, bucket, pg_url, tmp_path):
    reel = make_reel(tmp_path / "reel.mp4")
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    client.upload_file(str(reel), bucket, "film/reels/reel.mp4")
    # A frame sequence with its sound, from S3 too, its numbers not padded (f9.png, f10.png...):
    # each of its two units is given its own frames, in frame order, not in the keys' order.
    scan = tmp_path / "scan"
    scan.mkdir()
    ffmpeg("-f", "lavfi", "-i", "color=c=black:size=64x48:rate=24:duration=1.25", "-vf",
           "format=gray,geq=lum='mod(N*8+X*2,256)'", str(scan / "f%d.png"))   # each frame 8 levels off the others
    ffmpeg("-f", "lavfi", "-i", "sine=duration=1.25", str(scan / "sound.wav"))
    (scan / "sequence.json").write_text(json.dumps({"frame_rate": "24"}))
    for path in scan.iterdir():
        client.upload_file(str(path), bucket, f"film/scan/{path.name}")
    summary = run_flow(source=f"s3://{bucket}/film", dest=f"s3://{bucket}/out", db_url=pg_url, shot_max_frames=24)
    assert summary["counts"] == {"done": 2, "skipped": 0, "failed": 0}
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix="out/")["Contents"]}
    assert {"out/reels/reel.mkv", "out/reels/reel.mp4", "out/scan.mkv", "out/scan.mp4"} <= keys
    client.download_file(bucket, "out/scan.mkv", str(tmp_path / "scan.mkv"))
    assert audio_digest(tmp_path / "scan.mkv") == audio_digest(scan / "sound.wav")
    scan_item = next(it for it in ProvenanceStore(pg_url).job_items(summary["job_id"]) if it["rel_path"] == "scan")
    assert scan_item["media"]["frames"] == 30 and scan_item["media"]["units"] == 2
    colour = np.frombuffer(subprocess.run(["ffmpeg", "-v", "error", "-i", str(tmp_path / "scan.mkv"), "-f", "rawvideo",
                                          "-pix_fmt", "gray", "-"], capture_output=True, check=True).stdout, np.uint8)
    gray = np.stack([cv2.imread(str(scan / f"f{n}.png"), cv2.IMREAD_GRAYSCALE) for n in range(1, 31)]).astype(int)
    assert np.abs(colour.reshape(gray.shape) - gray).mean(axis=(1, 2)).max() < 3   # every frame in its place
    assert not [k for k in keys if "/segments/" in k]
    client.download_file(bucket, "out/reels/reel.mp4", str(tmp_path / "back.mp4"))
    assert int(video_stream(tmp_path / "back.mp4")["nb_read_packets"]) == 48
    assert audio_digest(tmp_path / "back.mp4") == audio_digest(reel)


def test_cli_video_takes_a_frame_sequence(tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=24:duration=0.5", "-vf", "format=gray",
           str(frames / "f%04d.tif"))
    cmd = [sys.executable, "-m", "colorize_cli.main", "video"]
    r = subprocess.run([*cmd, str(frames), str(tmp_path / "o.mkv")], capture_output=True, text=True)
    assert r.returncode == 2 and "--fps" in r.stderr
    r = subprocess.run([*cmd, "--fps", "fast", str(frames), str(tmp_path / "o.mkv")], capture_output=True, text=True)
    assert r.returncode == 2 and "a frame rate is a positive number" in r.stderr
    r = subprocess.run([*cmd, "--fps", "23.976", str(frames), str(tmp_path / "o.mkv")], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    v = video_stream(tmp_path / "o.mkv")
    assert int(v["nb_read_packets"]) == 12 and v["r_frame_rate"] == "24000/1001"
    # Its sound from --audio; a film file has its own, and a sound file must be one.
    ffmpeg("-f", "lavfi", "-i", "sine=duration=0.5", "-c:a", "flac", str(tmp_path / "sound.flac"))
    r = subprocess.run([*cmd, "--fps", "24", "--audio", str(tmp_path / "sound.flac"), str(frames),
                        str(tmp_path / "s.mkv")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert audio_digest(tmp_path / "s.mkv") == audio_digest(tmp_path / "sound.flac")
    r = subprocess.run([*cmd, "--audio", str(tmp_path / "sound.flac"), str(tmp_path / "o.mkv"),
                        str(tmp_path / "t.mkv")], capture_output=True, text=True)
    assert r.returncode == 2 and "has its own sound" in r.stderr
    r = subprocess.run([*cmd, "--fps", "24", "--audio", str(frames / "f0001.tif"), str(frames),
                        str(tmp_path / "u.mkv")], capture_output=True, text=True)
    assert r.returncode == 1 and "a sound file is .wav" in r.stderr and not (tmp_path / "u.mkv").exists()
    # DPX frames whose headers declare 25 frames/s need no --fps; frames a scanner wrote in
    # printing density are flagged and their renditions not tagged as display light.
    scans = tmp_path / "scans"
    scans.mkdir()
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25:duration=0.4", "-vf", "format=gray",
           str(scans / "s%04d.dpx"))
    for frame in scans.iterdir():
        add_dpx_industry_headers(frame, rate=25.0, timecode=0x01000000, transfer=1)
    r = subprocess.run([*cmd, str(scans), str(tmp_path / "d.mkv")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "note: log-encoded" in r.stderr and "DPX transfer: printing density" in r.stderr
    stream = video_stream(tmp_path / "d.mkv")
    assert stream["r_frame_rate"] == "25/1" and probe(tmp_path / "d.mkv").timecode == "01:00:00:00"
    assert stream.get("color_transfer", "unknown") == "unknown" and \
        stream.get("color_primaries", "unknown") == "unknown", stream
    assert video_stream(tmp_path / "o.mkv")["color_transfer"] == "iec61966-2-1"   # the TIFF scan: sRGB
    # A TIFF scan in printing density, calibrated otherwise than Kodak's, as the option says.
    r = subprocess.run([*cmd, "--fps", "24", "--printing-density", "80,700,0.55", str(frames), str(tmp_path / "l.mkv")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "printing density, as --printing-density says; black, white and gamma from --printing-density" in r.stderr
    assert "(black 80, white 700, 0.002 density per code value, gamma 0.55)" in r.stderr
    assert video_stream(tmp_path / "l.mkv").get("color_transfer", "unknown") == "unknown"
    for spec, source, why in (("700,80", frames, "black below white"), ("on", tmp_path / "o.mkv", "frame sequence")):
        r = subprocess.run([*cmd, "--fps", "24", "--printing-density", spec, str(source), str(tmp_path / "m.mkv")],
                           capture_output=True, text=True)
        assert r.returncode == 2 and why in r.stderr and not (tmp_path / "m.mkv").exists()
    # What the options leave unsaid comes from the folder, as the archive flow reads it: its
    # sequence.json, and the one sound file beside the frames.
    reel = tmp_path / "reel"
    reel.mkdir()
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25:duration=0.4", "-vf", "format=gray", str(reel / "r%03d.png"))
    ffmpeg("-f", "lavfi", "-i", "sine=duration=0.4", str(reel / "mix.wav"))
    (reel / "sequence.json").write_text(json.dumps({"frame_rate": "25", "printing_density": {"white": 700}}))
    r = subprocess.run([*cmd, str(reel), str(tmp_path / "r.mkv")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "note: the sound is mix.wav, beside the frames" in r.stderr and "white from sequence.json" in r.stderr
    assert video_stream(tmp_path / "r.mkv")["r_frame_rate"] == "25/1"
    assert audio_digest(tmp_path / "r.mkv") == audio_digest(reel / "mix.wav")
    ffmpeg("-f", "lavfi", "-i", "sine=duration=0.4", str(reel / "music.wav"))
    r = subprocess.run([*cmd, str(reel), str(tmp_path / "q.mkv")], capture_output=True, text=True)
    assert r.returncode == 1 and "2 sound files beside the frames" in r.stderr and "or give --audio" in r.stderr
    (reel / "sequence.json").write_text(json.dumps({"frame_rate": "fast"}))
    r = subprocess.run([*cmd, str(reel), str(tmp_path / "q.mkv")], capture_output=True, text=True)
    assert r.returncode == 1 and "frame_rate must be a positive rate" in r.stderr and not (tmp_path / "q.mkv").exists()
    (frames / "f0003.tif").unlink()
    r = subprocess.run([*cmd, "--fps", "24", str(frames), str(tmp_path / "p.mkv")], capture_output=True, text=True)
    assert r.returncode == 1 and "f0003.tif" in r.stderr
    assert probe(tmp_path / "o.mkv").frames == 12


def test_photos_and_films_on_a_local_dask_cluster_of_two_processes(prefect_api, tmp_path):
    """Scale-out on Dask through prefect-dask: the same flow, its batches and shots on two
    worker processes (each loads the model once)."""
    from prefect_dask import DaskTaskRunner

    from flows.archive import colorize_archive

    src, dest, db = tmp_path / "src", tmp_path / "dest", f"sqlite:///{tmp_path}/p.db"
    (src / "photos").mkdir(parents=True)
    for name in ("chelsea cat.png", "chelsea-sepia.jpg"):
        (src / "photos" / name).write_bytes((SAMPLES / "animals" / name).read_bytes())
    (src / "film").mkdir()
    (src / "film" / "two shots.mp4").write_bytes((SAMPLES / "film" / "two shots.mp4").read_bytes())
    runner = DaskTaskRunner(cluster_kwargs={"n_workers": 2, "threads_per_worker": 1, "processes": True})
    summary = colorize_archive.with_options(task_runner=runner)(source=str(src), dest=str(dest), db_url=db,
                                                                batch_size=1, chunk_size=1)
    assert summary["counts"] == {"done": 3, "skipped": 0, "failed": 0}
    assert int(video_stream(dest / "film" / "two shots.mkv")["nb_read_packets"]) == 72
    assert (dest / "photos" / "chelsea cat.png").is_file()
