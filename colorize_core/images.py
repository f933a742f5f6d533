"""Photo decoding and encoding with metadata: JPEG, PNG, WebP (Pillow/OpenCV), TIFF (tifffile)
and JPEG 2000 in its JP2 file format (OpenJPEG through imagecodecs; the boxes are read and
written here).

``decode_photo`` refuses declared dimensions over the limit before any pixel is decoded,
honours EXIF/TIFF orientation, and returns the pixels (uint8 or uint16, gray or RGB), an
optional alpha plane, and the metadata to carry over (ICC, EXIF, TIFF tags). ``encode_photo``
writes the colour rendition in the input's format and bit depth with that metadata and an XMP
packet labelling it as algorithmically colorized (IPTC DigitalSourceType).
"""

from __future__ import annotations

import html
import io
import itertools
import json
import os
import xml.etree.ElementTree as ET  # noqa: N817 - expat here refuses entity expansion attacks
import struct
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import cv2
import imagecodecs
import numpy as np
import tifffile
from PIL import Image, ImageOps, UnidentifiedImageError

from colorize_core.color import gray_to_srgb, profile_name, rgb_neutral, to_srgb
from colorize_core.errors import (CorruptMediaError, MediaError, MediaTooLargeError, UnrecognisedMediaError,
                                   UnsupportedMediaError)

DIGITAL_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia"
NOTE = ("Algorithmically colorized from a black-and-white original: the colours are a machine's "
        "estimate, not a record of the original scene. The original is kept unaltered.")
FORMATS = {"JPEG": ".jpg", "PNG": ".png", "TIFF": ".tif", "WEBP": ".webp", "JPEG2000": ".jp2"}
JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"
JP2_XMP_UUID = bytes.fromhex("be7acfcb97a942e89c71999491e3afac")   # Adobe's XMP box
JP2_THREADS = min(8, os.cpu_count() or 1)   # OpenJPEG's threads: 1.6x faster on 2 cores (12 MP, 16-bit RGB)
_TIFF_CARRY = {"Artist": 315, "Copyright": 33432, "DateTime": 306, "Make": 271, "Model": 272,
               "ImageDescription": 270, "DocumentName": 269, "HostComputer": 316}
_TIFF_ORIENT = {2: "fliplr", 3: "rot180", 4: "flipud", 5: "transpose", 6: "rot270", 7: "transverse", 8: "rot90"}


@dataclass
class Photo:
    pixels: np.ndarray                 # HxW or HxWx3, uint8 or uint16, orientation applied
    format: str                        # JPEG | PNG | TIFF | WEBP
    alpha: np.ndarray | None = None    # HxW, same dtype as pixels
    icc: bytes | None = None           # sRGB's own profile only: the rendition's (others are converted on decoding)
    exif: bytes | None = None          # as a JPEG holds it, orientation reset to 1 (a TIFF's: its EXIF and GPS directories)
    tiff_tags: dict[str, Any] = field(default_factory=dict)
    tiff_compression: str | None = None
    resolution: tuple[float, float] | None = None
    notes: list[str] = field(default_factory=list)
    sample_bits: int | None = None     # JPEG 2000 samples of other than 8 or 16 bits (12, say), written back so
    xmp: bytes | None = None           # the source's XMP packet: its descriptive metadata is carried over
    iptc: bytes | None = None          # the source's IPTC-IIM records (a JPEG's in APP13, a TIFF's tag 33723)

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def bit_depth(self) -> int:
        return self.sample_bits or (16 if self.pixels.dtype == np.uint16 else 8)

    @property
    def channels(self) -> str:
        return "gray" if self.pixels.ndim == 2 else "rgb"


