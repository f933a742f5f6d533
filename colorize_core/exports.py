"""Exports of a job for archive systems: IIIF Presentation 3, PREMIS 3 XML and W3C PROV-JSON.

All three are built from the provenance database (through the job's manifest) and written
under ``DEST/manifests/<job id>/`` beside the manifest.

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

import json
import mimetypes
import posixpath
import urllib.parse
import xml.etree.ElementTree as ET
from typing import Any

from colorize_core import __version__
from colorize_core.archive import CONTENT_TYPES, MANIFESTS
from colorize_core.images import NOTE
from colorize_core.manifest import build_manifest
from colorize_core.provenance import Event, Item, ProvenanceStore, in_chunks
from colorize_core.storage import Location

IIIF_CONTEXT = "http://iiif.io/api/presentation/3/context.json"
PREMIS_NS = "http://www.loc.gov/premis/v3"
VIDEO = {"access": "video/mp4", "master": "video/x-matroska", "master-prores": "video/quicktime"}


FILES = {"iiif": "iiif.json", "premis": "premis.xml", "prov": "prov.json"}   # under DEST/manifests/<job>/


def _public(uri: str, root: str, base: str) -> str:
    """``uri`` (under ``root``) as a URL under ``base``."""
    rel = uri[len(root):].lstrip("/") if uri.startswith(root) else uri
    return base.rstrip("/") + "/" + urllib.parse.quote(rel)


def default_base_url(dest: Location) -> str:
    """Where DEST's files are when no public URL is configured: file:// or s3:// (fine for a
    local check; a viewer needs HTTP(S))."""
    return dest.uri if "://" in dest.uri else "file://" + urllib.parse.quote(dest.uri)


def iiif_manifest(manifest: dict[str, Any], dest: Location, base_url: str,
                  source_base_url: str | None = None) -> dict[str, Any]:
    """A IIIF Presentation 3 Manifest of the job's colour renditions."""
    job = manifest["job"]
    root = dest.uri.rstrip("/")
    me = _public(f"{root}/{MANIFESTS}/{job['id']}/iiif.json", root, base_url)
    canvases = []
    for n, it in enumerate(manifest["items"], 1):
        colour = it["colour"]
        if colour is None or it["status"] == "failed":
            continue
        cid = f"{me}/canvas/{n}"
        original = (_public(it["source_uri"], job["source"].rstrip("/"), source_base_url) if source_base_url
                    else (_public(it["thumbnails"]["original"], root, base_url) if it["thumbnails"].get("original")
                          else None))
        if it["media_type"] == "film":
            media = (it.get("film") or {}).get("media") or {}
            size = {"width": it["width"], "height": it["height"], "duration": float(media.get("duration") or 0)}
            body = [{"id": _public(colour["uri"], root, base_url), "type": "Video",
                     "format": VIDEO.get(colour["kind"], "video/mp4"), **size,
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
                         {"label": {"en": ["Review"]}, "value": {"en": [it["decision"] or "not reviewed"]}}],
            "items": [{"id": f"{cid}/page", "type": "AnnotationPage", "items": [{
                "id": f"{cid}/page/painting", "type": "Annotation", "motivation": "painting", "target": cid,
                "body": {"type": "Choice", "items": body} if len(body) > 1 else body[0]}]}],
        }
        if it["thumbnails"].get("colour"):
            canvas["thumbnail"] = [{"id": _public(it["thumbnails"]["colour"], root, base_url), "type": "Image",
                                    "format": "image/jpeg"}]
        canvases.append(canvas)
    return {
        "@context": IIIF_CONTEXT, "id": me, "type": "Manifest",
        "label": {"en": [f"Colorized: {job['source']} (job {job['id']})"]},
        "summary": {"en": [f"{len(canvases)} colour rendition(s) made by model {job['model']['name']}; "
                           "each canvas offers the colour rendition and the original."]},
        "requiredStatement": {"label": {"en": ["Colorization"]}, "value": {"en": [NOTE]}},
        "metadata": [{"label": {"en": ["Job"]}, "value": {"none": [job["id"]]}},
                     {"label": {"en": ["Finished"]}, "value": {"none": [job["finished_at"] or ""]}}],
        "items": canvases,
    }


