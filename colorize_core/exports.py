"""Exports of a job for archive systems: IIIF Presentation 3, PREMIS 3 XML and W3C PROV-JSON.

All three are built from the provenance database and written under ``DEST/manifests/<job id>/``
beside the manifest, each into a temporary file a record at a time, then put in place: a nightly
job over an archive has an item per original, and what is held must not grow with it.

- IIIF: one Canvas per photo or film done (or skipped as done earlier), whose painting
  annotation is a Choice: the colour rendition first (the default a viewer shows), then the
  original; a ``requiredStatement`` says the colour is an algorithmic colorization. Films are
  Canvases with a duration and the access copy as Video. IIIF ids must be HTTP(S) URLs a viewer
  can fetch: ``base_url`` is where DEST is published (``COLORIZE_PUBLIC_BASE_URL``); the
  originals are linked under ``source_base_url`` when given, else their review thumbnails.
- PREMIS: objects (each input, each rendition, with sha256 fixity), events (with outcome and
  linking agents and objects) and agents (the software, the model with its weights sha256,
  reviewers).
- PROV-JSON (the ``prov`` library): entities (inputs, outputs), one activity per item, agents;
  used / wasGeneratedBy / wasDerivedFrom / wasAssociatedWith.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import mimetypes
import operator
import posixpath
import sqlite3
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from colorize_core import __version__
from colorize_core.archive import CONTENT_TYPES, MANIFESTS, xmp_sidecar_of
from colorize_core.film import access_size
from colorize_core.images import NOTE
from colorize_core.manifest import SpooledManifest, spooled_manifest, write_json_list
from colorize_core.provenance import IN_CHUNK, Event, Item, ProvenanceStore, in_chunks
from colorize_core.storage import Location, work_dir

IIIF_CONTEXT = "http://iiif.io/api/presentation/3/context.json"
PREMIS_NS = "http://www.loc.gov/premis/v3"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
ET.register_namespace("premis", PREMIS_NS)
VIDEO = {"access": "video/mp4", "master": "video/x-matroska", "master-prores": "video/quicktime"}


FILES = {"iiif": "iiif.json", "premis": "premis.xml", "prov": "prov.json"}   # under DEST/manifests/<job>/
EXPORT = "export"   # the type of the job's event recording an export written (kind, URI, its public URLs)
PROV_PAGE = 1000   # items a page of PROV records: prov's objects take some 50 KB an item
PREMIS_PAGE = 1000  # items a page of PREMIS records: an item's ORM objects with its events take some 35 KB
CONTENT_TYPES_OF = {"iiif": 'application/ld+json;profile="http://iiif.io/api/presentation/3/context.json"',
                    "premis": "application/xml", "prov": "application/json"}


def _public(uri: str, root: str, base: str) -> str:
    """``uri`` (under ``root``) as a URL under ``base``."""
    rel = uri[len(root):].lstrip("/") if uri.startswith(root) else uri
    return base.rstrip("/") + "/" + urllib.parse.quote(rel)


def default_base_url(dest: Location) -> str:
    """Where DEST's files are when no public URL is configured: file:// or s3:// (fine for a
    local check; a viewer needs HTTP(S))."""
    return _as_uri(dest.uri)


def _iiif_id(job: dict[str, Any], dest: Location, base_url: str) -> str:
    root = dest.uri.rstrip("/")
    return _public(f"{root}/{MANIFESTS}/{job['id']}/iiif.json", root, base_url)


def iiif_canvas(it: dict[str, Any], n: int, job: dict[str, Any], dest: Location, base_url: str,
                source_base_url: str | None = None) -> dict[str, Any] | None:
    """The Canvas of the manifest's ``n``-th item (from 1) in the IIIF manifest of its job;
    None when it has no colour rendition to show."""
    colour = it["colour"]
    if colour is None or it["status"] == "failed":
        return None
    root = dest.uri.rstrip("/")
    cid = f"{_iiif_id(job, dest, base_url)}/canvas/{n}"
    original = (_public(it["source_uri"], job["source"].rstrip("/"), source_base_url) if source_base_url
                else (_public(it["thumbnails"]["original"], root, base_url) if it["thumbnails"].get("original")
                      else None))
    if it["media_type"] == "film":
        media = (it.get("film") or {}).get("media") or {}
        size = {"width": it["width"], "height": it["height"], "duration": float(media.get("duration") or 0)}
        scaled = access_size(it["width"], it["height"]) if colour["kind"] == "access" else None   # a 4K scan's
        shown = {**size, "width": scaled[0], "height": scaled[1]} if scaled else size
        body = [{"id": _public(colour["uri"], root, base_url), "type": "Video",
                 "format": VIDEO.get(colour["kind"], "video/mp4"), **shown,
                 "label": {"en": ["Colorized (algorithmic)"]}}]
        if original:
            body.append({"id": original, "type": "Video" if source_base_url else "Image",
                         "format": "video/mp4" if source_base_url else "image/jpeg",
                         "label": {"en": ["Original (black and white)"]}})
    else:
        size = {"width": it["width"], "height": it["height"]}
        body = [{"id": _public(colour["uri"], root, base_url), "type": "Image",
                 "format": CONTENT_TYPES.get(it["format"], "image/jpeg"), **size,
                 "label": {"en": ["Colorized (algorithmic)"]}}]
        if original:
            body.append({"id": original, "type": "Image",
                         "format": CONTENT_TYPES.get(it["format"], "image/jpeg") if source_base_url else "image/jpeg",
                         "label": {"en": ["Original (black and white)"]}})
    canvas = {
        "id": cid, "type": "Canvas", "label": {"none": [it["rel_path"]]}, **size,
        "metadata": [{"label": {"en": ["Input sha256"]}, "value": {"none": [it["sha256"] or ""]}},
                     {"label": {"en": ["Model"]}, "value": {"none": [f"{it['model_name']} sha256:{it['model_sha256']}"]}},
                     {"label": {"en": ["Review"]}, "value": {"en": [it["decision"] or "not reviewed"]}},
                     *_iiif_state(it)],
        "items": [{"id": f"{cid}/page", "type": "AnnotationPage", "items": [{
            "id": f"{cid}/page/painting", "type": "Annotation", "motivation": "painting", "target": cid,
            "body": {"type": "Choice", "items": body} if len(body) > 1 else body[0]}]}],
    }
    if it["thumbnails"].get("colour"):
        canvas["thumbnail"] = [{"id": _public(it["thumbnails"]["colour"], root, base_url), "type": "Image",
                                "format": "image/jpeg"}]
    return canvas


def _iiif_state(it: dict[str, Any]) -> list[dict[str, Any]]:
    """Canvas metadata for what happened to the rendition since it was made, as its job's page
    says it: its latest fixity check, and the item that superseded it (a redo or a repair)."""
    out = []
    if it.get("fixity"):
        fx = it["fixity"]
        found = (", ".join(f"{p['kind']} {p['status']}" for p in fx["not_intact"]) or "not intact"
                 if fx["outcome"] == "failure" else "intact")
        out.append({"label": {"en": ["Fixity check"]}, "value": {"en": [f"{found} ({fx['at']})"]}})
    by = (it.get("redo") or {}).get("superseded_by")
    if by:
        how = "damaged; written again" if by.get("repair") else "redone"
        out.append({"label": {"en": ["Superseded"]},
                    "value": {"en": [f"{how} as item {by.get('item_id')} in job {by.get('job_id')}"]}})
    return out


def iiif_head(job: dict[str, Any], dest: Location, base_url: str, canvases: int) -> dict[str, Any]:
    """The IIIF Presentation 3 Manifest of a job's colour renditions, but for its ``items``
    (``canvases`` of them: :func:`iiif_canvas`)."""
    return {
        "@context": IIIF_CONTEXT, "id": _iiif_id(job, dest, base_url), "type": "Manifest",
        "label": {"en": [f"Colorized: {job['source']} (job {job['id']})"]},
        "summary": {"en": [f"{canvases} colour rendition(s) made by model {job['model']['name']}; "
                           "each canvas offers the colour rendition and the original."]},
        "requiredStatement": {"label": {"en": ["Colorization"]}, "value": {"en": [NOTE]}},
        "metadata": [{"label": {"en": ["Job"]}, "value": {"none": [job["id"]]}},
                     {"label": {"en": ["Finished"]}, "value": {"none": [job["finished_at"] or ""]}}],
    }


def write_iiif(manifest: SpooledManifest, dest: Location, base_url: str, source_base_url: str | None,
               path: Path) -> None:
    """Write the job's IIIF manifest to the local file ``path``, a Canvas at a time."""
    canvases = 0

    def each() -> Iterator[dict[str, Any]]:
        nonlocal canvases
        for n, it in enumerate(manifest.items(), 1):
            canvas = iiif_canvas(it, n, manifest.job, dest, base_url, source_base_url)
            if canvas is not None:
                canvases += 1
                yield canvas

    write_json_list(path, lambda: iiif_head(manifest.job, dest, base_url, canvases), each())


