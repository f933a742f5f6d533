"""The archive job, as plain functions the Prefect tasks wrap: plan, process a batch, summarise.

Planning lists the source, records as skipped what was already done for the same source,
destination, model and parameters (quick check on size + ETag/mtime against one done-index
query, skips recorded in bulk) and films (not processed here yet), and returns the rest.
A batch reads, fingerprints, decodes and validates each item, colorizes the valid ones as one
model batch, refines, encodes like the source, writes atomically without clobbering, and
records every item (done, skipped or failed with its error) with outputs and events.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import platform
import posixpath
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from importlib import metadata
from typing import Any

import numpy as np

from colorize_core import __version__
from colorize_core.bagit import Bag, bag_part, checked_detail, declared_for, in_payload, read_bags, verify
from colorize_core.color import chroma_spread, lab_to_rgb, luminance
from colorize_core.colorizer import Colorizer, Prediction
from colorize_core.errors import ColorizeError, UnrecognisedMediaError, UnsafePathError, UnsupportedMediaError
from colorize_core.film import (FRAME_NAME, FILM_SUFFIXES, RENDITIONS, SEQUENCE_SUFFIXES, SOUND_SUFFIXES,
                                 frame_rate, printing_density_override)
from colorize_core.temporal import TemporalParams
from colorize_core.images import (FORMATS, Photo, decode_photo, encode_photo, thumbnail_jpeg, with_sidecar_xmp,
                                   xmp_packet)
from colorize_core.metrics import colourfulness
from colorize_core.provenance import Event, Item, JobWatch, Output, ProvenanceStore, utcnow
from colorize_core.refine import REFINERS, refine
from colorize_core.storage import Entry, Location, Unlisted, check_rel

MANIFESTS = "manifests"          # reserved folder under DEST: per-job manifests and thumbnails
THUMBS = f"{MANIFESTS}/thumbs"
CONTENT_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "TIFF": "image/tiff", "WEBP": "image/webp",
                 "JPEG2000": "image/jp2"}
SUFFIX_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".jpe": "JPEG", ".png": "PNG", ".tif": "TIFF",
                  ".tiff": "TIFF", ".webp": "WEBP", ".jp2": "JPEG2000"}

# Files an archive keeps beside its scans (BagIt manifests, XMP sidecars, finding aids, sound):
# when their content is no image either, they are skipped with the reason, not failed.
COMPANIONS = {**dict.fromkeys((".txt", ".md", ".csv", ".json", ".xml", ".xmp", ".pdf", ".htm", ".html", ".yaml",
                               ".yml", ".log", ".ini", ".db", ".md5", ".sha1", ".sha256", ".sha512"),
                              "a document or metadata file"),
              **dict.fromkeys((".wav", ".bwf", ".mp3", ".flac", ".aac", ".m4a", ".ogg", ".opus", ".aif", ".aiff"),
                              "a sound file")}


@dataclass(frozen=True)
class JobSettings:
    """The full parameter set of a job; recorded with every item, hashed into its key."""

    model: str = "default"
    refine: str = "flood"
    refine_params: dict[str, Any] = field(default_factory=dict)
    work_size: int = 256
    include_colour: bool = False      # colorize inputs already in colour (from their L)
    colour_threshold: float = 6.0     # chroma spread above which an input counts as colour
    max_pixels: int = 250_000_000
    device: str = "auto"
    # Film only (not part of a photo's parameter set: adding film settings never redoes photos).
    film_renditions: tuple[str, ...] = (".mkv", ".mp4")   # FFV1 master, H.264 access copy (.mov: ProRes)
    temporal: bool = True
    temporal_params: dict[str, Any] = field(default_factory=dict)
    shot_min_frames: int = 48       # shorter shots share a unit of work with their neighbours
    shot_max_frames: int = 1500     # longer shots are split (the smoother warms up across the split)
    warmup_frames: int = 12
    sequence_rate: str = "24"       # frame rate of a frame sequence without a sequence.json

    def __post_init__(self) -> None:
        if self.refine not in REFINERS:
            raise ValueError(f"unknown refinement {self.refine!r} (choose from {', '.join(REFINERS)})")
        object.__setattr__(self, "film_renditions", tuple(self.film_renditions))
        bad = [r for r in self.film_renditions if r not in RENDITIONS]
        if bad or not self.film_renditions or len(set(self.film_renditions)) != len(self.film_renditions):
            raise ValueError(f"film renditions must be distinct, from {', '.join(RENDITIONS)} (got {bad or 'none'})")
        if not 1 <= self.shot_min_frames <= self.shot_max_frames:
            raise ValueError("shot_min_frames must be at least 1 and at most shot_max_frames")
        TemporalParams(**self.temporal_params)  # unknown smoothing parameters are refused here
        try:
            frame_rate(self.sequence_rate)
        except ValueError as exc:
            raise ValueError(f"sequence_rate: {exc}") from None

    def params(self, model_sha256: str, media: str) -> dict[str, Any]:
        """The parameter set of a ``media`` item (photo: without the film settings)."""
        p = asdict(self)
        p.pop("device")  # where it ran is recorded, but does not change what is produced
        p["film_renditions"] = list(self.film_renditions)
        if media == "photo":
            for name in FILM_FIELDS:
                p.pop(name)
        return {**p, "model_sha256": model_sha256}

    def key(self, model_sha256: str, media: str) -> str:
        return hashlib.sha256(json.dumps(self.params(model_sha256, media), sort_keys=True).encode()).hexdigest()


FILM_FIELDS = ("film_renditions", "temporal", "temporal_params", "shot_min_frames", "shot_max_frames",
               "warmup_frames", "sequence_rate")


def check_locations(source: Location, dest: Location) -> None:
    """Refuse a destination that is the source itself (outputs would mix with originals)."""
    if source.uri.rstrip("/") == dest.uri.rstrip("/"):
        raise UnsafePathError(f"the destination {dest.uri} is the source: choose another folder or prefix")


def software_versions() -> dict[str, str]:
    names = ["torch", "numpy", "opencv-python-headless", "pillow", "tifffile", "sqlalchemy", "boto3", "prefect"]
    versions = {"colorize": __version__, "python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


@dataclass
class ItemResult:
    rel: str
    status: str          # done | failed | skipped
    detail: str = ""
    output_uri: str | None = None
    expected: bool = False   # a skip that needs no one's attention: already done, a sidecar carried


@dataclass(frozen=True)
class FilmEntry:
    """A film in the source: a video file, or a folder of numbered frames (``frames``)."""

    rel: str
    size: int
    version: str
    frames: tuple[str, ...] = ()    # a frame sequence's files, in order (names inside ``rel``)
    rate: str | None = None         # a frame sequence's frame rate
    flags: tuple[str, ...] = ()
    sound: str | None = None        # a frame sequence's sound file (a name inside ``rel``)
    sidecar: str | None = None      # a frame sequence's sequence.json (a name inside ``rel``)
    printing_density: bool | dict[str, float] | None = None   # its log scan override (printing_density_override)
    sidecar_sha256: str | None = None   # the sequence.json's sha256 when read: rate, sound and log came from it
    declared: dict[str, Any] | None = None   # what its BagIt bag declares of its files (bagit.declared_for)

    @property
    def is_sequence(self) -> bool:
        return bool(self.frames)

    @property
    def files(self) -> tuple[str, ...]:
        """A frame sequence's files: its frames, then its sound file and its sequence.json (what
        it says is part of the film: a corrected frame rate makes it a film to do again)."""
        return (*self.frames, *(name for name in (self.sound, self.sidecar) if name))

    def path_of(self, name: str) -> str:
        """The path under SOURCE of ``name``, one of a frame sequence's :attr:`files`."""
        return f"{self.rel}/{name}" if self.rel else name

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FilmEntry:
        """Back from ``dataclasses.asdict`` (a task parameter, a plan)."""
        return cls(**{**d, "frames": tuple(d["frames"]), "flags": tuple(d["flags"])})


