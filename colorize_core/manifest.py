"""Job manifests built from the provenance database: ``manifest.json`` and ``manifest.html``.

Each job writes ``DEST/manifests/<job id>/manifest.{json,html}`` and refreshes
``DEST/manifest.{json,html}``, the generated index of the latest job. Manifests are views of the
provenance database, rendered in full before anything is written and replaced when rendered
again (a retried task; review decisions added later, which refresh the index only while it is
the decided item's job's). The HTML is
a contact sheet, original and colour side by side; every text is HTML-escaped (Jinja2
autoescape) and every link URL-quoted.
"""

from __future__ import annotations

import json
import posixpath
import urllib.parse
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
from colorize_core.storage import Location, open_location

SCHEMA = "colorize-manifest/1"
_ITEM_FIELDS = ("rel_path", "source_uri", "status", "reason", "error_type", "error", "sha256", "size",
                "media_type", "format", "width", "height", "channels", "bit_depth", "flags", "notes",
                "colourfulness", "chroma_spread", "params", "params_key", "model_name", "model_sha256")
_env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
                          autoescape=True, undefined=jinja2.StrictUndefined)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def build_manifest(store: ProvenanceStore, job_id: str) -> dict[str, Any]:
    """The manifest of job ``job_id`` as a JSON-ready dict (schema ``colorize-manifest/1``)."""
    job: Job | None = store.job(job_id)
    if job is None:
        raise KeyError(f"unknown job {job_id}")
    items = []
    counts = {"done": 0, "skipped": 0, "failed": 0}
    rows = store.job_items(job_id)
    reviews = decisions_of(store, [r["done_item_id"] for r in rows if r["done_item_id"]])
    links = _redo_links(store, [r["done_item_id"] for r in rows if r["done_item_id"]])
    checks = latest_checks(store, [r["done_item_id"] for r in rows if r["done_item_id"]])
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
        if row["media_type"] == "film":
            item["film"] = {"media": row["media"], "units": row["shots"],
                            "shots": [s for unit in row["shots"] for s in unit["shots"]],
                            "stills": _evenly([st for unit in row["shots"] for st in unit["stills"]], 12)}
        item["thumbnails"] = {o["kind"].removeprefix("thumb-"): o["uri"] for o in row["outputs"]
                              if o["kind"].startswith("thumb-")}
        item["done_in_job"] = row.get("done_in_job", job_id if row["status"] == "done" else None)
        item["attention"] = attention(item)
        items.append(item)
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    return {
        "schema": SCHEMA,
        "job": {"id": job.id, "source": job.source, "dest": job.dest, "status": job.status,
                "started_at": _iso(job.started_at), "finished_at": _iso(job.finished_at),
                "flow_run_id": job.flow_run_id, "model": {"name": job.model_name, "sha256": job.model_sha256},
                "params": job.params, "params_key": job.params_key, "software": job.software,
                "counts": counts, "note": NOTE,
                "attention": sum(bool(it["attention"]) for it in items)},
        "items": items,
    }


LOW_COLOURFULNESS = 10.0   # Hasler & Suesstrunk: below ~15 reads as "slightly colourful" at most
HIGH_FLICKER = 0.005       # warping error after smoothing, at the model's working size
# Flags a reviewer should see first: an input already in colour, a prediction the model was
# unsure of, a stream the renditions could not hold, a film scan in log code values.
ATTENTION_FLAGS = ("already-colour", "low-confidence", "streams-not-carried", "log-encoded")


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


def attention_first(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A manifest's items as a reviewer takes them (the contact sheet, `review list`, a review
    sheet): those that need attention first, then the others, each in the manifest's order (by path)."""
    return sorted(items, key=lambda it: not it["attention"])   # stable


def pages_of(manifest: dict[str, Any], per_page: int) -> list[list[dict[str, Any]]]:
    """The contact sheet's pages (:func:`attention_first`), ``per_page`` items a page; one page,
    maybe empty, at least."""
    items = attention_first(manifest["items"])
    return [items[n:n + per_page] for n in range(0, len(items), per_page)] or [[]]


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