def _events(store: ProvenanceStore, item_ids: list[int]) -> dict[int, list[Event]]:
    from sqlalchemy import select

    out: dict[int, list[Event]] = {}
    if item_ids:
        with store.session() as s:
            events = [e for part in in_chunks(item_ids) for e in s.scalars(select(Event).where(Event.item_id.in_(part)))]
            for e in sorted(events, key=lambda e: e.id):
                out.setdefault(e.item_id, []).append(e)
    return out


def _item_rows(store: ProvenanceStore, job_id: str) -> list[Item]:
    from sqlalchemy import select
    from sqlalchemy.orm import selectinload

    with store.session() as s:
        return list(s.scalars(select(Item).where(Item.job_id == job_id).options(selectinload(Item.outputs))
                              .order_by(Item.id)))


def premis_xml(store: ProvenanceStore, job_id: str) -> bytes:
    """The job's provenance as a PREMIS 3 document (objects, events, agents)."""
    job = store.job(job_id)
    if job is None:
        raise KeyError(f"unknown job {job_id}")
    ET.register_namespace("premis", PREMIS_NS)
    q = lambda tag: f"{{{PREMIS_NS}}}{tag}"  # noqa: E731
    root = ET.Element(q("premis"), {"version": "3.0"})

    def ident(parent: ET.Element, kind: str, id_type: str, value: str) -> None:
        el = ET.SubElement(parent, q(f"{kind}Identifier"))
        ET.SubElement(el, q(f"{kind}IdentifierType")).text = id_type
        ET.SubElement(el, q(f"{kind}IdentifierValue")).text = value

    def obj(uri: str, sha256: str | None, size: int | None, fmt: str | None, name: str | None) -> None:
        el = ET.SubElement(root, q("object"), {"{http://www.w3.org/2001/XMLSchema-instance}type": "premis:file"})
        ident(el, "object", "URI", _as_uri(uri))
        chars = ET.SubElement(el, q("objectCharacteristics"))
        if sha256:
            fixity = ET.SubElement(chars, q("fixity"))
            ET.SubElement(fixity, q("messageDigestAlgorithm")).text = "SHA-256"
            ET.SubElement(fixity, q("messageDigest")).text = sha256
        if size is not None:
            ET.SubElement(chars, q("size")).text = str(size)
        fmt_el = ET.SubElement(ET.SubElement(chars, q("format")), q("formatDesignation"))
        ET.SubElement(fmt_el, q("formatName")).text = mimetypes.guess_type(uri)[0] or fmt or "unknown"
        if name:
            ET.SubElement(el, q("originalName")).text = name

    agents: dict[str, str] = {f"colorize {__version__}": "software",
                              f"model {job.model_name} sha256:{job.model_sha256}": "software"}
    items = _item_rows(store, job_id)
    events = _events(store, [it.id for it in items])
    for it in items:  # PREMIS orders its entities: objects, then events, then agents
        obj(it.source_uri, it.sha256, it.size, it.format, it.rel_path)
        for o in it.outputs:
            obj(o.uri, o.sha256, o.size, None, None)
    for it in items:
        for e in events.get(it.id, []):
            agents.setdefault(e.agent, "person" if e.agent.startswith("person:") else "software")
            el = ET.SubElement(root, q("event"))
            ident(el, "event", "local", f"{job_id}/event/{e.id}")
            ET.SubElement(el, q("eventType")).text = e.type
            ET.SubElement(el, q("eventDateTime")).text = e.at.isoformat()
            ET.SubElement(el, q("eventDetailInformation")).append(_detail(q, e.detail))
            outcome = ET.SubElement(el, q("eventOutcomeInformation"))
            ET.SubElement(outcome, q("eventOutcome")).text = e.outcome
            link = ET.SubElement(el, q("linkingAgentIdentifier"))
            ET.SubElement(link, q("linkingAgentIdentifierType")).text = "local"
            ET.SubElement(link, q("linkingAgentIdentifierValue")).text = e.agent
            outcomes = e.type in ("write", "encode", "fixity check", "transfer")   # events about the outputs
            for uri, role in [(it.source_uri, "source")] + [(o.uri, "outcome") for o in it.outputs if outcomes]:
                lo = ET.SubElement(el, q("linkingObjectIdentifier"))
                ET.SubElement(lo, q("linkingObjectIdentifierType")).text = "URI"
                ET.SubElement(lo, q("linkingObjectIdentifierValue")).text = _as_uri(uri)
                ET.SubElement(lo, q("linkingObjectRole")).text = role
    for name, kind in agents.items():
        el = ET.SubElement(root, q("agent"))
        ident(el, "agent", "local", name)
        ET.SubElement(el, q("agentName")).text = name.removeprefix("person:")
        ET.SubElement(el, q("agentType")).text = kind
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def _as_uri(location: str) -> str:
    """A stored location as a URI (local paths as file:// URIs)."""
    return location if "://" in location else "file://" + urllib.parse.quote(location)