def _item_pages(store: ProvenanceStore, job_id: str, events: bool = False, size: int = IN_CHUNK
                ) -> Iterator[tuple[list[Item], dict[int, list[Event]]]]:
    """The job's own items (by id) with their outputs, and with ``events`` their events (by
    id), a page of ``size`` items at a time."""
    from sqlalchemy import select
    from sqlalchemy.orm import selectinload

    with store.session() as s:
        ids = s.scalars(select(Item.id).where(Item.job_id == job_id).order_by(Item.id)).all()
    for part in in_chunks(ids, size):
        by_item: dict[int, list[Event]] = {}
        with store.session() as s:
            items = list(s.scalars(select(Item).where(Item.id.in_(part)).options(selectinload(Item.outputs))
                                   .order_by(Item.id)))
            if events:
                for e in s.scalars(select(Event).where(Event.item_id.in_(part)).order_by(Event.id)):
                    by_item.setdefault(e.item_id, []).append(e)
        yield items, by_item


def _q(tag: str) -> str:
    return f"{{{PREMIS_NS}}}{tag}"


def _ident(parent: ET.Element, kind: str, id_type: str, value: str) -> None:
    el = ET.SubElement(parent, _q(f"{kind}Identifier"))
    ET.SubElement(el, _q(f"{kind}IdentifierType")).text = id_type
    ET.SubElement(el, _q(f"{kind}IdentifierValue")).text = value