@dataclass(frozen=True)
class PhotoEntry(Entry):
    """A photo to do, with its XMP sidecar file when it has one (``xmp``, a path under SOURCE),
    whose version is then part of the photo's: a catalogue's edit makes the photo one to do again."""

    xmp: str | None = None
    declared: dict[str, Any] | None = None   # what its BagIt bag declares of it and its sidecar (bagit.declared_for)


XMP_SIDECAR = ".xmp"


def pair_xmp_sidecars(photos: list[Entry], xmps: list[Entry], films: Iterable[str] = ()
                      ) -> tuple[list[Entry], list[tuple[Entry, str, bool]], list[Entry]]:
    """Pair photos with the XMP sidecar files beside them: ``name.ext.xmp`` (darktable, digiKam),
    else ``name.xmp`` (Adobe's, the XMP specification's) when no other photo or film (``films``:
    their paths) there shares that name. Returns (the photos, those with a sidecar as
    :class:`PhotoEntry`; (sidecar, why it is skipped, whether that is as expected) for each
    sidecar carried, or that fits more than one file and so is carried into none; the sidecars
    of no photo, which are done as any other file)."""
    if not xmps:   # most archives: no name to index (some 4 s a million photos)
        return photos, [], []
    by_name: dict[str, Entry] = {}
    skipped: list[tuple[Entry, str, bool]] = []
    for side in sorted(xmps, key=lambda e: e.rel):
        other = by_name.setdefault(side.rel[:-len(XMP_SIDECAR)], side)
        if other is not side:   # a.xmp and a.XMP
            why = f"an XMP sidecar whose name differs from {posixpath.basename(other.rel)}'s only in case: this one " \
                  "is carried into no photo"
            skipped.append((side, why, False))
    stems: dict[str, list[str]] = {}
    for rel in itertools.chain((e.rel for e in photos), films):
        stems.setdefault(posixpath.splitext(rel)[0], []).append(rel)
    full = {e.rel: by_name[e.rel] for e in photos if e.rel in by_name}
    used = {side.rel for side in full.values()}
    paired = []
    for e in photos:
        stem = posixpath.splitext(e.rel)[0]
        side = full.get(e.rel)
        if side is None and len(stems[stem]) == 1 and stem in by_name and by_name[stem].rel not in used:
            side = by_name[stem]
        if side is None:
            paired.append(e)
            continue
        used.add(side.rel)
        paired.append(PhotoEntry(e.rel, e.size, f"{e.version}+xmp:{side.version}", side.rel))
        skipped.append((side, f"the XMP sidecar of {e.rel}: its metadata is carried into that photo's colour rendition",
                        True))
    lone = []
    for key, side in by_name.items():
        if side.rel in used:
            continue
        names = sorted(stems.get(key, ()))
        if len(names) > 1:   # a.xmp beside a.tif and a.jpg (or a.mov)
            why = f"an XMP sidecar that may be of {' or '.join(names)}: carried into none; name it after its photo " \
                  f"({posixpath.basename(names[0])}.xmp)"
            skipped.append((side, why, False))
        elif names and names[0] in full:   # a.xmp beside a.tif, which has its own a.tif.xmp
            why = f"an XMP sidecar of {names[0]}, which has {posixpath.basename(full[names[0]].rel)} as well: that " \
                  "one is carried"
            skipped.append((side, why, False))
        else:
            lone.append(side)
    return paired, skipped, lone


