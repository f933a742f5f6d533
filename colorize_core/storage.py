"""Storage by URI: local folders, ``file://`` URIs and ``s3://bucket/prefix`` (boto3).

A :class:`Location` is a root; items under it are named by a relative path with ``/``
separators. Listing is recursive (S3: paginated) and sorted. Writes are atomic and never
clobber: a local file is written beside its target and hard-linked into place (which fails
if the target exists); an S3 object is put with ``If-None-Match: *``. Relative paths with
empty, ``.`` or ``..`` segments are refused, so nothing is ever written outside a root.

S3 uses boto3's standard configuration (``AWS_ENDPOINT_URL``, credential chain, profiles);
an endpoint can also be given explicitly.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import posixpath
import re
import shutil
import socket
import stat
import tempfile
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, NamedTuple

from colorize_core.errors import NotFoundError, StorageError, UnsafePathError

TMP_PREFIX = ".colorize-tmp-"


_HOST = re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname()) or "host"
_WORK_DIR = re.compile(r"colorize-[a-z0-9]+-(\d+)@(.+)\.[A-Za-z0-9_]{8}")


def work_dir(kind: str) -> tempfile.TemporaryDirectory:
    """A temporary folder for a piece of work (a shot's segments, a download), named for this
    process and host (``colorize-KIND-PID@HOST.xxxxxxxx``) so that one a killed process left
    behind is told from one in use and removed (:func:`sweep_work_dirs`)."""
    return tempfile.TemporaryDirectory(prefix=f"colorize-{kind}-{os.getpid()}@{_HOST}.")


def sweep_work_dirs(root: str | Path | None = None) -> list[tuple[Path, int]]:
    """Remove the work folders (:func:`work_dir`) under ``root`` (the temporary folder) that
    processes of this host no longer running left behind: killed (SIGKILL, out of memory)
    mid-shot, a process leaves its segments there, gigabytes for a long shot in FFV1.
    Folders of other hosts (a shared temporary folder), of running processes and of other users
    are left alone. Returns each folder removed with the bytes it held."""
    removed = []
    for path in Path(root or tempfile.gettempdir()).iterdir():
        m = _WORK_DIR.fullmatch(path.name)
        if not m or m[2] != _HOST or int(m[1]) == os.getpid():
            continue
        try:
            if not path.is_dir() or path.is_symlink() or path.stat().st_uid != os.getuid():
                continue
            os.kill(int(m[1]), 0)
            continue   # running: its own
        except ProcessLookupError:
            pass       # gone: the folder is what it left
        except OSError:
            continue   # running as someone else, or the folder went meanwhile
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())
        shutil.rmtree(path, ignore_errors=True)
        removed.append((path, size))
    return removed


def _read_umask() -> int:
    mask = os.umask(0o022)   # the umask can only be read by setting it: once, at import
    os.umask(mask)
    return mask


UMASK = _read_umask()


def _cannot_write(target: Path, exc: OSError, folder: bool = False) -> StorageError:
    """The StorageError of a failed local write to ``target``: what the system said, and for a
    ``folder`` that could not be made, which one (a file may be where it must be)."""
    where = f" ({exc.filename})" if folder and exc.filename else ""
    return StorageError(f"cannot write {target}: {exc.strerror or exc}{where}")


def _work_disk_refused(uri: str, path: Path, exc: OSError) -> StorageError:
    """The StorageError of a copy of ``uri`` that the work folder holding ``path`` refused."""
    return StorageError(f"cannot copy {uri} into the work folder {path.parent}: {exc.strerror or exc} (set TMPDIR to "
                        "a larger disk)")


def new_file_beside(folder: Path, suffix: str = "") -> tuple[int, Path]:
    """A new, empty, hidden file of this process's own in ``folder`` (open: its descriptor and
    path), to be moved into place when written, with the permissions a plain ``open()`` gives
    (0644 under the usual umask). mkstemp's own are the owner's only (0600): a web server
    publishing DEST, or a reviewer's account, could not have read the outputs."""
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=suffix, dir=folder)
    os.fchmod(fd, 0o666 & ~UMASK)
    return fd, Path(tmp)