def _premis_object(uri: str, sha256: str | None, size: int | None, fmt: str | None, name: str | None) -> ET.Element:
    el = ET.Element(_q("object"), {f"{{{XSI_NS}}}type": "premis:file"})
    _ident(el, "object", "URI", _as_uri(uri))
    chars = ET.SubElement(el, _q("objectCharacteristics"))
    if sha256:
        fixity = ET.SubElement(chars, _q("fixity"))
        ET.SubElement(fixity, _q("messageDigestAlgorithm")).text = "SHA-256"
        ET.SubElement(fixity, _q("messageDigest")).text = sha256
    if size is not None:
        ET.SubElement(chars, _q("size")).text = str(size)
    fmt_el = ET.SubElement(ET.SubElement(chars, _q("format")), _q("formatDesignation"))
    ET.SubElement(fmt_el, _q("formatName")).text = mimetypes.guess_type(uri)[0] or fmt or "unknown"
    if name:
        ET.SubElement(el, _q("originalName")).text = name
    return el


def _premis_event(job_id: str, it: Item, e: Event) -> ET.Element:
    el = ET.Element(_q("event"))
    _ident(el, "event", "local", f"{job_id}/event/{e.id}")
    ET.SubElement(el, _q("eventType")).text = e.type
    ET.SubElement(el, _q("eventDateTime")).text = e.at.isoformat()
    ET.SubElement(el, _q("eventDetailInformation")).append(_detail(_q, e.detail))
    outcome = ET.SubElement(el, _q("eventOutcomeInformation"))
    ET.SubElement(outcome, _q("eventOutcome")).text = e.outcome
    link = ET.SubElement(el, _q("linkingAgentIdentifier"))
    ET.SubElement(link, _q("linkingAgentIdentifierType")).text = "local"
    ET.SubElement(link, _q("linkingAgentIdentifierValue")).text = e.agent
    outcomes = e.type in ("write", "encode", "fixity check", "transfer")   # events about the outputs
    side = xmp_sidecar_of(it.source_uri, it.rel_path, it.media)   # an object of its own, its own item's
    sources = [it.source_uri] + ([side["uri"]] if side else [])
    for uri, role in [(u, "source") for u in sources] + [(o.uri, "outcome") for o in it.outputs if outcomes]:
        lo = ET.SubElement(el, _q("linkingObjectIdentifier"))
        ET.SubElement(lo, _q("linkingObjectIdentifierType")).text = "URI"
        ET.SubElement(lo, _q("linkingObjectIdentifierValue")).text = _as_uri(uri)
        ET.SubElement(lo, _q("linkingObjectRole")).text = role
    return el