def _with_declared(entry: Entry, bags: dict[str, Bag]) -> Entry:
    """``entry`` with what its BagIt bag declares of it and of its XMP sidecar, if it is in one."""
    xmp = entry.xmp if isinstance(entry, PhotoEntry) else None
    declared = declared_for([entry.rel, *([xmp] if xmp else [])], bags)
    if declared is None:
        return entry
    return PhotoEntry(entry.rel, entry.size, entry.version, xmp, declared)


SEQUENCE_SIDECAR = "sequence.json"
SIDECAR_KEYS = ("frame_rate", "audio", "printing_density")


def read_sidecar(text: bytes | str) -> tuple[str | None, str | None, bool | dict[str, float] | None]:
    """A ``sequence.json``'s frame rate, sound file name and log scan override
    (:func:`~colorize_core.film.printing_density_override`), each None when not given. A key it
    does not know is refused, not ignored: a misspelt ``frame_rate`` would otherwise leave the
    film at the default rate. Raises ValueError saying what is wrong."""
    try:
        meta = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"not JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"not a JSON object of {', '.join(SIDECAR_KEYS)}")
    unknown = sorted(set(meta) - set(SIDECAR_KEYS))
    if unknown:
        raise ValueError(f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(map(json.dumps, unknown))} "
                         f"(a sequence.json holds {', '.join(SIDECAR_KEYS)})")
    rate = meta.get("frame_rate")
    if rate is not None:
        try:
            rate = str(frame_rate(rate))
        except ValueError:
            raise ValueError(f"frame_rate must be a positive rate such as 24, 25, 23.976 or \"24000/1001\", "
                             f"not {json.dumps(rate)}") from None
    audio = meta.get("audio")
    if audio is not None and not isinstance(audio, str):
        raise ValueError(f"audio must name the sound file beside the frames, not {json.dumps(audio)}")
    log = printing_density_override(meta["printing_density"]) if "printing_density" in meta else None
    return rate, audio, log


def sequence_sound(names: list[str], wanted: str | None, where: str) -> str | None:
    """Which of the sound files ``names`` beside the frames of a sequence (in folder ``where``)
    is its sound: the one its sequence.json names (``wanted``), else the only one, else none.
    Raises ValueError when the named one is not there, or when there are several and none is
    named."""
    if wanted is not None:
        if wanted not in names:
            raise ValueError(f"its sound file {wanted!r} is not beside the frames "
                             f"(sound files there: {', '.join(sorted(names)) or 'none'})")
        return wanted
    if len(names) > 1:
        raise ValueError(f"{len(names)} sound files beside the frames of {where} ({', '.join(sorted(names))}): "
                         f"name the sequence's in its {SEQUENCE_SIDECAR} (\"audio\": \"NAME\")")
    return names[0] if names else None


def _sequence_part(entry: Entry, held: dict[str, list[Entry]], sidecars: dict[str, Entry],
                   sounds: dict[str, list[Entry]]) -> bool:
    """Hold ``entry`` by its folder if it may be part of a frame sequence (a numbered frame, a
    sequence.json, a sound file) and say so; the listing's end decides (:func:`_sequences`)."""
    folder, name = posixpath.split(entry.rel)
    ext = posixpath.splitext(name)[1].lower()
    if name == SEQUENCE_SIDECAR:
        sidecars[folder] = entry
    elif ext in SEQUENCE_SUFFIXES and FRAME_NAME.match(name):
        held.setdefault(folder, []).append(entry)
    elif ext in SOUND_SUFFIXES:
        sounds.setdefault(folder, []).append(entry)
    else:
        return False
    return True