@dataclass(frozen=True)
class Entry:
    rel: str       # path relative to the root, "/"-separated
    size: int
    version: str   # S3 ETag or local mtime in ns: a quick check for "unchanged since"


class Unlisted(NamedTuple):
    """Something under a local root that a listing did not give as a file, and why, so that it can
    be recorded rather than dropped: a symbolic link to a folder (not followed: it may lead
    anywhere, or back up the tree), a broken link, a folder that cannot be read, or something
    that is no regular file (reading a FIFO would wait for ever)."""

    rel: str
    kind: str      # folder-link | broken-link | unreadable-folder | not-a-file
    message: str


class Digest(NamedTuple):
    """What :meth:`Location.digest` read: the bytes' sha256 and size, and the version (as a
    listing's :class:`Entry` gives it) they were read at; None when the file changed while it
    was read, so that no version is ever paired with bytes it did not hold."""

    sha256: str
    size: int
    version: str | None


def check_rel(rel: str) -> str:
    """Return ``rel`` if it is a safe relative path; raise UnsafePathError otherwise."""
    parts = rel.split("/")
    if not rel or rel.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\x00" in rel:
        raise UnsafePathError(f"unsafe relative path {rel!r}: empty, '.' or '..' segments are refused")
    return rel


class Location:
    """A root folder or prefix. Create with :func:`open_location`."""

    uri: str

    def list(self, exclude: Location | None = None, interrupted: list[Entry] | None = None,
             unlisted: list[Unlisted] | None = None) -> Iterator[Entry]:
        """Every visible file under the root, recursively, sorted. Hidden names (files and folders)
        are skipped; the hidden temporaries (``.colorize-tmp-*``) of writes that never finished (a
        process killed mid-write leaves its partial copy beside the target) are appended to
        ``interrupted`` when given, in the same pass, and what is not listed although visible
        (links to folders, broken links, unreadable folders, FIFOs) to ``unlisted``. S3 has
        neither: an object is put whole or not at all, and is always a file."""
        raise NotImplementedError

    def read(self, rel: str, limit: int | None = None) -> bytes:
        """``rel``'s bytes, or its first ``limit`` bytes. Raises StorageError if it cannot be read."""
        raise NotImplementedError

    def exists(self, rel: str) -> bool:
        raise NotImplementedError

    def digest(self, rel: str) -> Digest:
        """The sha256, size and version of ``rel``'s bytes as stored now, read as a stream (a film
        of any size). Raises NotFoundError if it is not there, StorageError if it cannot be read."""
        raise NotImplementedError

    def write_new(self, rel: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        """Atomically create ``rel``; raises FileExistsError if it exists already."""
        raise NotImplementedError

    def local_copy(self, rel: str) -> contextlib.AbstractContextManager[Path]:
        """A local file holding ``rel`` for the duration of the ``with`` block (for tools such
        as ffmpeg that read files): the file itself for a folder, a temporary download for S3."""
        raise NotImplementedError

    def fetch(self, rel: str, path: Path) -> None:
        """Copy ``rel`` of a remote store into the local file ``path`` (in a work folder; a
        folder's own files are read where they are): StorageError when it cannot be read, or when
        the work folder's disk refuses it (full, over quota)."""
        raise NotImplementedError

    def put_file_new(self, rel: str, path: Path, content_type: str = "application/octet-stream") -> None:
        """Like :meth:`write_new` for a (large) local file, streamed rather than held in memory."""
        raise NotImplementedError

    def delete(self, rel: str) -> None:
        """Remove a working file the job itself wrote (shot segments once the film is joined), and
        the folder it leaves empty."""
        raise NotImplementedError

    def replace(self, rel: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        """Atomically write ``rel``, replacing it: only for generated indexes (the latest manifest)."""
        raise NotImplementedError

    def replace_file(self, rel: str, path: Path, content_type: str = "application/octet-stream") -> None:
        """Like :meth:`replace` for a (large) local file, streamed rather than held in memory."""
        raise NotImplementedError

    def uri_of(self, rel: str) -> str:
        raise NotImplementedError

    def rel_of(self, uri: str) -> str | None:
        """The relative path of ``uri`` under this root (the inverse of :meth:`uri_of`); None
        when it is not under it."""
        root = self.uri.rstrip("/") + "/"
        return uri[len(root):] if uri.startswith(root) else None

    def check(self) -> None:
        """Raise NotFoundError if the root (folder, bucket) does not exist."""
        raise NotImplementedError

    def contains(self, other: Location) -> bool:
        raise NotImplementedError

    def child(self, rel: str) -> Location:
        """The folder (prefix) ``rel`` under this root, as a location of its own."""
        raise NotImplementedError


class LocalLocation(Location):
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.uri = str(self.root)

    def _path(self, rel: str) -> Path:
        return self.root.joinpath(*check_rel(rel).split("/"))

    def list(self, exclude: Location | None = None, interrupted: list[Entry] | None = None,
             unlisted: list[Unlisted] | None = None) -> Iterator[Entry]:
        if not self.root.is_dir():
            raise NotFoundError(f"source folder {self.root} does not exist or is not a folder")
        if not os.access(self.root, os.R_OK | os.X_OK):
            raise StorageError(f"cannot list folder {self.root}: permission denied")
        skip = exclude.root if isinstance(exclude, LocalLocation) and exclude.root != self.root else None
        note = unlisted.append if unlisted is not None else lambda problem: None

        def rel(path: Path) -> str:
            return path.relative_to(self.root).as_posix()

        def unreadable(exc: OSError) -> None:
            note(Unlisted(rel(Path(exc.filename)), "unreadable-folder",
                          f"folder not read: {exc.strerror or exc}; nothing in it was listed"))

        for folder, dirs, files in os.walk(self.root, onerror=unreadable):
            here = Path(folder)
            for d in sorted(dirs):
                if not d.startswith(".") and (here / d).is_symlink():   # os.walk does not go in: say so
                    note(Unlisted(rel(here / d), "folder-link",
                                  f"a symbolic link to the folder {os.readlink(here / d)}: not followed (it "
                                  "may lead anywhere, or back up the tree); give that folder as a SOURCE of "
                                  "its own"))
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and (skip is None or here / d != skip))
            for name in sorted(files):
                temporary = name.startswith(TMP_PREFIX)
                if name.startswith(".") and not (temporary and interrupted is not None):
                    continue  # hidden files and our own temporaries
                path = here / name
                try:
                    st = path.lstat() if temporary else path.stat()
                except OSError as exc:
                    if not temporary and path.is_symlink():
                        note(Unlisted(rel(path), "broken-link", f"a broken symbolic link to {os.readlink(path)}: "
                                                                f"{exc.strerror or exc}"))
                    continue  # else it vanished between listing and stat (a temporary: its write finished)
                if not stat.S_ISREG(st.st_mode):
                    note(Unlisted(rel(path), "not-a-file", "not a regular file (a FIFO, socket or device): "
                                                           "not read"))
                    continue
                entry = Entry(rel(path), st.st_size, str(st.st_mtime_ns))
                if temporary:
                    interrupted.append(entry)
                else:
                    yield entry

    def read(self, rel: str, limit: int | None = None) -> bytes:
        try:
            with open(self._path(rel), "rb") as fh:
                return fh.read(-1 if limit is None else limit)
        except OSError as exc:
            raise StorageError(f"cannot read {self.uri_of(rel)}: {exc.strerror or exc}") from exc

    def exists(self, rel: str) -> bool:
        return self._path(rel).exists()

    def digest(self, rel: str) -> Digest:
        path = self._path(rel)
        try:
            with open(path, "rb") as fh:
                before = os.fstat(fh.fileno())
                sha = hashlib.file_digest(fh, "sha256").hexdigest()
                after = os.fstat(fh.fileno())
        except FileNotFoundError as exc:
            raise NotFoundError(f"{path} is not there") from exc
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc.strerror or exc}") from exc
        same = (before.st_mtime_ns, before.st_size) == (after.st_mtime_ns, after.st_size)
        return Digest(sha, after.st_size, str(before.st_mtime_ns) if same else None)

    def _new_tmp(self, target: Path) -> tuple[int, Path]:
        """A new temporary file beside ``target``, its folders made; StorageError when they cannot be."""
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _cannot_write(target, exc, folder=True) from exc
        try:
            return new_file_beside(target.parent)
        except OSError as exc:
            raise _cannot_write(target, exc) from exc

    def _write_tmp(self, target: Path, data: bytes) -> Path:
        """``data`` in a new temporary file beside ``target``, on disk. A write that fails (the disk
        full, an I/O error) removes its partial file, which would otherwise keep the space, and
        raises StorageError."""
        fd, tmp = self._new_tmp(target)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise _cannot_write(target, exc) from exc
        return tmp

    def write_new(self, rel: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        target = self._path(rel)
        tmp = self._write_tmp(target, data)
        try:
            os.link(tmp, target)  # atomic, and raises FileExistsError if the target exists
        except FileExistsError:
            raise  # the caller picks another name: not a storage failure
        except OSError as exc:
            raise _cannot_write(target, exc) from exc
        finally:
            os.unlink(tmp)

    def local_copy(self, rel: str) -> contextlib.AbstractContextManager[Path]:
        path = self._path(rel)
        if not path.is_file():
            raise StorageError(f"cannot read {path}: not a file")
        return contextlib.nullcontext(path)

    def put_file_new(self, rel: str, path: Path, content_type: str = "application/octet-stream") -> None:
        target = self._path(rel)
        fd, tmp = self._new_tmp(target)
        os.close(fd)
        try:
            shutil.copyfile(path, tmp)
            os.link(tmp, target)
        except FileExistsError:
            raise
        except OSError as exc:
            raise _cannot_write(target, exc) from exc
        finally:
            tmp.unlink(missing_ok=True)

    def delete(self, rel: str) -> None:
        path = self._path(rel)
        path.unlink(missing_ok=True)
        if path.parent != self.root:   # and the folder it was in, once empty (not those above, where
            with contextlib.suppress(OSError):   # other work may be writing: a film's shot segments)
                path.parent.rmdir()

    def replace(self, rel: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        target = self._path(rel)
        tmp = self._write_tmp(target, data)
        try:
            os.replace(tmp, target)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise _cannot_write(target, exc) from exc

    def replace_file(self, rel: str, path: Path, content_type: str = "application/octet-stream") -> None:
        target = self._path(rel)
        fd, tmp = self._new_tmp(target)
        try:
            with os.fdopen(fd, "wb") as out, open(path, "rb") as src:
                shutil.copyfileobj(src, out, 1 << 20)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise _cannot_write(target, exc) from exc

    def uri_of(self, rel: str) -> str:
        return str(self._path(rel))

    def check(self) -> None:
        if not self.root.is_dir():
            raise NotFoundError(f"folder {self.root} does not exist or is not a folder")

    def contains(self, other: Location) -> bool:
        return isinstance(other, LocalLocation) and other.root.is_relative_to(self.root)

    def child(self, rel: str) -> Location:
        return LocalLocation(self._path(rel))


@functools.cache
def s3_client(endpoint_url: str | None = None):  # noqa: ANN201 (boto3 client type)
    import boto3

    return boto3.session.Session().client("s3", endpoint_url=endpoint_url or None)


class S3Location(Location):
    def __init__(self, bucket: str, prefix: str, endpoint_url: str | None = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.endpoint_url = endpoint_url
        self.uri = f"s3://{bucket}/{self.prefix}".rstrip("/")

    @property
    def client(self):  # noqa: ANN201
        return s3_client(self.endpoint_url)

    def _key(self, rel: str) -> str:
        return self.prefix + check_rel(rel)

    def _error(self, action: str, exc: Exception) -> StorageError:
        return StorageError(f"cannot {action} {self.uri}: {exc}")

    def check(self) -> None:
        """Raise NotFoundError if the bucket does not exist (a cheap early check)."""
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchBucket", "NotFound"):
                raise NotFoundError(f"bucket {self.bucket!r} does not exist ({self.uri})") from exc
            raise self._error("reach", exc) from exc

    def list(self, exclude: Location | None = None, interrupted: list[Entry] | None = None,
             unlisted: list[Unlisted] | None = None) -> Iterator[Entry]:
        from botocore.exceptions import BotoCoreError, ClientError

        skip = exclude.prefix if isinstance(exclude, S3Location) and exclude.bucket == self.bucket \
            and exclude.prefix != self.prefix else None
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix)
            for page in pages:
                for obj in page.get("Contents", []):
                    key = obj["Key"]
                    if key.endswith("/") or (skip and key.startswith(skip)):
                        continue  # folder markers; our own destination inside the source
                    rel = key[len(self.prefix):]
                    if any(part.startswith(".") and part not in (".", "..") for part in rel.split("/")):
                        continue   # hidden, as a folder's hidden files and subfolders are
                    yield Entry(rel, int(obj["Size"]), obj.get("ETag", "").strip('"'))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "NoSuchBucket":
                raise NotFoundError(f"bucket {self.bucket!r} does not exist ({self.uri})") from exc
            raise self._error("list", exc) from exc
        except BotoCoreError as exc:
            raise self._error("list", exc) from exc

    def read(self, rel: str, limit: int | None = None) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        if limit == 0:
            return b""
        ranged = {} if limit is None else {"Range": f"bytes=0-{limit - 1}"}
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(rel), **ranged)["Body"].read()
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"cannot read {self.uri_of(rel)}: {exc}") from exc

    def exists(self, rel: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(rel))
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise StorageError(f"cannot check {self.uri_of(rel)}: {exc}") from exc

    def digest(self, rel: str) -> Digest:
        from botocore.exceptions import BotoCoreError, ClientError

        sha, size = hashlib.sha256(), 0
        try:
            got = self.client.get_object(Bucket=self.bucket, Key=self._key(rel))
            for chunk in got["Body"].iter_chunks(1 << 20):
                sha.update(chunk)
                size += len(chunk)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                raise NotFoundError(f"{self.uri_of(rel)} is not there") from exc
            raise StorageError(f"cannot read {self.uri_of(rel)}: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"cannot read {self.uri_of(rel)}: {exc}") from exc
        return Digest(sha.hexdigest(), size, got.get("ETag", "").strip('"') or None)   # the ETag of the bytes read

    # Endpoints that answered a conditional PUT (If-None-Match: *) with 501 NotImplemented: an
    # S3-compatible store (a gateway, an older on-premises release) without conditional writes.
    _unconditional: ClassVar[set[str]] = set()

    def write_new(self, rel: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        """Put ``data`` at ``rel`` only if nothing is there (FileExistsError otherwise), atomically
        with ``If-None-Match: *``. A store that does not implement it is asked whether the key is
        there first (a HEAD), and told once, in the log: two writers of one key at the very same
        moment could then both write, which DEST's lease (one job at a time) rules out."""
        from botocore.exceptions import BotoCoreError, ClientError

        endpoint = self.client.meta.endpoint_url
        conditional = endpoint not in S3Location._unconditional
        try:
            if not conditional and self.exists(rel):
                raise FileExistsError(self.uri_of(rel))
            self.client.put_object(Bucket=self.bucket, Key=self._key(rel), Body=data, ContentType=content_type,
                                   **({"IfNoneMatch": "*"} if conditional else {}))
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                raise FileExistsError(self.uri_of(rel)) from exc
            if conditional and (code in ("NotImplemented", "501")
                                or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 501):
                S3Location._unconditional.add(endpoint)
                logging.getLogger(__name__).warning(
                    "%s does not implement conditional writes (If-None-Match: *): outputs are written after a check "
                    "that nothing is there, not atomically", endpoint)
                if hasattr(data, "seek"):
                    data.seek(0)   # a file being streamed: from its start again
                return self.write_new(rel, data, content_type)
            raise StorageError(f"cannot write {self.uri_of(rel)}: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"cannot write {self.uri_of(rel)}: {exc}") from exc

    @contextlib.contextmanager
    def _download(self, rel: str) -> Iterator[Path]:
        suffix = posixpath.splitext(rel)[1]
        with work_dir("s3") as tmp:
            path = Path(tmp) / f"object{suffix}"
            self.fetch(rel, path)
            yield path

    def fetch(self, rel: str, path: Path) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.download_file(self.bucket, self._key(rel), str(path))
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"cannot read {self.uri_of(rel)}: {exc}") from exc
        except OSError as exc:   # the work folder's disk: full, over quota
            raise _work_disk_refused(self.uri_of(rel), path, exc) from exc

    def local_copy(self, rel: str) -> contextlib.AbstractContextManager[Path]:
        return self._download(rel)

    def delete(self, rel: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(rel))
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"cannot delete {self.uri_of(rel)}: {exc}") from exc

    def put_file_new(self, rel: str, path: Path, content_type: str = "application/octet-stream") -> None:
        with open(path, "rb") as fh:  # streamed from the file (single PUT: objects up to 5 GB)
            self.write_new(rel, fh, content_type)  # type: ignore[arg-type]

    def replace(self, rel: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(rel), Body=data, ContentType=content_type)
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"cannot write {self.uri_of(rel)}: {exc}") from exc

    def replace_file(self, rel: str, path: Path, content_type: str = "application/octet-stream") -> None:
        from boto3.exceptions import S3UploadFailedError
        from botocore.exceptions import BotoCoreError, ClientError

        try:   # boto3's managed transfer: in parts past its threshold, so of any size S3 takes
            self.client.upload_file(str(path), self.bucket, self._key(rel), ExtraArgs={"ContentType": content_type})
        except (BotoCoreError, ClientError, S3UploadFailedError) as exc:
            raise StorageError(f"cannot write {self.uri_of(rel)}: {exc}") from exc

    def uri_of(self, rel: str) -> str:
        return f"s3://{self.bucket}/{self._key(rel)}"

    def contains(self, other: Location) -> bool:
        return isinstance(other, S3Location) and other.bucket == self.bucket and other.prefix.startswith(self.prefix)

    def child(self, rel: str) -> Location:
        return S3Location(self.bucket, self._key(rel), self.endpoint_url)


