"""Real components for the tests: an S3 server over HTTP (moto), a PostgreSQL server (pgserver),
Prefect's test harness (a real temporary API server), and generated media, good and bad."""

from __future__ import annotations

import hashlib
import io
import os
import struct
import subprocess
import tempfile
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
import skimage.data
import tifffile
from PIL import Image

from colorize_core import datasets

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples" / "archive"


def sidecar_xmp(title: str) -> str:
    """An XMP sidecar file giving a photo its title, as a catalogue writes one."""
    return ('<?xml version="1.0" encoding="UTF-8"?><x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf='
            '"http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" xmlns:dc='
            f'"http://purl.org/dc/elements/1.1/"><dc:title><rdf:Alt><rdf:li xml:lang="x-default">{title}</rdf:li>'
            '</rdf:Alt></dc:title></rdf:Description></rdf:RDF></x:xmpmeta>')


def small_archive(src: Path, *folders: str) -> Path:
    """A SOURCE of these sample folders and a half-second film, ``film/reel.mp4``."""
    import shutil

    for folder in folders:
        shutil.copytree(SAMPLES / folder, src / folder)
    (src / "film").mkdir(parents=True, exist_ok=True)
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10:duration=0.5",
                    str(src / "film" / "reel.mp4")], check=True)
    return src


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3 endpoint over HTTP; boto3 reaches it through AWS_ENDPOINT_URL like any other."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION",
                                            "AWS_ENDPOINT_URL")}
    os.environ.update(AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_DEFAULT_REGION="us-east-1",
                      AWS_ENDPOINT_URL=url)
    yield url
    server.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def bucket(s3_endpoint: str) -> str:
    import boto3

    name = f"archive-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def pg_server() -> Iterator[object]:
    import pgserver

    folder = tempfile.mkdtemp(prefix="colorize-pg-")
    server = pgserver.get_server(folder, cleanup_mode="delete")
    yield server
    server.cleanup()


@pytest.fixture
def pg_url(pg_server) -> str:  # noqa: ANN001
    """A fresh, empty PostgreSQL database for one test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    pg_server.psql(f"CREATE DATABASE {name};")
    return pg_server.get_uri(name)


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[str]:
    """A real temporary Prefect API for the session; its URL, for subprocesses too."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield PREFECT_API_URL.value()


# Media -------------------------------------------------------------------------------------
def encode(img: np.ndarray | Image.Image, fmt: str, **kwargs) -> bytes:  # noqa: ANN003
    im = img if isinstance(img, Image.Image) else Image.fromarray(img)
    buf = io.BytesIO()
    im.save(buf, fmt, **kwargs)
    return buf.getvalue()