def sequence_at(location: Location, as_folder: str | None = None) -> FilmEntry | None:
    """The frame sequence whose frames are in ``location``'s own folder, as a job finds it
    (frames, sound file, sequence.json); None when there is none there. With ``as_folder``, its
    version is the one a job computes listing its SOURCE, in which the folder is ``as_folder``."""
    held: dict[str, list[Entry]] = {}
    sidecars: dict[str, Entry] = {}
    sounds: dict[str, list[Entry]] = {}
    here: dict[str, Entry] = {}
    for entry in location.list():
        if "/" not in entry.rel:
            here[entry.rel] = entry
            _sequence_part(entry, held, sidecars, sounds)
    films, _, _ = _sequences(held, sidecars, sounds, location)
    if not films or as_folder is None:
        return films[0] if films else None
    prefix = f"{as_folder}/" if as_folder else ""
    return replace(films[0], version=sequence_version(Entry(prefix + name, here[name].size, here[name].version)
                                                      for name in films[0].files))


def sequence_version(parts: Iterable[Entry]) -> str:
    """A frame sequence's version, what a job's quick check compares: of its files' paths under
    SOURCE, sizes and versions (frames, then its sound file and sequence.json)."""
    return hashlib.sha256("\n".join(f"{e.rel} {e.size} {e.version}" for e in parts).encode()).hexdigest()[:32]


def _sequences(held: dict[str, list[Entry]], sidecars: dict[str, Entry], sounds: dict[str, list[Entry]],
               source: Location) -> tuple[list[FilmEntry], list[Entry], list[tuple[Entry, str]]]:
    """Frame sequences among the held numbered frames: a folder with a ``sequence.json``
    (``{"frame_rate": "24000/1001", "audio": "reel1.wav"}``, and ``"printing_density"`` for a
    log scan's conversion: :func:`~colorize_core.film.printing_density_override`) or holding DPX frames (the rate
    left None without a sidecar's: the frames' headers or the job's default give it), with its
    sound: the file the sidecar names, or the one sound file beside the frames. Returns
    (sequences, entries that are photos after all, (entry, error) for what cannot be used: an
    unreadable sidecar, a sound file no sequence takes)."""
    films, photos, errors = [], [], []
    for folder in sorted(set(held) | set(sidecars) | set(sounds)):
        # In frame order (units take their frames by position): f10.png after f9.png, not after f1.png.
        frames = sorted(held.get(folder, []), key=lambda e: int(FRAME_NAME.match(posixpath.basename(e.rel))["number"]))
        sidecar = sidecars.get(folder)
        beside = sounds.get(folder, [])
        is_dpx = any(e.rel.lower().endswith(".dpx") for e in frames)
        if sidecar is None and not is_dpx:
            photos.extend(frames)
            errors.extend((e, "a sound file with no frame sequence beside it: a film's own sound is taken from the "
                              "film, a frame sequence's from the sound file in its folder") for e in beside)
            continue
        rate, wanted, log, sidecar_sha = None, None, None, None  # no rate: the DPX headers', else the default
        if sidecar is not None:
            try:
                text = source.read(sidecar.rel)
                rate, wanted, log, sidecar_sha = *read_sidecar(text), hashlib.sha256(text).hexdigest()
            except (ValueError, ColorizeError) as exc:
                errors.append((sidecar, f"{sidecar.rel}: {exc}"))
                continue
        if not frames:
            errors.append((sidecar, f"{sidecar.rel}: no numbered DPX, TIFF, PNG or JPEG 2000 frames beside it"))
            continue
        prefix = f"{folder}/" if folder else ""
        names = {e.rel[len(prefix):]: e for e in beside}
        try:
            sound = sequence_sound(list(names), wanted, folder or ".")
        except ValueError as exc:
            errors.append((sidecar, f"{sidecar.rel}: {exc}") if wanted is not None else (beside[0], str(exc)))
            continue
        errors.extend((e, f"a sound file beside the frames of {folder or '.'} that its {SEQUENCE_SIDECAR} does not "
                          "name: not used") for name, e in names.items() if name != sound)
        parts = [*frames, *([names[sound]] if sound else []), *([sidecar] if sidecar else [])]
        films.append(FilmEntry(folder, sum(e.size for e in parts), sequence_version(parts),
                               tuple(e.rel[len(prefix):] for e in frames), rate, (), sound,
                               sidecar.rel[len(prefix):] if sidecar else None, log, sidecar_sha))
    return films, photos, errors