def _detail(q: Any, detail: dict[str, Any]) -> ET.Element:
    el = ET.Element(q("eventDetail"))
    el.text = json.dumps(detail, sort_keys=True, default=str)
    return el


def prov_json(store: ProvenanceStore, job_id: str) -> str:
    """The job's provenance as W3C PROV-JSON (serialised by the ``prov`` library)."""
    from prov.model import ProvDocument

    job = store.job(job_id)
    if job is None:
        raise KeyError(f"unknown job {job_id}")
    doc = ProvDocument()
    doc.add_namespace("colorize", "urn:colorize:")
    doc.add_namespace("item", f"urn:colorize:job:{job_id}:item:")
    software = doc.agent("colorize:software", {"prov:type": "prov:SoftwareAgent", "colorize:version": __version__})
    model = doc.agent(f"colorize:model-{job.model_sha256[:16]}", {
        "prov:type": "prov:SoftwareAgent", "colorize:name": job.model_name, "colorize:sha256": job.model_sha256})
    run = doc.activity(f"colorize:job-{job_id}", job.started_at, job.finished_at,
                       {"colorize:status": job.status, "colorize:flow_run": job.flow_run_id or ""})
    doc.wasAssociatedWith(run, software)
    items = _item_rows(store, job_id)
    events = _events(store, [it.id for it in items])
    for it in items:
        src = doc.entity(f"colorize:sha256-{it.sha256}" if it.sha256 else f"item:{it.id}-source",
                         {"prov:location": _as_uri(it.source_uri), "colorize:sha256": it.sha256 or ""})
        act = doc.activity(f"item:{it.id}", it.started_at, it.finished_at,
                           {"colorize:status": it.status, "colorize:params_key": it.params_key})
        doc.wasInformedBy(act, run)
        doc.used(act, src)
        doc.wasAssociatedWith(act, model)
        for o in it.outputs:
            out = doc.entity(f"colorize:sha256-{o.sha256}", {"prov:location": _as_uri(o.uri), "colorize:kind": o.kind})
            doc.wasGeneratedBy(out, act)
            doc.wasDerivedFrom(out, src)
        for e in events.get(it.id, []):
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
    return doc.serialize(format="json", indent=1)


def rewrite_exports(store: ProvenanceStore, job_id: str, dest: Location) -> list[str]:
    """Write again those of a job's PREMIS and PROV exports that DEST holds, after its records
    changed (a relocation); returns the kinds written. A IIIF manifest stays as it was written:
    its ids are DEST's public URL, which only its publisher knows."""
    kinds = tuple(k for k in ("premis", "prov") if dest.exists(posixpath.join(MANIFESTS, job_id, FILES[k])))
    return list(write_exports(store, job_id, dest, kinds)) if kinds else []


def write_exports(store: ProvenanceStore, job_id: str, dest: Location, kinds: tuple[str, ...] = ("iiif",),
                  base_url: str | None = None, source_base_url: str | None = None) -> dict[str, str]:
    """Write the chosen exports under DEST/manifests/<job>/; returns their URIs by kind."""
    job_dir = posixpath.join(MANIFESTS, job_id)
    out: dict[str, str] = {}
    for kind in kinds:
        if kind == "iiif":
            data = json.dumps(iiif_manifest(build_manifest(store, job_id), dest, base_url or default_base_url(dest),
                                            source_base_url), indent=1, ensure_ascii=False).encode()
            rel, ctype = f"{job_dir}/{FILES[kind]}", 'application/ld+json;profile="http://iiif.io/api/presentation/3/context.json"'
        elif kind == "premis":
            data, rel, ctype = premis_xml(store, job_id), f"{job_dir}/{FILES[kind]}", "application/xml"
        elif kind == "prov":
            data, rel, ctype = prov_json(store, job_id).encode(), f"{job_dir}/{FILES[kind]}", "application/json"
        else:
            raise ValueError(f"unknown export {kind!r} (iiif, premis, prov)")
        dest.replace(rel, data, ctype)
        out[kind] = dest.uri_of(rel)
    return out