def render_html(manifest: dict[str, Any], dest: Location, depth: int, page_items: list[dict[str, Any]] | None = None,
                page: int = 1, pages: int = 1) -> str:
    """Page ``page`` of ``pages`` of the job's contact sheet, holding ``page_items`` (all the
    items when not given), for a file ``depth`` folders below DEST."""
    items = []
    for it in manifest["items"] if page_items is None else page_items:
        stills = [{"frame": st["frame"], "original": _href(st["original"]["uri"], dest, depth),
                   "colour": _href(st["colour"]["uri"], dest, depth)} for st in (it.get("film") or {}).get("stills", [])]
        items.append({**it, "film": it.get("film"), "film_stills": stills,
                      "href_original": _href(it["thumbnails"].get("original"), dest, depth),
                      "href_colour_thumb": _href(it["thumbnails"].get("colour"), dest, depth),
                      "href_colour": _href(it["colour"]["uri"] if it["colour"] else None, dest, depth)})
    nav = _page_links(manifest["job"]["id"], page, pages, depth) if pages > 1 else []
    return _env.get_template("manifest.html.j2").render(m=manifest, job=manifest["job"], items=items, page=page,
                                                        pages=pages, nav=nav)


def write_manifest(store: ProvenanceStore, job_id: str, dest: Location, index: bool = True) -> dict[str, str]:
    """Write the job's manifest files under DEST, and with ``index`` DEST's index of the latest
    job (``manifest.{json,html}``) as this job's; returns their URIs by name. The HTML contact
    sheet is paged (``COLORIZE_MANIFEST_PAGE_ITEMS`` items a page, those needing attention
    first): ``manifest.html`` is its first page, ``manifest-2.html`` and on the others, in the
    job's folder; DEST's index is the first page, linking to the others there."""
    manifest = build_manifest(store, job_id)
    data = json.dumps(manifest, indent=1, ensure_ascii=False).encode()
    job_dir = posixpath.join(MANIFESTS, job_id)
    pages = pages_of(manifest, get_settings().manifest_page_items)
    dest.replace(f"{job_dir}/manifest.json", data, "application/json")
    for n, part in enumerate(pages, 1):
        dest.replace(f"{job_dir}/{page_name(n)}", render_html(manifest, dest, 2, part, n, len(pages)).encode(),
                     "text/html; charset=utf-8")
    stale = len(pages) + 1   # pages of an earlier rendering with fewer items a page: they would show old views
    while dest.exists(f"{job_dir}/{page_name(stale)}"):
        dest.delete(f"{job_dir}/{page_name(stale)}")
        stale += 1
    if index:
        dest.replace("manifest.json", data, "application/json")
        dest.replace("manifest.html", render_html(manifest, dest, 0, pages[0], 1, len(pages)).encode(),
                     "text/html; charset=utf-8")
    return {"json": dest.uri_of("manifest.json"), "html": dest.uri_of("manifest.html"),
            "job_json": dest.uri_of(f"{job_dir}/manifest.json"), "job_html": dest.uri_of(f"{job_dir}/manifest.html")}


def refresh_manifest(store: ProvenanceStore, job_id: str, dest: Location) -> dict[str, str]:
    """Render a job's manifest again (a review decision was added): its own files always, DEST's
    index only while the index is this job's. A decision on an earlier job's item must not put
    that job in the place of the latest one."""
    shown = index_job(dest)   # None: no index yet, or not one of ours: this job's becomes it
    return write_manifest(store, job_id, dest, index=shown in (None, job_id))


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


def index_job(dest: Location) -> str | None:
    """The job DEST's index (``manifest.json``) shows; None without one of ours."""
    try:
        return json.loads(dest.read("manifest.json"))["job"]["id"]
    except (StorageError, ValueError, KeyError, TypeError):
        return None