def _check_size(width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise CorruptMediaError(f"declared size {width}x{height} is empty")
    if width * height > max_pixels:
        raise MediaTooLargeError(f"declared size {width}x{height} ({width * height / 1e6:.0f} MP) exceeds the "
                                 f"limit of {max_pixels / 1e6:.0f} MP; refused before decoding")


def _with_profile(pixels: np.ndarray, icc: bytes | None, notes: list[str]) -> tuple[np.ndarray, bytes | None]:
    """A photo's pixels and the ICC profile its rendition carries, from the profile it came
    with: an RGB profile is carried. A gray space's (Photoshop's "Dot Gain 20%" is its default for
    grayscale) has the gray values converted to sRGB's gray, so that the colour rendition (sRGB)
    shows the tones a colour-managed viewer shows of the original, not those of its raw values
    (midtones several L* apart), noted. Any other, or one that cannot be used, is noted."""
    space = icc[16:20] if icc and len(icc) >= 20 else None
    if space is None:
        return pixels, None
    if space == b"RGB ":
        return _with_rgb_profile(pixels, icc, notes)
    if space == b"GRAY" and pixels.ndim == 2:
        try:
            converted, name = gray_to_srgb(pixels, icc)
        except ValueError as exc:
            notes.append(f"gray ICC profile that cannot be used ({exc}): the values are read as sRGB's gray")
            return pixels, None
        notes.append(f"gray ICC profile {name!r}: the values converted to sRGB's gray, so that the colour rendition "
                     "shows the original's tones as a colour-managed viewer shows them")
        return converted, None
    notes.append(f"input ICC profile (colour space {space.decode('latin-1', 'replace').strip()!r}) "
                 "does not apply to a colour rendition: output is sRGB")
    return pixels, None


def _with_rgb_profile(pixels: np.ndarray, icc: bytes, notes: list[str]) -> tuple[np.ndarray, bytes | None]:
    """:func:`_with_profile` of an RGB profile: sRGB's own is carried. A photograph in another
    space (Adobe RGB, ProPhoto...) is converted to sRGB by LittleCMS (at 16 bits, its tones
    through the profile's neutral tone curve: a gray scan's colours are all the model's) and
    its rendition is sRGB: the model's colours, computed in sRGB, carried under another space's
    profile would show more or less saturated than they are."""
    try:
        neutral, why = rgb_neutral(icc), None
        if neutral is None:
            return pixels, icc
    except ValueError as exc:
        neutral, why = None, str(exc)
    name = profile_name(icc)
    try:
        if pixels.ndim == 3 and pixels.dtype == np.uint8:
            converted, how = to_srgb(pixels, icc), "the photograph converted to sRGB by LittleCMS"
        elif neutral is not None:
            converted, how = gray_to_srgb(pixels, neutral)[0], ("the photograph's tones converted to sRGB's through "
                                                                "its neutral tone curve")
        else:
            raise ValueError(why)
    except ValueError as exc:
        notes.append(f"RGB ICC profile {name!r} whose tones cannot be read here ({exc}): the values are read as "
                     "sRGB's, and the colour rendition is sRGB")
        return pixels, None
    notes.append(f"RGB ICC profile {name!r}, not sRGB: {how}; the colour rendition is sRGB, as the model's colours are")
    return converted, None


# ISO base media file brands of still images (ftyp's major brand): phones' and cameras' formats
_HEIF_BRANDS = {b"heic": "HEIC (HEIF with HEVC)", b"heix": "HEIC (HEIF with HEVC)", b"heim": "HEIC (HEIF with HEVC)",
                b"heis": "HEIC (HEIF with HEVC)", b"mif1": "HEIF", b"msf1": "HEIF", b"avif": "AVIF", b"avis": "AVIF"}


def _other_image_kind(data: bytes) -> str | None:
    """What a photograph in a format not read here is, by its signature (HEIC, AVIF, JPEG XL),
    so that it fails as an unsupported image, saying which, not as content that is no image."""
    if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS:
        return f"{_HEIF_BRANDS[data[8:12]]} image"
    if data.startswith((b"\xff\x0a", b"\x00\x00\x00\x0cJXL \x0d\x0a\x87\x0a")):   # a codestream, a container
        return "JPEG XL image"
    return None


# A JPEG frame's coding process, by its start-of-frame marker (ITU T.81, table B.1).
_JPEG_PROCESSES = {0xC0: "baseline", 0xC1: "extended sequential", 0xC2: "progressive", 0xC3: "lossless",
                   0xC5: "hierarchical sequential", 0xC6: "hierarchical progressive", 0xC7: "hierarchical lossless",
                   0xC9: "arithmetic-coded sequential", 0xCA: "arithmetic-coded progressive",
                   0xCB: "arithmetic-coded lossless", 0xCD: "hierarchical arithmetic-coded sequential",
                   0xCE: "hierarchical arithmetic-coded progressive", 0xCF: "hierarchical arithmetic-coded lossless"}


def _jpeg_not_read(data: bytes) -> MediaError:
    """Why a file that starts as a JPEG is none Pillow opens: its frame header read (marker by
    marker up to the first start-of-frame). A 12- or 16-bit JPEG (medical, scientific and some
    scanning systems write them, lossless as a rule) is a valid file of a kind not read here:
    UnsupportedMediaError, saying which. Else CorruptMediaError."""
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            break
        marker = data[at + 1]
        if marker == 0xFF:   # fill byte
            at += 1
            continue
        length = int.from_bytes(data[at + 2:at + 4], "big")
        if marker in _JPEG_PROCESSES and at + 9 <= len(data):
            bits = data[at + 4]
            if bits != 8:
                return UnsupportedMediaError(
                    f"{bits}-bit {_JPEG_PROCESSES[marker]} JPEG (SOF{marker - 0xC0}): only 8-bit JPEG is read; "
                    f"convert it without loss to a 16-bit TIFF or PNG to colorize it")
            break
        if marker in (0xD9, 0xDA) or length < 2:   # end of image, or the scan before any frame header
            break
        at += 2 + length
    return CorruptMediaError("corrupt JPEG data: it starts as a JPEG, but no frame header that can be read follows")


def _mpo_primary(im: Image.Image, frames: int, notes: list[str]) -> int:
    """A JPEG with more images in its Multi-Picture Format data (CIPA DC-007): the camera's large
    previews, or a gain map (Ultra HDR), beside the photograph, which is the first: 1, with a
    note. A stereo pair, panorama or multi-angle set is several views: refused."""
    entries = getattr(im, "mpinfo", {}).get(0xB002) or []
    others = [str(e.get("Attribute", {}).get("MPType", "Undefined")) for e in entries[1:]]
    views = sorted({t for t in others if t.startswith("Multi-Frame")})
    if views or len(others) != frames - 1:
        raise UnsupportedMediaError(f"a multi-picture JPEG (MPO) of {frames} images"
                                    + (f" ({', '.join(views)})" if views else "") + ": not a single photograph")
    notes.append(f"the JPEG's {frames - 1} other image(s) in its Multi-Picture Format data "
                 f"({', '.join(sorted(set(others)))}: previews or a gain map) are not carried over")
    return 1


def decode_photo(data: bytes, max_pixels: int = 250_000_000) -> Photo:
    """Decode a still photograph. Raises CorruptMediaError, UnsupportedMediaError, MediaTooLargeError."""
    if not data:
        raise CorruptMediaError("empty file (0 bytes)")
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return _decode_tiff(data, max_pixels)
    Image.MAX_IMAGE_PIXELS = None  # our own limit applies, on the header, below
    try:
        im = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        if data.startswith(b"\xff\xd8\xff"):
            raise _jpeg_not_read(data) from None
        if (kind := _other_image_kind(data)) is not None:
            raise UnsupportedMediaError(f"{kind}: not a supported photo format (JPEG, PNG, TIFF, WebP, JPEG 2000); "
                                        "convert it without loss, to a 16-bit TIFF or PNG, to colorize it") from None
        raise UnrecognisedMediaError("not a recognised image: the content matches no JPEG, PNG, TIFF, WebP or "
                                "JPEG 2000 signature") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise CorruptMediaError(f"unreadable image header: {exc}") from None
    fmt = "JPEG" if im.format == "MPO" else im.format
    if fmt == "JPEG2000":
        if not data.startswith(JP2_SIGNATURE):
            raise UnsupportedMediaError("a bare JPEG 2000 codestream (.j2k, .j2c) is not supported: "
                                        "only the JP2 file format (.jp2)")
        _check_size(*im.size, max_pixels)
        return _decode_jp2(data)
    frames = getattr(im, "n_frames", 1)
    if fmt == "GIF":
        kind = f"animated GIF ({frames} frames)" if frames > 1 else "GIF"
        raise UnsupportedMediaError(f"{kind}: not a supported photo format (JPEG, PNG, TIFF, WebP, JPEG 2000)")
    if fmt not in FORMATS:
        raise UnsupportedMediaError(f"{fmt} images are not supported (JPEG, PNG, TIFF, WebP, JPEG 2000)")
    notes: list[str] = []
    if fmt == "JPEG" and frames > 1:
        frames = _mpo_primary(im, frames, notes)
    if frames > 1:
        raise UnsupportedMediaError(f"animated {fmt} with {frames} frames: not a still photograph")
    _check_size(*im.size, max_pixels)
    try:
        im.load()
        iptc = next((_iim_from_irb(data) for marker, data in getattr(im, "applist", []) if marker == "APP13"
                     and data.startswith(PHOTOSHOP)), None)
        icc = im.info.get("icc_profile")   # as it came: applied once the pixels are read (_with_profile)
        exif = im.getexif()
        if im.mode == "CMYK":
            im = Image.fromarray(_cmyk_to_rgb(np.asarray(im), icc, notes))
            icc = None
        im = ImageOps.exif_transpose(im) or im
    except (OSError, SyntaxError, ValueError, struct.error) as exc:
        raise CorruptMediaError(f"truncated or corrupt {fmt} data: {exc}") from None
    had_exif = len(exif) > 0
    exif[0x0112] = 1  # the pixels are upright now
    if 0x8769 in exif:   # as _rendition_exif: the rendition's colour space is sRGB's, its size its own
        directory = exif.get_ifd(0x8769)
        for tag in (*_EXIF_SIZE, _INTEROPERABILITY):
            directory.pop(tag, None)
        if _EXIF_COLOUR_SPACE in directory:
            directory[_EXIF_COLOUR_SPACE] = 1
    exif_bytes = exif.tobytes() if had_exif else None
    alpha = None
    if fmt == "PNG" and im.mode in ("RGB", "RGBA", "LA", "I;16", "I") and _png_bit_depth(data) == 16:
        pixels, alpha = _decode_png16(data, exif)
    else:
        if im.mode == "P":
            im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        elif im.mode in ("L", "RGB") and "transparency" in im.info:   # a PNG's tRNS: a transparent gray or colour
            im = im.convert("LA" if im.mode == "L" else "RGBA")
        elif im.mode == "1":
            raise _bilevel(fmt)
        elif im.mode == "PA":
            im = im.convert("RGBA")
        if im.mode in ("RGBA", "LA"):
            alpha = np.asarray(im.getchannel("A"))
            im = im.convert("RGB" if im.mode == "RGBA" else "L")
        if im.mode in ("I;16", "I;16B", "I;16L", "I"):
            pixels = np.asarray(im).astype(np.uint16)
        elif im.mode in ("L", "RGB"):
            pixels = np.asarray(im)
        elif im.mode in ("YCbCr", "LAB", "HSV"):
            pixels = np.asarray(im.convert("RGB"))
        else:
            raise UnsupportedMediaError(f"{fmt} pixel mode {im.mode!r} is not supported")
    if alpha is not None and alpha.min() == alpha.max() == np.iinfo(alpha.dtype).max:
        alpha = None  # fully opaque: no alpha to keep
    pixels, icc = _with_profile(pixels, icc, notes)
    dpi = im.info.get("dpi")
    xmp = im.info.get("xmp")
    return Photo(np.ascontiguousarray(pixels), fmt, alpha, icc, exif_bytes,
                 resolution=(float(dpi[0]), float(dpi[1])) if dpi else None, notes=notes,
                 xmp=xmp if isinstance(xmp, bytes) and xmp else None, iptc=iptc)


def _cmyk_to_rgb(cmyk: np.ndarray, icc: bytes | None, notes: list[str]) -> np.ndarray:
    """An 8-bit CMYK photograph (a press archive's, ready for print) as sRGB: through its CMYK
    profile by LittleCMS, else (no profile, or one that cannot be used) by the plain formula
    (Pillow's: 255 minus ink), noted either way."""
    if icc and icc[16:20] == b"CMYK":
        try:
            rgb = to_srgb(cmyk, icc)
            notes.append(f"CMYK photograph converted to sRGB by LittleCMS through its profile {profile_name(icc)!r}")
            return rgb
        except ValueError as exc:
            reason = f"its CMYK profile cannot be used: {exc}"
    else:
        reason = "it carries no CMYK profile"
    notes.append(f"CMYK photograph converted to RGB by the plain formula ({reason}): its tones are approximate")
    return np.asarray(Image.frombytes("CMYK", (cmyk.shape[1], cmyk.shape[0]), cmyk.tobytes()).convert("RGB"))


def _bilevel(fmt: str) -> UnsupportedMediaError:
    return UnsupportedMediaError(f"1-bit (bilevel) {fmt}: a black-and-white line or halftone scan has no grey tones "
                                 "to colorize (8 or 16 bits)")


def _png_bit_depth(data: bytes) -> int:
    return data[24] if len(data) > 25 and data[12:16] == b"IHDR" else 8


def _decode_png16(data: bytes, exif: Image.Exif) -> tuple[np.ndarray, np.ndarray | None]:
    """A 16-bit PNG's samples as stored (Pillow reads some at 8 bits): gray or RGB, and its alpha,
    from an alpha channel or a tRNS chunk's transparent value (libpng through imagecodecs)."""
    try:
        arr = imagecodecs.png_decode(data)
    except Exception as exc:  # noqa: BLE001 - imagecodecs raises its own error types
        raise CorruptMediaError(f"truncated or corrupt 16-bit PNG data: {exc}") from None
    alpha = None
    if arr.ndim == 3:
        if arr.shape[2] in (2, 4):
            alpha, arr = arr[..., -1], arr[..., :-1]
        if arr.shape[2] == 1:
            arr = arr[..., 0]
    orientation = exif.get(0x0112, 1)
    return _orient(np.ascontiguousarray(arr), orientation), None if alpha is None else _orient(alpha, orientation)


def _orient(arr: np.ndarray, orientation: int) -> np.ndarray:
    op = _TIFF_ORIENT.get(int(orientation or 1))
    if op is None:
        return arr
    return {"fliplr": lambda a: a[:, ::-1], "rot180": lambda a: a[::-1, ::-1], "flipud": lambda a: a[::-1],
            "transpose": lambda a: a.swapaxes(0, 1), "rot270": lambda a: np.rot90(a, -1),
            "transverse": lambda a: np.rot90(a, 2).swapaxes(0, 1), "rot90": lambda a: np.rot90(a, 1)}[op](arr)


_DNG_VERSION = 50706   # the tag a DNG (Adobe's raw format, TIFF-based) opens with
_SUB_IFDS = 330        # images under a page: a raw file's sensor data, a pyramid's levels


def _subfile_type(page: Any) -> int:
    """A TIFF page's NewSubfileType: bit 0 a reduced-resolution version (a preview), bit 2 a
    transparency mask; 0 for the image itself."""
    tag = page.tags.get("NewSubfileType")
    return int(tag.value) if tag is not None else 0


def _decode_tiff(data: bytes, max_pixels: int) -> Photo:
    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            if _DNG_VERSION in tif.pages[0].tags or data[8:10] == b"CR":
                raise UnsupportedMediaError("a camera raw file (DNG, CR2): the sensor's data, to be developed, not a "
                                            "photograph; develop it to a TIFF in a raw developer and add that")
            kinds = [_subfile_type(p) for p in tif.pages]
            pages = [p for p, kind in zip(tif.pages, kinds) if not kind & 0b101]   # not a preview, not a mask
            if not pages and len(kinds) == 1 and _SUB_IFDS not in tif.pages[0].tags:
                pages, kinds = [tif.pages[0]], [0]   # one image, flagged a preview by mistake: nothing else to read
            if not pages:
                raise UnsupportedMediaError("TIFF with reduced-resolution (preview) pages only, its image kept in a "
                                            "form not read here (a camera raw file: NEF, ARW...?): develop it to a "
                                            "TIFF and add that")
            if len(pages) > 1:
                raise UnsupportedMediaError(f"multi-page TIFF with {len(pages)} pages: not a single photograph")
            page = pages[0]   # the image itself, whatever previews come before it
            left = sum(1 for kind in kinds if kind & 0b101)
            _check_size(page.imagewidth, page.imagelength, max_pixels)
            photometric = page.photometric.name
            palette = photometric == "PALETTE" and page.bitspersample in (1, 2, 4, 8, 16)
            if page.bitspersample == 1 and photometric in ("MINISWHITE", "MINISBLACK"):
                raise _bilevel("TIFF")
            if not palette and (page.dtype not in (np.uint8, np.uint16) or not 2 <= page.bitspersample <= 16):
                raise UnsupportedMediaError(f"TIFF with {page.bitspersample}-bit {page.dtype} samples "
                                            "is not supported (2 to 16 bits)")
            if photometric == "YCBCR" and page.compression.name != "JPEG":
                raise UnsupportedMediaError(f"YCbCr TIFF with {page.compression.name.lower()} compression is not "
                                            "supported (YCbCr only inside JPEG-compressed TIFF)")
            try:
                arr = page.asarray()
            except Exception as exc:
                if page.compression == tifffile.COMPRESSION.OJPEG:
                    raise UnsupportedMediaError(
                        f"old-style JPEG-in-TIFF (compression 6, withdrawn in 1995) that cannot be decoded ({exc}): "
                        "rewrite it with libtiff, which reads it (tiffcp -c lzw IN OUT)") from None
                raise
            if page.planarconfig == tifffile.PLANARCONFIG.SEPARATE and arr.ndim == 3:
                arr = np.moveaxis(arr, 0, -1)   # stored a plane per sample: samples last, as a contiguous TIFF's
            colormap = page.colormap if palette else None
            tags = {name: page.tags[code].value for name, code in _TIFF_CARRY.items() if code in page.tags}
            layout = _layout_description(tags.get("ImageDescription"))
            icc_tag = page.tags.get(34675)
            xmp_tag = page.tags.get(700)
            iptc_tag = page.tags.get(33723)
            iptc = _tag_bytes(iptc_tag.value) if iptc_tag is not None else None
            exif, exif_notes = _tiff_exif(data, tif, page)
            orientation = page.tags["Orientation"].value if "Orientation" in page.tags else 1
            res = None
            if "XResolution" in page.tags and "YResolution" in page.tags:
                xr, yr = page.tags["XResolution"].value, page.tags["YResolution"].value
                res = (xr[0] / xr[1], yr[0] / yr[1])
            compression = page.compression.name.lower()
            extrasamples = tuple(page.extrasamples)
            bits = page.bitspersample
    except (UnsupportedMediaError, MediaTooLargeError):
        raise
    except Exception as exc:  # tifffile raises many types for bad data
        raise CorruptMediaError(f"truncated or corrupt TIFF data: {exc}") from None
    notes: list[str] = []
    if left:
        notes.append(f"the TIFF's {left} reduced-resolution or transparency-mask page(s) beside its image are not "
                     "carried over")
    notes += exif_notes
    alpha = None
    if layout and tags.pop("ImageDescription", None) is not None and layout != "tifffile shape":
        # it would misdescribe the colour output; tifffile's {"shape": [...]} says nothing the pixels do not
        notes.append(f"the source's ImageDescription is {layout} metadata describing its own pixel layout: "
                     "not carried over")
    if compression == "jpeg":
        notes.append("JPEG-compressed TIFF: the colour rendition is written with lossless Deflate compression, "
                     "not recompressed as JPEG")
    if photometric == "YCBCR":
        photometric = "RGB"   # the JPEG decoder has converted its YCbCr to RGB
    elif photometric == "PALETTE":
        arr, photometric = _unpalette(arr, colormap), "RGB"
        if arr.ndim == 2:
            photometric = "MINISBLACK"
            notes.append("palette TIFF whose palette is all greys: read as a greyscale photograph")
        else:
            notes.append("palette TIFF: its colours read through the palette as an RGB photograph")
    if not palette and bits not in (8, 16):
        depth = 8 if bits < 8 else 16   # 4-bit grays of an old scanner; 10-, 12-, 14-bit camera and scanner data
        arr = _rescale(arr, 2 ** bits - 1, 2 ** depth - 1, np.uint8 if depth == 8 else np.uint16)
        notes.append(f"{bits}-bit samples read scaled to {depth} bits, the depth of the colour rendition")
    if photometric == "MINISWHITE":
        arr = np.iinfo(arr.dtype).max - arr
    elif photometric == "SEPARATED":
        if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 4:
            raise UnsupportedMediaError(f"CMYK TIFF of {arr.shape[2] if arr.ndim == 3 else 1} {arr.dtype} samples is "
                                        "not supported (8-bit CMYK is)")
        arr, photometric = _cmyk_to_rgb(np.ascontiguousarray(arr), bytes(icc_tag.value) if icc_tag else None, notes), "RGB"
        icc_tag = None
    elif photometric not in ("MINISBLACK", "RGB"):
        raise UnsupportedMediaError(f"TIFF photometric {photometric} is not supported")
    if arr.ndim == 3 and arr.shape[2] in (2, 4):
        if extrasamples[-1:] == (0,):   # ExtraSamples 0: unspecified data, no alpha
            notes.append("the TIFF's extra channel (ExtraSamples: unspecified; the infrared a film scanner records for "
                         "dust removal, as in SilverFast HDRi and VueScan raw scans) is not carried over: it is no "
                         "transparency")
            arr = arr[..., :-1]
        else:
            alpha, arr = arr[..., -1], arr[..., :-1]
        if arr.shape[2] == 1:
            arr = arr[..., 0]
    if arr.ndim == 3 and arr.shape[2] != 3 or arr.ndim not in (2, 3):
        raise UnsupportedMediaError(f"TIFF with sample layout {arr.shape} is not supported")
    arr = _orient(arr, orientation)
    alpha = None if alpha is None else _orient(alpha, orientation)
    arr, icc = _with_profile(arr, bytes(icc_tag.value) if icc_tag else None, notes)
    xmp = bytes(xmp_tag.value) if xmp_tag is not None and isinstance(xmp_tag.value, (bytes, bytearray)) else None
    return Photo(np.ascontiguousarray(arr), "TIFF", alpha, icc, exif, tiff_tags=tags, xmp=xmp or None, iptc=iptc,
                 tiff_compression=compression if compression in ("none", "lzw", "adobe_deflate", "deflate",
                                                                 "packbits", "zstd") else "adobe_deflate",
                 resolution=res, notes=notes)


# TIFF field types (TIFF 6, BigTIFF): bytes per value; and the unit a big-endian value is swapped by
_TIFF_TYPES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4, 16: 8, 17: 8, 18: 8}
_CLASSIC_TYPES = set(range(1, 14))   # the rest are BigTIFF's 64-bit ones
_TIFF_UNITS = {5: 4, 10: 4}   # rationals: two 4-byte numbers
_EXIF_IFDS = {34665: "EXIF", 34853: "GPS"}   # pointers in a TIFF's first directory (or an EXIF blob's)
_EXIF_SIZE = (40962, 40963)   # PixelXDimension, PixelYDimension: the source file's
_EXIF_COLOUR_SPACE = 40961    # a rendition's is sRGB's (1), whatever the source's was (65535: Adobe RGB...)
_MAKER_NOTE = 37500
_INTEROPERABILITY = 40965   # its directory names the source's colour space (R03: Adobe RGB)
_EXIF_NOT_CARRIED = (_MAKER_NOTE, _INTEROPERABILITY)   # offsets into the source file

