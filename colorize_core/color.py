"""Colour handling in CIE Lab (D65, sRGB), via OpenCV's float32 conversions.

L is on 0-100, a and b roughly on -110..110. The original full-resolution L of an input is
what every output is built on: predicted ab is upsampled and merged with it.
"""

from __future__ import annotations

import functools
import io
import math
import struct
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from colorize_core.errors import UnsupportedMediaError

L_MAX = 100.0
_CV_DEPTH = {np.dtype(np.uint8): cv2.CV_8U, np.dtype(np.uint16): cv2.CV_16U}


def _check(image: np.ndarray) -> None:
    if image.dtype not in (np.uint8, np.uint16):
        raise UnsupportedMediaError(f"pixel type {image.dtype} (expected uint8 or uint16)")
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise UnsupportedMediaError(f"image shape {image.shape} (expected HxW gray or HxWx3 RGB)")


@functools.cache
def _gray_to_l_table(levels: int) -> np.ndarray:
    v = np.linspace(0.0, 1.0, levels, dtype=np.float32)
    rgb = np.repeat(v[:, None, None], 3, axis=2)
    return np.ascontiguousarray(cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab)[:, 0, 0])


def to_float_rgb(image: np.ndarray) -> np.ndarray:
    """uint8/uint16 gray or RGB -> float32 RGB in [0, 1]."""
    _check(image)
    scale = np.float32(1.0 / np.iinfo(image.dtype).max)
    rgb = image.astype(np.float32) * scale
    return cv2.cvtColor(rgb, cv2.COLOR_GRAY2RGB) if rgb.ndim == 2 else rgb


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """float32 RGB in [0, 1] -> float32 Lab."""
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab)


def luminance(image: np.ndarray) -> np.ndarray:
    """L (float32, 0-100) of a gray or RGB uint8/uint16 image; exact lookup for gray."""
    _check(image)
    if image.ndim == 2:
        return _gray_to_l_table(np.iinfo(image.dtype).max + 1)[image]
    return rgb_to_lab(to_float_rgb(image))[..., 0]


@dataclass(frozen=True)
class PrintingDensity:
    """How a printing-density (Cineon log) scan converts to light for display: reference black
    and white as 10-bit code values, density per 10-bit code value and the negative's gamma.
    The defaults are Kodak's standard conversion; a scanner calibrated otherwise declares its
    own. ``origin`` says where the values came from (for notes; not part of the conversion).
    Raises ValueError for values no scan could have."""

    black: float = 95.0
    white: float = 685.0
    density: float = 0.002
    gamma: float = 0.6
    origin: str = field(default="Kodak's standard values", compare=False)

    def __post_init__(self) -> None:
        values = {"black": self.black, "white": self.white, "density": self.density, "gamma": self.gamma}
        for name, value in values.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"printing density {name} must be a number, not {value!r}")
        if not 0 <= self.black < self.white <= 1023:
            raise ValueError(f"printing density black {self.black:g} and white {self.white:g} must be 10-bit code "
                             "values (0-1023), black below white")
        if not 0.0005 <= self.density <= 0.01:
            raise ValueError(f"printing density {self.density:g} per code value is outside 0.0005-0.01 "
                             "(Kodak's: 0.002)")
        if not 0.2 <= self.gamma <= 3:
            raise ValueError(f"printing density gamma {self.gamma:g} is outside 0.2-3 (Kodak's: 0.6)")

    def describe(self) -> str:
        return (f"black {self.black:g}, white {self.white:g}, {self.density:g} density per code value, "
                f"gamma {self.gamma:g}")


KODAK = PrintingDensity()


@functools.cache
def _printing_density_l_table(levels: int, conversion: PrintingDensity) -> np.ndarray:
    cv = np.linspace(0.0, 1023.0, levels)
    slope = conversion.density / conversion.gamma
    gain = 1.0 / (1.0 - 10.0 ** ((conversion.black - conversion.white) * slope))
    linear = np.clip(10.0 ** ((cv - conversion.white) * slope) * gain - (gain - 1.0), 0.0, 1.0).astype(np.float32)
    rgb = np.repeat(linear[:, None, None], 3, axis=2)
    return np.ascontiguousarray(cv2.cvtColor(rgb, cv2.COLOR_LRGB2Lab)[:, 0, 0])


def printing_density_luminance(image: np.ndarray, conversion: PrintingDensity = KODAK) -> np.ndarray:
    """L (float32, 0-100) of a gray printing-density (Cineon log) scan as it looks once converted
    for display (by ``conversion``: reference black gives L 0, reference white L 100): the
    picture the model is meant to see. The scan's own L (:func:`luminance`) stays the L of
    every output."""
    _check(image)
    if image.ndim != 2:
        raise UnsupportedMediaError("a printing-density view is of gray frames")
    return _printing_density_l_table(np.iinfo(image.dtype).max + 1, conversion)[image]