def plan(source: Location, dest: Location, store: ProvenanceStore, job_id: str, settings: JobSettings,
         model_sha256: str, force: bool = False,
         only: set[str] | None = None) -> tuple[list[Entry], list[FilmEntry], list[ItemResult]]:
    """List the source; record quick-check skips; return (photos to do, films to do, skipped).
    ``only``: consider just the items with these source URIs (a redo of rejected or damaged
    items); one no longer in the source is recorded failed (NotFoundError), never dropped.

    Numbered DPX/TIFF/PNG/JPEG 2000 frames are held back until the listing ends: a folder with a
    ``sequence.json`` or with DPX frames is a frame sequence (one film), else they are photos."""
    keys = {m: settings.key(model_sha256, m) for m in ("photo", "film")}
    done = {m: ({} if force else store.done_index(dest.uri, keys[m])) for m in keys}
    todo, films, skipped, pending = [], [], [], []
    held: dict[str, list[Entry]] = {}
    sidecars: dict[str, Entry] = {}
    sounds: dict[str, list[Entry]] = {}
    agent = f"colorize {__version__}"
    found: set[str] = set()   # of ``only``, the URIs in the source

    def quick_skip(uri: str, entry: Entry | FilmEntry, media: str) -> bool:
        if only is not None:
            if uri not in only:
                return True  # not asked for: neither done nor recorded
            found.add(uri)
        prev = done[media].get(uri)
        if prev is None or prev.size != entry.size or prev.version_tag != entry.version:
            return False
        pending.append((_skipped_item(job_id, uri, entry, dest, settings, media, model_sha256, prev,
                                      f"already done in job {prev.job_id} (unchanged: same size and version)"),
                        [Event(type="skip", outcome="success", agent=agent, detail={"previous_item": prev.id})]))
        skipped.append(ItemResult(entry.rel, "skipped", "already done", expected=True))
        return True

    def settle(rel: str, uri: str, message: str, error_type: str | None = None, entry: Entry | None = None,
               media: str = "photo", stage: str = "ingest", media_type: str | None = None,
               expected: bool = False) -> None:
        """Record what planning settles itself: skipped for ``message``, or failed (``error_type``)."""
        if only is not None:
            if uri not in only:
                return
            found.add(uri)
        skip = error_type is None
        pending.append((Item(job_id=job_id, source_uri=uri, rel_path=rel, dest=dest.uri,
                             size=entry.size if entry else None, version_tag=entry.version if entry else None,
                             media_type=media_type, status="skipped" if skip else "failed",
                             reason=message if skip else None, error_type=error_type,
                             error=None if skip else message, flags=[], notes=[],
                             params=settings.params(model_sha256, media), params_key=keys[media],
                             model_name=settings.model, model_sha256=model_sha256, finished_at=utcnow()),
                        [Event(type="skip" if skip else stage, outcome="success" if skip else "failure",
                               agent=agent, detail={"reason" if skip else "error": message})]))
        skipped.append(ItemResult(rel, "skipped" if skip else "failed", message, expected=expected))

    unlisted: list[Unlisted] = []
    photos: list[Entry] = []   # held until the listing ends, for their XMP sidecars
    xmps: list[Entry] = []
    film_files: list[str] = []
    bags: dict[str, Bag] = {}
    payload: set[str] = set()   # what the listing gave under a data/ folder: a bag's payload, maybe
    for entry in source.list(exclude=dest, unlisted=unlisted):
        ext = posixpath.splitext(entry.rel)[1].lower()
        if in_payload(entry.rel):
            payload.add(entry.rel)
        if bag_part(entry, bags):
            pass   # read once the listing ends
        elif _sequence_part(entry, held, sidecars, sounds):
            pass   # held until the listing ends
        elif ext in FILM_SUFFIXES:
            film = FilmEntry(entry.rel, entry.size, entry.version)
            film_files.append(entry.rel)
            if not quick_skip(item_uri(source, entry.rel), film, "film"):
                films.append(film)
        elif ext == XMP_SIDECAR:
            xmps.append(entry)
        else:
            photos.append(entry)
        if len(pending) >= 1000:
            store.add_items(pending)
            pending = []
    not_bags, bag_files = read_bags(bags, source)
    sequences, frames_as_photos, errors = _sequences(held, sidecars, sounds, source)
    photos, carried, lone = pair_xmp_sidecars(photos + frames_as_photos + not_bags, xmps, film_files)
    for entry in photos + lone:
        if not quick_skip(item_uri(source, entry.rel), entry, "photo"):
            todo.append(_with_declared(entry, bags) if bags else entry)
        if len(pending) >= 1000:
            store.add_items(pending)
            pending = []
    for film in sequences:
        if not quick_skip(film_uri(source, film), film, "film"):
            films.append(film)
    if bags:
        films = [replace(f, declared=declared_for([f.path_of(name) for name in f.files] if f.is_sequence else [f.rel],
                                                  bags)) for f in films]
    for entry, error in errors:
        settle(entry.rel, item_uri(source, entry.rel), error, "UnsupportedMediaError", entry, "film", "validate", "film")
    for entry, reason, expected in carried:
        settle(entry.rel, item_uri(source, entry.rel), reason, entry=entry, expected=expected)
    for entry, message, error_type in bag_files:
        settle(entry.rel, item_uri(source, entry.rel), message, error_type, entry, expected=error_type is None)
    payload.update(problem.rel for problem in unlisted)
    for bag in bags.values():   # what a bag lists and does not hold
        for rel in bag.not_held(payload):
            settle(rel, item_uri(source, rel), f"listed in {bag.manifest} but not in the bag: missing", "NotFoundError")
    for problem in unlisted:   # a link not followed is skipped; what cannot be read at all has failed
        uri = item_uri(source, problem.rel) + ("/" if problem.kind in ("folder-link", "unreadable-folder") else "")
        settle(problem.rel, uri, problem.message,
               None if problem.kind == "folder-link" else _UNLISTED_ERRORS[problem.kind])
    for uri in sorted((only or set()) - found):
        rel = (source.rel_of(uri) or uri).rstrip("/")
        error = f"{uri} is no longer in the source: it was asked to be done again and cannot be"
        pending.append((Item(job_id=job_id, source_uri=uri, rel_path=rel, dest=dest.uri, status="failed",
                             error_type="NotFoundError", error=error, flags=[], notes=[],
                             params=settings.params(model_sha256, "photo"), params_key=keys["photo"],
                             model_name=settings.model, model_sha256=model_sha256, finished_at=utcnow()),
                        [Event(type="ingest", outcome="failure", agent=agent, detail={"error": error})]))
        skipped.append(ItemResult(rel, "failed", error))
    store.add_items(pending)
    return todo, films, skipped


