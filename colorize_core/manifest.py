"""Job manifests built from the provenance database: ``manifest.json`` and ``manifest.html``.

Each job writes ``DEST/manifests/<job id>/manifest.{json,html}`` and refreshes
``DEST/manifest.{json,html}``, the generated index of the latest job. Manifests are views of the
provenance database, rendered in full (into a temporary file) before anything is written and
replaced when rendered again (a retried task; review decisions added later, which refresh the
index only while it is the decided item's job's). The HTML is a contact sheet, original and
colour side by side; every text is HTML-escaped (Jinja2 autoescape) and every link URL-quoted.
"""

from __future__ import annotations

import array
import contextlib
import json
import posixpath
import re
import shutil
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
from sqlalchemy import select

from colorize_core.archive import MANIFESTS
from colorize_core.errors import ColorizeError, StorageError
from colorize_core.fixity import REPAIR, REPLACED, latest_checks
from colorize_core.images import NOTE
from colorize_core.provenance import Event, Job, ProvenanceStore, in_chunks
from colorize_core.review import decisions_of
from colorize_core.settings import get_settings
from colorize_core.storage import Location, open_location, work_dir

SCHEMA = "colorize-manifest/1"
_ITEM_FIELDS = ("rel_path", "source_uri", "status", "reason", "error_type", "error", "sha256", "size",
                "media_type", "format", "width", "height", "channels", "bit_depth", "flags", "notes",
                "colourfulness", "chroma_spread", "params", "params_key", "model_name", "model_sha256")
_env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
                          autoescape=True, undefined=jinja2.StrictUndefined)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _job(store: ProvenanceStore, job_id: str) -> Job:
    job: Job | None = store.job(job_id)
    if job is None:
        raise KeyError(f"unknown job {job_id}")
    return job


def _job_view(job: Job, counts: dict[str, int], attention: int) -> dict[str, Any]:
    return {"id": job.id, "source": job.source, "dest": job.dest, "status": job.status,
            "started_at": _iso(job.started_at), "finished_at": _iso(job.finished_at),
            "flow_run_id": job.flow_run_id, "model": {"name": job.model_name, "sha256": job.model_sha256},
            "params": job.params, "params_key": job.params_key, "software": job.software,
            "counts": counts, "note": NOTE, "attention": attention}


def build_manifest(store: ProvenanceStore, job_id: str) -> dict[str, Any]:
    """The manifest of job ``job_id`` as a JSON-ready dict (schema ``colorize-manifest/1``), held
    whole. The job's views (its files, exports, `review list`) never hold it: they read it back
    an item at a time from :func:`spooled_manifest`, whose file has the bytes of this one's
    ``json.dumps(..., indent=1, ensure_ascii=False)``."""
    job = _job(store, job_id)
    items = list(iter_items(store, job_id))
    counts = {"done": 0, "skipped": 0, "failed": 0}
    for it in items:
        counts[it["status"]] = counts.get(it["status"], 0) + 1
    return {"schema": SCHEMA, "job": _job_view(job, counts, sum(bool(it["attention"]) for it in items)),
            "items": items}


def iter_items(store: ProvenanceStore, job_id: str) -> Iterator[dict[str, Any]]:
    """The manifest's items of job ``job_id``, by path, built a page of the database at a time
    (:meth:`ProvenanceStore.job_item_pages`): what is held does not grow with the job."""
    for rows in store.job_item_pages(job_id):
        yield from _item_views(store, job_id, rows)