def lab_to_rgb(lum: np.ndarray, ab: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Merge L (HxW) with ab (HxWx2, same size) and return RGB of ``dtype`` (uint8/uint16)."""
    # OpenCV end to end: one buffer, converted in place, then scaled, rounded and saturated into
    # the output type. NumPy's chain of whole-frame temporaries took twice as long per film frame.
    lab = cv2.merge([np.asarray(lum, np.float32), np.asarray(ab, np.float32)])
    cv2.cvtColor(lab, cv2.COLOR_Lab2RGB, dst=lab)
    top = float(np.iinfo(dtype).max)
    return cv2.multiply(lab, (top, top, top, 0.0), dtype=_CV_DEPTH[np.dtype(dtype)])


def resize_ab(ab: np.ndarray, height: int, width: int) -> np.ndarray:
    """Upsample (or downsample) an ab field to (height, width) bilinearly."""
    if ab.shape[:2] == (height, width):
        return ab
    interp = cv2.INTER_LINEAR if height >= ab.shape[0] else cv2.INTER_AREA
    return cv2.resize(ab, (width, height), interpolation=interp)


def chroma_spread(image: np.ndarray, max_side: int = 256) -> float:
    """Spread of the ab values around their mean (Lab units), on a downscaled copy.

    Gray scans give ~0 and toned prints (sepia, selenium) a small spread around one hue;
    photographs in colour give tens. Used to flag inputs that are already in colour.
    """
    _check(image)
    if image.ndim == 2:
        return 0.0
    h, w = image.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    small = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    ab = rgb_to_lab(to_float_rgb(small))[..., 1:].reshape(-1, 2)
    return float(np.sqrt(((ab - ab.mean(axis=0)) ** 2).sum(axis=1).mean()))


D50 = (0.9642, 1.0, 0.8249)   # the ICC connection space's white


def icc_profile(kind: bytes, name: str, tags: dict[bytes, bytes]) -> bytes:
    """An ICC (v2) profile: ``kind`` its class, colour space and connection space as the header
    names them (``b"mntrGRAYXYZ "``), ``name`` its description, D50 its white, and ``tags``
    (signature: data) its other tags, each padded to a 4-byte boundary."""
    white = b"".join(struct.pack(">i", round(v * 65536)) for v in D50)
    text = name.encode("ascii", "replace") + b"\0"
    tags = {b"desc": b"desc" + bytes(4) + struct.pack(">I", len(text)) + text + bytes(8 + 3 + 67),
            b"wtpt": b"XYZ " + bytes(4) + white, **tags}
    start = 128 + 4 + 12 * len(tags)
    table, data = struct.pack(">I", len(tags)), b""
    for sig, body in tags.items():
        body += b"\0" * (-len(body) % 4)
        table += sig + struct.pack(">II", start + len(data), len(body))
        data += body
    header = (struct.pack(">I", start + len(data)) + b"lcms" + struct.pack(">I", 0x02100000) + kind
              + bytes(12) + b"acsp" + bytes(24) + bytes(4) + white + bytes(4) + bytes(44))
    return header + table + data


def gray_profile(trc: float | np.ndarray | bytes, name: str) -> bytes:
    """An ICC (v2) monitor profile of a gray space: its tone curve ``trc`` (a gamma, the
    curve's values on 0-1 at evenly spaced inputs: an ICC ``curv``, or another profile's tone
    curve tag as it is stored: ``curv`` or ``para``), D50 white. What LittleCMS converts to and
    from; a profile is data describing a space, not a conversion."""
    if isinstance(trc, bytes):
        tone = trc
    elif isinstance(trc, float):
        tone = b"curv" + bytes(4) + struct.pack(">IH", 1, round(trc * 256))
    else:
        values = np.clip(np.round(np.asarray(trc, dtype=np.float64) * 65535), 0, 65535).astype(">u2")
        tone = b"curv" + bytes(4) + struct.pack(">I", len(values)) + values.tobytes()
    return icc_profile(b"mntrGRAYXYZ ", name, {b"kTRC": tone, b"cprt": b"text" + bytes(4) + b"No copyright, use freely\0"})


def profile_name(icc: bytes) -> str:
    """An ICC profile's description, as messages and notes name it."""
    from PIL import ImageCms

    try:
        return ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc))).strip() or "unnamed"
    except (ImageCms.PyCMSError, OSError, TypeError):
        return "unreadable"


def icc_tags(icc: bytes) -> dict[bytes, bytes]:
    """An ICC profile's tags (their data) by signature, from its tag table. ValueError for a
    table that runs past the profile's end."""
    if len(icc) < 132:
        raise ValueError("shorter than an ICC profile's header")
    count, = struct.unpack(">I", icc[128:132])
    if 132 + 12 * count > len(icc):
        raise ValueError(f"its tag table of {count} tags runs past its end")
    tags = {}
    for k in range(count):
        sig, offset, size = struct.unpack(">4sII", icc[132 + 12 * k:144 + 12 * k])
        if offset + size > len(icc):
            raise ValueError(f"its {sig.decode('latin-1')!r} tag runs past its end")
        tags[sig] = icc[offset:offset + size]
    return tags