IfdEntry = tuple[int, int, int, bytes]   # tag, type, count, value bytes (little-endian)


def _rendition_exif(entries: list[IfdEntry]) -> list[IfdEntry]:
    """What a rendition carries of an EXIF directory's ``entries``: not the source's pixel size,
    nor what points into the source file; its colour space sRGB's."""
    return [(tag, 3, 1, b"\x01\0") if tag == _EXIF_COLOUR_SPACE else (tag, kind, count, value)
            for tag, kind, count, value in entries
            if tag not in _EXIF_SIZE and tag not in _EXIF_NOT_CARRIED and kind in _CLASSIC_TYPES]


def _ifd_entries(data: bytes, offset: int, order: str, big: bool = False) -> list[IfdEntry]:
    """The entries of the TIFF directory at ``offset`` in ``data`` (a TIFF file, or the TIFF
    structure of an EXIF blob), their values little-endian; an entry of an unknown type is left
    out. ValueError for a directory that runs past the end."""
    count_size, entry_size, field = (8, 20, 8) if big else (2, 12, 4)
    number = "Q" if big else "I"
    if offset + count_size > len(data):
        raise ValueError(f"a directory at byte {offset}, past the end")
    n, = struct.unpack(order + ("Q" if big else "H"), data[offset:offset + count_size])
    if offset + count_size + entry_size * n > len(data):
        raise ValueError(f"the directory at byte {offset} runs past the end")
    entries = []
    for k in range(n):
        at = offset + count_size + entry_size * k
        tag, kind = struct.unpack(order + "HH", data[at:at + 4])
        count, = struct.unpack(order + number, data[at + 4:at + 4 + field])
        size = _TIFF_TYPES.get(kind)
        if size is None:
            continue
        length, value_at = size * count, at + 4 + field
        if length > field:
            value_at, = struct.unpack(order + number, data[value_at:value_at + field])
        value = data[value_at:value_at + length]
        if len(value) != length:
            raise ValueError(f"tag {tag}'s value runs past the end")
        if order == ">" and size > 1:
            unit = _TIFF_UNITS.get(kind, size)
            value = np.frombuffer(value, f">u{unit}").astype(f"<u{unit}").tobytes()
        entries.append((tag, kind, count, value))
    return entries


