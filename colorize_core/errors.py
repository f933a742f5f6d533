"""Typed errors of the core library. The flows turn them into recorded, visible failures."""


class ColorizeError(Exception):
    """Base class: every error the core raises on purpose derives from it."""


class MediaError(ColorizeError):
    """A media item cannot be processed; the message says why in a user's terms."""


class CorruptMediaError(MediaError):
    """The bytes are not a decodable file of the format they claim (empty, truncated, garbage)."""


class UnrecognisedMediaError(CorruptMediaError):
    """The bytes match no photo format's signature at all (a text file, a sound file, garbage)."""


class ChecksumMismatchError(CorruptMediaError):
    """The bytes read do not have the checksum the archive declares for them (a BagIt manifest's):
    the original changed or was damaged since it was bagged."""


class UnsupportedMediaError(MediaError):
    """A valid file of a kind this system does not process (animated GIF, multi-page TIFF...)."""


class MediaTooLargeError(MediaError):
    """Declared dimensions exceed the configured limit; refused before decoding."""


class ModelError(ColorizeError):
    """Unknown model, unreadable weights, or weights whose checksum does not match."""


class StorageError(ColorizeError):
    """A source or destination cannot be read, listed or written."""


class NotFoundError(StorageError):
    """A source folder, bucket or object does not exist (retrying will not help)."""


class UnsafePathError(StorageError):
    """A key or path would resolve outside its destination (``..`` segments and the like)."""


class ProvenanceError(ColorizeError):
    """The provenance database cannot be opened, migrated or written."""


class DestinationBusyError(ColorizeError):
    """Another job holds the destination's lease in the provenance database (it is writing there now)."""


class JobStoppedError(ColorizeError):
    """The job this work belongs to is no longer running (cancelled, or marked crashed when
    another job took DEST over): the work stops instead of writing on into DEST."""


class ReviewError(ColorizeError):
    """A review decision that cannot be taken (an item that failed, an invalid redo parameter)."""


class DatasetError(ColorizeError):
    """A training dataset that cannot be used: no sources.json, too few images, unreadable files."""


class TrainingError(ColorizeError):
    """A training run that cannot go on as asked: a checkpoint left by a run with other settings or data."""


class FixityError(ColorizeError):
    """A fixity check that cannot be made as asked: nothing recorded for the destination, an unknown job."""


class RelocationError(ColorizeError):
    """A destination that cannot be relocated as asked: nothing recorded there, the new place
    missing, or already holding another destination's recorded outputs."""


def _ours() -> dict[str, type[ColorizeError]]:
    found, todo = {}, [ColorizeError]
    while todo:
        cls = todo.pop()
        found[cls.__name__] = cls
        todo.extend(cls.__subclasses__())
    return found


def common_error(names: list[str | None]) -> type[ColorizeError]:
    """The most specific of these errors that every one of ``names`` (recorded error types) is:
    the type itself when they are all one, StorageError for a StorageError and a NotFoundError,
    ColorizeError when they share nothing more or one of them is not this library's."""
    ours = _ours()
    classes = [ours.get(name or "", ColorizeError) for name in names] or [ColorizeError]
    return next(base for base in classes[0].__mro__ if all(issubclass(c, base) for c in classes))
