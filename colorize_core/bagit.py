"""BagIt bags (RFC 8493) in a SOURCE: the checksums their payload manifests declare, which a job
verifies each file against as it reads it.

A bag is a folder holding ``bagit.txt``; its payload is under its ``data/`` folder, and each
``manifest-<algorithm>.txt`` lists every payload file as ``<checksum> <path under the bag>``
(paths with ``%0D``, ``%0A`` and ``%25`` for CR, LF and ``%``). The job verifies the strongest
manifest a bag has. LoC's ``bagit`` package validates whole bags in local folders only; here a
bag may be on S3, and its files are verified as the job reads them anyway, so its manifests are
parsed here.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from colorize_core.errors import ChecksumMismatchError, ColorizeError
from colorize_core.storage import Entry, Location

BAG_DECLARATION = "bagit.txt"
MANIFEST_NAME = re.compile(r"manifest-(?P<algorithm>[a-z0-9]+)\.txt")
# Strongest first: the one a job verifies when a bag has several.
ALGORITHMS = ("sha512", "sha384", "sha256", "sha224", "sha1", "md5")
_ESCAPES = re.compile(r"%(0D|0A|25)", re.IGNORECASE)


@dataclass
class Bag:
    """A bag found in a listing: its folder under SOURCE ("" for SOURCE itself) and manifests."""

    folder: str
    declaration: Entry | None = None                             # its bagit.txt, once seen
    manifests: dict[str, Entry] = field(default_factory=dict)    # algorithm -> its manifest
    algorithm: str | None = None                                 # of the manifest verified, once read
    manifest: str | None = None                                  # its path
    declared: dict[str, str] = field(default_factory=dict)       # path under SOURCE -> checksum

    def by_strength(self) -> list[tuple[str, Entry]]:
        """Its manifests a job can verify, strongest first; those of an algorithm this Python
        cannot compute are left out."""
        known = [a for a in ALGORITHMS if a in self.manifests]
        other = sorted(a for a in self.manifests if a not in ALGORITHMS and a in hashlib.algorithms_available)
        return [(a, self.manifests[a]) for a in known + other]

    def declare(self, algorithm: str, manifest: str, listed: dict[str, str]) -> None:
        """Take ``listed`` (:func:`parse_manifest`) as what this bag declares."""
        self.algorithm, self.manifest = algorithm, manifest
        self.declared = {_nfc(posixpath.join(self.folder, path)): checksum for path, checksum in listed.items()}

    def not_held(self, listed: set[str]) -> list[str]:
        """The paths its manifest lists that are not in ``listed`` (what a listing gave)."""
        return sorted(set(self.declared) - {_nfc(rel) for rel in listed})


def _nfc(path: str) -> str:
    """A bag made on macOS names ``é`` as e and a combining accent, and a listing elsewhere may
    give it composed (or the other way round): paths are compared in one form, NFC."""
    return unicodedata.normalize("NFC", path)


def bag_part(entry: Entry, bags: dict[str, Bag]) -> bool:
    """Note ``entry`` in ``bags`` if it is a bag's declaration or payload manifest; say so."""
    folder, name = posixpath.split(entry.rel)
    found = MANIFEST_NAME.fullmatch(name)
    if name != BAG_DECLARATION and not found:
        return False
    bag = bags.setdefault(folder, Bag(folder))
    if found:
        bag.manifests[found["algorithm"]] = entry
    else:
        bag.declaration = entry
    return True


def bag_of(rel: str, bags: dict[str, Bag], read: bool = True) -> Bag | None:
    """The bag (of those read: with a manifest; with ``read`` False, of those declared by their
    ``bagit.txt``, read or not) whose payload holds ``rel``, the innermost."""
    parts = rel.split("/")
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "data":
            bag = bags.get("/".join(parts[:i]))
            if bag is not None and (bag.manifest is not None if read else bag.declaration is not None):
                return bag
    return None


def in_payload(rel: str) -> bool:
    """Whether ``rel`` may be a bag's payload file (it has a ``data`` folder in its path)."""
    return rel.startswith("data/") or "/data/" in rel


def parse_manifest(text: bytes, algorithm: str) -> dict[str, str]:
    """The ``{path under the bag: checksum}`` of a payload manifest. ValueError naming the line
    when one is not ``<checksum> <path>`` with a checksum of ``algorithm``'s length, or lists a
    path outside ``data/`` or a path listed before."""
    try:
        lines = text.decode("utf-8-sig").splitlines()
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text ({exc})") from None
    width = hashlib.new(algorithm).digest_size * 2
    listed: dict[str, str] = {}
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = line.split(None, 1)
        checksum = parts[0].lower()
        if len(parts) != 2 or len(checksum) != width or not re.fullmatch(r"[0-9a-f]+", checksum):
            raise ValueError(f"line {n} is not '<{algorithm} checksum> <path>': {line[:120]!r}")
        path = _ESCAPES.sub(lambda m: {"0d": "\r", "0a": "\n", "25": "%"}[m[1].lower()], parts[1])
        path = posixpath.normpath(path)
        if not path.startswith("data/"):
            raise ValueError(f"line {n} lists {path!r}, which is no payload file (under data/)")
        if path in listed:
            raise ValueError(f"line {n} lists {path!r} a second time")
        listed[path] = checksum
    return listed


