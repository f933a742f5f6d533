"""Storage by URI against a real local folder and a real S3 endpoint over HTTP."""

from __future__ import annotations

import hashlib
import http.server
import os
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from pathlib import Path

import boto3
import pytest

from colorize_core.errors import NotFoundError, StorageError, UnsafePathError
from colorize_core.storage import LocalLocation, S3Location, check_rel, open_location, sweep_work_dirs, work_dir


@pytest.mark.parametrize("rel", ["../x.jpg", "a/../../x.jpg", "a//b.jpg", "/abs.jpg", "./a.jpg", "a/./b.jpg", ""])
def test_unsafe_relative_paths_are_refused(rel):
    with pytest.raises(UnsafePathError):
        check_rel(rel)


def test_open_location_understands_folders_file_uris_and_s3(tmp_path):
    assert isinstance(open_location(str(tmp_path)), LocalLocation)
    assert open_location(f"file://{tmp_path}").uri == str(tmp_path)
    s3 = open_location("s3://bucket/some/prefix/")
    assert isinstance(s3, S3Location) and s3.prefix == "some/prefix/" and s3.uri == "s3://bucket/some/prefix"
    for location in (open_location(str(tmp_path)), s3, open_location("s3://bucket")):   # rel_of undoes uri_of
        assert location.rel_of(location.uri_of("box 1/ü.jpg")) == "box 1/ü.jpg"
        assert location.rel_of("s3://other/box 1/ü.jpg") is None and location.rel_of(location.uri) is None
        child = location.child("box 1/reel")   # a folder under it, as a location of its own
        assert child.uri == location.uri_of("box 1/reel")
        assert location.rel_of(child.uri_of("f1.dpx")) == "box 1/reel/f1.dpx"
        with pytest.raises(StorageError, match="unsafe"):
            location.child("../x")
    with pytest.raises(StorageError, match="scheme"):
        open_location("ftp://host/x")
    with pytest.raises(StorageError, match="bucket"):
        open_location("s3:///x")


def test_local_writes_are_atomic_and_never_clobber(tmp_path):
    loc = LocalLocation(tmp_path)
    loc.write_new("a/b/c.jpg", b"one")
    with pytest.raises(FileExistsError):
        loc.write_new("a/b/c.jpg", b"two")
    assert (tmp_path / "a/b/c.jpg").read_bytes() == b"one"
    assert not [p for p in (tmp_path / "a/b").iterdir() if p.name.startswith(".colorize-tmp")]


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_local_outputs_get_the_permissions_a_plain_file_would(tmp_path, umask):
    """Not mkstemp's owner-only 0600: a web server publishing DEST could not have read them."""
    code = ("import os, pathlib, sys; from colorize_core.storage import LocalLocation, new_file_beside; "
            "root = pathlib.Path(sys.argv[1]); loc = LocalLocation(root); loc.write_new('a/new.jpg', b'1'); "
            "loc.replace('index.json', b'2'); (root / 'src').write_bytes(b'3'); "
            "loc.put_file_new('a/f.mkv', root / 'src'); fd, p = new_file_beside(root); os.close(fd); "
            "os.replace(p, root / 'encoded.mp4')")
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, preexec_fn=lambda: os.umask(umask))
    for name in ("a/new.jpg", "index.json", "a/f.mkv", "encoded.mp4"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


def test_a_local_write_the_disk_refuses_leaves_no_partial_file_and_is_a_storage_error(tmp_path):
    """A write refused part-way (a full disk, or as here the file-size limit, which the kernel
    enforces the same way) fails as StorageError naming the output, and removes its partial
    temporary file, which would otherwise go on taking the space. A file where a folder must be
    made is named."""
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(64 * 1024))
    code = ("import resource, signal, sys, pathlib; from colorize_core.storage import LocalLocation; "
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
            "resource.setrlimit(resource.RLIMIT_FSIZE, (16384, resource.RLIM_INFINITY)); "
            "loc, big = LocalLocation(pathlib.Path(sys.argv[1]) / 'dest'), pathlib.Path(sys.argv[2]); "
            "calls = [lambda: loc.write_new('a/new.tif', big.read_bytes()), lambda: loc.replace('b/index.json', "
            "big.read_bytes()), lambda: loc.put_file_new('a/f.mkv', big), lambda: loc.replace_file('b/m.json', big), "
            "lambda: loc.write_new('blocked/x.jpg', b'small')]\n"
            "for call in calls:\n"
            "    try: call(); print('written')\n"
            "    except Exception as exc: print(type(exc).__name__, exc)")
    (tmp_path / "dest").mkdir()
    (tmp_path / "dest" / "blocked").write_bytes(b"a file, not a folder")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path), str(big)], check=True, capture_output=True,
                         text=True, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}).stdout.splitlines()
    dest = tmp_path / "dest"
    assert out == [f"StorageError cannot write {dest}/a/new.tif: File too large",
                   f"StorageError cannot write {dest}/b/index.json: File too large",
                   f"StorageError cannot write {dest}/a/f.mkv: File too large",
                   f"StorageError cannot write {dest}/b/m.json: File too large",
                   f"StorageError cannot write {dest}/blocked/x.jpg: File exists ({dest}/blocked)"]
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*")) == ["a", "b", "blocked"]


