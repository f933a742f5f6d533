"""colorize_core: the pure library of the archive colorization system (never imports prefect)."""

__version__ = "0.1.0"

from colorize_core.colorizer import Colorizer  # noqa: E402
from colorize_core.errors import (  # noqa: E402
    ColorizeError,
    CorruptMediaError,
    DatasetError,
    MediaTooLargeError,
    ModelError,
    NotFoundError,
    StorageError,
    UnsafePathError,
    UnsupportedMediaError,
)

__all__ = ["Colorizer", "ColorizeError", "CorruptMediaError", "DatasetError", "MediaTooLargeError", "ModelError",
           "NotFoundError", "StorageError", "UnsafePathError", "UnsupportedMediaError", "__version__"]