def _ifd_bytes(entries: list[IfdEntry], at: int) -> bytes:
    """``entries`` as a little-endian classic TIFF directory at file offset ``at``, the values
    that do not fit in their entries after it."""
    table_size = 2 + 12 * len(entries) + 4
    table, values = struct.pack("<H", len(entries)), b""
    for tag, kind, count, value in sorted(entries):
        if len(value) <= 4:
            field = value.ljust(4, b"\0")
        else:
            field = struct.pack("<I", at + table_size + len(values))
            values += value + b"\0" * (len(value) % 2)   # word-aligned
        table += struct.pack("<HHI", tag, kind, count) + field
    return table + struct.pack("<I", 0) + values


def _exif_blob(directories: dict[int, list[IfdEntry]]) -> bytes:
    """An EXIF blob (as a JPEG's APP1 holds it) of the EXIF and GPS ``directories``: a TIFF
    structure whose first directory points at them."""
    first_size = 2 + 12 * len(directories) + 4
    first, body = struct.pack("<H", len(directories)), b""
    for tag, entries in sorted(directories.items()):
        at = 8 + first_size + len(body)
        first += struct.pack("<HHII", tag, 4, 1, at)
        body += _ifd_bytes(entries, at)
    return b"Exif\0\0II*\0" + struct.pack("<I", 8) + first + struct.pack("<I", 0) + body