# sRGB's primaries as an ICC profile states them (XYZ, adapted to its D50 connection space)
SRGB_COLORANTS = ((0.4361, 0.2225, 0.0139), (0.3851, 0.7169, 0.0971), (0.1431, 0.0606, 0.7141))


@functools.lru_cache(maxsize=16)
def rgb_neutral(icc: bytes) -> bytes | None:
    """What an RGB ICC profile means for a photograph whose colours the model replaces, that
    is for its tones: None for sRGB's own space (its primaries, and its tone curve within a
    level at 8 bits); else, for another matrix/TRC space (Adobe RGB, ProPhoto, eciRGB, Display
    P3...), a gray profile of its neutral tone curve, through which :func:`gray_to_srgb` reads
    its tones as sRGB's. ValueError for a profile whose tones this cannot say (a LUT-based
    one, one whose three tone curves differ, one that cannot be read)."""
    tags = icc_tags(icc)
    missing = [t.decode() for t in (b"rXYZ", b"gXYZ", b"bXYZ", b"rTRC", b"gTRC", b"bTRC") if t not in tags]
    if missing:
        raise ValueError(f"not a matrix/TRC profile (no {', '.join(missing)} tag)")
    if not tags[b"rTRC"] == tags[b"gTRC"] == tags[b"bTRC"]:
        raise ValueError("its red, green and blue tone curves differ")
    try:
        colorants = np.array([struct.unpack(">3i", tags[t][8:20]) for t in (b"rXYZ", b"gXYZ", b"bXYZ")]) / 65536
    except struct.error:
        raise ValueError("a colorant tag too short for its XYZ") from None
    neutral = gray_profile(tags[b"gTRC"], "neutral tones")
    levels = np.arange(256, dtype=np.uint8)[None, :]
    table, _ = gray_to_srgb(levels, neutral)
    if np.allclose(colorants, SRGB_COLORANTS, atol=0.005) and np.abs(table.astype(int) - levels).max() <= 1:
        return None
    return neutral


def to_srgb(pixels: np.ndarray, icc: bytes) -> np.ndarray:
    """8-bit RGB or CMYK (HxWx3, HxWx4: 0 is no ink) in the space its ICC profile ``icc``
    describes, converted to sRGB by LittleCMS (relative colorimetric, black point compensated,
    as Photoshop converts); RGB out. ValueError for a profile that cannot be used."""
    from PIL import Image, ImageCms

    mode = {3: "RGB", 4: "CMYK"}[pixels.shape[2]]
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        transform = ImageCms.buildTransform(source, ImageCms.createProfile("sRGB"), mode, "RGB",
                                            ImageCms.Intent.RELATIVE_COLORIMETRIC,
                                            flags=ImageCms.Flags.BLACKPOINTCOMPENSATION)
        image = Image.frombytes(mode, (pixels.shape[1], pixels.shape[0]), np.ascontiguousarray(pixels).tobytes())
        return np.asarray(ImageCms.applyTransform(image, transform))
    except (ImageCms.PyCMSError, OSError, TypeError, ValueError) as exc:
        raise ValueError(str(exc)) from None


@functools.cache
def _srgb_gray() -> Any:
    """A gray space with sRGB's tone curve: the gray of an sRGB image."""
    from PIL import ImageCms

    v = np.linspace(0.0, 1.0, 4096)
    eotf = np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)
    return ImageCms.ImageCmsProfile(io.BytesIO(gray_profile(eotf, "sRGB gray")))


def gray_to_srgb(gray: np.ndarray, icc: bytes) -> tuple[np.ndarray, str]:
    """A gray image's values (uint8 or uint16, HxW) in the gray space its ICC profile ``icc``
    describes (Photoshop's "Dot Gain 20%", "Gray Gamma 1.8"...), converted by LittleCMS to the
    same tones in sRGB's gray (relative colorimetric, black point compensated, as Photoshop
    converts), at the image's own depth; and the profile's name. ValueError for a profile that
    cannot be used."""
    from PIL import Image, ImageCms

    mode = {np.dtype(np.uint8): "L", np.dtype(np.uint16): "I;16"}[gray.dtype]
    levels = np.arange(np.iinfo(gray.dtype).max + 1, dtype=gray.dtype)[None, :]   # every value, once
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        name = profile_name(icc)
        # Unoptimised: LittleCMS's precalculated curves are 1.4/255 off near black at 16 bits
        transform = ImageCms.buildTransform(source, _srgb_gray(), mode, mode, ImageCms.Intent.RELATIVE_COLORIMETRIC,
                                            flags=ImageCms.Flags.BLACKPOINTCOMPENSATION | ImageCms.Flags.NOOPTIMIZE)
        table = np.asarray(ImageCms.applyTransform(Image.fromarray(levels), transform))[0].astype(gray.dtype)
    except (ImageCms.PyCMSError, OSError, TypeError) as exc:
        raise ValueError(str(exc)) from None
    return table[gray], name
