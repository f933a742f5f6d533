"""Rebuild samples/archive from scikit-image's bundled photos (held out of training).

    python samples/make_samples.py

Each original is made black and white (or sepia-toned) and saved in one of the formats an
archive meets: 8-bit JPEG with an EXIF orientation, PNG, 16-bit LZW TIFF, WebP, and a
toned print scanned in RGB. A short film is made from two of them: a camera pan across the
coffee still life, a cut, a slow push in on the astronaut, with a sine tone as its sound track
(H.264 + AAC in MP4, 24 frames/s). samples/README.md lists origins, licences and checksums.
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import tempfile
from pathlib import Path

import cv2
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

    files["film/two shots.mp4"] = film(gray(skimage.data.coffee()), gray(skimage.data.astronaut()))

    for rel, data in files.items():
        (OUT / rel).parent.mkdir(parents=True, exist_ok=True)
        (OUT / rel).write_bytes(data)
        print(f"{hashlib.sha256(data).hexdigest()}  {rel}")


def film(first: np.ndarray, second: np.ndarray, size: tuple[int, int] = (320, 240), fps: int = 24) -> bytes:
    """Two shots of 36 frames: a pan left to right across ``first``, a push in on ``second``."""
    w, h = size
    frames = []
    for i in range(36):  # pan: a window of the frame's aspect sliding across
        win_h = first.shape[0]
        win_w = int(win_h * w / h)
        x = int((first.shape[1] - win_w) * i / 35)
        frames.append(cv2.resize(first[:, x:x + win_w], size, interpolation=cv2.INTER_AREA))
    for i in range(36):  # push in: the window shrinks towards the face
        scale = 1 - 0.4 * i / 35
        win_w = int(min(second.shape[1], second.shape[0] * w / h) * scale)
        win_h = int(win_w * h / w)
        y, x = int((second.shape[0] - win_h) * 0.2), int((second.shape[1] - win_w) * 0.5)
        frames.append(cv2.resize(second[y:y + win_h, x:x + win_w], size, interpolation=cv2.INTER_AREA))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "film.mp4"
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "gray", "-s", f"{w}x{h}",
                        "-framerate", str(fps), "-i", "pipe:", "-f", "lavfi", "-i",
                        f"sine=frequency=220:duration={len(frames) / fps}", "-c:v", "libx264", "-crf", "20",
                        "-pix_fmt", "yuv420p", "-threads", "1", "-c:a", "aac", "-b:a", "64k", "-shortest",
                        "-map_metadata", "-1", "-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact",
                        str(out)], input=np.stack(frames).tobytes(), check=True)
        return out.read_bytes()


if __name__ == "__main__":
    main()