def _exif_directories(exif: bytes) -> dict[int, list[IfdEntry]]:
    """The EXIF and GPS directories of an EXIF blob (a JPEG's, or one :func:`_tiff_exif` made),
    as a rendition carries them (:func:`_rendition_exif`). ValueError for one that cannot be read."""
    tiff = exif[6:] if exif.startswith(b"Exif\0\0") else exif
    if tiff[:4] not in (b"II*\0", b"MM\0*"):
        raise ValueError("no TIFF header")
    order = "<" if tiff[:2] == b"II" else ">"
    first, = struct.unpack(order + "I", tiff[4:8])
    found = {}
    for tag, kind, count, value in _ifd_entries(tiff, first, order):
        if tag in _EXIF_IFDS and kind in (4, 13) and count == 1:
            found[tag] = _rendition_exif(_ifd_entries(tiff, struct.unpack("<I", value)[0], order))
    return found


def _tiff_exif(data: bytes, tif: tifffile.TiffFile, page: Any) -> tuple[bytes | None, list[str]]:
    """A TIFF's EXIF and GPS directories (capture date, camera settings, place) as an EXIF blob
    for its renditions, and notes of what is left out of them."""
    order, big = tif.byteorder, tif.is_bigtiff
    directories, maker_notes = {}, False
    stored = [page.offset] + ([tif.pages[0].offset] if tif.pages[0].offset != page.offset else [])
    try:   # the directories as stored (tifffile leaves out a pointer it cannot follow): the image's, then the first
        for tag, kind, count, value in (e for at in stored for e in _ifd_entries(data, at, order, big)):
            if tag in _EXIF_IFDS and tag not in directories and count == 1 and kind in (4, 13, 16, 18):
                pointer, = struct.unpack("<Q" if len(value) == 8 else "<I", value)
                entries = _ifd_entries(data, pointer, order, big)
                maker_notes |= any(e[0] == _MAKER_NOTE for e in entries)
                directories[tag] = _rendition_exif(entries)
    except (ValueError, struct.error) as exc:
        return None, [f"the TIFF's EXIF data cannot be read ({exc}): not carried over"]
    notes = [("the camera's maker notes in the TIFF's EXIF data are not carried over (they point into the source "
              "file)")] if maker_notes else []
    return (_exif_blob(directories) if directories else None), notes


def _with_exif_directories(tiff: bytes, directories: dict[int, list[IfdEntry]], notes: list[str]) -> bytes:
    """A classic little-endian TIFF as tifffile writes it (which writes no EXIF directories) with
    ``directories`` appended, and its first directory written again after them with an entry
    pointing at each (the header then points at that copy; every other entry is as it was). A
    BigTIFF is left without them, noted."""
    if not tiff.startswith(b"II*\0"):
        notes.append("the EXIF data is not carried over into a BigTIFF rendition")
        return tiff
    first, = struct.unpack("<I", tiff[4:8])
    n, = struct.unpack("<H", tiff[first:first + 2])
    entries = {struct.unpack("<H", tiff[at:at + 2])[0]: tiff[at:at + 12]
               for at in range(first + 2, first + 2 + 12 * n, 12)}
    following = tiff[first + 2 + 12 * n:first + 2 + 12 * n + 4]   # the next directory's offset (none: 0)
    out = bytearray(tiff)
    for code, found in sorted(directories.items()):
        out += b"\0" * (len(out) % 2)
        entries[code] = struct.pack("<HHII", code, 4, 1, len(out))
        out += _ifd_bytes(found, len(out))
    out += b"\0" * (len(out) % 2)
    struct.pack_into("<I", out, 4, len(out))
    out += struct.pack("<H", len(entries)) + b"".join(entries[tag] for tag in sorted(entries)) + following
    return bytes(out)


def _layout_description(text: Any) -> str | None:
    """The kind of machine metadata an ImageDescription holds (the pixel layout of the file it came in,
    written by tifffile, ImageJ or OME), or None for a description a person wrote."""
    if not isinstance(text, str):
        return None
    text = text.strip()
    if text.startswith("ImageJ="):
        return "ImageJ"
    if text.startswith("<?xml") and text.endswith("OME>"):
        return "OME-XML"
    if text.startswith("shape=("):
        return "tifffile shape"
    if text.startswith("{") and '"shape"' in text:
        try:
            return "tifffile shape" if "shape" in json.loads(text) else None
        except (ValueError, TypeError):
            return None
    return None