def _premis_agent(name: str, kind: str) -> ET.Element:
    el = ET.Element(_q("agent"))
    _ident(el, "agent", "local", name)
    ET.SubElement(el, _q("agentName")).text = name.removeprefix("person:")
    ET.SubElement(el, _q("agentType")).text = kind
    return el


def _below_root(el: ET.Element) -> str:
    """``el`` as XML text, indented as a child of the PREMIS document's root, whose start tag
    declares the prefixes it uses (ElementTree declares them on the outermost element it writes:
    here a stand-in root, left out)."""
    ET.indent(el, level=1)
    stand_in = ET.Element(_q("premis"))
    stand_in.append(el)
    text = ET.tostring(stand_in, encoding="unicode")
    return text[text.index(">") + 1:text.rindex("</")]


def write_premis(store: ProvenanceStore, job_id: str, path: Path) -> None:
    """Write the job's provenance as a PREMIS 3 document (objects, events, agents, the order
    PREMIS gives its entities) to the local file ``path``, an element at a time: its items are
    read a page at a time, twice (objects, then events)."""
    job = store.job(job_id)
    if job is None:
        raise KeyError(f"unknown job {job_id}")
    agents: dict[str, str] = {f"colorize {__version__}": "software",
                              f"model {job.model_name} sha256:{job.model_sha256}": "software"}
    with open(path, "w", encoding="utf-8") as out:
        out.write(f"<?xml version='1.0' encoding='utf-8'?>\n"
                  f'<premis:premis xmlns:premis="{PREMIS_NS}" xmlns:xsi="{XSI_NS}" version="3.0">')
        for items, _ in _item_pages(store, job_id, size=PREMIS_PAGE):
            for it in items:
                out.write("\n  " + _below_root(_premis_object(it.source_uri, it.sha256, it.size, it.format,
                                                              it.rel_path)))
                for o in it.outputs:
                    out.write("\n  " + _below_root(_premis_object(o.uri, o.sha256, o.size, None, None)))
        for items, events in _item_pages(store, job_id, events=True, size=PREMIS_PAGE):
            for it in items:
                for e in events.get(it.id, []):
                    agents.setdefault(e.agent, "person" if e.agent.startswith("person:") else "software")
                    out.write("\n  " + _below_root(_premis_event(job_id, it, e)))
        for name, kind in agents.items():
            out.write("\n  " + _below_root(_premis_agent(name, kind)))
        out.write("\n</premis:premis>")


def _as_uri(location: str) -> str:
    """A stored location as a URI (local paths as file:// URIs)."""
    return location if "://" in location else "file://" + urllib.parse.quote(location)


def _detail(q: Any, detail: dict[str, Any]) -> ET.Element:
    el = ET.Element(q("eventDetail"))
    el.text = json.dumps(detail, sort_keys=True, default=str)
    return el


def write_prov(store: ProvenanceStore, job_id: str, path: Path) -> None:
    """Write the job's provenance as W3C PROV-JSON to the local file ``path``. The ``prov``
    library encodes the records a page of items at a time; they are put together in a temporary
    SQLite file beside ``path``, so that what is held does not grow with the job. A record whose
    id comes up again (a reviewer in every decision, the same content in two places) is written
    once, or, with other attributes, as a list of its records, as ``prov`` writes them."""
    from prov.model import ProvDocument
    from prov.serializers.provjson import encode_json_container

    job = store.job(job_id)
    if job is None:
        raise KeyError(f"unknown job {job_id}")

    def document() -> ProvDocument:
        doc = ProvDocument()
        doc.add_namespace("colorize", "urn:colorize:")
        doc.add_namespace("item", f"urn:colorize:job:{job_id}:item:")
        return doc

    records = path.with_name(path.name + ".records")
    spool = sqlite3.connect(records)
    spool.execute("CREATE TABLE r (seq INTEGER PRIMARY KEY, section TEXT, key TEXT, value TEXT)")
    prefixes: dict[str, str] = {}
    blank = itertools.count(1)

    def add(doc: ProvDocument) -> None:
        container = encode_json_container(doc)
        prefixes.update(container.pop("prefix", {}))
        rows = []
        for section, found in container.items():
            for key, value in found.items():
                for record in value if isinstance(value, list) else [value]:
                    # blank ids (relations) are numbered afresh in each page's document
                    rows.append((section, f"_:id{next(blank)}" if key.startswith("_:") else key,
                                 json.dumps(record, indent=1, ensure_ascii=False)))
        spool.executemany("INSERT INTO r (section, key, value) VALUES (?, ?, ?)", rows)

    try:
        head = document()
        software = head.agent("colorize:software", {"prov:type": "prov:SoftwareAgent", "colorize:version": __version__})
        model = f"colorize:model-{job.model_sha256[:16]}"
        head.agent(model, {"prov:type": "prov:SoftwareAgent", "colorize:name": job.model_name,
                           "colorize:sha256": job.model_sha256})
        run = head.activity(f"colorize:job-{job_id}", job.started_at, job.finished_at,
                            {"colorize:status": job.status, "colorize:flow_run": job.flow_run_id or ""})
        head.wasAssociatedWith(run, software)
        add(head)
        for items, events in _item_pages(store, job_id, events=True, size=PROV_PAGE):
            doc = document()
            for it in items:
                _prov_item(doc, it, events.get(it.id, []), run.identifier, model)
            add(doc)
        spool.execute("CREATE INDEX r_key ON r (section, key, value)")
        _write_records(spool, prefixes, path)
    finally:
        spool.close()
        records.unlink(missing_ok=True)