_UNLISTED_ERRORS = {"broken-link": "NotFoundError", "unreadable-folder": "StorageError",
                    "not-a-file": "UnsupportedMediaError"}


def film_uri(source: Location, film: FilmEntry) -> str:
    """A film file's URI, or a frame sequence folder's (with a trailing slash)."""
    if not film.is_sequence:
        return item_uri(source, film.rel)
    return source.uri.rstrip("/") + "/" + (f"{film.rel}/" if film.rel else "")


def item_uri(source: Location, rel: str) -> str:
    """The item's URI; for an unsafe key (refused later, with a recorded error) its raw form."""
    try:
        return source.uri_of(rel)
    except ColorizeError:
        return f"{source.uri}/{rel}"


def _skipped_item(job_id: str, uri: str, entry: Entry | FilmEntry, dest: Location, settings: JobSettings,
                  media: str, model_sha256: str, prev: Any, reason: str) -> Item:
    """A skip record pointing at ``prev`` (an Item or a done-index row) that did the work."""
    key = settings.key(model_sha256, media)
    return Item(job_id=job_id, source_uri=uri, rel_path=entry.rel, dest=dest.uri, size=entry.size,
                version_tag=entry.version, sha256=prev.sha256, media_type=prev.media_type, format=prev.format,
                width=prev.width, height=prev.height, channels=prev.channels, bit_depth=prev.bit_depth,
                status="skipped", reason=reason, flags=list(prev.flags or []), notes=[], media=prev.media,
                params=settings.params(model_sha256, media), params_key=key, model_name=prev.model_name,
                model_sha256=model_sha256, previous_item_id=prev.id, finished_at=utcnow())


def output_rel(rel: str, photo: Photo, key: str, taken: Callable[[str], bool]) -> str:
    """The destination path: the source's relative path, with its extension kept when it names
    the format written (else that format's own); where taken, see :func:`free_name`."""
    stem, ext = posixpath.splitext(rel)
    if SUFFIX_FORMATS.get(ext.lower()) != photo.format:
        stem = stem if ext.lower() in SUFFIX_FORMATS else rel
        ext = FORMATS[photo.format]
    return free_name(stem, ext, key, taken)


def free_name(stem: str, ext: str, key: str, taken: Callable[[str], bool]) -> str:
    """``stem + ext``, or where taken ``stem.<params-key-8>.ext``, then ``-2``, ``-3``..."""
    candidates = itertools.chain([f"{stem}{ext}", f"{stem}.{key[:8]}{ext}"],
                                 (f"{stem}.{key[:8]}-{n}{ext}" for n in range(2, 1000)))
    for cand in candidates:
        if not taken(cand):
            return cand
    raise FileExistsError(f"no free output name for {stem}{ext}")


@dataclass
class _Work:
    entry: Entry
    uri: str
    started: float
    data: bytes = b""
    sha256: str | None = None
    photo: Photo | None = None
    media: dict[str, Any] | None = None   # its XMP sidecar read: {"xmp_sidecar": {"rel", "sha256", "size"}}
    spread: float | None = None
    flags: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    stage: str = "ingest"  # ingest -> validate -> colorize -> write: where a failure happened