def _unpalette(index: np.ndarray, colormap: np.ndarray | None) -> np.ndarray:
    """A palette TIFF's pixels through its ColorMap (16-bit entries): gray when every entry the pixels use
    is a grey, 8-bit when every one is an 8-bit value times 257 (as writers store them)."""
    if colormap is None or colormap.ndim != 2 or colormap.shape[0] != 3:
        raise CorruptMediaError("palette TIFF without a readable ColorMap")
    if index.ndim != 2:
        raise UnsupportedMediaError(f"palette TIFF with sample layout {index.shape} is not supported")
    if int(index.max(initial=0)) >= colormap.shape[1]:
        raise CorruptMediaError(f"palette TIFF: index {int(index.max())} beyond its "
                                f"{colormap.shape[1]}-entry ColorMap")
    cmap = colormap.astype(np.uint16)
    used = cmap[:, np.bincount(index.ravel(), minlength=cmap.shape[1]) > 0]   # unused entries do not count
    if not (used % 257).any():
        cmap = (cmap // 257).astype(np.uint8)
    gray = bool((used[0] == used[1]).all() and (used[1] == used[2]).all())
    return cmap[0][index] if gray else np.ascontiguousarray(cmap.T[index])


def _boxes(data: bytes, start: int = 0, end: int | None = None) -> list[tuple[bytes, int, int]]:
    """JP2 boxes in ``data[start:end]``: (type, payload start, payload end)."""
    end = len(data) if end is None else end
    out = []
    while start + 8 <= end:
        length, kind = struct.unpack(">I4s", data[start:start + 8])
        head = 8
        if length == 1:
            length, head = struct.unpack(">Q", data[start + 8:start + 16])[0], 16
        elif length == 0:
            length = end - start
        if length < head or start + length > end:
            raise CorruptMediaError(f"truncated or corrupt JPEG 2000 file: its {kind.decode('latin-1')!r} box at "
                                    f"byte {start} runs past the end")
        out.append((kind, start + head, start + length))
        start += length
    return out


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def _decode_jp2(data: bytes) -> Photo:
    """A JP2 file: its header boxes (size, bits, colour, resolution) read here, its codestream
    decoded by OpenJPEG. Samples of other than 8 or 16 bits are scaled to 16 (or 8) bits and
    written back at their own depth."""
    boxes = _boxes(data)
    top = {kind: (a, b) for kind, a, b in boxes}
    if b"jp2h" not in top or b"jp2c" not in top:
        raise CorruptMediaError("JP2 file without its header or codestream box")
    header = {kind: data[a:b] for kind, a, b in _boxes(data, *top[b"jp2h"])}
    if b"ihdr" not in header or len(header[b"ihdr"]) < 14:
        raise CorruptMediaError("JP2 header without its image header box")
    height, width, channels, bpc = struct.unpack(">IIHB", header[b"ihdr"][:11])
    if bpc == 255:
        raise UnsupportedMediaError("JPEG 2000 with a different bit depth per component is not supported")
    if bpc & 0x80:
        raise UnsupportedMediaError("JPEG 2000 with signed samples is not supported")
    bits = (bpc & 0x7F) + 1
    if bits > 16 or channels not in (1, 2, 3, 4):
        raise UnsupportedMediaError(f"JPEG 2000 with {channels} components of {bits} bits is not supported "
                                    "(gray or RGB, with or without alpha, up to 16 bits)")
    notes: list[str] = []
    icc = None
    colr = header.get(b"colr", b"")
    if colr[:1] == b"\x01" and len(colr) >= 7:
        space = struct.unpack(">I", colr[3:7])[0]
        if space not in (16, 17):  # sRGB, greyscale
            raise UnsupportedMediaError(f"JPEG 2000 in colour space {space} (enumerated) is not supported "
                                        "(sRGB or greyscale)")
    elif colr[:1] in (b"\x02", b"\x03"):
        icc = colr[3:]   # applied once the pixels are read (_with_profile)
    try:
        arr = imagecodecs.jpeg2k_decode(data, numthreads=JP2_THREADS)
    except Exception as exc:  # noqa: BLE001 - imagecodecs raises its own error types
        raise CorruptMediaError(f"truncated or corrupt JPEG 2000 data: {exc}") from None
    if arr.shape[:2] != (height, width):
        raise CorruptMediaError(f"JPEG 2000 codestream of {arr.shape[1]}x{arr.shape[0]} in a JP2 file "
                                f"declaring {width}x{height}")
    dtype = np.uint8 if bits <= 8 else np.uint16
    arr = _rescale(arr, 2 ** bits - 1, np.iinfo(dtype).max, dtype)
    alpha = None
    if arr.ndim == 3 and arr.shape[2] in (2, 4):
        alpha, arr = arr[..., -1], arr[..., :-1]
        arr = arr[..., 0] if arr.shape[2] == 1 else arr
    if alpha is not None and alpha.min() == alpha.max() == np.iinfo(alpha.dtype).max:
        alpha = None
    arr, icc = _with_profile(arr, icc, notes)
    res = None
    if b"res " in header:
        res_box = header[b"res "]
        sub = {kind: res_box[a:b] for kind, a, b in _boxes(res_box)}
        raw = sub.get(b"resc") or sub.get(b"resd")
        if raw and len(raw) >= 10:
            vn, vd, hn, hd, ve, he = struct.unpack(">HHHHbb", raw[:10])
            if vd and hd:
                res = (round(hn / hd * 10.0 ** he * 0.0254, 2), round(vn / vd * 10.0 ** ve * 0.0254, 2))  # per inch
    xmp = next((data[a + 16:b] for kind, a, b in boxes if kind == b"uuid" and data[a:a + 16] == JP2_XMP_UUID), None)
    return Photo(np.ascontiguousarray(arr), "JPEG2000", alpha, icc, None, resolution=res, notes=notes,
                 sample_bits=bits if bits not in (8, 16) else None, xmp=xmp or None)


def _rescale(arr: np.ndarray, from_max: int, to_max: int, dtype: Any) -> np.ndarray:
    """Samples of full scale ``from_max`` as ``dtype`` samples of full scale ``to_max`` (12-bit
    JPEG 2000 to and from the 16 bits the rest of the pipeline works in)."""
    if from_max == to_max:
        return arr.astype(dtype, copy=False)
    return np.round(arr.astype(np.float64) * (to_max / from_max)).astype(dtype)


def _encode_jp2(rgb: np.ndarray, photo: Photo, xmp: bytes) -> bytes:
    """A lossless (reversible 5/3 wavelet) JP2 file: OpenJPEG's codestream in boxes written here,
    with the ICC profile (else sRGB), the capture resolution and the XMP packet."""
    data = rgb if photo.alpha is None else np.dstack([rgb, photo.alpha.astype(rgb.dtype)])
    bits = photo.sample_bits or (16 if data.dtype == np.uint16 else 8)
    data = _rescale(data, np.iinfo(data.dtype).max, 2 ** bits - 1, data.dtype)
    codestream = imagecodecs.jpeg2k_encode(np.ascontiguousarray(data), codecformat=imagecodecs.JPEG2K.CODEC.J2K,
                                           reversible=True, bitspersample=bits, numthreads=JP2_THREADS)
    h, w = data.shape[:2]
    n = data.shape[2] if data.ndim == 3 else 1
    boxes = [_box(b"ihdr", struct.pack(">IIHBBBB", h, w, n, bits - 1, 7, 0, 0)),
             _box(b"colr", b"\x02\x00\x00" + photo.icc if photo.icc else struct.pack(">BBBI", 1, 0, 0, 16 if n >= 3 else 17))]
    if photo.alpha is not None:  # the last component is opacity, of the whole image
        defs = [(i, 0, i + 1) for i in range(n - 1)] + [(n - 1, 1, 0)]
        boxes.append(_box(b"cdef", struct.pack(">H", n) + b"".join(struct.pack(">HHH", *d) for d in defs)))
    if photo.resolution:
        per_metre = [round(r / 0.0254) for r in photo.resolution]   # fits 16 bits up to 1664 dpi; scaled below
        exp = 0
        while max(per_metre) > 65535:
            per_metre, exp = [round(v / 10) for v in per_metre], exp + 1
        resc = struct.pack(">HHHHbb", per_metre[1], 1, per_metre[0], 1, exp, exp)
        boxes.append(_box(b"res ", _box(b"resc", resc)))
    return b"".join([JP2_SIGNATURE, _box(b"ftyp", b"jp2 " + b"\x00" * 4 + b"jp2 "), _box(b"jp2h", b"".join(boxes)),
                     _box(b"uuid", JP2_XMP_UUID + xmp), _box(b"jp2c", codestream)])


def _tag_bytes(value: Any) -> bytes | None:
    """A TIFF tag's value as the bytes it holds (IPTC comes as bytes, or as LONGs)."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value) or None
    if isinstance(value, (tuple, list)) and all(isinstance(v, int) for v in value):
        return struct.pack(f">{len(value)}I", *value) or None
    return None


PHOTOSHOP = b"Photoshop 3.0\x00"   # a JPEG's APP13: Photoshop image resources, IPTC-IIM among them (0x0404)


def _iim_from_irb(payload: bytes) -> bytes | None:
    """The IPTC-IIM records among the image resources of a JPEG's APP13 segment."""
    at = len(PHOTOSHOP)
    while at + 12 <= len(payload) and payload[at:at + 4] == b"8BIM":
        rid = struct.unpack(">H", payload[at + 4:at + 6])[0]
        name = payload[at + 6]
        at += 6 + (name + 2) // 2 * 2           # the Pascal name, padded to an even length
        if at + 4 > len(payload):
            break
        size = struct.unpack(">I", payload[at:at + 4])[0]
        data = payload[at + 4:at + 4 + size]
        if rid == 0x0404:
            return data or None
        at += 4 + size + size % 2
    return None


def _with_iptc(jpeg: bytes, iim: bytes) -> bytes:
    """``jpeg`` with an APP13 segment holding the IPTC-IIM records ``iim``, after its leading
    APPn segments."""
    payload = PHOTOSHOP + b"8BIM\x04\x04\x00\x00" + struct.pack(">I", len(iim)) + iim + b"\x00" * (len(iim) % 2)
    if len(payload) > 65533:
        return jpeg
    at = 2
    while at + 4 <= len(jpeg) and jpeg[at] == 0xFF and 0xE0 <= jpeg[at + 1] <= 0xEF:
        at += 2 + struct.unpack(">H", jpeg[at + 2:at + 4])[0]
    return jpeg[:at] + b"\xff\xed" + struct.pack(">H", len(payload) + 2) + payload + jpeg[at:]


def xmp_packet(source_sha256: str, model: str, model_sha256: str, when: datetime | None = None) -> bytes:
    """XMP labelling the rendition as algorithmically colorized, traceable to its input."""
    when = (when or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ")
    e = html.escape
    return f"""<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/"
    xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:xmpMM="http://ns.adobe.com/xap/1.0/mm/"
    xmlns:colorize="https://colorize.invalid/ns/1.0/"
    Iptc4xmpExt:DigitalSourceType="{DIGITAL_SOURCE_TYPE}"
    xmp:CreatorTool="colorize ({e(model)})"
    xmp:ModifyDate="{when}"
    xmpMM:DerivedFrom="urn:sha256:{e(source_sha256)}"
    colorize:Model="{e(model)}"
    colorize:ModelSHA256="{e(model_sha256)}">
   <dc:description><rdf:Alt><rdf:li xml:lang="x-default">{e(NOTE)}</rdf:li></rdf:Alt></dc:description>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>""".encode("utf-8")


# The usual XMP prefixes, registered once (ElementTree's registry is global: never from a
# source's packet); other namespaces are written as ns0, ns1..., which XMP readers take as well.
XMP_NS = {"x": "adobe:ns:meta/", "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
          "dc": "http://purl.org/dc/elements/1.1/", "xmp": "http://ns.adobe.com/xap/1.0/",
          "xmpMM": "http://ns.adobe.com/xap/1.0/mm/", "xmpRights": "http://ns.adobe.com/xap/1.0/rights/",
          "photoshop": "http://ns.adobe.com/photoshop/1.0/", "tiff": "http://ns.adobe.com/tiff/1.0/",
          "exif": "http://ns.adobe.com/exif/1.0/", "Iptc4xmpCore": "http://iptc.org/std/Iptc4xmpCore/1.0/xmlns/",
          "Iptc4xmpExt": "http://iptc.org/std/Iptc4xmpExt/2008-02-29/", "colorize": "https://colorize.invalid/ns/1.0/"}
for _prefix, _uri in XMP_NS.items():
    ET.register_namespace(_prefix, _uri)
RDF = XMP_NS["rdf"]
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
# Source XMP properties that describe the source file's pixels or identify that file, which the
# colour rendition's do not share (upright, RGB, maybe another size): left out when merging.
XMP_NOT_CARRIED = frozenset(f"{{{XMP_NS[prefix]}}}{name}" for prefix, names in (
    ("tiff", ("Orientation", "ImageWidth", "ImageLength", "BitsPerSample", "SamplesPerPixel",
              "PhotometricInterpretation", "Compression")),
    ("exif", ("PixelXDimension", "PixelYDimension", "ColorSpace")),
    ("photoshop", ("ColorMode", "ICCProfile", "DocumentAncestors")),   # the documents placed in the source
                                                                       # (megabytes of ids in some files)
    ("xmpMM", ("InstanceID", "DocumentID"))) for name in names)
# Whole namespaces of that kind: Camera Raw's develop settings say how to render the source's
# pixels (Photoshop and Lightroom would apply them to the colour rendition on opening it).
XMP_NS_NOT_CARRIED = ("{http://ns.adobe.com/camera-raw-settings/1.0/}",)


def _rdf_of(packet: bytes) -> ET.Element | None:
    """The rdf:RDF element of an XMP packet or file (ET.ParseError if it is no XML)."""
    root = ET.fromstring(packet)
    return root if root.tag == f"{{{RDF}}}RDF" else root.find(f".//{{{RDF}}}RDF")


def _properties(descriptions: Iterable[ET.Element]) -> set[str]:
    """The properties these rdf:Description elements set (as attributes or as children)."""
    return {name for desc in descriptions
            for name in itertools.chain((a for a in desc.attrib if not a.startswith(f"{{{RDF}}}")),
                                        (child.tag for child in desc))}


def _drop(rdf: ET.Element, dropped: Callable[[str], bool]) -> list[ET.Element]:
    """Take the properties ``dropped`` names out of ``rdf``'s descriptions; returns those that
    were children (their values, which a caller may want)."""
    removed = []
    for desc in rdf.findall(f"{{{RDF}}}Description"):
        for name in [a for a in desc.attrib if dropped(a)]:
            del desc.attrib[name]
        for child in [c for c in desc if dropped(c.tag)]:
            desc.remove(child)
            removed.append(child)
    return removed


def merge_xmp(source: bytes, ours: bytes, notes: list[str]) -> bytes:
    """The source's XMP with ours laid over it: its descriptive metadata (title, creator,
    rights, caption, accession numbers...) kept, the properties ours sets replaced, those that
    describe the source file's pixels or identify that file (:data:`XMP_NOT_CARRIED`,
    :data:`XMP_NS_NOT_CARRIED`) left out,
    and its caption (``dc:description``) kept after our note. An unreadable source packet is
    noted and left out."""
    try:
        src_rdf = _rdf_of(source)
    except ET.ParseError as exc:
        notes.append(f"the source's XMP metadata is not well-formed XML ({exc}): not carried over")
        return ours
    our_desc = ET.fromstring(ours).find(f".//{{{RDF}}}Description")
    if src_rdf is None or our_desc is None:
        notes.append("the source's XMP metadata holds no RDF: not carried over")
        return ours
    ours_set = _properties([our_desc]) | XMP_NOT_CARRIED
    caption = None
    for child in _drop(src_rdf, lambda tag: tag in ours_set or tag.startswith(XMP_NS_NOT_CARRIED)):
        if child.tag == "{http://purl.org/dc/elements/1.1/}description":
            caption = next((li.text for li in child.iter(f"{{{RDF}}}li")
                            if li.get(XML_LANG) == "x-default" and li.text), caption)
    if caption:
        for li in our_desc.iter(f"{{{RDF}}}li"):
            li.text = f"{li.text}\n\n{caption}"
    src_rdf.append(our_desc)
    meta = ET.Element("{adobe:ns:meta/}xmpmeta")
    meta.append(src_rdf)
    body = ET.tostring(meta, encoding="unicode")
    return ('<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n' + body + '\n<?xpacket end="w"?>').encode()


def _document_id(rdf: ET.Element) -> str | None:
    tag = f"{{{XMP_NS['xmpMM']}}}DocumentID"
    for desc in rdf.findall(f"{{{RDF}}}Description"):
        found = desc.get(tag) or (desc.findtext(tag) or "").strip()
        if found:
            return found
    return None


def with_sidecar_xmp(embedded: bytes | None, sidecar: bytes, name: str, notes: list[str]) -> bytes | None:
    """The XMP to carry over for a photo with an XMP sidecar file ``name`` beside it: the
    sidecar's properties laid over the file's own (the sidecar is where a catalogue keeps what
    it says of the file). A sidecar that is no XMP, or whose ``xmpMM:DocumentID`` names another
    document than the file's own, is noted and not carried; ``embedded`` is then returned."""
    try:
        top = _rdf_of(sidecar)
    except ET.ParseError as exc:
        notes.append(f"the XMP sidecar {name} is not well-formed XML ({exc}): not carried over")
        return embedded
    if top is None:
        notes.append(f"the XMP sidecar {name} holds no RDF: not carried over")
        return embedded
    try:
        base = _rdf_of(embedded) if embedded else None
    except ET.ParseError:
        base = None   # merge_xmp would leave it out anyway: the sidecar's alone is carried
    if base is None:
        notes.append(f"the XMP sidecar {name} carried over")
        return sidecar
    theirs, mine = _document_id(top), _document_id(base)
    if theirs and mine and theirs != mine:
        notes.append(f"the XMP sidecar {name} describes another document (xmpMM:DocumentID {theirs}, the file's is "
                     f"{mine}): not carried over")
        return embedded
    laid = _properties(top.findall(f"{{{RDF}}}Description"))
    _drop(base, laid.__contains__)
    base.extend(top.findall(f"{{{RDF}}}Description"))
    meta = ET.Element("{adobe:ns:meta/}xmpmeta")
    meta.append(base)
    notes.append(f"the XMP sidecar {name} carried over, laid over the file's own XMP")
    return ET.tostring(meta, encoding="utf-8")


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _encode_png(rgb: np.ndarray, photo: Photo, xmp: bytes) -> bytes:
    # OpenCV writes 8- and 16-bit RGB(A) PNG alike; metadata chunks go in right after IHDR.
    bgr = rgb[..., ::-1]
    if photo.alpha is not None:
        bgr = np.dstack([bgr, photo.alpha.astype(rgb.dtype)])
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(bgr))
    if not ok:
        raise CorruptMediaError("PNG encoding failed")
    png = buf.tobytes()
    chunks = [_png_chunk(b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + xmp),
              _png_chunk(b"tEXt", b"Comment\x00" + NOTE.encode("latin-1"))]
    if photo.icc:
        chunks.append(_png_chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(photo.icc)))
    if photo.exif:
        exif = photo.exif[6:] if photo.exif.startswith(b"Exif\x00\x00") else photo.exif
        chunks.append(_png_chunk(b"eXIf", exif))
    if photo.resolution:
        ppm = [round(r / 0.0254) for r in photo.resolution]
        chunks.append(_png_chunk(b"pHYs", struct.pack(">IIB", ppm[0], ppm[1], 1)))
    ihdr_end = 8 + 25
    return png[:ihdr_end] + b"".join(chunks) + png[ihdr_end:]