def test_local_listing_is_recursive_sorted_skips_hidden_and_the_destination(tmp_path):
    for rel in ("b.jpg", "a/x y.png", "a/ü.tif", ".hidden.jpg", "out/done.jpg"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    listed = [e.rel for e in LocalLocation(tmp_path).list(exclude=LocalLocation(tmp_path / "out"))]
    assert listed == ["b.jpg", "a/x y.png", "a/ü.tif"] or sorted(listed) == ["a/x y.png", "a/ü.tif", "b.jpg"]
    with pytest.raises(StorageError, match="does not exist"):
        list(LocalLocation(tmp_path / "missing").list())


def test_what_a_local_listing_cannot_give_as_a_file_is_said_not_dropped(tmp_path, monkeypatch):
    root = tmp_path / "src"
    for rel in ("a.jpg", "box/b.jpg", "locked/c.jpg", ".trash/d.jpg"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    (root / "box" / "up").symlink_to("..")                        # a loop, were it followed
    (root / "elsewhere").symlink_to(tmp_path)                     # a volume linked in
    (root / "gone.jpg").symlink_to(tmp_path / "moved.jpg")        # its file moved away
    (root / "linked.jpg").symlink_to(root / "a.jpg")              # a link to a file is read through
    os.mkfifo(root / "pipe.jpg")                                  # reading it would wait for ever
    (root / ".hidden-link").symlink_to("..")                      # hidden: ignored, as hidden files are
    scandir = os.scandir

    def locked(path):  # tests run as root, for whom chmod 000 locks nothing
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", locked)
    unlisted = []
    listed = [e.rel for e in LocalLocation(root).list(unlisted=unlisted)]
    assert sorted(listed) == ["a.jpg", "box/b.jpg", "linked.jpg"]
    said = {u.rel: (u.kind, u.message) for u in unlisted}
    assert set(said) == {"box/up", "elsewhere", "gone.jpg", "locked", "pipe.jpg"}
    assert said["box/up"] == ("folder-link", said["box/up"][1]) and "link to the folder ..: not followed" in \
        said["box/up"][1]
    assert said["elsewhere"][0] == "folder-link" and str(tmp_path) in said["elsewhere"][1]
    assert said["gone.jpg"][0] == "broken-link" and "moved.jpg" in said["gone.jpg"][1]
    assert said["locked"] == ("unreadable-folder", "folder not read: Permission denied; nothing in it was listed")
    assert said["pipe.jpg"][0] == "not-a-file"
    assert sorted(e.rel for e in LocalLocation(root).list()) == sorted(listed)   # not asked: the same files


def test_s3_listing_is_paginated_and_keeps_nested_layout(s3_endpoint, bucket):
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    keys = [f"scans/box{i // 400}/img {i:04d}.jpg" for i in range(1005)] + ["scans/ünï/cödé.png", "other/x.jpg",
                                                                           "scans/.trash/y.jpg", "scans/a/.z.jpg"]
    for k in keys:
        client.put_object(Bucket=bucket, Key=k, Body=b"x")
    entries = list(open_location(f"s3://{bucket}/scans").list())
    assert len(entries) == 1006  # more than one page of 1000; hidden files and folders left out, as locally
    rels = {e.rel for e in entries}
    assert "box2/img 1004.jpg" in rels and "ünï/cödé.png" in rels
    assert all(e.version for e in entries)


def test_s3_writes_never_clobber_and_read_back(s3_endpoint, bucket):
    loc = open_location(f"s3://{bucket}/out")
    loc.write_new("a b/ü.jpg", b"one", "image/jpeg")
    with pytest.raises(FileExistsError):
        loc.write_new("a b/ü.jpg", b"two")
    assert loc.read("a b/ü.jpg") == b"one" and loc.exists("a b/ü.jpg") and not loc.exists("nope.jpg")
    assert loc.uri_of("a b/ü.jpg") == f"s3://{bucket}/out/a b/ü.jpg"


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_digest_names_the_version_a_listing_gives_the_bytes_it_read(where, tmp_path, request):
    """What a relocation of SOURCE records for a job's quick check: the version read is the
    version listed (mtime in ns, or the ETag), and a file is read whole with its sha256."""
    import hashlib

    if where == "s3":
        loc = open_location(f"s3://{request.getfixturevalue('bucket')}/scans", request.getfixturevalue("s3_endpoint"))
    else:
        loc = open_location(str(tmp_path))
    data = os.urandom(3 << 20)   # more than one chunk of the stream
    loc.write_new("box/a.tif", data)
    loc.write_new("b.tif", b"")
    listed = {e.rel: e for e in loc.list()}
    for rel, content in (("box/a.tif", data), ("b.tif", b"")):
        found = loc.digest(rel)
        assert found == (hashlib.sha256(content).hexdigest(), len(content), listed[rel].version) and found.version
    with pytest.raises(NotFoundError):
        loc.digest("nope.tif")


def test_a_file_changed_while_it_is_read_gets_no_version(tmp_path, monkeypatch):
    """A version is never paired with bytes it did not hold: a local file whose mtime or size
    moves during the read is digested with no version (the next job hashes it again)."""
    loc = LocalLocation(tmp_path)
    (tmp_path / "a.tif").write_bytes(b"x" * 1000)
    real = hashlib.file_digest

    def touched_meanwhile(fh, name):
        digest = real(fh, name)
        os.utime(tmp_path / "a.tif", ns=(1, 1))
        return digest

    monkeypatch.setattr(hashlib, "file_digest", touched_meanwhile)
    found = loc.digest("a.tif")
    assert found.size == 1000 and found.version is None


def test_s3_errors_are_storage_errors(s3_endpoint):
    with pytest.raises(StorageError):
        list(open_location("s3://no-such-bucket-here/x").list())


def test_an_s3_object_the_work_folders_disk_refuses_is_a_storage_error(s3_endpoint, bucket, tmp_path):
    """A film fetched from S3 into a work folder whose disk is full (here the file-size limit,
    which the kernel enforces the same way) is a StorageError naming the object and the folder."""
    loc = open_location(f"s3://{bucket}/work")
    loc.write_new("reel.mov", os.urandom(64 * 1024))
    code = ("import resource, sys; from colorize_core.storage import open_location; "
            "resource.setrlimit(resource.RLIMIT_FSIZE, (16384, resource.RLIM_INFINITY))\n"
            "try:\n    open_location(sys.argv[1]).local_copy('reel.mov').__enter__()\n"
            "except Exception as exc: print(type(exc).__name__, exc)")
    out = subprocess.run([sys.executable, "-c", code, f"s3://{bucket}/work"], capture_output=True, text=True,
                         env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "TMPDIR": str(tmp_path)},
                         check=True).stdout
    assert out.startswith(f"StorageError cannot copy s3://{bucket}/work/reel.mov into the work folder {tmp_path}/"), out
    assert "File too large (set TMPDIR to a larger disk)" in out
    assert not list(tmp_path.iterdir())   # its work folder removed


class _NoConditionalWrites(http.server.BaseHTTPRequestHandler):
    """An S3-compatible store without conditional writes, for real over HTTP: every request goes
    on to moto, except a PUT with If-None-Match, answered 501 NotImplemented as such stores do."""
    upstream = ""
    refused = 0

    def _relay(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.command == "PUT" and "If-None-Match" in self.headers:
            type(self).refused += 1
            self.send_response(501)
            error = (b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>NotImplemented</Code><Message>A header you "
                     b"provided implies functionality that is not implemented</Message></Error>")
            self.send_header("Content-Length", str(len(error)))
            self.end_headers()
            self.wfile.write(error)
            return
        request = urllib.request.Request(self.upstream + self.path, data=body if self.command == "PUT" else None,
                                         method=self.command, headers={k: v for k, v in self.headers.items()})
        try:
            with urllib.request.urlopen(request) as reply:
                status, headers, data = reply.status, reply.headers, reply.read()
        except urllib.error.HTTPError as exc:
            status, headers, data = exc.code, exc.headers, exc.read()
        self.send_response(status)
        for k, v in headers.items():
            if k.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = _relay

    def log_message(self, *args: object) -> None:
        pass


def test_an_s3_store_without_conditional_writes_gets_a_checked_write_never_an_overwrite(s3_endpoint, bucket):
    """A store that answers If-None-Match: * with 501 NotImplemented (a gateway, an older
    on-premises release): outputs are still written, after a check that nothing is there, so an
    existing one is never replaced; the store is asked the conditional way once only."""
    _NoConditionalWrites.upstream = s3_endpoint
    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NoConditionalWrites)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        loc = open_location(f"s3://{bucket}/old-store", s3_endpoint=f"http://127.0.0.1:{proxy.server_port}")
        loc.write_new("a.jpg", b"one")
        with pytest.raises(FileExistsError):
            loc.write_new("a.jpg", b"two")
        src = Path(tempfile.mkdtemp()) / "reel.mkv"
        src.write_bytes(b"film" * 1000)
        loc.put_file_new("reel.mkv", src)   # streamed from a file
        assert loc.read("a.jpg") == b"one" and loc.read("reel.mkv") == b"film" * 1000
        assert _NoConditionalWrites.refused == 1
    finally:
        proxy.shutdown()
        S3Location._unconditional.clear()


def test_s3_endpoint_can_be_given_explicitly(s3_endpoint, bucket, monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    loc = open_location(f"s3://{bucket}/explicit", s3_endpoint=s3_endpoint)
    loc.write_new("a.jpg", b"x")
    assert loc.read("a.jpg") == b"x" and [e.rel for e in loc.list()] == ["a.jpg"]
    loc.check()
    with pytest.raises(NotFoundError, match="does not exist"):  # a bucket missing on that endpoint
        open_location(f"s3://no-bucket-{bucket}/x", s3_endpoint=s3_endpoint).check()


def test_work_folders_left_by_killed_processes_of_this_host_are_swept(tmp_path, monkeypatch):
    import tempfile

    from colorize_core import storage

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with work_dir("shot") as mine:          # this process's own, in use
        (Path(mine) / "segment.mkv").write_bytes(b"x" * 1000)
        # A process of this host that was killed mid-shot (a real one, no longer running)...
        child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                               text=True, check=True)
        dead = int(child.stdout)
        left = tmp_path / f"colorize-shot-{dead}@{storage._HOST}.abcd_123"
        (left / "sub").mkdir(parents=True)
        (left / "sub" / "segment.mkv").write_bytes(b"y" * 5000)
        # ...and what must stay: a running process's (the test runner's parent), another host's,
        # anything not named like a work folder, a file named like one.
        running = tmp_path / f"colorize-shot-{os.getppid()}@{storage._HOST}.abcd_124"
        elsewhere = tmp_path / f"colorize-shot-{dead}@render-2.abcd_125"
        other = tmp_path / f"colorize-shot-{dead}.abcd_126"
        for d in (running, elsewhere, other):
            d.mkdir()
        (tmp_path / f"colorize-join-{dead}@{storage._HOST}.abcd_127").write_bytes(b"")
        assert sweep_work_dirs() == [(left, 5000)]
        assert not left.exists() and all(p.exists() for p in (running, elsewhere, other, Path(mine)))
        assert Path(mine).name.startswith(f"colorize-shot-{os.getpid()}@{storage._HOST}.")
    assert sweep_work_dirs(tmp_path) == []