def process_batch(entries: list[Entry], source: Location, dest: Location, store: ProvenanceStore, job_id: str,
                  settings: JobSettings, colorizer: Colorizer, force: bool = False,
                  model_batch: int = 8, batch_pixels: int = 64_000_000) -> list[ItemResult]:
    """Process a chunk of source entries end to end, through the model ``model_batch`` photos
    at a time, fewer when they hold ``batch_pixels`` (only decoded photos wait for the model:
    a batch of large scans would hold gigabytes); every item ends recorded."""
    key = settings.key(colorizer.sha256, "photo")
    params = settings.params(colorizer.sha256, "photo")
    agent = f"colorize {__version__}"
    model_agent = f"model {colorizer.name} sha256:{colorizer.sha256}"
    results: list[ItemResult] = []
    ready: list[_Work] = []
    watch = JobWatch(store, job_id)   # checked before each item's work, outside its try: a stopped job
                                      # is not the item's failure; what is not recorded yet stays to do

    def record(w: _Work, status: str, *, error: Exception | None = None, reason: str | None = None,
               outputs: list[Output] = (), colour: float | None = None, prev: Item | None = None) -> None:
        p = w.photo
        item = Item(job_id=job_id, source_uri=w.uri, rel_path=w.entry.rel, dest=dest.uri, size=w.entry.size,
                    version_tag=w.entry.version, sha256=w.sha256 or (prev.sha256 if prev else None),
                    media_type=("photo" if p else ("unsupported" if isinstance(error, UnsupportedMediaError) else None)),
                    format=p.format if p else None, width=p.width if p else None, height=p.height if p else None,
                    channels=p.channels if p else None, bit_depth=p.bit_depth if p else None, status=status,
                    reason=reason, error_type=type(error).__name__ if error else None,
                    error=str(error) if error else None, flags=w.flags, notes=list(p.notes) if p else [],
                    params=params, params_key=key, model_name=colorizer.name, model_sha256=colorizer.sha256,
                    colourfulness=colour, chroma_spread=w.spread, media=w.media,
                    previous_item_id=prev.id if prev else None, finished_at=utcnow())
        if error is not None:
            w.events.append(Event(type=w.stage, outcome="failure", agent=agent,
                                  detail={"error_type": type(error).__name__, "error": str(error)}))
        store.add_item(item, outputs, w.events)
        out_uri = next((o.uri for o in outputs if o.kind == "colour"), None)
        results.append(ItemResult(w.entry.rel, status, str(error) if error else (reason or ""), out_uri))

    def flush() -> None:
        if not ready:
            return
        lums = [luminance(w.photo.pixels) for w in ready]
        try:
            predictions = colorizer.predict(lums)
        except Exception:  # e.g. out of memory on a huge batch: fall back to one at a time
            predictions = []
            for lum in lums:
                try:
                    predictions.append(colorizer.predict([lum])[0])
                except Exception as exc:  # noqa: BLE001
                    predictions.append(exc)
        for w, lum, prediction in zip(ready, lums, predictions):
            watch.check()
            try:
                if isinstance(prediction, Exception):
                    raise prediction
                _finish(w, lum, prediction, dest, settings, colorizer, key, agent, model_agent, record)
            except Exception as exc:  # noqa: BLE001
                record(w, "failed", error=exc)
        ready.clear()

    uris = {e.rel: item_uri(source, e.rel) for e in entries}
    recorded = store.recorded_in_job(job_id, list(uris.values()))
    for entry in entries:
        if uris[entry.rel] in recorded:
            continue  # a retry of this batch: recorded on the first attempt
        watch.check()
        w = _Work(entry, uris[entry.rel], time.time())
        try:
            check_rel(entry.rel)
            w.data = source.read(entry.rel)
            w.sha256 = hashlib.sha256(w.data).hexdigest()
            checked = _check_against_bag(w, entry.rel, w.data, w.sha256)
            w.events.append(Event(type="ingest", outcome="success", agent=agent,
                                  detail={"bytes": len(w.data), "sha256": w.sha256, **checked}))
            sidecar = _read_xmp_sidecar(w, source, agent)
            if not force:
                prev = store.find_done(w.uri, dest.uri, key, w.sha256)
                if prev is not None and _xmp_sha256(prev.media) == _xmp_sha256(w.media):
                    record(w, "skipped", reason=f"already done in job {prev.job_id} (same content)", prev=prev)
                    continue
            w.stage = "validate"
            w.photo = decode_photo(w.data, settings.max_pixels)
            w.data = b""  # decoded: the bytes are no longer needed
            if sidecar is not None:
                name = posixpath.basename(w.media["xmp_sidecar"]["rel"])
                w.photo.xmp = with_sidecar_xmp(w.photo.xmp, sidecar, name, w.photo.notes)
            w.spread = chroma_spread(w.photo.pixels)
            if w.spread > settings.colour_threshold:
                w.flags.append("already-colour")
                if not settings.include_colour:
                    record(w, "skipped", reason=f"already in colour (chroma spread {w.spread:.1f} > "
                           f"{settings.colour_threshold}); pass --include-colour to colorize it from its L")
                    continue
            ready.append(w)
        except UnrecognisedMediaError as exc:
            ext = posixpath.splitext(entry.rel)[1].lower()
            if ext in COMPANIONS:
                record(w, "skipped", reason=f"not a photograph or film: {COMPANIONS[ext]} ({ext}), and its content "
                                            "is no image either")
            else:
                record(w, "failed", error=exc)
        except Exception as exc:  # noqa: BLE001 - typed or not, one bad item must not sink the batch
            record(w, "failed", error=exc)
        if len(ready) >= model_batch or sum(w.photo.width * w.photo.height for w in ready) >= batch_pixels:
            flush()

    flush()
    return results