def encode_photo(rgb: np.ndarray, photo: Photo, xmp: bytes) -> bytes:
    """Encode the colour rendition ``rgb`` (dtype of ``photo.pixels``) like its source, with our
    XMP packet ``xmp`` laid over the source's (:func:`merge_xmp`)."""
    if photo.xmp:
        merged = merge_xmp(photo.xmp, xmp, photo.notes)
        if photo.format == "JPEG" and len(merged) > 65000:  # one APP1 segment holds at most 64 KB
            photo.notes.append(f"the source's XMP metadata ({len(photo.xmp)} bytes) does not fit beside ours in "
                               "a JPEG: not carried over")
        else:
            xmp = merged
    if photo.format == "PNG":
        return _encode_png(rgb, photo, xmp)
    if photo.format == "JPEG2000":
        return _encode_jp2(rgb, photo, xmp)
    if photo.format == "TIFF":
        out = io.BytesIO()
        data = rgb if photo.alpha is None else np.dstack([rgb, photo.alpha.astype(rgb.dtype)])
        extratags = [(700, 1, len(xmp), xmp, True)]
        if photo.icc:
            extratags.append((34675, 7, len(photo.icc), photo.icc, True))
        if photo.iptc:
            extratags.append((33723, 7, len(photo.iptc), photo.iptc, True))
        for name, code in _TIFF_CARRY.items():
            value = photo.tiff_tags.get(name)
            if isinstance(value, str) and name != "ImageDescription":
                extratags.append((code, 2, 0, value, True))
        directories = {}
        if photo.exif:
            try:
                directories = _exif_directories(photo.exif)
            except (ValueError, struct.error) as exc:
                photo.notes.append(f"the source's EXIF data cannot be read ({exc}): not carried over")
        description = photo.tiff_tags.get("ImageDescription")
        tifffile.imwrite(out, data, photometric="rgb", compression=None if photo.tiff_compression == "none"
                         else photo.tiff_compression, extrasamples=["unassalpha"] if photo.alpha is not None else None,
                         description=f"{description}\n{NOTE}" if isinstance(description, str) else NOTE,
                         resolution=photo.resolution, software="colorize", extratags=extratags, metadata=None)
        return _with_exif_directories(out.getvalue(), directories, photo.notes) if directories else out.getvalue()
    im = Image.fromarray(rgb)
    if photo.alpha is not None and photo.format == "WEBP":
        im.putalpha(Image.fromarray(photo.alpha))
    kwargs: dict[str, Any] = {"xmp": xmp}
    if photo.icc:
        kwargs["icc_profile"] = photo.icc
    if photo.exif:
        kwargs["exif"] = photo.exif
    if photo.resolution:
        kwargs["dpi"] = photo.resolution
    out = io.BytesIO()
    if photo.format == "JPEG":
        im.save(out, "JPEG", quality=95, subsampling=0, optimize=True, comment=NOTE.encode(), **kwargs)
        if photo.iptc:   # IPTC-IIM captions and keywords, as the source had them
            return _with_iptc(out.getvalue(), photo.iptc)
    else:
        im.save(out, "WEBP", quality=95, method=4, **kwargs)
    return out.getvalue()


