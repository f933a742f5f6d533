"""Rebuild samples/archive from scikit-image's bundled photos (held out of training).

    python samples/make_samples.py

Each original is made black and white (or sepia-toned) and saved in one of the formats an
archive meets: 8-bit JPEG with an EXIF orientation, PNG, 16-bit LZW TIFF, WebP, and a
toned print scanned in RGB. samples/README.md lists origins, licences and checksums.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import skimage.data
import tifffile
from PIL import Image

OUT = Path(__file__).parent / "archive"


def gray(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb).convert("L"))


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    files: dict[str, bytes] = {}

    # A portrait scanned sideways: stored rotated, with EXIF orientation 6 to put it upright.
    astro = Image.fromarray(gray(skimage.data.astronaut())).rotate(90, expand=True)
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010E] = "Portrait, gelatin silver print (sample)"
    buf = io.BytesIO()
    astro.save(buf, "JPEG", quality=92, exif=exif.tobytes(), dpi=(300, 300))
    files["portraits/astronaut.jpg"] = buf.getvalue()

    buf = io.BytesIO()
    Image.fromarray(gray(skimage.data.chelsea())).save(buf, "PNG")
    files["animals/chelsea cat.png"] = buf.getvalue()  # a space in the name, as archives have

    coffee16 = gray(skimage.data.coffee()).astype(np.uint16) * 257
    buf = io.BytesIO()
    tifffile.imwrite(buf, coffee16, compression="lzw", resolution=(600, 600),
                     description="Still life, 16-bit scan (sample)")
    files["still-life/coffee-16bit.tif"] = buf.getvalue()

    buf = io.BytesIO()
    Image.fromarray(gray(skimage.data.rocket())).convert("RGB").save(buf, "WEBP", quality=90)
    files["transport/rocket.webp"] = buf.getvalue()

    # A sepia-toned print scanned in RGB: the model must see its luminance only.
    g = gray(skimage.data.chelsea()).astype(np.float32) / 255
    sepia = np.stack([g * 1.0, g * 0.86, g * 0.66], axis=-1) * 255
    buf = io.BytesIO()
    Image.fromarray(np.clip(sepia, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=92)
    files["animals/chelsea-sepia.jpg"] = buf.getvalue()

    for rel, data in files.items():
        (OUT / rel).parent.mkdir(parents=True, exist_ok=True)
        (OUT / rel).write_bytes(data)
        print(f"{hashlib.sha256(data).hexdigest()}  {rel}")


if __name__ == "__main__":
    main()