def _read_xmp_sidecar(w: _Work, source: Location, agent: str) -> bytes | None:
    """Read the XMP sidecar of ``w``'s photo, if it has one; note what was read in ``w``."""
    rel = w.entry.xmp if isinstance(w.entry, PhotoEntry) else None
    if rel is None:
        return None
    data = source.read(rel)
    read = {"rel": rel, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    w.media = {"xmp_sidecar": read}
    checked = _check_against_bag(w, rel, data, read["sha256"])
    w.events.append(Event(type="ingest", outcome="success", agent=agent, detail={"xmp_sidecar": read, **checked}))
    return data


NOT_IN_BAG_MANIFEST = "not-in-bag-manifest"


def _check_against_bag(w: _Work, rel: str, data: bytes, sha256: str) -> dict[str, Any]:
    """Check ``rel``'s bytes (the photo's, its sidecar's) against what its BagIt bag declares
    (:func:`bagit.verify`; ChecksumMismatchError); returns what the ingest event says of it. A
    file the bag's manifest does not list flags the item for a reviewer."""
    declared = w.entry.declared if isinstance(w.entry, PhotoEntry) else None
    checked = verify(declared, rel, data, sha256)
    if checked is False and NOT_IN_BAG_MANIFEST not in w.flags:
        w.flags.append(NOT_IN_BAG_MANIFEST)
    return checked_detail(declared, checked)


def xmp_sidecar_of(source_uri: str, rel_path: str, media: dict[str, Any] | None) -> dict[str, Any] | None:
    """The XMP sidecar an item's photo was read with (its ``media``), with its URI beside the
    photo's: ``{"rel", "uri", "sha256", "size"}``; None when it had none."""
    side = (media or {}).get("xmp_sidecar")
    if not side or not source_uri.endswith(rel_path):
        return None
    return {**side, "uri": source_uri[:len(source_uri) - len(rel_path)] + side["rel"]}


def _xmp_sha256(media: dict[str, Any] | None) -> str | None:
    """The sha256 of the XMP sidecar an item was done with (None: it had none)."""
    return ((media or {}).get("xmp_sidecar") or {}).get("sha256")


def render_photo(photo: Photo, lum: np.ndarray, ab: np.ndarray, settings: JobSettings, colorizer: Colorizer,
                 source_sha256: str) -> tuple[np.ndarray, bytes]:
    """Refine ab, merge it with the original L, and encode like the source, labelled."""
    ab = refine(lum, ab, settings.refine, settings.refine_params)
    rgb = lab_to_rgb(lum, ab, photo.pixels.dtype)
    return rgb, encode_photo(rgb, photo, xmp_packet(source_sha256, colorizer.name, colorizer.sha256))


def _finish(w: _Work, lum: np.ndarray, prediction: Prediction, dest: Location, settings: JobSettings,
            colorizer: Colorizer, key: str, agent: str, model_agent: str, record: Callable[..., None]) -> None:
    photo = w.photo
    w.stage = "colorize"
    detail: dict[str, Any] = {"work_size": settings.work_size, "device": str(colorizer.device)}
    if prediction.confidence is not None:
        detail["confidence"] = round(prediction.confidence, 4)
        low = colorizer.low_confidence
        if low is not None and prediction.confidence < low:
            w.flags.append("low-confidence")
    w.events.append(Event(type="colorize", outcome="success", agent=model_agent, detail=detail))
    rgb, data = render_photo(photo, lum, prediction.ab(*lum.shape), settings, colorizer, w.sha256)
    if settings.refine != "none":
        w.events.append(Event(type="refine", outcome="success", agent=agent,
                              detail={"method": settings.refine, "params": settings.refine_params}))
    out_sha = hashlib.sha256(data).hexdigest()
    w.stage = "write"
    for _ in range(5):  # another writer may take the name between the check and the write
        rel = output_rel(w.entry.rel, photo, key, dest.exists)
        try:
            dest.write_new(rel, data, CONTENT_TYPES[photo.format])
            break
        except FileExistsError:
            continue
    else:
        raise FileExistsError(f"could not find a free output name for {w.entry.rel}")
    outputs = [Output(kind="colour", uri=dest.uri_of(rel), sha256=out_sha, size=len(data))]
    for kind, pixels, name in (("thumb-original", photo.pixels, w.sha256), ("thumb-colour", rgb, out_sha)):
        outputs.append(Output(kind=kind, **write_thumbnail(dest, pixels, name)))
    w.events.append(Event(type="write", outcome="success", agent=agent,
                          detail={"uri": outputs[0].uri, "sha256": out_sha, "seconds": round(time.time() - w.started, 3)}))
    record(w, "done", outputs=outputs, colour=colourfulness(rgb))


def write_thumbnail(dest: Location, pixels: np.ndarray, name: str | None = None) -> dict[str, Any]:
    """A review thumbnail under DEST/manifests/thumbs/, named by ``name`` (a checksum of what it
    shows) or else by its own sha256: content-addressed, so written once. Returns uri, sha256, size
    of the file there: the one already there when it was (the same picture, though another
    encoder version may have made other bytes of it), so that the record matches what DEST holds."""
    data = thumbnail_jpeg(pixels)
    sha = hashlib.sha256(data).hexdigest()
    rel = f"{THUMBS}/{(name or sha)[:24]}.jpg"
    try:
        dest.write_new(rel, data, "image/jpeg")
    except FileExistsError:   # the same thumbnail is there already
        there = dest.digest(rel)
        return {"uri": dest.uri_of(rel), "sha256": there.sha256, "size": there.size}
    return {"uri": dest.uri_of(rel), "sha256": sha, "size": len(data)}


def job_status(counts: dict[str, int]) -> str:
    return "completed_with_failures" if counts.get("failed") else "completed"