def _item_views(store: ProvenanceStore, job_id: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    done = [r["done_item_id"] for r in rows if r["done_item_id"]]
    reviews, links, checks = decisions_of(store, done), _redo_links(store, done), latest_checks(store, done)
    items = []
    for row in rows:
        item = {"id": row["id"], **{k: row[k] for k in _ITEM_FIELDS}}
        item["review"] = reviews.get(row["done_item_id"], [])
        item["decision"] = item["review"][-1]["decision"] if item["review"] else None
        item["redo"] = links.get(row["done_item_id"], {})
        item["fixity"] = checks.get(row["done_item_id"])
        renditions = [{"kind": o["kind"], "uri": o["uri"], "sha256": o["sha256"], "size": o["size"]}
                      for o in row["outputs"] if not o["kind"].startswith("thumb-")]
        # A photo's colour rendition; a film's access copy (else its master).
        item["colour"] = next((r for kind in ("colour", "access", "master", "master-prores") for r in renditions
                               if r["kind"] == kind), None)
        item["renditions"] = renditions
        item["xmp_sidecar"] = (row["media"] or {}).get("xmp_sidecar")   # a photo's, read with it: rel, sha256, size
        if row["media_type"] == "film":
            item["film"] = {"media": row["media"], "units": row["shots"],
                            "shots": [s for unit in row["shots"] for s in unit["shots"]],
                            "stills": _evenly([st for unit in row["shots"] for st in unit["stills"]], 12)}
        item["thumbnails"] = {o["kind"].removeprefix("thumb-"): o["uri"] for o in row["outputs"]
                              if o["kind"].startswith("thumb-")}
        item["done_in_job"] = row.get("done_in_job", job_id if row["status"] == "done" else None)
        item["attention"] = attention(item)
        items.append(item)
    return items


LOW_COLOURFULNESS = 10.0   # Hasler & Suesstrunk: below ~15 reads as "slightly colourful" at most
HIGH_FLICKER = 0.005       # warping error after smoothing, at the model's working size
# Flags a reviewer should see first: an input already in colour, a prediction the model was
# unsure of, a stream the renditions could not hold, a film scan in log code values, a file in a
# BagIt bag that its manifest does not list (so not verified).
ATTENTION_FLAGS = ("already-colour", "low-confidence", "streams-not-carried", "log-encoded", "not-in-bag-manifest")


def attention(item: dict[str, Any]) -> list[str]:
    """Why a reviewer should look at this item first (empty: nothing stands out)."""
    reasons = []
    if item["status"] == "failed":
        reasons.append("failed")
    reasons += [f for f in ATTENTION_FLAGS if f in (item["flags"] or [])]
    if item["status"] != "failed" and item["colourfulness"] is not None and item["colourfulness"] < LOW_COLOURFULNESS:
        reasons.append("low-colourfulness")
    shots = (item.get("film") or {}).get("shots", [])
    if any((s.get("warping_error") or 0) >= HIGH_FLICKER for s in shots):
        reasons.append("high-flicker")
    if item.get("decision") == "rejected":
        reasons.append("rejected")
    replaced = (item.get("redo") or {}).get("superseded_by", {}).get("repair")
    if (item.get("fixity") or {}).get("outcome") == "failure" and not replaced:
        reasons.append("damaged")
    return reasons


def _redo_links(store: ProvenanceStore, item_ids: list[int]) -> dict[int, dict[str, Any]]:
    """Per item: the item it redid (``supersedes``) and the item that redid it (``superseded_by``),
    each with ``repair`` true when it was written again because a fixity check found it damaged."""
    out: dict[int, dict[str, Any]] = {}
    if not item_ids:
        return out
    kinds = {"redo": "supersedes", "superseded": "superseded_by", REPAIR: "supersedes", REPLACED: "superseded_by"}
    with store.session() as s:
        events = [e for part in in_chunks(item_ids)
                  for e in s.scalars(select(Event).where(Event.type.in_(list(kinds)), Event.item_id.in_(part)))]
        for e in sorted(events, key=lambda e: e.id):
            out.setdefault(e.item_id, {})[kinds[e.type]] = {**e.detail, "repair": e.type in (REPAIR, REPLACED)}
    return out


def _evenly(values: list[Any], n: int) -> list[Any]:
    """At most ``n`` of ``values``, evenly spaced, first and last included."""
    if len(values) <= n:
        return values
    return [values[round(i * (len(values) - 1) / (n - 1))] for i in range(n)]


def _href(uri: str | None, dest: Location, depth: int) -> str | None:
    """A link relative to the page (at ``depth`` folders below DEST) when under DEST."""
    if not uri:
        return None
    rel = dest.rel_of(uri)
    if rel is not None:
        return urllib.parse.quote("../" * depth + rel)
    return uri if uri.startswith(("http://", "https://")) else None


def page_name(n: int) -> str:
    """The file of page ``n`` of a job's contact sheet, in ``manifests/<job>/``."""
    return "manifest.html" if n == 1 else f"manifest-{n}.html"


def _attention_order(needs: Sequence[bool]) -> Iterator[int]:
    """The order in which a reviewer takes a manifest's items (the contact sheet, `review list`,
    a review sheet), from whether each needs attention: the positions of those that do, then of
    the others, each in the manifest's order (by path)."""
    yield from (i for i, n in enumerate(needs) if n)
    yield from (i for i, n in enumerate(needs) if not n)


def _page_links(job_id: str, page: int, pages: int, depth: int) -> list[dict[str, Any]]:
    """Links to the first and last pages and those near ``page`` (None between them: a gap)."""
    shown = sorted({1, pages, *range(max(1, page - 5), min(pages, page + 5) + 1)})
    links: list[dict[str, Any] | None] = []
    for n in shown:
        if links and links[-1] is not None and links[-1]["n"] != n - 1:
            links.append(None)
        here = page_name(n) if depth else ("manifest.html" if n == 1 else f"{MANIFESTS}/{job_id}/{page_name(n)}")
        links.append({"n": n, "href": urllib.parse.quote(here)})
    return links


def render_html(job: dict[str, Any], items: list[dict[str, Any]], dest: Location, depth: int, page: int = 1,
                pages: int = 1) -> str:
    """Page ``page`` of ``pages`` of the job's contact sheet (``job``: the manifest's job), holding
    ``items``, for a file ``depth`` folders below DEST."""
    shown = []
    for it in items:
        stills = [{"frame": st["frame"], "original": _href(st["original"]["uri"], dest, depth),
                   "colour": _href(st["colour"]["uri"], dest, depth)} for st in (it.get("film") or {}).get("stills", [])]
        shown.append({**it, "film": it.get("film"), "film_stills": stills,
                      "href_original": _href(it["thumbnails"].get("original"), dest, depth),
                      "href_colour_thumb": _href(it["thumbnails"].get("colour"), dest, depth),
                      "href_colour": _href(it["colour"]["uri"] if it["colour"] else None, dest, depth)})
    nav = _page_links(job["id"], page, pages, depth) if pages > 1 else []
    return _env.get_template("manifest.html.j2").render(job=job, items=shown, page=page, pages=pages, nav=nav)


class SpooledManifest:
    """A job's ``manifest.json`` in a local temporary file (:func:`spooled_manifest`), read back
    an item at a time: what is held is an offset and a flag per item, not the items. ``job`` is
    the manifest's job; ``path`` the file."""

    def __init__(self, path: Path, job: dict[str, Any], where: array.array, needs: array.array) -> None:
        self.path, self.job, self._where, self._needs = path, job, where, needs
        self._file = open(path, "rb")   # noqa: SIM115 - closed by spooled_manifest

    def __len__(self) -> int:
        return len(self._needs)

    def item(self, i: int) -> dict[str, Any]:
        """The ``i``-th item, in the manifest's order (by path)."""
        self._file.seek(self._where[i])
        return json.loads(self._file.read(self._where[i + 1] - self._where[i]).rstrip(b",\n "))

    def items(self) -> Iterator[dict[str, Any]]:
        """The items in the manifest's order (by path)."""
        return (self.item(i) for i in range(len(self)))

    def order(self) -> array.array:
        """The items' positions in the order a reviewer takes them (:func:`_attention_order`)."""
        return array.array("q", _attention_order(self._needs))

    def attention_first(self) -> Iterator[dict[str, Any]]:
        """The items as a reviewer takes them: those that need attention first (:func:`_attention_order`)."""
        return (self.item(i) for i in self.order())

    def close(self) -> None:
        self._file.close()


@contextlib.contextmanager
def spooled_manifest(store: ProvenanceStore, job_id: str) -> Iterator[SpooledManifest]:
    """Job ``job_id``'s manifest, built a page of the database at a time into a temporary file
    (:func:`_write_json`) and read back from there: a nightly job over an archive has an item per
    original, and its views (the contact sheet, exports, `review list`) must not hold them all."""
    with work_dir("manifest") as tmp:
        whole = Path(tmp, "manifest.json")
        manifest = SpooledManifest(whole, *_write_json(store, job_id, whole))
        try:
            yield manifest
        finally:
            manifest.close()


def write_manifest(store: ProvenanceStore, job_id: str, dest: Location, index: bool = True,
                   manifest: SpooledManifest | None = None) -> dict[str, str]:
    """Write the job's manifest files under DEST, and with ``index`` DEST's index of the latest
    job (``manifest.{json,html}``) as this job's; returns their URIs by name. The HTML contact
    sheet is paged (``COLORIZE_MANIFEST_PAGE_ITEMS`` items a page, those needing attention
    first): ``manifest.html`` is its first page, ``manifest-2.html`` and on the others, in the
    job's folder; DEST's index is the first page, linking to the others there.

    Written without holding the manifest (a nightly job over an archive has an item per
    original): from ``manifest``, the job's :func:`spooled_manifest` (one is made when not given),
    each HTML page reading its own items back."""
    if manifest is None:
        with spooled_manifest(store, job_id) as made:
            return write_manifest(store, job_id, dest, index, made)
    job_dir = posixpath.join(MANIFESTS, job_id)
    per_page = get_settings().manifest_page_items
    dest.replace_file(f"{job_dir}/manifest.json", manifest.path, "application/json")
    order = manifest.order()
    pages = [order[n:n + per_page] for n in range(0, len(order), per_page)] or [[]]
    first: list[dict[str, Any]] = []   # page 1's items, for DEST's index
    for n, part in enumerate(pages, 1):
        shown = [manifest.item(i) for i in part]
        if n == 1:
            first = shown
        html = render_html(manifest.job, shown, dest, 2, n, len(pages))
        dest.replace(f"{job_dir}/{page_name(n)}", html.encode(), "text/html; charset=utf-8")
    stale = len(pages) + 1   # pages of an earlier rendering with fewer items a page: they would show old views
    while dest.exists(f"{job_dir}/{page_name(stale)}"):
        dest.delete(f"{job_dir}/{page_name(stale)}")
        stale += 1
    if index:
        dest.replace_file("manifest.json", manifest.path, "application/json")
        dest.replace("manifest.html", render_html(manifest.job, first, dest, 0, 1, len(pages)).encode(),
                     "text/html; charset=utf-8")
    return {"json": dest.uri_of("manifest.json"), "html": dest.uri_of("manifest.html"),
            "job_json": dest.uri_of(f"{job_dir}/manifest.json"), "job_html": dest.uri_of(f"{job_dir}/manifest.html")}


def _write_json(store: ProvenanceStore, job_id: str, path: Path) -> tuple[dict[str, Any], array.array, array.array]:
    """Write the job's ``manifest.json`` to the local file ``path``, the same bytes as
    ``json.dumps(build_manifest(...), indent=1)``, from its items built a page of the database
    at a time (:func:`iter_items`). Returns the manifest's job, where each item lies in the file
    (one more: the end of the last) and whether each needs attention."""
    job = _job(store, job_id)
    counts = {"done": 0, "skipped": 0, "failed": 0}
    needs = array.array("b")

    def items() -> Iterator[dict[str, Any]]:
        for item in iter_items(store, job_id):
            needs.append(bool(item["attention"]))
            counts[item["status"]] = counts.get(item["status"], 0) + 1
            yield item

    head: dict[str, Any] = {}

    def head_of() -> dict[str, Any]:
        head.update(schema=SCHEMA, job=_job_view(job, counts, sum(needs)))
        return head

    where = write_json_list(path, head_of, items())
    return head["job"], where, needs


def write_json_list(path: Path, head_of: Callable[[], dict[str, Any]], items: Iterable[Any]) -> array.array:
    """Write to the local file ``path`` the same bytes as ``json.dumps({**head_of(), "items":
    list(items)}, indent=1, ensure_ascii=False)`` without holding ``items``: they go to a spool
    beside it, since the head, which comes first, may count them (``head_of`` is called once
    ``items`` is exhausted). Returns where each item lies in the file, one more: the end of the
    last (each item's bytes may carry the comma and line break after it)."""
    where = array.array("q")
    spool = path.with_name(path.name + ".items")
    with open(spool, "wb") as out:
        for item in items:
            if where:
                out.write(b",\n")
            where.append(out.tell())
            text = json.dumps(item, indent=1, ensure_ascii=False)
            out.write("\n".join("  " + line for line in text.split("\n")).encode())
        where.append(out.tell())
    with open(path, "wb") as out, open(spool, "rb") as spooled:
        head = json.dumps({**head_of(), "items": []}, indent=1, ensure_ascii=False)
        out.write(head[:head.rindex("[")].encode() + b"[")
        if len(where) > 1:
            out.write(b"\n")
            start = out.tell()
            shutil.copyfileobj(spooled, out, 1 << 20)
            out.write(b"\n ")
            where = array.array("q", (w + start for w in where))
        out.write(b"]\n}")
    spool.unlink()
    return where


def refresh_manifest(store: ProvenanceStore, job_id: str, dest: Location, index: bool | None = None) -> dict[str, str]:
    """Render a job's manifest again (a review decision was added, a check or a relocation changed
    its records): its own files always, DEST's index only while the index is this job's (or as
    ``index`` says, for a caller that read the index once for many jobs). A decision on an earlier
    job's item must not put that job in the place of the latest one. The job's IIIF manifest,
    which shows the decisions and names the outputs' places too, is written again from the same
    spool (:func:`~colorize_core.exports.refresh_iiif`)."""
    from colorize_core.exports import refresh_iiif   # the exports build on the manifest

    if index is None:
        shown = index_job(dest)   # None: no index yet, or not one of ours: this job's becomes it
        index = shown in (None, job_id)
    with spooled_manifest(store, job_id) as manifest:
        uris = write_manifest(store, job_id, dest, index=index, manifest=manifest)
        refresh_iiif(store, job_id, dest, manifest)
    return uris


def refresh_jobs(store: ProvenanceStore, job_ids: list[str], s3_endpoint: str | None = None) -> dict[str, str | None]:
    """:func:`refresh_manifest` for each job in its own DEST (decisions were taken on their
    items); returns, per job, None or why its pages could not be written (the decisions stand)."""
    failed: dict[str, str | None] = {}
    for job_id in dict.fromkeys(job_ids):
        job = store.job(job_id)
        try:
            refresh_manifest(store, job_id, open_location(job.dest, s3_endpoint))
            failed[job_id] = None
        except ColorizeError as exc:
            failed[job_id] = f"the manifest under {job.dest} was not refreshed: {exc}"
    return failed


# How every manifest.json written here begins (json.dumps of build_manifest's dict, indent=1):
# the job's id is read from its first bytes, not from the whole file (a big job's is gigabytes).
_INDEX_HEAD = re.compile(r'\{\s*"schema":\s*"colorize-manifest/1",\s*"job":\s*\{\s*"id":\s*("(?:[^"\\]|\\.)*")')


def index_job(dest: Location) -> str | None:
    """The job DEST's index (``manifest.json``) shows; None without one of ours."""
    try:
        found = _INDEX_HEAD.match(dest.read("manifest.json", limit=4096).decode("utf-8", "replace"))
        return json.loads(found.group(1)) if found else None
    except (StorageError, ValueError):
        return None
