"""BagIt payload manifests (RFC 8493), as a job reads them to verify a bag's files."""

from __future__ import annotations

import hashlib

import pytest

from colorize_core.bagit import Bag, bag_of, declared_for, parse_manifest, verify
from colorize_core.errors import ChecksumMismatchError
from colorize_core.storage import Entry


def test_a_manifest_gives_each_payload_path_its_checksum_and_refuses_what_is_no_manifest_line():
    a, b = hashlib.md5(b"a").hexdigest(), hashlib.md5(b"b").hexdigest()
    text = f"\ufeff{a}  data/box 1/plate%0A12%25.tif\n\n{b.upper()}\tdata/./b.jpg\r\n".encode()
    assert parse_manifest(text, "md5") == {"data/box 1/plate\n12%.tif": a, "data/b.jpg": b}
    for bad, why in ((f"{a}\n", "line 1 is not '<md5 checksum> <path>'"),
                     (f"{a[:-1]}  data/a.tif\n", "line 1 is not"),
                     (f"{a}  data/a.tif\n{b}  data/a.tif\n", "line 2 lists 'data/a.tif' a second time"),
                     (f"{a}  data/../bag-info.txt\n", "which is no payload file (under data/)"),
                     (f"{a}  ../../etc/passwd\n", "which is no payload file")):
        with pytest.raises(ValueError, match=why.replace("(", r"\(").replace(")", r"\)")):
            parse_manifest(bad.encode(), "md5")
    with pytest.raises(ValueError, match="not UTF-8"):
        parse_manifest(b"\xff\xfe", "md5")


def test_a_file_is_verified_against_the_innermost_bag_that_holds_it():
    outer, inner = Bag("archive"), Bag("archive/data/accession 7")
    for bag, files in ((outer, {"data/a.jpg": b"a"}), (inner, {"data/b.jpg": b"b"})):
        bag.manifests["sha512"] = Entry(f"{bag.folder}/manifest-sha512.txt", 1, "v")
        bag.declare("sha512", f"{bag.folder}/manifest-sha512.txt",
                    {path: hashlib.sha512(data).hexdigest() for path, data in files.items()})
    bags = {outer.folder: outer, inner.folder: inner, "other": Bag("other")}
    assert bag_of("archive/data/accession 7/data/b.jpg", bags) is inner
    assert bag_of("archive/data/a.jpg", bags) is outer and bag_of("other/data/c.jpg", bags) is None
    # A bag whose manifest could not be read: nothing is checked, and verify says so (False), to flag it.
    bags["unread"] = Bag("unread", declaration=Entry("unread/bagit.txt", 10, "v"))
    unread = declared_for(["unread/data/c.jpg"], bags)
    assert unread == {"manifest": None, "algorithm": None, "checksums": {"unread/data/c.jpg": None}}
    assert verify(unread, "unread/data/c.jpg", b"c") is False and declared_for(["other/data/c.jpg"], bags) is None
    declared = declared_for(["archive/data/accession 7/data/b.jpg", "archive/data/accession 7/data/b.xmp"], bags)
    assert declared["manifest"] == "archive/data/accession 7/manifest-sha512.txt"
    assert verify(declared, "archive/data/accession 7/data/b.jpg", b"b") is True
    assert verify(declared, "archive/data/accession 7/data/b.xmp", b"<x/>") is False   # not listed
    assert verify(None, "elsewhere.jpg", b"b") is None
    # A bag made on macOS lists "é" decomposed; a listing here gives it composed: the same file.
    accents = Bag("")
    accents.declare("sha512", "manifest-sha512.txt", {"data/Cafe\u0301.jpg": hashlib.sha512(b"c").hexdigest()})
    assert verify(declared_for(["data/Caf\u00e9.jpg"], {"": accents}), "data/Caf\u00e9.jpg", b"c") is True
    assert accents.not_held({"data/Caf\u00e9.jpg"}) == [] and accents.not_held(set()) == ["data/Caf\u00e9.jpg"]
    accents.declare("sha512", "manifest-sha512.txt", {"data/Caf\u00e9.jpg": hashlib.sha512(b"c").hexdigest()})
    assert verify(declared_for(["data/Cafe\u0301.jpg"], {"": accents}), "data/Cafe\u0301.jpg", b"c") is True
    assert accents.not_held({"data/Cafe\u0301.jpg"}) == []
    with pytest.raises(ChecksumMismatchError, match="does not match its bag's archive/data/accession 7/manifest-sha512"):
        verify(declared, "archive/data/accession 7/data/b.jpg", b"B")
