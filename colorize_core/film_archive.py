"""Films in the archive job, as plain functions the Prefect tasks wrap: prepare, shots, assemble.

A film goes through three steps, each safe to retry and to resume after a crash:

1. :func:`prepare_film` fingerprints the film (sha256 of the file; of the frames' checksums
   for a frame sequence), skips it when it was done already, probes it, finds the cuts and
   splits it into units of work: whole shots (short ones grouped up to ``shot_min_frames``,
   long ones split at ``shot_max_frames`` with a smoother warm-up across the split). Units
   whose segments a previous run recorded are marked done.
2. :func:`colorize_unit` streams one unit through the model, the temporal smoother and the
   encoders into one segment per rendition under ``DEST/manifests/segments/``, and records it
   (a ``shots`` row: segments with checksums, per-shot flicker and colourfulness, a still
   from the middle of each shot).
3. :func:`assemble_film` checks every unit is there, verifies the segments' checksums, joins
   them without re-encoding with the source's audio copied, checks the frame count, writes the
   renditions beside the film's relative path (never over an existing file), records the film
   item with its outputs and events, and removes the segments.
"""

from __future__ import annotations

import contextlib
import hashlib
import posixpath
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from colorize_core import __version__
from colorize_core.archive import (NOT_IN_BAG_MANIFEST, FilmEntry, ItemResult, JobSettings, film_uri, free_name,
                                   write_thumbnail)
from colorize_core.bagit import checked_detail, verify
from colorize_core.colorizer import Colorizer
from colorize_core.errors import (ColorizeError, CorruptMediaError, JobStoppedError, MediaError,
                                   UnsupportedMediaError, common_error)
from colorize_core.film import (FilmInfo, attach_sound, carry_notes, declared_rate, frame_times, image2_path,
                                 join_segments, probe, probe_sequence, seek_point, seek_trial, stream_info)
from colorize_core.film_pipeline import colorize_film, find_cuts
from colorize_core.images import NOTE
from colorize_core.provenance import Event, Item, JobWatch, Output, ProvenanceStore, Shot, utcnow
from colorize_core.storage import LocalLocation, Location, work_dir
from colorize_core.temporal import TemporalParams

SEGMENTS = "manifests/segments"
CONTENT_TYPES = {".mkv": "video/x-matroska", ".mp4": "video/mp4", ".mov": "video/quicktime"}
OUTPUT_KINDS = {".mkv": "master", ".mov": "master-prores", ".mp4": "access"}


# Local copies of remote films, shared by the units a worker process runs ------------------
class _LocalFilms:
    """Films from remote storage downloaded once per worker process (not once per unit),
    kept while in use and for the next few units, then removed."""

    def __init__(self, keep: int = 2) -> None:
        self.keep = keep
        self.lock = threading.Lock()
        self.entries: OrderedDict[tuple[str, str], list[Any]] = OrderedDict()   # key -> [stack, path, users]

    @contextlib.contextmanager
    def get(self, source: Location, film: FilmEntry, frames: range | None) -> Iterator[Path]:
        if isinstance(source, LocalLocation):
            yield source.root / film.rel if film.rel else source.root
            return
        if film.is_sequence:  # only the frames this unit needs, in a folder of their own (all: the sound too)
            with work_dir("frames") as tmp:
                names = film.files if frames is None else film.frames[frames.start:frames.stop]
                for name in names:
                    source.fetch(film.path_of(name), Path(tmp, name))   # straight there, written once
                yield Path(tmp)
            return
        key = (source.uri_of(film.rel), film.version)
        with self.lock:  # one download at a time per process; the others wait for it
            entry = self.entries.get(key)
            if entry is None:
                stack = contextlib.ExitStack()
                entry = [stack, stack.enter_context(source.local_copy(film.rel)), 0]
                self.entries[key] = entry
            self.entries.move_to_end(key)
            entry[2] += 1
        try:
            yield entry[1]
        finally:
            with self.lock:
                entry[2] -= 1
                while len(self.entries) > self.keep:
                    old_key, old = next(((k, e) for k, e in self.entries.items() if e[2] == 0), (None, None))
                    if old is None:
                        break
                    del self.entries[old_key]
                    old[0].close()