def open_location(uri: str, s3_endpoint: str | None = None) -> Location:
    """A local folder, ``file://`` URI or ``s3://bucket/prefix``. Raises StorageError for others."""
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise StorageError(f"{uri!r}: an S3 URI needs a bucket (s3://bucket/prefix)")
        return S3Location(parsed.netloc, urllib.parse.unquote(parsed.path), s3_endpoint)
    if parsed.scheme == "file":
        return LocalLocation(Path(urllib.parse.unquote(parsed.path)))
    if parsed.scheme in ("", ) or (len(parsed.scheme) == 1 and os.name == "nt"):
        return LocalLocation(Path(uri))
    raise StorageError(f"{uri!r}: unsupported URI scheme {parsed.scheme!r} (use a folder, file:// or s3://)")


def read_uri(uri: str, s3_endpoint: str | None = None) -> bytes:
    """The bytes of the one file ``uri`` names (a local path, ``file://`` or ``s3://bucket/key``).
    Raises NotFoundError when there is none."""
    head, _, name = uri.rstrip("/").rpartition("/")
    if not name or head in ("s3:/", "file:/"):
        raise NotFoundError(f"{uri!r} names no file")
    return open_location(head or ".", s3_endpoint).read(name)


@contextlib.contextmanager
def local_folder(uri: str, s3_endpoint: str | None = None) -> Iterator[Path]:
    """The tree at ``uri`` as a local folder: the folder itself, or a temporary download of an
    S3 prefix (removed afterwards). Raises NotFoundError when the source does not exist."""
    location = open_location(uri, s3_endpoint)
    location.check()
    if isinstance(location, LocalLocation):
        yield location.root
        return
    with work_dir("tree") as tmp:
        for entry in location.list():
            target = Path(tmp, entry.rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(location.read(entry.rel))
        yield Path(tmp)