def thumbnail_jpeg(pixels: np.ndarray, max_side: int = 320) -> bytes:
    """A small sRGB JPEG for review pages (gray or RGB, uint8 or uint16 input)."""
    if pixels.dtype == np.uint16:
        pixels = (pixels >> 8).astype(np.uint8)
    h, w = pixels.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    small = cv2.resize(pixels, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    out = io.BytesIO()
    Image.fromarray(small).save(out, "JPEG", quality=85)
    return out.getvalue()


def adapt_to_format(photo: Photo, fmt: str) -> None:
    """Make ``photo`` encodable as ``fmt`` (a FORMATS key): 16-bit to 8-bit for JPEG and WebP,
    alpha dropped for JPEG, each change noted in ``photo.notes``."""
    if fmt not in FORMATS:
        raise UnsupportedMediaError(f"output format {fmt} is not supported ({', '.join(FORMATS)})")
    photo.format = fmt
    if fmt in ("JPEG", "WEBP") and photo.pixels.dtype == np.uint16:
        photo.pixels = (photo.pixels >> 8).astype(np.uint8)
        if photo.alpha is not None:
            photo.alpha = (photo.alpha >> 8).astype(np.uint8)
        photo.notes.append(f"16-bit input written as 8-bit: {fmt} has no 16-bit mode")
    if fmt == "JPEG" and photo.alpha is not None:
        photo.alpha = None
        photo.notes.append("alpha dropped: JPEG has none")
    if photo.format != "TIFF":
        photo.tiff_tags = {}
    if photo.format != "JPEG2000":
        photo.sample_bits = None
    if photo.iptc and fmt in ("PNG", "WEBP", "JPEG2000"):
        photo.iptc = None
        photo.notes.append(f"IPTC-IIM metadata not carried: {fmt} has no place for it (its XMP is carried)")