def gray_photo(name: str = "camera", size: int | None = None) -> np.ndarray:
    """A real black-and-white photograph (scikit-image's samples)."""
    img = getattr(skimage.data, name)()
    if img.ndim == 3:
        img = np.asarray(Image.fromarray(img).convert("L"))
    if size:
        img = np.asarray(Image.fromarray(img).resize((size, size * img.shape[0] // img.shape[1])))
    return img


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


# Adobe RGB (1998)'s primaries as its profile states them (XYZ, adapted to D50)
ADOBE_RGB_COLORANTS = ((0.6097, 0.3111, 0.0195), (0.2053, 0.6257, 0.0609), (0.1492, 0.0632, 0.7446))


def rgb_profile(gamma: float, colorants: tuple, name: str, trcs: bool = True) -> bytes:
    """An ICC (v2) matrix/TRC RGB profile: ``colorants`` (XYZ of red, green, blue), one
    ``gamma`` for all three channels (no tone curves at all without ``trcs``: not a usable
    matrix/TRC profile). The form of Adobe RGB, ProPhoto and the other working spaces."""
    from colorize_core.color import icc_profile

    def xyz(x: float, y: float, z: float) -> bytes:
        return b"XYZ " + bytes(4) + struct.pack(">3i", *(round(v * 65536) for v in (x, y, z)))

    curve = b"curv" + bytes(4) + struct.pack(">IH", 1, round(gamma * 256))
    return icc_profile(b"mntrRGB XYZ ", name, {b"rXYZ": xyz(*colorants[0]), b"gXYZ": xyz(*colorants[1]),
                                                b"bXYZ": xyz(*colorants[2]),
                                                **({b"rTRC": curve, b"gTRC": curve, b"bTRC": curve} if trcs else {})})


def cmyk_profile(name: str) -> bytes:
    """An ICC (v2) output profile of a made-up CMYK press: an A2B0 lut16 from CMYK to Lab with
    two grid points a channel, its corners the Lab of inks that darken by a third less than the
    plain formula says (dot gain the other way), so that a conversion through it differs from
    that formula. Enough for LittleCMS to convert CMYK to sRGB with, as with a real press profile."""
    from skimage.color import rgb2lab

    from colorize_core.color import icc_profile

    corners = np.array([[(1 - c * 2 / 3) * (1 - k * 2 / 3), (1 - m * 2 / 3) * (1 - k * 2 / 3), (1 - y * 2 / 3) * (1 - k * 2 / 3)]
                        for c in (0, 1) for m in (0, 1) for y in (0, 1) for k in (0, 1)])   # the first channel slowest
    lab = rgb2lab(corners[None])[0]
    encoded = np.stack([lab[:, 0] * 65280 / 100, (lab[:, 1] + 128) * 256, (lab[:, 2] + 128) * 256], axis=1)
    ramp = struct.pack(">HH", 0, 65535)
    lut = (b"mft2" + bytes(4) + struct.pack(">BBBB", 4, 3, 2, 0)
           + struct.pack(">9i", 65536, 0, 0, 0, 65536, 0, 0, 0, 65536) + struct.pack(">HH", 2, 2)
           + ramp * 4 + np.clip(np.round(encoded), 0, 65535).astype(">u2").tobytes() + ramp * 3)
    return icc_profile(b"prtrCMYKLab ", name, {b"A2B0": lut})


def huge_png_header(width: int = 60000, height: int = 60000) -> bytes:
    """A PNG whose header claims width x height pixels, with almost no data behind it."""
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + png_chunk(b"IEND", b""))


def bad_inputs() -> dict[str, bytes]:
    """The bad inputs the foundation issue names, each with the error it must produce."""
    jpeg = encode(gray_photo(size=128), "JPEG")
    png = encode(gray_photo(size=128), "PNG")
    frames = [Image.fromarray(gray_photo(size=64)), Image.fromarray(255 - gray_photo(size=64))]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:])
    return {
        "empty.jpg": b"",
        "truncated.jpg": jpeg[: len(jpeg) // 2],
        "truncated.png": png[: len(png) // 2],
        "notes.jpg": b"This is a text file with a .jpg name.\n" * 10,
        "animated.gif": gif.getvalue(),
        "huge.png": huge_png_header(),
    }


def tricky_good_inputs() -> dict[str, bytes]:
    """Inputs that look odd but must work."""
    g = gray_photo(size=96)
    pal = Image.fromarray(g).convert("P")
    cmyk = Image.fromarray(g).convert("CMYK")
    sixteen = io.BytesIO()
    tifffile.imwrite(sixteen, g.astype(np.uint16) * 257, compression="zlib")
    twelve = (g.astype(np.uint32) * 4095 // 255).astype(np.uint16)
    return {
        "palette-alpha.png": encode(pal, "PNG", transparency=0),
        "cmyk.jpg": encode(cmyk, "JPEG"),
        "scan16.tif": sixteen.getvalue(),
        "master12.jp2": imagecodecs.jpeg2k_encode(twelve, codecformat=imagecodecs.JPEG2K.CODEC.JP2, bitspersample=12),
    }


def colour_photo_bytes() -> bytes:
    return encode(skimage.data.astronaut(), "JPEG", quality=90)


def ffmpeg(*args: str) -> None:
    """Run ffmpeg quietly (make test media); raises if it fails."""
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


def audio_digest(path: Path) -> str:
    """sha256 of every audio packet of ``path``, as stored (bit-exact copies compare equal)."""
    data = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-map", "0:a", "-c", "copy", "-f", "data", "-"],
                          capture_output=True, check=True).stdout
    return hashlib.sha256(data).hexdigest()


def video_stream(path: Path) -> dict:
    """ffprobe's description of the first video stream of ``path``, packets counted."""
    from colorize_core.film import stream_info

    return next(s for s in stream_info(path)["streams"] if s["codec_type"] == "video")


COPYRIGHT = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/

Files: *
Copyright: 2020 Someone
License: GPL-2+

Files: usr/share/backgrounds/test/photo-b.jpg
Copyright: 2021 Someone Else
License: CC-BY-SA-4.0
"""


def build_deb(folder: Path, name: str = "test-wallpapers", version: str = "1.0-1") -> Path:
    root = folder / "pkg"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(f"Package: {name}\nVersion: {version}\nArchitecture: all\n"
                                             "Maintainer: t <t@t>\nDescription: test\n")
    imgs = root / "usr/share/backgrounds/test"
    imgs.mkdir(parents=True)
    Image.fromarray(skimage.data.astronaut()).save(imgs / "photo-a.jpg")
    Image.fromarray(skimage.data.astronaut()).resize((256, 256)).save(imgs / "photo-a_256x256.jpg")  # a smaller size
    Image.fromarray(skimage.data.coffee()).save(imgs / "photo-b.jpg")
    Image.fromarray(skimage.data.coffee()[:, ::-1]).save(imgs / "photo-b-flipped.jpg")  # a near-duplicate
    Image.fromarray(np.dstack([skimage.data.camera()] * 3)).save(imgs / "gray.png")  # no colour: left out
    doc = root / "usr/share/doc" / name
    doc.mkdir(parents=True)
    (doc / "copyright").write_text(COPYRIGHT)
    deb = folder / f"{name}_{version}_all.deb"
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(root), str(deb)], check=True,
                   capture_output=True)
    return deb


@pytest.fixture(scope="session")
def dataset(tmp_path_factory) -> Path:  # noqa: ANN001
    tmp = tmp_path_factory.mktemp("ds")
    build_deb(tmp / "debs")
    mp = pytest.MonkeyPatch()
    mp.setattr(datasets, "DEBIAN_PACKAGES", ["test-wallpapers"])
    try:
        datasets.assemble_dataset(tmp / "data", debs_dir=tmp / "debs", short_side=128)
    finally:
        mp.undo()
    return tmp / "data"


def add_dpx_industry_headers(path: Path, rate: float | None = None, timecode: int | None = None,
                             transfer: int | None = None, black: float | None = None,
                             white: float | None = None) -> None:
    """Give a DPX frame written by ffmpeg (which writes no industry headers) the motion-picture
    and television headers a film scanner writes (SMPTE 268M): ``rate`` in both, ``timecode`` as
    BCD (0xHHMMSSFF), reference ``black`` and ``white`` levels (code values at the frame's own
    depth); the rest undefined (all ones). ``transfer``: the image element's transfer
    characteristic code (1 printing density; ffmpeg writes 2, linear)."""
    data = path.read_bytes()
    order = ">" if data[:4] == b"SDPX" else "<"
    offset, = struct.unpack(order + "I", data[4:8])
    industry = bytearray(b"\xff" * 384)
    if rate is not None:
        industry[60:64] = struct.pack(order + "f", rate)
        industry[276:280] = struct.pack(order + "f", rate)
    if timecode is not None:
        industry[256:260] = struct.pack(order + "I", timecode)
    if black is not None and white is not None:
        industry[288:292] = struct.pack(order + "f", black)
        industry[300:304] = struct.pack(order + "f", white)
    head = bytearray(data[:1664])
    head[4:8] = struct.pack(order + "I", offset + 384)
    head[16:20] = struct.pack(order + "I", len(data) + 384)
    head[28:32] = struct.pack(order + "I", 384)
    if transfer is not None:
        head[801] = transfer
    path.write_bytes(bytes(head) + bytes(industry) + data[1664:])