def _prov_item(doc: Any, it: Item, events: list[Event], run: Any, model: str) -> None:
    """An item's records: its source and outputs, its activity, its review decisions."""
    src = doc.entity(f"colorize:sha256-{it.sha256}" if it.sha256 else f"item:{it.id}-source",
                     {"prov:location": _as_uri(it.source_uri), "colorize:sha256": it.sha256 or ""})
    act = doc.activity(f"item:{it.id}", it.started_at, it.finished_at,
                       {"colorize:status": it.status, "colorize:params_key": it.params_key})
    doc.wasInformedBy(act, run)
    doc.used(act, src)
    side = xmp_sidecar_of(it.source_uri, it.rel_path, it.media)
    if side:   # its metadata is in the colour rendition
        side = doc.entity(f"colorize:sha256-{side['sha256']}", {"prov:location": _as_uri(side["uri"]),
                                                                "colorize:kind": "xmp-sidecar"})
        doc.used(act, side)
    doc.wasAssociatedWith(act, model)
    for o in it.outputs:
        out = doc.entity(f"colorize:sha256-{o.sha256}", {"prov:location": _as_uri(o.uri), "colorize:kind": o.kind})
        doc.wasGeneratedBy(out, act)
        doc.wasDerivedFrom(out, src)
        if side and o.kind == "colour":
            doc.wasDerivedFrom(out, side)
    for e in events:
        if e.type == "review":
            person = doc.agent(f"colorize:person-{urllib.parse.quote(e.agent.removeprefix('person:'))}",
                               {"prov:type": "prov:Person", "colorize:name": e.agent.removeprefix("person:")})
            attrs = {"colorize:decision": e.detail.get("decision", ""), "colorize:note": e.detail.get("note", "")}
            if e.detail.get("with_job"):   # approved with the job's items that needed no attention
                attrs["colorize:with_job"] = e.detail["with_job"]
            decision = doc.activity(f"item:{it.id}-review-{e.id}", e.at, e.at, attrs)
            doc.wasAssociatedWith(decision, person)
            for o in it.outputs:
                doc.used(decision, f"colorize:sha256-{o.sha256}")


def _write_records(spool: sqlite3.Connection, prefixes: dict[str, str], path: Path) -> None:
    """The PROV-JSON document of the spooled records (sections and ids in the order they first
    came; a record declared again, the same, once), laid out as ``json.dumps(..., indent=1)``
    lays it out. Only a record at a time is held, however many an id has."""
    rows = spool.execute(
        "WITH v AS (SELECT section, key, value, MIN(seq) AS seq FROM r GROUP BY section, key, value), "
        "k AS (SELECT section, key, MIN(seq) AS first FROM r GROUP BY section, key), "
        "s AS (SELECT section, MIN(seq) AS first FROM r GROUP BY section) "
        "SELECT v.section, v.key, v.value FROM v JOIN k USING (section, key) JOIN s USING (section) "
        "ORDER BY s.first, k.first, v.seq")
    nested = lambda text, depth: text.replace("\n", "\n" + " " * depth)  # noqa: E731
    with open(path, "w", encoding="utf-8") as out:
        out.write('{\n "prefix": ' + nested(json.dumps(prefixes, indent=1, ensure_ascii=False), 1))
        for section, in_section in itertools.groupby(rows, key=operator.itemgetter(0)):
            out.write(f",\n {json.dumps(section)}: {{")
            for n, (key, same) in enumerate(itertools.groupby(in_section, key=operator.itemgetter(1))):
                out.write(f"{',' if n else ''}\n  {json.dumps(key, ensure_ascii=False)}: ")
                first, second = next(same)[2], next(same, None)
                if second is None:   # the one record of its id
                    out.write(nested(first, 2))
                    continue
                out.write("[\n   " + nested(first, 3))   # more: a list of them
                for _, _, value in itertools.chain([second], same):
                    out.write(",\n   " + nested(value, 3))
                out.write("\n  ]")
            out.write("\n }")
        out.write("\n}")