def read_bags(bags: dict[str, Bag], source: Location) -> tuple[list[Entry], list[tuple[Entry, str, str | None]]]:
    """Read each bag's payload manifest: the strongest one that can be read (:meth:`Bag.declare`).
    Returns the entries that are no bag's after all (a ``manifest-*.txt`` with no ``bagit.txt``
    beside it: a file like any other), and for each bag's declaration and manifests (entry, why
    it is skipped or why it failed, None or the error's type when it failed)."""
    others: list[Entry] = []
    records: list[tuple[Entry, str, str | None]] = []
    for folder, bag in sorted(bags.items()):
        if bag.declaration is None:
            others.extend(bag.manifests.values())
            continue
        where = f"the BagIt bag {folder or '(SOURCE)'}"
        for algorithm, entry in bag.by_strength():
            try:
                listed = parse_manifest(source.read(entry.rel), algorithm)
            except (ValueError, ColorizeError) as exc:
                kind = "CorruptMediaError" if isinstance(exc, ValueError) else type(exc).__name__
                records.append((entry, f"a payload manifest of {where} that cannot be used: {exc}", kind))
                continue
            bag.declare(algorithm, entry.rel, listed)
            why = f"the payload manifest of {where}: the {len(listed)} files it lists are verified against it as they " \
                  "are read"
            records.append((entry, why, None))
            break
        done = {entry.rel for entry, _, _ in records}
        for algorithm, entry in sorted(bag.manifests.items()):
            if entry.rel not in done:
                why = (f"a payload manifest of {where}: {posixpath.basename(bag.manifest)}, the strongest, is the one "
                       "verified") if bag.manifest and algorithm in hashlib.algorithms_available else \
                    f"a payload manifest of {where} in {algorithm}, which this system cannot compute: not verified"
                records.append((entry, why, None))
        if bag.manifest:
            why = f"the declaration of {where}: its payload is verified against {posixpath.basename(bag.manifest)} " \
                  "as it is read"
            records.append((bag.declaration, why, None))
        else:
            why = f"{where} has no payload manifest that can be used (manifest-sha256.txt, ...): its payload is not " \
                  "verified"
            records.append((bag.declaration, why, "CorruptMediaError"))
    return others, records


def declared_for(rels: list[str], bags: dict[str, Bag]) -> dict[str, Any] | None:
    """What the bag holding ``rels[0]`` declares of ``rels`` (a photo and its XMP sidecar, a film's
    files): ``{"manifest", "algorithm", "checksums": {rel: checksum, or None when not listed}}``;
    in a bag with no manifest that could be read, no manifest and no checksum (so nothing is
    checked, and the item is flagged so); None when it is in no bag."""
    bag = bag_of(rels[0], bags) if rels else None
    if bag is None:
        unread = bag_of(rels[0], bags, read=False) if rels else None
        return None if unread is None else {"manifest": None, "algorithm": None, "checksums": dict.fromkeys(rels)}
    return {"manifest": bag.manifest, "algorithm": bag.algorithm,
            "checksums": {rel: bag.declared.get(_nfc(rel)) for rel in rels}}


def verify(declared: dict[str, Any] | None, rel: str, content: bytes | Path, sha256: str | None = None) -> bool | None:
    """Check ``content`` (``rel``'s bytes, or a local copy of it, whose ``sha256`` may be known
    already) against the checksum its bag declares: True when it matches, False when the bag's
    manifest does not list it, None when it is in no bag. ChecksumMismatchError when it does not
    match."""
    if declared is None:
        return None
    expected = declared["checksums"].get(rel)
    if expected is None:
        return False
    algorithm = declared["algorithm"]
    if algorithm == "sha256" and sha256:
        found = sha256
    elif isinstance(content, bytes):
        found = hashlib.new(algorithm, content).hexdigest()
    else:
        with open(content, "rb") as fh:
            found = hashlib.file_digest(fh, algorithm).hexdigest()
    if found != expected:
        raise ChecksumMismatchError(f"{rel} does not match its bag's {declared['manifest']}: {algorithm} {expected} "
                                    f"declared, {found} read (changed or damaged since it was bagged)")
    return True


def checked_detail(declared: dict[str, Any] | None, checked: bool | None) -> dict[str, Any]:
    """What an ingest event says of a :func:`verify`: nothing for a file in no bag."""
    if checked is None:
        return {}
    return {"bag_manifest": declared["manifest"], "algorithm": declared["algorithm"], "verified": checked}
