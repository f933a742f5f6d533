"""Photo decoding/encoding: formats, bit depths, metadata carried over, labelling, bad input."""

from __future__ import annotations

import io
import re
import struct
import zlib

import imagecodecs
import numpy as np
import pytest
import tifffile
from PIL import Image, ImageCms, PngImagePlugin

from colorize_core.errors import CorruptMediaError, MediaTooLargeError, UnrecognisedMediaError, UnsupportedMediaError
from colorize_core.images import (DIGITAL_SOURCE_TYPE, JP2_XMP_UUID, NOTE, Photo, _unpalette, adapt_to_format,
                                  decode_photo, encode_photo, with_sidecar_xmp, xmp_packet)
from tests.conftest import bad_inputs, encode, gray_photo, huge_png_header, tricky_good_inputs

XMP = xmp_packet("a" * 64, "default", "b" * 64)


def colourise(p) -> np.ndarray:  # noqa: ANN001 - a stand-in colour rendition of the photo's size
    rgb = np.dstack([p.pixels] * 3) if p.pixels.ndim == 2 else p.pixels.copy()
    rgb[..., 0] //= 2
    return rgb


def test_jpeg_keeps_icc_exif_and_is_labelled_as_algorithmic():
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    im = Image.fromarray(np.dstack([gray_photo(size=80)] * 3))
    exif = im.getexif()
    exif[0x010F] = "ScanCo"  # Make
    exif[0x0132] = "2024:01:02 03:04:05"
    p = decode_photo(encode(im, "JPEG", icc_profile=srgb, exif=exif.tobytes()))
    out = Image.open(io.BytesIO(encode_photo(colourise(p), p, XMP)))
    assert out.info["icc_profile"] == srgb
    assert out.getexif()[0x010F] == "ScanCo"
    assert DIGITAL_SOURCE_TYPE.encode() in out.info["xmp"]
    assert b"urn:sha256:" + b"a" * 64 in out.info["xmp"]


def test_exif_orientation_is_applied_and_reset():
    g = gray_photo("coffee", size=90)  # wider than tall
    im = Image.fromarray(g)
    exif = im.getexif()
    exif[0x0112] = 6
    p = decode_photo(encode(im, "JPEG", exif=exif.tobytes()))
    assert p.pixels.shape == (g.shape[1], g.shape[0])  # rotated upright
    out = Image.open(io.BytesIO(encode_photo(colourise(p), p, XMP)))
    assert out.getexif().get(0x0112) == 1 and out.size == (g.shape[0], g.shape[1])


def test_16bit_rgb_tiff_stays_16bit_with_its_compression_and_tags():
    rng = np.random.default_rng(0)
    arr = (rng.random((40, 60, 3)) * 65535).astype(np.uint16)
    buf = io.BytesIO()
    tifffile.imwrite(buf, arr, photometric="rgb", compression="lzw", resolution=(1200, 1200),
                     description="Plate 12", extratags=[(315, 2, 0, "A. Photographer", True)])
    p = decode_photo(buf.getvalue())
    assert p.pixels.dtype == np.uint16 and p.bit_depth == 16
    data = encode_photo(p.pixels, p, XMP)
    with tifffile.TiffFile(io.BytesIO(data)) as t:
        page = t.pages[0]
        assert page.dtype == np.uint16 and page.shape == (40, 60, 3)
        assert page.compression.name == "LZW"
        assert page.tags["Artist"].value == "A. Photographer"
        assert "Plate 12" in page.tags["ImageDescription"].value
        assert DIGITAL_SOURCE_TYPE.encode() in bytes(page.tags[700].value)
        np.testing.assert_array_equal(page.asarray(), arr)


def test_16bit_png_and_gray_tiff_and_webp_round_trip():
    import cv2

    rgb16 = (np.random.default_rng(0).random((30, 40, 3)) * 65535).astype(np.uint16)
    ok, png16 = cv2.imencode(".png", rgb16[..., ::-1])
    p = decode_photo(png16.tobytes())
    assert p.pixels.dtype == np.uint16 and p.channels == "rgb"
    np.testing.assert_array_equal(p.pixels, rgb16)
    q = decode_photo(encode_photo(p.pixels, p, XMP))
    np.testing.assert_array_equal(q.pixels, rgb16)
    web = decode_photo(encode(gray_photo(size=64), "WEBP"))
    assert web.format == "WEBP" and decode_photo(encode_photo(colourise(web), web, XMP)).format == "WEBP"