_films = _LocalFilms()


def _sha256_file(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _fingerprint(path: Path, film: FilmEntry) -> str:
    """sha256 of a film file; for a frame sequence, of its files' names and sha256s (its frames,
    and its sound file and sequence.json where it has them). A sequence.json changed since the
    job read it is refused: the film would be recorded under the new one's fingerprint, done
    with what the old one said, and never done again."""
    if not film.is_sequence:
        return _sha256_file(path)
    sums = {name: _sha256_file(path / name) for name in film.files}
    if film.sidecar and film.sidecar_sha256 and sums[film.sidecar] != film.sidecar_sha256:
        raise MediaError(f"{film.sidecar} changed while the job was running (after it was read for the frame rate, "
                         "sound and log settings): the film is left for the next run, which reads the new one")
    return hashlib.sha256("".join(f"{sha}  {name}\n" for name, sha in sums.items()).encode()).hexdigest()


def _verify_bagged(path: Path, film: FilmEntry, sha256: str) -> bool | None:
    """Check the film's files against what its BagIt bag declares (:func:`bagit.verify`): None
    when it is in no bag, False when the bag's manifest leaves one of them out."""
    if film.declared is None:
        return None
    if not film.is_sequence:
        return verify(film.declared, film.rel, path, sha256)
    checked = [verify(film.declared, film.path_of(name), path / name) for name in film.files]   # a mismatch raises
    return all(checked)


def fingerprint(source: Location, film: FilmEntry) -> str:
    """The sha256 a job records for ``film`` under ``source`` (of the file; of a frame
    sequence's files' names and sha256s): an S3 film is fetched to do it."""
    with _films.get(source, film, None) as path:
        return _fingerprint(path, film)


def _info(path: Path, film: FilmEntry, settings: JobSettings) -> FilmInfo:
    if film.is_sequence:
        rate, flags = film.rate or declared_rate(path, list(film.frames[:1])), list(film.flags)
        if rate is None:  # neither a sidecar nor the DPX headers say
            rate, flags = settings.sequence_rate, [*flags, "frame-rate-assumed"]
        info = probe_sequence(path, rate, settings.max_pixels, list(film.frames), film.printing_density,
                              film.sidecar or "sequence.json")
        info.flags.extend(flags)
        if film.sound:
            attach_sound(info, path / film.sound)
        return info
    return probe(path, settings.max_pixels)


def _localise(info: FilmInfo, path: Path) -> FilmInfo:
    """``info`` pointing at this process's local copy of the film."""
    info.path = str(path)
    if info.sequence:
        info.sequence = {**info.sequence, "pattern": image2_path(path, Path(info.sequence["pattern"]).name)}
    if info.sound:
        info.sound = str(path / Path(info.sound).name)
    return info


def plan_units(frames: int, cuts: list[int], settings: JobSettings) -> list[dict[str, Any]]:
    """Units of work over [0, frames): whole shots, short ones grouped until a unit holds
    ``shot_min_frames``, long ones split into near-equal pieces of at most ``shot_max_frames``
    (a piece after the first warms the smoother up on the frames before it)."""
    bounds = [0, *[c for c in cuts if 0 < c < frames], frames]
    units: list[dict[str, Any]] = []
    for a, b in zip(bounds, bounds[1:]):
        pieces = -(-(b - a) // settings.shot_max_frames)
        edges = [a + (b - a) * i // pieces for i in range(pieces + 1)]
        for i, (s, e) in enumerate(zip(edges, edges[1:])):
            warm = 0 if i == 0 else min(settings.warmup_frames, s - a)
            last = units[-1] if units else None
            if (last and i == 0 and last["end"] - last["start"] < settings.shot_min_frames
                    and last["end"] - last["start"] + e - s <= settings.shot_max_frames):
                last["end"] = e
                last["cuts"].append(s)
            else:
                units.append({"start": s, "end": e, "warmup": warm, "cuts": [s] if i == 0 else []})
    return units


def _record_film_failure(store: ProvenanceStore, job_id: str, uri: str, film: FilmEntry, dest: Location,
                         settings: JobSettings, model_name: str, model_sha256: str, stage: str, error: Exception,
                         sha256: str | None = None, info: FilmInfo | None = None,
                         events: list[Event] | None = None) -> ItemResult:
    agent = f"colorize {__version__}"
    item = Item(job_id=job_id, source_uri=uri, rel_path=film.rel, dest=dest.uri, size=film.size,
                version_tag=film.version, sha256=sha256,
                media_type="unsupported" if isinstance(error, UnsupportedMediaError) and info is None else "film",
                format=info.codec if info else None, width=info.width if info else None,
                height=info.height if info else None, bit_depth=info.bit_depth if info else None, status="failed",
                error_type=type(error).__name__, error=str(error), flags=list(info.flags) if info else list(film.flags),
                notes=[], params=settings.params(model_sha256, "film"), params_key=settings.key(model_sha256, "film"),
                model_name=model_name, model_sha256=model_sha256, media=info.as_dict() if info else None,
                finished_at=utcnow())
    events = list(events or [])
    events.append(Event(type=stage, outcome="failure", agent=agent,
                        detail={"error_type": type(error).__name__, "error": str(error)}))
    store.add_item(item, [], events)
    return ItemResult(film.rel, "failed", str(error))


def prepare_film(film: FilmEntry, source: Location, dest: Location, store: ProvenanceStore, job_id: str,
                 settings: JobSettings, model_name: str, model_sha256: str,
                 force: bool = False) -> dict[str, Any] | ItemResult:
    """Fingerprint, skip-check, probe and cut the film; returns its plan (a JSON-ready dict
    the other steps take), or the recorded result when there is nothing more to do."""
    JobWatch(store, job_id).check()   # a stopped job's work ends here, recorded as nothing
    key = settings.key(model_sha256, "film")
    uri = film_uri(source, film)
    agent = f"colorize {__version__}"
    if store.recorded_in_job(job_id, [uri]):
        return ItemResult(film.rel, "skipped", "recorded in this job already (a retry)")
    sha256, info, events = None, None, []
    stage = "ingest"
    try:
        with _films.get(source, film, None) as path:
            sha256 = _fingerprint(path, film)
            checked = _verify_bagged(path, film, sha256)
            events.append(Event(type="ingest", outcome="success", agent=agent,
                                detail={"bytes": film.size, "sha256": sha256, **checked_detail(film.declared, checked),
                                        **({"frames": len(film.frames)} if film.is_sequence else {})}))
            if not force:
                prev = store.find_done(uri, dest.uri, key, sha256)
                if prev is not None:
                    store.add_item(Item(job_id=job_id, source_uri=uri, rel_path=film.rel, dest=dest.uri,
                                        size=film.size, version_tag=film.version, sha256=sha256, media_type="film",
                                        format=prev.format, width=prev.width, height=prev.height,
                                        bit_depth=prev.bit_depth, status="skipped",
                                        reason=f"already done in job {prev.job_id} (same content)",
                                        flags=list(prev.flags or []), notes=[],
                                        params=settings.params(model_sha256, "film"), params_key=key,
                                        model_name=model_name, model_sha256=model_sha256, media=prev.media,
                                        previous_item_id=prev.id, finished_at=utcnow()), [], events)
                    return ItemResult(film.rel, "skipped", "already done")
            stage = "validate"
            info = _info(path, film, settings)
            if checked is False:
                info.flags.append(NOT_IN_BAG_MANIFEST)
            times = frame_times(info)
            cuts = find_cuts(info)
            if info.restarts_at is None and (at := seek_trial(info, times)) is not None:
                info.unseekable_at = at
                info.flags.append("frames-not-seekable")
    except ColorizeError as exc:
        return _record_film_failure(store, job_id, uri, film, dest, settings, model_name, model_sha256, stage, exc,
                                    sha256, info, events)
    # Timestamps that go back, or that a trial seek found off, do not address frames: no unit can seek its first one
    units = plan_units(info.frames, cuts, settings) if info.restarts_at is None and info.unseekable_at is None else \
        [{"start": 0, "end": info.frames, "warmup": 0, "cuts": []}]
    done = store.done_shots(dest.uri, sha256, key)
    for unit in units:
        first = unit["start"] - unit["warmup"]
        unit["seek"] = seek_point(times, first, info.start_time, info.keys, info.indexed) if not info.sequence else None
        unit["cuts"] = [c for c in cuts if unit["start"] <= c < unit["end"]]
        prev = done.get((unit["start"], unit["end"]))
        unit["done"] = prev is not None and all(dest.exists(s["rel"]) for s in prev.segments.values())
    info_dict = _localise(info, Path(film.rel or ".")).as_dict()
    return {"film": asdict(film), "uri": uri, "sha256": sha256, "key": key, "info": info_dict, "cuts": cuts,
            "units": units, "validated_at": time.time(),
            "events": [{"type": e.type, "outcome": e.outcome, "agent": e.agent, "detail": e.detail} for e in events]}


def colorize_unit(plan: dict[str, Any], unit: dict[str, Any], source: Location, dest: Location,
                  store: ProvenanceStore, job_id: str, settings: JobSettings, colorizer: Colorizer,
                  batch_size: int = 8) -> dict[str, Any]:
    """Colorize one unit into a segment per rendition under DEST and record it. A film that
    turns out to be bad mid-way is recorded as a failed shot (assembly reports it); storage
    and other transient errors propagate (the task retries)."""
    film = FilmEntry.from_dict(plan["film"])
    key, sha256 = plan["key"], plan["sha256"]
    start, end, warm = unit["start"], unit["end"], unit["warmup"]
    watch = JobWatch(store, job_id)   # checked at the start and between frames: a stopped job's shot
    watch.check()                     # ends there, its segments never written nor recorded
    if unit.get("done") or (start, end) in store.done_shots(dest.uri, sha256, key):
        return {"status": "done", "start": start, "end": end, "reused": True}
    shot = Shot(job_id=job_id, source_uri=plan["uri"], source_sha256=sha256, dest=dest.uri, params_key=key,
                start_frame=start, end_frame=end, status="done", cuts=unit["cuts"])
    started = time.time()
    bounds = [start, *[c for c in unit["cuts"] if start < c < end], end]
    stills = [(a + b) // 2 for a, b in zip(bounds, bounds[1:])]   # the middle of each shot
    try:
        with _films.get(source, film, range(start - warm, end)) as path, \
                work_dir("shot") as tmp:
            info = _localise(FilmInfo.from_dict(plan["info"]), path)
            if film.is_sequence and not isinstance(source, LocalLocation):
                # only this unit's frames were fetched: number them from the first one fetched
                info.sequence = {**info.sequence, "start_number": info.sequence["start_number"] + start - warm}
                offset = start - warm
            else:
                offset = 0
            outs = [Path(tmp) / f"segment{ext}" for ext in settings.film_renditions]
            result = colorize_film(info, outs, colorizer, temporal=settings.temporal,
                                   temporal_params=TemporalParams(**settings.temporal_params),
                                   refine_method=settings.refine, refine_params=settings.refine_params,
                                   batch_size=batch_size, measure_flicker=True, start=start - offset,
                                   end=end - offset, cuts=[c - offset for c in unit["cuts"]], warmup=warm,
                                   seek=unit["seek"], stills=[f - offset for f in stills], audio=False,
                                   on_frame=lambda _: watch.check())
            if result.frames != end - start:
                raise CorruptMediaError(f"frames {start}-{end}: {result.frames} frames colorized, {end - start} expected")
            segments = {}
            for ext, out in zip(settings.film_renditions, outs):
                rel = f"{SEGMENTS}/{sha256[:16]}-{key[:8]}/{start:08d}-{end:08d}.{uuid.uuid4().hex[:8]}{ext}"
                dest.put_file_new(rel, out, CONTENT_TYPES[ext])
                segments[ext] = {"rel": rel, "uri": dest.uri_of(rel), "sha256": _sha256_file(out),
                                 "size": out.stat().st_size}
            shot.stills = [{"frame": f, **{kind: write_thumbnail(dest, pixels) for kind, pixels in
                                           zip(("original", "colour"), result.stills[f - offset])}} for f in stills]
    except JobStoppedError:
        raise   # not the shot's failure: the job stopped
    except ColorizeError as exc:
        shot.status, shot.error_type, shot.error = "failed", type(exc).__name__, str(exc)
        shot.seconds, shot.finished_at = time.time() - started, utcnow()
        store.add_shot(shot)
        return {"status": "failed", "start": start, "end": end, "error": str(exc)}
    shot.segments = segments
    shot.shots = [{**s.__dict__, "start": s.start + offset, "end": s.end + offset} for s in result.shots]
    shot.warping_error, shot.warping_error_unsmoothed = result.warping_error, result.warping_error_unsmoothed
    shot.colourfulness, shot.seconds, shot.finished_at = result.colourfulness, time.time() - started, utcnow()
    store.add_shot(shot)
    return {"status": "done", "start": start, "end": end, "frames_per_second": (end - start) / shot.seconds}


def film_output_rel(film: FilmEntry, ext: str, key: str, taken: Callable[[str], bool]) -> str:
    """A rendition's path: the film's relative path without its extension (a sequence: its
    folder's, ``sequence`` for the source root itself) plus the rendition's extension."""
    stem = (film.rel or "sequence") if film.is_sequence else posixpath.splitext(film.rel)[0]
    return free_name(stem, ext, key, taken)


def assemble_film(plan: dict[str, Any], source: Location, dest: Location, store: ProvenanceStore, job_id: str,
                  settings: JobSettings, model_name: str, model_sha256: str) -> ItemResult:
    """Join the film's segments into its renditions, record the film, remove the segments."""
    JobWatch(store, job_id).check()
    film = FilmEntry.from_dict(plan["film"])
    key, sha256, uri = plan["key"], plan["sha256"], plan["uri"]
    if store.recorded_in_job(job_id, [uri]):
        return ItemResult(film.rel, "skipped", "recorded in this job already (a retry)")
    info = FilmInfo.from_dict(plan["info"])
    agent = f"colorize {__version__}"
    events = [Event(**e) for e in plan["events"]]
    done = store.done_shots(dest.uri, sha256, key)
    missing = [u for u in plan["units"] if (u["start"], u["end"]) not in done]
    if missing:
        failures = store.failed_shots(job_id, sha256)
        detail = "; ".join(f"frames {s.start_frame}-{s.end_frame}: {s.error}" for s in failures[:5])
        # the film fails as its units did: a full disk is no corrupt film
        err = common_error([s.error_type for s in failures] if failures else [None])(
            f"{len(missing)} of {len(plan['units'])} shot units not colorized"
            + (f" ({detail})" if detail else " (their tasks failed; see the flow run's logs)"))
        return _record_film_failure(store, job_id, uri, film, dest, settings, model_name, model_sha256, "colorize",
                                    err, sha256, info, events)
    shots = [done[(u["start"], u["end"])] for u in plan["units"]]
    events.append(Event(type="validate", outcome="success", agent=agent,
                        detail={"codec": info.codec, "frames": info.frames, "fps": str(info.fps),
                                "duration": info.duration, "flags": info.flags, "audio_streams": len(info.audio),
                                "subtitle_streams": len(info.subtitles), "chapters": info.chapters,
                                "timecode": info.timecode, "not_carried": info.not_carried}))
    events.append(Event(type="colorize", outcome="success", agent=f"model {model_name} sha256:{model_sha256}",
                        detail={"frames": info.frames, "units": len(shots), "cuts": len(plan["cuts"]),
                                "seconds": round(sum(s.seconds or 0 for s in shots), 3),
                                "jobs": sorted({s.job_id for s in shots})}))
    if settings.temporal:
        events.append(Event(type="temporal-smoothing", outcome="success", agent=agent,
                            detail={"params": TemporalParams(**settings.temporal_params).as_dict()}))
    if settings.refine != "none":
        events.append(Event(type="refine", outcome="success", agent=agent,
                            detail={"method": settings.refine, "params": settings.refine_params}))
    outputs: list[Output] = []
    try:
        with contextlib.ExitStack() as stack:
            if info.sequence and info.sound:  # its sound file only, not its frames
                rel = f"{film.rel}/{film.sound}" if film.rel else str(film.sound)
                info.sound = str(stack.enter_context(source.local_copy(rel)))
            elif info.carries_source or info.vfr:  # the source is needed again: its sound, subtitles, times...
                info = _localise(info, stack.enter_context(_films.get(source, film, None)))
            times = frame_times(info) if info.vfr else None
            tmp = Path(stack.enter_context(work_dir("join")))
            for ext in settings.film_renditions:
                parts = []
                for s in shots:
                    seg = s.segments[ext]
                    path = stack.enter_context(dest.local_copy(seg["rel"]))
                    if _sha256_file(path) != seg["sha256"]:
                        raise CorruptMediaError(f"segment {seg['uri']} does not match its recorded sha256")
                    parts.append(path)
                joined = join_segments(info, parts, tmp / f"film{ext}", note=NOTE, times=times)
                streams = stream_info(joined)["streams"]
                frames = next(int(st.get("nb_read_packets", 0)) for st in streams if st["codec_type"] == "video")
                if frames != info.frames:
                    raise CorruptMediaError(f"the joined {ext} holds {frames} frames, the source {info.frames}")
                for _ in range(5):
                    rel = film_output_rel(film, ext, key, dest.exists)
                    try:
                        dest.put_file_new(rel, joined, CONTENT_TYPES[ext])
                        break
                    except FileExistsError:
                        continue
                else:
                    raise FileExistsError(f"could not find a free output name for {film.rel}{ext}")
                outputs.append(Output(kind=OUTPUT_KINDS[ext], uri=dest.uri_of(rel), sha256=_sha256_file(joined),
                                      size=joined.stat().st_size))
                joined.unlink()
    except ColorizeError as exc:
        return _record_film_failure(store, job_id, uri, film, dest, settings, model_name, model_sha256, "encode",
                                    exc, sha256, info, events)
    notes, flags = carry_notes(info, settings.film_renditions)
    events.append(Event(type="encode", outcome="success", agent=agent,
                        detail={"renditions": list(settings.film_renditions), "segments": len(shots),
                                "joined_without_reencoding": True, "audio_streams": len(info.audio),
                                "carried": notes}))
    events.append(Event(type="write", outcome="success", agent=agent,
                        detail={"outputs": [{"kind": o.kind, "uri": o.uri, "sha256": o.sha256} for o in outputs]}))
    all_stills = [st for s in shots for st in s.stills]
    middle = all_stills[len(all_stills) // 2] if all_stills else {}
    for kind in ("original", "colour"):
        if middle.get(kind):
            outputs.append(Output(kind=f"thumb-{kind}", uri=middle[kind]["uri"], sha256=middle[kind]["sha256"],
                                  size=middle[kind]["size"]))
    weights = [s.end_frame - s.start_frame for s in shots]
    colour = sum((s.colourfulness or 0) * w for s, w in zip(shots, weights)) / max(sum(weights), 1)
    item = Item(job_id=job_id, source_uri=uri, rel_path=film.rel, dest=dest.uri, size=film.size,
                version_tag=film.version, sha256=sha256, media_type="film", format=info.codec, width=info.width,
                height=info.height, channels="L", bit_depth=info.bit_depth, status="done",
                flags=flags, notes=notes, params=settings.params(model_sha256, "film"), params_key=key,
                model_name=model_name, model_sha256=model_sha256, colourfulness=colour,
                media={**_public_info(info), "cuts": plan["cuts"], "units": len(shots)}, finished_at=utcnow())
    item_id = store.add_item(item, outputs, events)
    store.link_shots([s.id for s in shots], item_id)
    for s in shots:  # joined and recorded: the segments have served their purpose
        for seg in s.segments.values():
            with contextlib.suppress(ColorizeError):
                dest.delete(seg["rel"])
    access = next((o.uri for o in outputs if o.kind == "access"), outputs[0].uri)
    return ItemResult(film.rel, "done", "", access)


def _public_info(info: FilmInfo) -> dict[str, Any]:
    d = info.as_dict()
    d.pop("path")
    if d.get("sequence"):
        d["sequence"] = {"pattern": Path(d["sequence"]["pattern"]).name, "start_number": d["sequence"]["start_number"]}
    return d