def rewrite_exports(store: ProvenanceStore, job_id: str, dest: Location) -> list[str]:
    """Write again those of a job's PREMIS and PROV exports that DEST holds, after its records
    changed (a relocation); returns the kinds written. The IIIF manifest is written again with
    the job's manifest (:func:`refresh_iiif`), with the public URLs it was written with."""
    kinds = tuple(k for k in ("premis", "prov") if dest.exists(posixpath.join(MANIFESTS, job_id, FILES[k])))
    return list(write_exports(store, job_id, dest, kinds)) if kinds else []


def write_exports(store: ProvenanceStore, job_id: str, dest: Location, kinds: tuple[str, ...] = ("iiif",),
                  base_url: str | None = None, source_base_url: str | None = None,
                  manifest: SpooledManifest | None = None) -> dict[str, str]:
    """Write the chosen exports under DEST/manifests/<job>/; returns their URIs by kind. Each is
    written to a temporary file, a record at a time, then put in place. The IIIF manifest is made
    from ``manifest``, the job's :func:`~colorize_core.manifest.spooled_manifest` (the flow's,
    which wrote the job's manifest), else from one of its own."""
    bad = [k for k in kinds if k not in FILES]
    if bad:
        raise ValueError(f"unknown export {bad[0]!r} (iiif, premis, prov)")
    job_dir = posixpath.join(MANIFESTS, job_id)
    out: dict[str, str] = {}
    with work_dir("export") as tmp:
        for kind in kinds:
            rel, path = f"{job_dir}/{FILES[kind]}", Path(tmp, FILES[kind])
            if kind == "iiif":
                with contextlib.nullcontext(manifest) if manifest else spooled_manifest(store, job_id) as made:
                    write_iiif(made, dest, base_url or default_base_url(dest), source_base_url, path)
            elif kind == "premis":
                write_premis(store, job_id, path)
            else:
                write_prov(store, job_id, path)
            dest.replace_file(rel, path, CONTENT_TYPES_OF[kind])
            path.unlink()
            out[kind] = dest.uri_of(rel)
    urls = {"base_url": base_url, "source_base_url": source_base_url}   # what a refresh writes it with again
    store.add_events({"job_id": job_id, "item_id": None, "type": EXPORT, "outcome": "success",
                      "agent": f"colorize {__version__}",
                      "detail": {"kind": kind, "uri": uri, **(urls if kind == "iiif" else {})}}
                     for kind, uri in out.items())
    return out


def refresh_iiif(store: ProvenanceStore, job_id: str, dest: Location, manifest: SpooledManifest) -> bool:
    """Write the job's IIIF manifest again (:func:`write_exports`, which records it), from
    ``manifest``, with the public URLs it was last written with (its last ``export`` event), when
    DEST holds it: its canvases show the review decisions, the fixity checks and the outputs'
    places. False, and nothing written, when DEST holds none or none was recorded written (one
    written before exports were recorded: its URLs are not known)."""
    from sqlalchemy import select

    if not dest.exists(posixpath.join(MANIFESTS, job_id, FILES["iiif"])):
        return False
    with store.session() as s:
        written = s.scalars(select(Event.detail).where(Event.job_id == job_id, Event.type == EXPORT,
                                                       Event.item_id.is_(None)).order_by(Event.id.desc()))
        last = next((d for d in written if d.get("kind") == "iiif"), None)
    if last is None:
        return False
    write_exports(store, job_id, dest, ("iiif",), last.get("base_url"), last.get("source_base_url"), manifest)
    return True