def test_pngs_keep_gray_as_gray_and_their_transparency():
    """A 16-bit gray PNG with alpha stays a gray photograph (it was read as RGB), and a PNG whose
    tRNS chunk names a transparent gray or colour (8 or 16 bits) keeps that transparency as
    alpha (it was dropped without a word)."""
    g = (np.arange(40 * 30).reshape(30, 40) * 50 % 65536).astype(np.uint16)
    alpha = np.where(g > 30000, 65535, 1000).astype(np.uint16)
    p = decode_photo(imagecodecs.png_encode(np.dstack([g, alpha])))
    assert p.channels == "gray" and p.pixels.dtype == np.uint16
    np.testing.assert_array_equal(p.pixels, g)
    np.testing.assert_array_equal(p.alpha, alpha)
    buf = io.BytesIO()
    Image.fromarray(g).save(buf, "PNG", transparency=int(g[3, 7]))
    p = decode_photo(buf.getvalue())
    assert p.channels == "gray" and p.alpha is not None
    np.testing.assert_array_equal(p.alpha == 0, g == g[3, 7])
    out = decode_photo(encode_photo(colourise(p), p, XMP))
    np.testing.assert_array_equal(out.alpha == 0, g == g[3, 7])
    g8 = (g >> 8).astype(np.uint8)
    rgb8 = np.dstack([g8, g8 // 2, 255 - g8])
    for arr, clear in ((g8, int(g8[3, 7])), (rgb8, tuple(int(v) for v in rgb8[3, 7]))):   # 8 bits, read by Pillow
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, "PNG", transparency=clear)
        p = decode_photo(buf.getvalue())
        assert p.pixels.dtype == np.uint8 and p.alpha is not None
        np.testing.assert_array_equal(p.pixels, arr)
        np.testing.assert_array_equal(p.alpha == 0, np.all(arr == arr[3, 7], axis=-1) if arr.ndim == 3 else arr == clear)
    rgb = np.dstack([g, g // 2, 65535 - g])
    trns = struct.pack(">HHH", *rgb[5, 9])   # RGB PNG with a transparent colour, written by hand
    png = imagecodecs.png_encode(rgb)
    at = png.index(b"IDAT") - 4
    chunk = struct.pack(">I", 6) + b"tRNS" + trns + struct.pack(">I", zlib.crc32(b"tRNS" + trns))
    p = decode_photo(png[:at] + chunk + png[at:])
    np.testing.assert_array_equal(p.pixels, rgb)
    np.testing.assert_array_equal(p.alpha == 0, (rgb == rgb[5, 9]).all(axis=2))


def test_palette_png_with_alpha_keeps_its_alpha():
    p = decode_photo(tricky_good_inputs()["palette-alpha.png"])
    assert p.alpha is not None and p.alpha.min() == 0
    out = Image.open(io.BytesIO(encode_photo(colourise(p), p, XMP)))
    assert out.mode == "RGBA"
    np.testing.assert_array_equal(np.asarray(out)[..., 3], p.alpha)


def test_cmyk_jpeg_is_converted_with_a_note():
    p = decode_photo(tricky_good_inputs()["cmyk.jpg"])
    assert p.channels == "rgb" and any("CMYK" in n for n in p.notes)


def test_a_cmyk_photograph_is_converted_through_its_press_profile():
    """A press archive's CMYK photograph (JPEG, or an 8-bit TIFF) is converted to sRGB by
    LittleCMS through the CMYK profile it carries, as a colour-managed viewer shows it; the plain
    formula (255 minus ink), much darker here, is only for one without a profile; noted either way."""
    from tests.conftest import cmyk_profile

    press = cmyk_profile("Test press")
    ink = np.zeros((8, 64, 4), np.uint8)
    ink[..., 3] = np.linspace(0, 255, 64, dtype=np.uint8)   # a gray photograph printed in black ink
    ink[..., 0] = ink[..., 3] // 3                          # with some cyan under the shadows
    want = np.asarray(ImageCms.applyTransform(
        Image.frombytes("CMYK", (64, 8), ink.tobytes()),
        ImageCms.buildTransform(ImageCms.ImageCmsProfile(io.BytesIO(press)), ImageCms.createProfile("sRGB"), "CMYK",
                                "RGB", ImageCms.Intent.RELATIVE_COLORIMETRIC,
                                flags=ImageCms.Flags.BLACKPOINTCOMPENSATION))).astype(int)
    plain = np.asarray(Image.frombytes("CMYK", (64, 8), ink.tobytes()).convert("RGB")).astype(int)
    assert (want - plain).mean() > 30
    for data, tolerance in ((encode(Image.frombytes("CMYK", (64, 8), ink.tobytes()), "JPEG", quality=100,
                                    icc_profile=press), 2),
                            (tiff(ink, photometric="separated", iccprofile=press), 0)):
        p = decode_photo(data)
        assert p.channels == "rgb" and p.icc is None and np.abs(p.pixels.astype(int) - want).max() <= tolerance
        assert p.notes == ["CMYK photograph converted to sRGB by LittleCMS through its profile 'Test press'"]
    p = decode_photo(tiff(ink, photometric="separated"))
    np.testing.assert_array_equal(p.pixels, plain)
    assert p.notes == [("CMYK photograph converted to RGB by the plain formula (it carries no CMYK profile): its tones "
                        "are approximate")]
    with pytest.raises(UnsupportedMediaError, match=r"CMYK TIFF of 4 uint16 samples is not supported \(8-bit CMYK is\)"):
        decode_photo(tiff(ink.astype(np.uint16) * 257, photometric="separated"))


def test_gray_icc_profile_is_not_put_on_a_colour_output():
    gray_icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()  # not an RGB space
    p = decode_photo(encode(gray_photo(size=40), "PNG", icc_profile=gray_icc))
    assert p.icc is None and any("ICC" in n for n in p.notes)


@pytest.mark.parametrize("name,error,text", [
    ("empty.jpg", CorruptMediaError, "empty file"),
    ("truncated.jpg", CorruptMediaError, "truncated"),
    ("truncated.png", CorruptMediaError, "corrupt"),
    ("notes.jpg", CorruptMediaError, "not a recognised image"),
    ("animated.gif", UnsupportedMediaError, "animated GIF"),
    ("huge.png", MediaTooLargeError, "refused before decoding"),
])
def test_bad_inputs_raise_typed_errors_with_clear_messages(name, error, text):
    with pytest.raises(error, match=text):
        decode_photo(bad_inputs()[name])


def test_a_tiffs_own_image_is_read_not_a_preview_before_it_and_raw_files_are_refused():
    """A TIFF whose first page is a reduced-resolution preview (NewSubfileType 1), its image after
    it and a transparency mask: the image is read (it was the 64x48 preview that was colorized),
    noted. A DNG (its DNGVersion tag) and a raw file whose top pages are previews only (NEF, ARW:
    the sensor data in a SubIFD) are refused, not colorized from their preview."""
    preview = np.full((48, 64), 120, np.uint8)
    buf = io.BytesIO()
    with tifffile.TiffWriter(buf) as t:
        t.write(preview, photometric="minisblack", subfiletype=1)
        t.write(gray_photo(size=96), photometric="minisblack")
        t.write(np.ones((96, 96), bool), photometric="mask", subfiletype=4)
    p = decode_photo(buf.getvalue())
    assert p.pixels.shape == (96, 96) and np.array_equal(p.pixels, gray_photo(size=96))
    assert p.notes == [("the TIFF's 2 reduced-resolution or transparency-mask page(s) beside its image are not "
                        "carried over")]
    buf = io.BytesIO()   # a lone image flagged a preview by mistake: nothing else to read, so read
    tifffile.imwrite(buf, gray_photo(size=96), photometric="minisblack", subfiletype=1)
    assert decode_photo(buf.getvalue()).pixels.shape == (96, 96)
    for dng in (True, False):
        buf = io.BytesIO()
        with tifffile.TiffWriter(buf) as t:
            t.write(np.stack([preview] * 3, -1), photometric="rgb", subfiletype=1, subifds=1,
                    extratags=[(50706, "B", 4, (1, 4, 0, 0), True)] if dng else [])
            t.write(np.zeros((96, 128), np.uint16), photometric=32803)   # the sensor's colour filter array
        with pytest.raises(UnsupportedMediaError, match=re.escape("a camera raw file (DNG, CR2)" if dng else
                                                                  "reduced-resolution (preview) pages only")):
            decode_photo(buf.getvalue())


def test_a_gray_profile_s_tones_are_kept_in_srgb_at_the_photo_s_depth():
    """A grayscale scan tagged with a gray ICC profile (Photoshop's default for grayscale is
    "Dot Gain 20%"; here gamma 1.8): its values are converted by LittleCMS to sRGB's gray, so that
    the sRGB colour rendition keeps the tones a colour-managed viewer shows of the original (value
    128 is sRGB's 146 there), at 8 and 16 bits (near black too), in JPEG, PNG and TIFF; noted. A
    profile of sRGB's own curve changes next to nothing."""
    from colorize_core.color import gray_profile

    ramp = np.tile(np.arange(256, dtype=np.uint8), (4, 1))
    light = (ramp / 255.0) ** 1.8
    want = np.where(light <= 0.0031308, 12.92 * light, 1.055 * light ** (1 / 2.4) - 0.055) * 255
    gamma18 = gray_profile(1.8, "Gray Gamma 1.8")
    made = []
    for fmt in ("JPEG", "PNG"):
        buf = io.BytesIO()
        Image.fromarray(ramp).save(buf, fmt, icc_profile=gamma18, **({"quality": 100} if fmt == "JPEG" else {}))
        made.append((buf.getvalue(), 1))
    buf = io.BytesIO()
    Image.fromarray(ramp.astype(np.uint16) * 257).save(buf, "PNG", icc_profile=gamma18)
    made.append((buf.getvalue(), 257))
    buf = io.BytesIO()
    tifffile.imwrite(buf, ramp.astype(np.uint16) * 257, photometric="minisblack", iccprofile=gamma18)
    made.append((buf.getvalue(), 257))
    for data, scale in made:
        p = decode_photo(data)
        assert p.pixels.dtype == (np.uint8 if scale == 1 else np.uint16) and p.icc is None
        assert np.abs(p.pixels / scale - want).max() < (1.5 if scale == 1 else 0.1), data[:8]
        assert p.notes == [("gray ICC profile 'Gray Gamma 1.8': the values converted to sRGB's gray, so that the "
                            "colour rendition shows the original's tones as a colour-managed viewer shows them")]
    v = np.linspace(0, 1, 4096)
    srgb = gray_profile(np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4), "sGray")
    buf = io.BytesIO()
    tifffile.imwrite(buf, ramp.astype(np.uint16) * 257, photometric="minisblack", iccprofile=srgb)
    same = decode_photo(buf.getvalue()).pixels.astype(int) - ramp.astype(int) * 257
    assert np.abs(same).max() <= 16   # of 65535 (0.06 of 255): rounding through the two curves near black


def test_an_rgb_scan_in_another_space_than_srgb_gets_srgb_tones_and_an_srgb_rendition():
    """A black-and-white print scanned in RGB and tagged Adobe RGB (or ProPhoto...): its tones are
    converted to sRGB's through the profile's neutral tone curve, as LittleCMS converts them, and
    the rendition is not tagged with that profile: its colours are the model's, computed in sRGB,
    and under Adobe RGB's tag they were shown more saturated than they are. sRGB's own profile
    is carried; one whose tones cannot be read is noted and not carried."""
    from tests.conftest import ADOBE_RGB_COLORANTS, rgb_profile

    adobe = rgb_profile(563 / 256, ADOBE_RGB_COLORANTS, "Adobe RGB test")
    ramp = np.tile(np.arange(256, dtype=np.uint8), (4, 1))
    rgb = np.dstack([ramp] * 3)
    srgb = ImageCms.createProfile("sRGB")
    transform = ImageCms.buildTransform(ImageCms.ImageCmsProfile(io.BytesIO(adobe)), srgb, "RGB", "RGB",
                                        flags=ImageCms.Flags.BLACKPOINTCOMPENSATION | ImageCms.Flags.NOOPTIMIZE)
    want = np.asarray(ImageCms.applyTransform(Image.fromarray(rgb), transform)).astype(int)
    assert np.abs(want - rgb).max() >= 5   # the two spaces' tones do differ (near black)
    buf = io.BytesIO()
    tifffile.imwrite(buf, rgb.astype(np.uint16) * 257, photometric="rgb", iccprofile=adobe)
    for data, scale in ((encode(Image.fromarray(rgb), "PNG", icc_profile=adobe), 1), (buf.getvalue(), 257)):
        p = decode_photo(data)
        assert p.icc is None and p.pixels.dtype == (np.uint8 if scale == 1 else np.uint16)
        assert np.abs(p.pixels / scale - want).max() <= 1.0
        how = ("the photograph converted to sRGB by LittleCMS" if scale == 1 else
               "the photograph's tones converted to sRGB's through its neutral tone curve")
        assert p.notes == [(f"RGB ICC profile 'Adobe RGB test', not sRGB: {how}; the colour rendition is sRGB, as "
                            "the model's colours are")]
        assert b"Adobe RGB test" not in encode_photo(colourise(p), p, XMP)
    own = ImageCms.ImageCmsProfile(srgb).tobytes()
    p = decode_photo(encode(Image.fromarray(rgb), "PNG", icc_profile=own))
    assert p.icc == own and np.array_equal(p.pixels, rgb) and not p.notes
    colour = np.dstack([ramp, ramp[:, ::-1], np.full_like(ramp, 128)])   # an 8-bit photo: its colours converted too
    p = decode_photo(encode(Image.fromarray(colour), "PNG", icc_profile=adobe))
    assert np.abs(p.pixels - np.asarray(ImageCms.applyTransform(Image.fromarray(colour), transform)).astype(int)).max() <= 1
    assert np.abs(p.pixels - colour.astype(int)).max() >= 20   # Adobe RGB's green is not sRGB's
    no_trc = rgb_profile(2.2, ADOBE_RGB_COLORANTS, "No TRC", trcs=False)
    buf = io.BytesIO()
    tifffile.imwrite(buf, rgb.astype(np.uint16) * 257, photometric="rgb", iccprofile=no_trc)
    p = decode_photo(buf.getvalue())
    assert p.icc is None and np.array_equal(p.pixels, rgb.astype(np.uint16) * 257)
    assert p.notes == [("RGB ICC profile 'No TRC' whose tones cannot be read here (not a matrix/TRC profile (no rTRC, "
                        "gTRC, bTRC tag)): the values are read as sRGB's, and the colour rendition is sRGB")]


def test_a_film_scanners_infrared_channel_is_no_transparency():
    """A film scanner's RGBI or gray+I TIFF (SilverFast HDRi, VueScan raw: ExtraSamples 0,
    unspecified) holds infrared for dust removal: left out, noted, never made the output's alpha
    (it was: transparent wherever the infrared was dark). A real alpha channel stays one."""
    scan = gray_photo(size=64).astype(np.uint16) * 257
    infrared = np.tile(np.linspace(0, 65535, 64, dtype=np.uint16), (scan.shape[0], 1))
    for samples, photometric in (([scan] * 3, "rgb"), ([scan], "minisblack")):
        for extra, alpha in ((0, None), (2, infrared)):
            buf = io.BytesIO()
            tifffile.imwrite(buf, np.stack([*samples, infrared], -1), photometric=photometric, extrasamples=(extra,))
            p = decode_photo(buf.getvalue())
            assert np.array_equal(p.pixels[..., 0] if p.pixels.ndim == 3 else p.pixels, scan), (photometric, extra)
            assert (p.alpha is None) if alpha is None else np.array_equal(p.alpha, alpha), (photometric, extra)
            assert any("infrared" in n for n in p.notes) == (extra == 0), (photometric, extra)


def test_a_camera_jpeg_with_previews_in_its_multi_picture_data_is_read_a_stereo_pair_is_not():
    """Many cameras' JPEGs carry large previews (or, Ultra HDR, a gain map) as more images in their
    Multi-Picture Format data: the photograph, the first image, is read (it was refused as an
    "animated JPEG"), noted. A stereo pair (MP type Disparity) is several views: refused."""
    photo = Image.fromarray(gray_photo(size=96))
    buf = io.BytesIO()
    photo.save(buf, "MPO", save_all=True, append_images=[photo.resize((48, 48))], quality=95)
    p = decode_photo(buf.getvalue())
    assert p.format == "JPEG" and p.pixels.shape == (96, 96)
    assert np.abs(p.pixels.astype(int) - gray_photo(size=96)).mean() < 3
    assert p.notes == [("the JPEG's 1 other image(s) in its Multi-Picture Format data (Undefined: previews or a "
                        "gain map) are not carried over")]
    buf = io.BytesIO()
    photo.save(buf, "MPO", save_all=True, append_images=[photo])
    data = bytearray(buf.getvalue())
    second = Image.open(io.BytesIO(bytes(data))).mpinfo[0xB002][1]   # its MP entry: made a stereo pair's
    at = data.find(struct.pack("<IIIHH", 0, second["Size"], second["DataOffset"], 0, 0))
    data[at:at + 4] = struct.pack("<I", 0x020002)
    with pytest.raises(UnsupportedMediaError, match=re.escape("(MPO) of 2 images (Multi-Frame Image: (Disparity))")):
        decode_photo(bytes(data))


def test_deep_jpegs_are_refused_as_what_they_are_not_as_no_image():
    """A 12-bit or 16-bit lossless JPEG (as medical and scientific systems write them) starts as a
    JPEG, but Pillow does not open it: refused as unsupported, naming its depth and process, not
    reported as content matching no image signature. An 8-bit lossless one is read."""
    y, x = np.mgrid[0:48, 0:64]
    deep = (x * 1000 + y * 300).astype(np.uint16)
    for data, text in ((imagecodecs.jpeg8_encode(deep, lossless=True, bitspersample=16), "16-bit lossless JPEG (SOF3)"),
                       (imagecodecs.jpeg8_encode(deep >> 4, level=95, bitspersample=12),
                        "12-bit extended sequential JPEG (SOF1)")):
        with pytest.raises(UnsupportedMediaError, match=re.escape(text) + ": only 8-bit JPEG is read"):
            decode_photo(data)
    assert decode_photo(imagecodecs.jpeg8_encode((deep >> 8).astype(np.uint8), lossless=True)).pixels.shape == (48, 64)
    with pytest.raises(CorruptMediaError, match="no frame header"):
        decode_photo(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 40)


def test_photos_in_formats_not_read_here_are_unsupported_images_saying_which():
    """A phone's HEIC, an AVIF or a JPEG XL is an image this does not read: unsupported, named,
    with what to do; not 'content matching no image signature' (as a text file's)."""
    rgb = np.dstack([gray_photo(size=32)] * 3)
    heic = struct.pack(">I", 24) + b"ftypheic" + bytes(4) + b"mif1heic" + bytes(64)   # its first box, as phones write
    for data, kind in ((heic, "HEIC (HEIF with HEVC) image"), (imagecodecs.jpegxl_encode(rgb), "JPEG XL image"),
                       (imagecodecs.avif_encode(rgb), "AVIF")):
        with pytest.raises(UnsupportedMediaError, match=re.escape(kind) + ".* not (a )?supported"):
            decode_photo(data)
    with pytest.raises(UnrecognisedMediaError):
        decode_photo(b"Box 12, folder 3: letters\n" * 4)


def test_huge_header_is_refused_without_allocating_pixels():
    import tracemalloc

    tracemalloc.start()
    with pytest.raises(MediaTooLargeError):
        decode_photo(huge_png_header(60000, 60000))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 50_000_000


def test_multi_page_tiff_is_refused():
    buf = io.BytesIO()
    with tifffile.TiffWriter(buf) as tw:
        tw.write(gray_photo(size=32))
        tw.write(gray_photo(size=32))
    with pytest.raises(UnsupportedMediaError, match="multi-page"):
        decode_photo(buf.getvalue())


def tiff(arr: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, arr, **kw)
    return buf.getvalue()


def test_scanner_tiffs_jpeg_compressed_and_palette_are_read_with_a_note():
    g = gray_photo(size=64)
    rgb = np.dstack([g, g, g])
    # JPEG inside TIFF, stored as YCbCr (what tifffile and many scanners write): read as RGB, written losslessly
    p = decode_photo(tiff(rgb, photometric="rgb", compression="jpeg"))
    assert p.channels == "rgb" and np.abs(p.pixels.astype(int) - rgb).max() < 12
    assert p.tiff_compression == "adobe_deflate" and any("Deflate" in n for n in p.notes)
    # tifffile's own {"shape": ...} description is its layout, not a caption: carried, it broke imread
    assert "ImageDescription" not in p.tiff_tags and not any("ImageDescription" in n for n in p.notes)
    out = tifffile.imread(io.BytesIO(encode_photo(colourise(p), p, XMP)))
    np.testing.assert_array_equal(out, colourise(p))
    for kind, kw in (("ImageJ", {"imagej": True}), ("OME-XML", {"ome": True})):   # lab and microscopy writers
        p = decode_photo(tiff(g, **kw))
        assert "ImageDescription" not in p.tiff_tags and any(f"is {kind} metadata" in n for n in p.notes)
        assert NOTE in tifffile.TiffFile(io.BytesIO(encode_photo(colourise(p), p, XMP))).pages[0].description
    # a grey palette is a greyscale photograph; a colour palette an RGB one; unused entries do not count
    ramp = np.arange(256, dtype=np.uint16) * 257
    greys = np.stack([ramp, ramp, ramp])
    greys[0, 255] = 0  # an entry no pixel uses
    p = decode_photo(tiff(np.minimum(g, 254), photometric="palette", colormap=greys))
    assert p.channels == "gray" and p.pixels.dtype == np.uint8 and any("all greys" in n for n in p.notes)
    np.testing.assert_array_equal(p.pixels, np.minimum(g, 254))
    sepia = np.stack([ramp, ramp * 9 // 10, ramp * 7 // 10])
    p = decode_photo(tiff(g, photometric="palette", colormap=sepia))
    assert p.channels == "rgb" and p.pixels.dtype == np.uint16
    np.testing.assert_array_equal(p.pixels[..., 2], sepia[2][g])
    # a plane per sample (PlanarConfiguration 2), as some scanners and Photoshop write: read as the
    # contiguous form is (it was refused as an unsupported sample layout), 16-bit RGB with alpha too
    planes = np.stack([g, 255 - g, g // 2, np.full_like(g, 200)]).astype(np.uint16) * 257
    p = decode_photo(tiff(planes, photometric="rgb", planarconfig="separate", extrasamples=(2,)))
    np.testing.assert_array_equal(p.pixels, np.moveaxis(planes[:3], 0, -1))
    np.testing.assert_array_equal(p.alpha, planes[3])
    p = decode_photo(tiff(np.stack([g, 255 - g]), photometric="minisblack", planarconfig="separate", extrasamples=(2,)))
    assert p.channels == "gray" and np.array_equal(p.pixels, g) and np.array_equal(p.alpha, 255 - g)
    # what stays refused says why
    with pytest.raises(UnsupportedMediaError, match="bilevel"):
        decode_photo(tiff(g > 128, photometric="miniswhite"))
    buf = io.BytesIO()
    Image.fromarray(g > 128).save(buf, "PNG")   # as a 1-bit PNG, refused alike (it was colorized)
    with pytest.raises(UnsupportedMediaError, match=r"1-bit \(bilevel\) PNG: .* no grey tones"):
        decode_photo(buf.getvalue())
    with pytest.raises(UnsupportedMediaError, match="YCbCr TIFF with none compression"):
        decode_photo(tiff(rgb, photometric="ycbcr"))
    with pytest.raises(CorruptMediaError, match="beyond its 16-entry ColorMap"):  # tifffile writes no such file
        _unpalette(g, greys[:, :16])
    # Nor an old-style JPEG TIFF (libtiff reads, none writes it): one that says so, the tag changed
    old = bytearray(tiff(g))
    struct.pack_into("<H", old, tifffile.TiffFile(io.BytesIO(bytes(old))).pages[0].tags["Compression"].valueoffset, 6)
    with pytest.raises(UnsupportedMediaError, match=r"old-style JPEG-in-TIFF .* \(tiffcp -c lzw IN OUT\)"):
        decode_photo(bytes(old))


def test_tiffs_of_other_depths_than_8_and_16_bits_are_read_at_the_rendition_s_depth():
    """A 4-bit gray scan (old scanners' "16 grays") and 10-, 12- and 14-bit gray or RGB data
    (scientific cameras, film scanners) are read scaled to full 8 or 16 bits, noted, and written
    so: the scaling is exact to invert (they were refused, 8 or 16 bits only)."""
    g = gray_photo(size=64)
    for bits, photometric, channels in ((4, "minisblack", 1), (2, "miniswhite", 1), (12, "minisblack", 1),
                                        (10, "rgb", 3), (14, "minisblack", 2)):
        raw = (g.astype(np.uint32) * (2 ** bits - 1) // 255).astype(np.uint8 if bits < 8 else np.uint16)
        arr = raw if channels == 1 else np.dstack([raw] * channels)
        p = decode_photo(tiff(arr, bitspersample=bits, photometric=photometric,
                              **({"extrasamples": (2,)} if channels == 2 else {})))
        depth = 8 if bits < 8 else 16
        assert p.pixels.dtype == (np.uint8 if depth == 8 else np.uint16) and p.bit_depth == depth
        gray = p.pixels if p.pixels.ndim == 2 else p.pixels[..., 0]
        full = 2 ** depth - 1
        scaled = np.round(raw.astype(np.float64) * full / (2 ** bits - 1)).astype(int)
        want = full - scaled if photometric == "miniswhite" else scaled
        np.testing.assert_array_equal(gray, want)
        assert np.array_equal(np.round(gray.astype(np.float64) * (2 ** bits - 1) / full).astype(int),
                              (2 ** bits - 1 - raw if photometric == "miniswhite" else raw).astype(int))
        assert p.notes[0] == f"{bits}-bit samples read scaled to {depth} bits, the depth of the colour rendition"
        assert (p.alpha is not None) == (channels == 2)
        out = tifffile.imread(io.BytesIO(encode_photo(colourise(p), p, XMP)))
        assert out.dtype == p.pixels.dtype
    with pytest.raises(UnsupportedMediaError, match=r"TIFF with 32-bit float32 samples is not supported \(2 to 16"):
        decode_photo(tiff(g.astype(np.float32)))


def tiff_with_exif(order: str, exif: list[tuple[int, int, int, bytes]], gps: bool = True) -> bytes:
    """A 4x3 8-bit gray TIFF in byte ``order`` whose first directory points at an EXIF directory
    of ``exif`` entries (tag, type, count, value bytes in ``order``) and at a GPS one: as a
    camera-based digitisation system writes them. Written here: tifffile writes no EXIF.
    Layout: header, pixels, the three directories, then the values too long for their entries."""
    def short(v: int) -> bytes:
        return struct.pack(order + "HH", v, 0)

    def long(v: int) -> bytes:
        return struct.pack(order + "I", v)

    pixels = bytes(range(12))
    gps_entries = [(0, 1, 4, bytes([2, 3, 0, 0])), (1, 2, 2, b"N\0")]   # GPSVersionID, GPSLatitudeRef
    first_at = 8 + len(pixels)
    first_size = 2 + 12 * (10 + gps) + 4
    exif_at = first_at + first_size
    gps_at = exif_at + 2 + 12 * len(exif) + 4
    values_at = gps_at + (2 + 12 * len(gps_entries) + 4 if gps else 0)
    first = [(256, 3, 1, short(4)), (257, 3, 1, short(3)), (258, 3, 1, short(8)), (259, 3, 1, short(1)),
             (262, 3, 1, short(1)), (273, 4, 1, long(8)), (277, 3, 1, short(1)), (278, 3, 1, short(3)),
             (279, 4, 1, long(len(pixels))), (34665, 4, 1, long(exif_at))] + ([(34853, 4, 1, long(gps_at))] if gps else [])
    values = b""

    def directory(entries: list) -> bytes:
        nonlocal values
        out = struct.pack(order + "H", len(entries))
        for tag, kind, count, value in entries:
            if len(value) > 4:
                field = long(values_at + len(values))
                values += value + b"\0" * (len(value) % 2)
            else:
                field = value.ljust(4, b"\0")
            out += struct.pack(order + "HHI", tag, kind, count) + field
        return out + long(0)

    tables = directory(first) + directory(exif) + (directory(gps_entries) if gps else b"")
    head = (b"II*\0" if order == "<" else b"MM\0*") + long(first_at)
    return head + pixels + tables + values


def test_a_tiffs_exif_and_gps_data_are_carried_into_its_renditions():
    """A camera-digitised TIFF's EXIF directory (capture date, exposure, ISO, a comment) and GPS
    directory are written into its TIFF rendition (tifffile writes none: appended and pointed at)
    and into a JPEG one, from either byte order. Maker notes, which point into the source file,
    are left out, noted; so are the source's own pixel dimensions and colour space."""
    for order in ("<", ">"):
        exif = [(36867, 2, 20, b"1931:05:04 10:00:00\0"), (33434, 5, 1, struct.pack(order + "II", 1, 125)),
                (34855, 3, 1, struct.pack(order + "H", 400) + b"\0\0"), (37510, 7, 13, b"ASCII\0\0\0plate"),
                (40962, 4, 1, struct.pack(order + "I", 4)), (37500, 7, 6, b"Canon\0"),
                (40961, 3, 1, struct.pack(order + "H", 65535) + b"\0\0")]   # ColorSpace: uncalibrated (Adobe RGB)
        p = decode_photo(tiff_with_exif(order, exif))
        assert p.pixels.tolist() == [list(range(4)), list(range(4, 8)), list(range(8, 12))]
        assert p.notes == [("the camera's maker notes in the TIFF's EXIF data are not carried over (they point into "
                            "the source file)")]
        out = tifffile.TiffFile(io.BytesIO(encode_photo(colourise(p), p, XMP)))
        tags = out.pages[0].tags
        assert tags["ExifTag"].value == {"DateTimeOriginal": "1931:05:04 10:00:00", "ExposureTime": (1, 125),
                                         "ISOSpeedRatings": 400, "UserComment": "plate", "ColorSpace": 1}
        assert tags["GPSTag"].value["GPSLatitudeRef"] == "N" and tags["GPSTag"].value["GPSVersionID"] == bytes([2, 3, 0, 0])
        np.testing.assert_array_equal(out.pages[0].asarray()[..., 1], p.pixels)   # the pixels where tifffile put them
        adapt_to_format(p, "JPEG")
        exif_ifd = Image.open(io.BytesIO(encode_photo(colourise(p), p, XMP))).getexif().get_ifd(0x8769)
        assert exif_ifd[36867] == "1931:05:04 10:00:00" and exif_ifd[34855] == 400
    p = decode_photo(tiff_with_exif("<", [(36867, 2, 20, b"1931:05:04 10:00:00\0")], gps=False))
    assert not p.notes
    assert list(tifffile.TiffFile(io.BytesIO(encode_photo(colourise(p), p, XMP))).pages[0].tags["ExifTag"].value) == [
        "DateTimeOriginal"]
    broken = bytearray(tiff_with_exif("<", [(36867, 2, 20, b"1931:05:04 10:00:00\0")]))
    struct.pack_into("<I", broken, 20 + 2 + 12 * 9 + 8, len(broken) + 100)   # the EXIF pointer, past the end
    p = decode_photo(bytes(broken))
    assert p.exif is None and p.notes[0].startswith("the TIFF's EXIF data cannot be read")
    assert not decode_photo(tiff(gray_photo(size=16))).notes
    # a JPEG's EXIF, carried whole, says sRGB too: an Adobe RGB one's "uncalibrated" and its R03
    # interoperability index would have viewers show the sRGB rendition as Adobe RGB
    exif = Image.Exif()
    exif[0x0110] = "Scanner"
    directory = exif.get_ifd(0x8769)
    directory.update({36867: "1931:05:04 10:00:00", 40961: 65535, 40962: 16, 40963: 16})
    p = decode_photo(encode(Image.fromarray(gray_photo(size=16)), "JPEG", exif=exif.tobytes()))
    out = Image.open(io.BytesIO(encode_photo(colourise(p), p, XMP))).getexif()
    assert out[0x0110] == "Scanner" and dict(out.get_ifd(0x8769)) == {36867: "1931:05:04 10:00:00", 40961: 1}


def test_adapt_to_format_downconverts_16bit_for_jpeg():
    buf = io.BytesIO()
    tifffile.imwrite(buf, gray_photo(size=32).astype(np.uint16) * 257)
    p = decode_photo(buf.getvalue())
    adapt_to_format(p, "JPEG")
    assert p.pixels.dtype == np.uint8 and p.format == "JPEG" and any("8-bit" in n for n in p.notes)


def _jp2_boxes(data: bytes) -> dict[bytes, bytes]:
    boxes, at = {}, 12
    while at < len(data):
        length, kind = struct.unpack(">I4s", data[at:at + 8])
        boxes[kind] = data[at + 8:at + length]
        at += length
    return boxes


def test_jpeg2000_of_any_depth_round_trips_losslessly_with_its_profile_resolution_and_label():
    """JP2 preservation masters: 8-, 12- and 16-bit gray (OpenJPEG's own JP2 writer) are read at
    their depth, and their colour renditions are written losslessly at that depth, with the ICC
    profile, the capture resolution, any alpha, and the XMP label."""
    g = gray_photo(size=96)
    twelve = (g.astype(np.uint32) * 4095 // 255).astype(np.uint16)
    for bits, pixels in ((8, g), (12, twelve), (16, g.astype(np.uint16) * 257)):
        data = imagecodecs.jpeg2k_encode(pixels, codecformat=imagecodecs.JPEG2K.CODEC.JP2, bitspersample=bits,
                                         reversible=True)
        p = decode_photo(data)
        assert p.format == "JPEG2000" and p.bit_depth == bits and p.pixels.ndim == 2
        assert p.pixels.dtype == (np.uint8 if bits == 8 else np.uint16)
        assert abs(int(p.pixels.max()) - np.iinfo(p.pixels.dtype).max) <= 16   # scaled to the full range
        rgb = colourise(p)
        out = encode_photo(rgb, p, XMP)
        back = decode_photo(out)
        assert back.bit_depth == bits and back.pixels.shape == rgb.shape
        # lossless at the source's own depth: only the scaling to and from 16 bits rounds
        assert np.abs(back.pixels.astype(int) - rgb).max() <= (0 if bits in (8, 16) else 8)
        stored = imagecodecs.jpeg2k_decode(out)
        assert int(stored.max()) < 2 ** bits and stored.shape == rgb.shape   # stored at its own depth
    boxes = _jp2_boxes(out)
    assert boxes[b"uuid"].startswith(JP2_XMP_UUID) and DIGITAL_SOURCE_TYPE.encode() in boxes[b"uuid"]
    assert Image.open(io.BytesIO(out)).size == (rgb.shape[1], rgb.shape[0])   # others read it too

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    alpha = np.full(g.shape, 200, np.uint8)
    p.icc, p.alpha, p.resolution = srgb, alpha.astype(np.uint16) * 257, (600.0, 600.0)
    back = decode_photo(encode_photo(rgb, p, XMP))
    assert back.icc == srgb and back.resolution == (600.0, 600.0)
    assert back.alpha is not None and np.array_equal(back.alpha, p.alpha)


def test_bad_jpeg2000_is_refused_with_the_reason():
    good = imagecodecs.jpeg2k_encode(gray_photo(size=64), codecformat=imagecodecs.JPEG2K.CODEC.JP2)
    with pytest.raises(CorruptMediaError, match="runs past the end"):
        decode_photo(good[:len(good) // 2])
    bare = imagecodecs.jpeg2k_encode(gray_photo(size=64), codecformat=imagecodecs.JPEG2K.CODEC.J2K)
    with pytest.raises(UnsupportedMediaError, match="bare JPEG 2000 codestream"):
        decode_photo(bare)
    signed = imagecodecs.jpeg2k_encode(gray_photo(size=64).astype(np.int16) - 128,
                                       codecformat=imagecodecs.JPEG2K.CODEC.JP2)
    with pytest.raises(UnsupportedMediaError, match="signed"):
        decode_photo(signed)


SOURCE_XMP = (b'<?xpacket begin="\xef\xbb\xbf" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
              b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" '
              b'xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:xmp="http://ns.adobe.com/xap/1.0/" '
              b'xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/" xmp:CreatorTool="ScanStation 5" '
              b'xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="6" photoshop:ColorMode="1" '
              b'photoshop:TransmissionReference="ACC-1931-0042"><dc:title><rdf:Alt><rdf:li xml:lang="x-default">'
              b'Harbour, 1931</rdf:li></rdf:Alt></dc:title><dc:description><rdf:Alt><rdf:li xml:lang="x-default">'
              b'Fishing boats at the quay</rdf:li></rdf:Alt></dc:description></rdf:Description></rdf:RDF>'
              b'</x:xmpmeta><?xpacket end="w"?>')


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "TIFF", "WEBP", "JPEG2000"])
def test_the_sources_descriptive_xmp_is_carried_under_our_label(fmt):
    """A catalogued scan's XMP (title, accession number, caption) survives in its colour
    rendition; the properties we set (source type, creator tool, derived-from) are ours; the
    caption follows our note."""
    import xml.etree.ElementTree as ET

    g = gray_photo(size=64)
    if fmt == "TIFF":
        buf = io.BytesIO()
        tifffile.imwrite(buf, g, extratags=[(700, 1, len(SOURCE_XMP), SOURCE_XMP, True)])
        data = buf.getvalue()
    elif fmt == "JPEG2000":   # our own JP2 writer, the source's packet in its XMP box
        data = encode_photo(g, Photo(g, "JPEG2000"), SOURCE_XMP)
    elif fmt == "PNG":
        info = PngImagePlugin.PngInfo()
        info.add_itxt("XML:com.adobe.xmp", SOURCE_XMP.decode())
        data = encode(Image.fromarray(g), fmt, pnginfo=info)
    else:
        data = encode(Image.fromarray(g), fmt, xmp=SOURCE_XMP)
    p = decode_photo(data)
    assert p.xmp and b"ACC-1931-0042" in p.xmp
    out = encode_photo(colourise(p), p, XMP)
    back = decode_photo(out)
    root = ET.fromstring(back.xmp)
    ns = {"rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#", "dc": "http://purl.org/dc/elements/1.1/"}
    texts = {el.tag.split("}")[1]: [li.text for li in el.iter("{%s}li" % ns["rdf"])]
             for el in root.iter() if el.tag.startswith("{%s}" % ns["dc"])}
    assert texts["title"] == ["Harbour, 1931"]
    assert back.xmp.count(b"ACC-1931-0042") == 1
    assert texts["description"] == [f"{NOTE}\n\nFishing boats at the quay"]
    assert b"ScanStation 5" not in back.xmp   # the creator tool is ours now
    assert b"Orientation" not in back.xmp and b"ColorMode" not in back.xmp   # upright and RGB now
    attrs = {k.split("}")[1]: v for el in root.iter() for k, v in el.attrib.items() if "}" in k}
    assert attrs["DigitalSourceType"] == DIGITAL_SOURCE_TYPE and attrs["DerivedFrom"] == "urn:sha256:" + "a" * 64
    assert not p.notes


def test_unreadable_source_xmp_is_noted_and_our_label_still_written():
    g = gray_photo(size=64)
    p = decode_photo(encode(Image.fromarray(g), "JPEG", xmp=b"<x:xmpmeta><unclosed>"))
    out = Image.open(io.BytesIO(encode_photo(colourise(p), p, XMP)))
    assert DIGITAL_SOURCE_TYPE.encode() in out.info["xmp"] and b"unclosed" not in out.info["xmp"]
    assert any("not well-formed" in n for n in p.notes)


def _sidecar(body: str, document_id: str | None = None) -> bytes:
    """An XMP sidecar file as a catalogue writes one: an XML declaration and a byte order mark."""
    doc = f' xmpMM:DocumentID="{document_id}"' if document_id else ""
    return ('\ufeff<?xml version="1.0" encoding="UTF-8"?>\n<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
            'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" '
            'xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:xmpMM="http://ns.adobe.com/xap/1.0/mm/" '
            'xmlns:crs="http://ns.adobe.com/camera-raw-settings/1.0/" crs:Exposure2012="+0.35" '
            f'xmlns:xmpRights="http://ns.adobe.com/xap/1.0/rights/"{doc}>{body}</rdf:Description></rdf:RDF>'
            '</x:xmpmeta>').encode()


def test_an_xmp_sidecar_is_laid_over_the_files_own_xmp_unless_it_is_of_another_document():
    """A catalogue's sidecar beside a scan: what it says wins over what the file says of itself,
    what it does not say of the file is kept, and our label goes over both; a sidecar that is no
    XMP, or that names another document, is noted and not carried."""
    import xml.etree.ElementTree as ET

    g = gray_photo(size=64)
    embedded = SOURCE_XMP.replace(b'rdf:about="" ', b'rdf:about="" xmlns:xmpMM="http://ns.adobe.com/xap/1.0/mm/" '
                                  b'xmpMM:DocumentID="xmp.did:scan-42" ')
    side = _sidecar('<dc:title><rdf:Alt><rdf:li xml:lang="x-default">Harbour at dawn, 1931</rdf:li></rdf:Alt>'
                    '</dc:title><xmpRights:UsageTerms><rdf:Alt><rdf:li xml:lang="x-default">CC BY 4.0</rdf:li>'
                    '</rdf:Alt></xmpRights:UsageTerms>', "xmp.did:scan-42")
    for own in (embedded, None):
        p = Photo(g, "TIFF", xmp=own)
        p.xmp = with_sidecar_xmp(p.xmp, side, "harbour.xmp", p.notes)
        back = decode_photo(encode_photo(colourise(p), p, XMP))
        root = ET.fromstring(back.xmp)
        rdf = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}"
        texts = {el.tag.split("}")[1]: [li.text for li in el.iter(f"{rdf}li")]
                 for el in root.iter() if el.tag.startswith("{http")}
        assert texts["title"] == ["Harbour at dawn, 1931"] and texts["UsageTerms"] == ["CC BY 4.0"]
        assert DIGITAL_SOURCE_TYPE.encode() in back.xmp and b"DocumentID" not in back.xmp
        assert b"Exposure2012" not in back.xmp   # Camera Raw's develop settings: not for the colour rendition
        if own:   # the file's own accession number and caption, which the sidecar does not set, are kept
            assert back.xmp.count(b"ACC-1931-0042") == 1 and texts["description"][0].endswith("Fishing boats at the quay")
            assert p.notes == ["the XMP sidecar harbour.xmp carried over, laid over the file's own XMP"]
        else:
            assert p.notes == ["the XMP sidecar harbour.xmp carried over"]
    # Photoshop's list of the documents placed in the source (which grows to megabytes in some
    # files) is not carried: the rest fits in a JPEG's one XMP segment.
    ancestors = "".join(f"<rdf:li>xmp.did:{n:032x}</rdf:li>" for n in range(3000))
    big = _sidecar('<dc:title><rdf:Alt><rdf:li xml:lang="x-default">Harbour at dawn, 1931</rdf:li></rdf:Alt>'
                   '</dc:title><photoshop:DocumentAncestors xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/">'
                   f'<rdf:Bag>{ancestors}</rdf:Bag></photoshop:DocumentAncestors>')
    assert len(big) > 65000
    p = decode_photo(encode(Image.fromarray(g), "JPEG"))
    p.xmp = with_sidecar_xmp(p.xmp, big, "harbour.xmp", p.notes)
    out = Image.open(io.BytesIO(encode_photo(colourise(p), p, XMP))).info["xmp"]
    assert b"Harbour at dawn, 1931" in out and b"DocumentAncestors" not in out
    assert p.notes == ["the XMP sidecar harbour.xmp carried over"]
    for bad, why in ((b"Harbour, 1931: a typed note", "not well-formed XML"),
                     (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"/>', "holds no RDF"),
                     (_sidecar("<dc:title>Another photo</dc:title>", "xmp.did:scan-43"),
                      "describes another document (xmpMM:DocumentID xmp.did:scan-43, the file's is xmp.did:scan-42)")):
        notes: list[str] = []
        assert with_sidecar_xmp(embedded, bad, "harbour.xmp", notes) == embedded
        assert len(notes) == 1 and notes[0].startswith("the XMP sidecar harbour.xmp ") and why in notes[0]
        assert notes[0].endswith(": not carried over")


def _iim(dataset: int, value: bytes) -> bytes:
    return b"\x1c\x02" + bytes([dataset]) + struct.pack(">H", len(value)) + value


IPTC = _iim(0, b"\x00\x04") + _iim(120, b"Fishing boats at the quay") + _iim(5, b"Harbour")


def test_iptc_captions_are_carried_in_jpeg_and_tiff():
    """IPTC-IIM (caption, object name), where many photo archives still keep their captions."""
    from PIL import IptcImagePlugin

    g = gray_photo(size=64)
    irb = b"8BIM\x04\x04\x00\x00" + struct.pack(">I", len(IPTC)) + IPTC + b"\x00" * (len(IPTC) % 2)
    payload = b"Photoshop 3.0\x00" + irb
    jpeg = encode(Image.fromarray(g), "JPEG")
    jpeg = jpeg[:2] + b"\xff\xed" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]
    p = decode_photo(jpeg)
    out = Image.open(io.BytesIO(encode_photo(colourise(p), p, XMP)))
    info = IptcImagePlugin.getiptcinfo(out)
    assert info[(2, 120)] == b"Fishing boats at the quay" and info[(2, 5)] == b"Harbour"
    assert DIGITAL_SOURCE_TYPE.encode() in out.info["xmp"]    # beside our label, not instead of it

    buf = io.BytesIO()
    tifffile.imwrite(buf, g, extratags=[(33723, 7, len(IPTC), IPTC, True)])
    p = decode_photo(buf.getvalue())
    with tifffile.TiffFile(io.BytesIO(encode_photo(colourise(p), p, XMP))) as tif:
        assert bytes(tif.pages[0].tags[33723].value) == IPTC

    p = decode_photo(jpeg)                  # a JPEG's captions into a TIFF, and a TIFF's into a JPEG
    adapt_to_format(p, "TIFF")
    with tifffile.TiffFile(io.BytesIO(encode_photo(colourise(p), p, XMP))) as tif:
        assert bytes(tif.pages[0].tags[33723].value) == IPTC
    p = decode_photo(buf.getvalue())
    adapt_to_format(p, "JPEG")
    out = Image.open(io.BytesIO(encode_photo(colourise(p), p, XMP)))
    assert IptcImagePlugin.getiptcinfo(out)[(2, 120)] == b"Fishing boats at the quay"

    p = decode_photo(jpeg)
    adapt_to_format(p, "PNG")
    assert p.iptc is None and any("IPTC-IIM metadata not carried" in n for n in p.notes)
