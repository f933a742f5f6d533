"""Evaluation of colorizers on a held-out split: one table for every model, with and without
refinement, beside the gray (ab = 0) and dataset-mean-ab baselines, and side-by-sides.

Metrics per image, on the stored held-out image at its full size, the model seeing its L only:
- RGB PSNR (8-bit) and SSIM (scikit-image, over the three channels);
- CIEDE2000, mean over pixels (scikit-image's ``deltaE_ciede2000``);
- colourfulness (Hasler & Suesstrunk, metrics.colourfulness) and, per row, its ratio to the
  ground truth's (ratio of the means over the split);
- PA, Zhang et al.'s raw pixel accuracy: the share of pixels whose ab lies within a distance
  t of the truth, averaged over t = 0..150 (the normalised area under that curve).

The split is the dataset's held-out residue (training.split); a model whose card lists a
held-out image among its training images is refused, so train and test never overlap.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
from skimage.color import deltaE_ciede2000
from skimage.metrics import structural_similarity

from colorize_core.color import lab_to_rgb, luminance, rgb_to_lab, to_float_rgb
from colorize_core.datasets import SourceRecord, listing_sha256, load_records
from colorize_core.errors import ColorizeError
from colorize_core.metrics import colourfulness, psnr
from colorize_core.refine import refine
from colorize_core.storage import Location
from colorize_core.training import split

PA_THRESHOLDS = np.arange(0, 151, dtype=np.float32)
THUMB_HEIGHT = 160
METRICS = ("psnr", "ssim", "ciede2000", "colourfulness", "pa")


class EvaluationError(ColorizeError):
    """An evaluation that cannot be run honestly (overlap with training, empty split)."""


class Predictor(Protocol):
    name: str

    def predict_ab(self, lums: Sequence[np.ndarray]) -> list[np.ndarray]: ...


@dataclass
class Baseline:
    """ab = a constant: (0, 0) is the gray baseline, the training split's mean the mean-ab one."""

    name: str
    ab: tuple[float, float] = (0.0, 0.0)

    def predict_ab(self, lums: Sequence[np.ndarray]) -> list[np.ndarray]:
        return [np.broadcast_to(np.float32(self.ab), lum.shape + (2,)).copy() for lum in lums]


@dataclass
class HeldOut:
    """The held-out split of a dataset: its records and images (RGB uint8)."""

    dataset: Path
    residue: int
    records: list[SourceRecord]
    train_records: list[SourceRecord]
    images: list[np.ndarray] = field(repr=False)
    listing_sha256: str = ""  # of the whole dataset, as model cards record it

    @property
    def sha256s(self) -> set[str]:
        return {r.sha256 for r in self.records}


def load_held_out(dataset: Path, residue: int = 0, limit: int | None = None) -> HeldOut:
    """The images of the picture groups in split bucket ``residue``, as training.split holds them out."""
    records = load_records(dataset)
    train, val = split(records, residue)
    val = val[:limit] if limit else val
    if not val:
        raise EvaluationError(f"{dataset}: no held-out images for residue {residue}")
    images = []
    for r in val:
        bgr = cv2.imread(str(dataset / r.file), cv2.IMREAD_COLOR)
        if bgr is None:
            raise EvaluationError(f"{dataset / r.file}: cannot read held-out image")
        images.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    return HeldOut(dataset, residue, val, train, images, listing_sha256(records))


def mean_ab(dataset: Path, records: Sequence[SourceRecord]) -> tuple[float, float]:
    """Mean ab over the pixels of ``records`` (the training split: what a model could learn)."""
    total, count = np.zeros(2), 0
    for r in records:
        rgb = cv2.cvtColor(cv2.imread(str(dataset / r.file), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        ab = rgb_to_lab(to_float_rgb(rgb))[..., 1:].reshape(-1, 2)
        total += ab.sum(axis=0, dtype=np.float64)
        count += len(ab)
    return float(total[0] / count), float(total[1] / count)


def check_disjoint(card: dict[str, Any], held_out: HeldOut) -> str:
    """How the model's training set is known to miss the held-out images: from the card's list
    of training checksums, or from its dataset listing and held-out residue. Raises
    EvaluationError on overlap; returns "unverified" when the card says neither."""
    if "train_sha256" in card:
        seen = held_out.sha256s & set(card["train_sha256"])
        if seen:
            raise EvaluationError(f"model {card.get('name')!r} was trained on {len(seen)} of the held-out images")
        return "verified (training checksums)"
    if card.get("dataset_listing_sha256") == held_out.listing_sha256:
        if card.get("config", {}).get("val_every_tenth") != held_out.residue:
            raise EvaluationError(f"model {card.get('name')!r} held out residue "
                                  f"{card['config'].get('val_every_tenth')}, not {held_out.residue}: it saw these images")
        return "verified (same dataset and residue)"
    return "unverified"


def pixel_accuracy(ab_pred: np.ndarray, ab_true: np.ndarray) -> float:
    """Zhang et al.'s AuC of the cumulative ab-error curve over thresholds 0..150, in [0, 1]."""
    err = np.sqrt(((ab_pred.astype(np.float32) - ab_true) ** 2).sum(-1)).ravel()
    hist = np.bincount(np.minimum(np.ceil(err), 151).astype(np.int64), minlength=152)
    within = np.cumsum(hist)[:151] / err.size  # share with error <= t, t = 0..150
    return float(within.mean())


def image_metrics(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """PSNR, SSIM, CIEDE2000, colourfulness and PA of an RGB uint8 output against its truth."""
    lab_p, lab_t = rgb_to_lab(to_float_rgb(pred)), rgb_to_lab(to_float_rgb(truth))
    return {
        "psnr": psnr(pred, truth),
        "ssim": float(structural_similarity(truth, pred, channel_axis=2, data_range=255)),
        "ciede2000": float(deltaE_ciede2000(lab_t, lab_p).mean()),
        "colourfulness": colourfulness(pred),
        "pa": pixel_accuracy(lab_p[..., 1:], lab_t[..., 1:]),
    }


def _thumb(rgb: np.ndarray) -> bytes:
    h, w = rgb.shape[:2]
    small = cv2.resize(rgb, (max(1, round(w * THUMB_HEIGHT / h)), THUMB_HEIGHT), interpolation=cv2.INTER_AREA)
    return cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 88])[1].tobytes()


def model_labels(models: Sequence[tuple[str, str | None, str | None]]) -> tuple[list[tuple[str, str]], list[str]]:
    """Each distinct model once, with the label of its table rows. ``models`` are (reference,
    name, weights sha256), name and sha256 None where the reference does not resolve. Models
    that share a name but not their weights are told apart by ``@<sha256[:8]>``; the same
    weights given twice are evaluated once. Returns [(reference, label)] and notes on what
    was merged."""
    names: dict[str, set[str]] = {}
    for _, name, sha in models:
        if name is not None and sha is not None:
            names.setdefault(name, set()).add(sha)
    out, seen, notes = [], {}, []
    for ref, name, sha in models:
        if name is None or sha is None:
            out.append((ref, ref))
            continue
        if sha in seen:
            notes.append(f"{ref} has the same weights as {seen[sha]} (sha256 {sha[:12]}...): evaluated once")
            continue
        seen[sha] = ref
        out.append((ref, name if len(names[name]) == 1 else f"{name}@{sha[:8]}"))
    return out, notes


def evaluate_predictor(predictor: Predictor, held_out: HeldOut, refine_method: str = "none",
                       batch_size: int = 8, thumbs: dict[str, bytes] | None = None,
                       label: str | None = None) -> list[dict[str, Any]]:
    """Per-image metrics of ``predictor`` (refined with ``refine_method``) on the split, in
    rows labelled ``label`` (default: the predictor's name). Side-by-side thumbnails go into
    ``thumbs`` keyed ``<image sha256[:12]>/<row>.jpg``."""
    label = label or predictor.name
    row = label if refine_method == "none" else f"{label}+{refine_method}"
    out = []
    for start in range(0, len(held_out.images), batch_size):
        chunk = held_out.images[start:start + batch_size]
        lums = [luminance(img) for img in chunk]
        for rec, img, lum, ab in zip(held_out.records[start:start + batch_size], chunk, lums,
                                     predictor.predict_ab(lums)):
            pred = lab_to_rgb(lum, refine(lum, ab, refine_method), np.uint8)
            out.append({"row": row, "image": rec.file, "sha256": rec.sha256, **image_metrics(pred, img)})
            if thumbs is not None:
                thumbs[f"{rec.sha256[:12]}/{row}.jpg"] = _thumb(pred)
    return out


def summarise(per_image: list[dict[str, Any]], truth_colourfulness: float) -> list[dict[str, Any]]:
    """One row per predictor: the means of the per-image metrics and the colourfulness ratio."""
    rows: dict[str, list[dict[str, Any]]] = {}
    for r in per_image:
        rows.setdefault(r["row"], []).append(r)
    table = []
    for name, rs in rows.items():
        means = {m: float(np.mean([r[m] for r in rs])) for m in METRICS}
        table.append({"row": name, "images": len(rs), **means,
                      "colourfulness_ratio": means["colourfulness"] / max(truth_colourfulness, 1e-9)})
    return table


GOALS = {"psnr_gain_db": 1.5, "ciede2000_ratio": 0.85, "colourfulness_ratio": (0.6, 1.2), "pa": 0.9}


def goals_met(row: dict[str, Any], gray: dict[str, Any]) -> dict[str, bool]:
    """The default-weights goals of a table row against the gray baseline's row."""
    lo, hi = GOALS["colourfulness_ratio"]
    return {"psnr": row["psnr"] >= gray["psnr"] + GOALS["psnr_gain_db"],
            "ciede2000": row["ciede2000"] <= GOALS["ciede2000_ratio"] * gray["ciede2000"],
            "colourfulness_ratio": lo <= row["colourfulness_ratio"] <= hi,
            "pa": row["pa"] >= GOALS["pa"]}


def format_table(table: list[dict[str, Any]]) -> str:
    """The table as Markdown, as the CLI prints it and closing notes quote it."""
    gray = next((r for r in table if r["row"] == "baseline-gray"), None)
    lines = ["| row | PSNR dB | SSIM | CIEDE2000 | colourfulness | ratio | PA | goals met |",
             "|---|---|---|---|---|---|---|---|"]
    for r in table:
        met = goals_met(r, gray) if gray and not r["row"].startswith("baseline-") else None
        verdict = "-" if met is None else ("all" if all(met.values()) else
                                           ", ".join(k for k, v in met.items() if v) or "none")
        if met is not None and r.get("disjoint") == "unverified":  # it may have trained on these images
            verdict = "not judged: training images unknown"
        lines.append(f"| {r['row']} | {r['psnr']:.2f} | {r['ssim']:.3f} | {r['ciede2000']:.2f} | "
                     f"{r['colourfulness']:.1f} | {r['colourfulness_ratio']:.2f} | {r['pa']:.3f} | {verdict} |")
    return "\n".join(lines)


def render_html(report: dict[str, Any]) -> str:
    """A page with the table and, per held-out image, the truth, the gray input and every row."""
    esc = html.escape
    head = ("<tr><th>row</th><th>PSNR dB</th><th>SSIM</th><th>CIEDE2000</th><th>colourfulness</th>"
            "<th>ratio</th><th>PA</th></tr>")
    body = "".join(f"<tr><td>{esc(r['row'])}</td><td>{r['psnr']:.2f}</td><td>{r['ssim']:.3f}</td>"
                   f"<td>{r['ciede2000']:.2f}</td><td>{r['colourfulness']:.1f}</td>"
                   f"<td>{r['colourfulness_ratio']:.2f}</td><td>{r['pa']:.3f}</td></tr>" for r in report["table"])
    models = "".join(f"<li><code>{esc(m.get('label', m['name']))}</code>: <code>{esc(m.get('reference', m['name']))}</code> "
                     f"({esc(m['arch'])}), weights sha256 "
                     f"<code>{esc(m['weights_sha256'])}</code>, held-out overlap: {esc(m['disjoint'])}</li>"
                     if "error" not in m else
                     f"<li class=\"failed\"><code>{esc(m['name'])}</code> not evaluated: {esc(m['error'])}</li>"
                     for m in report["models"])
    figures = []
    for image in report["images"]:
        key = image["sha256"][:12]
        cells = "".join(f"<figure><img src=\"thumbs/{esc(key)}/{esc(col)}.jpg\" alt=\"{esc(col)}\">"
                        f"<figcaption>{esc(col)}</figcaption></figure>" for col in ["truth", *report["rows"]])
        figures.append(f"<section><h3>{esc(image['image'])}</h3><div class=\"strip\">{cells}</div></section>")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Colorizer evaluation {esc(report['id'])}</title>
<style>body{{font-family:system-ui,sans-serif;margin:1.5rem}} td,th{{padding:.1rem .7rem;text-align:right}}
td:first-child,th:first-child{{text-align:left}} .strip{{display:flex;gap:.3rem;overflow-x:auto}}
figure{{margin:0}} figcaption{{font-size:.75rem}} .failed{{color:#a00}}</style></head><body>
<h1>Colorizer evaluation <code>{esc(report['id'])}</code></h1>
<p>Dataset <code>{esc(report['dataset'])}</code>, held-out residue {report['residue']}: {len(report['images'])}
images never used in training. Models see L only; the output keeps the image's own L.</p>
<ul>{models}</ul>
<table><thead>{head}</thead><tbody>{body}</tbody></table>
<p>PA: share of pixels within an ab distance t of the truth, averaged over t = 0..150 (Zhang et al.).
Colourfulness ratio: mean colourfulness of the row over that of the truth ({report['truth_colourfulness']:.1f}).</p>
{''.join(figures)}
</body></html>
"""


def write_thumbs(dest: Location, report_id: str, thumbs: dict[str, bytes]) -> None:
    for rel, data in sorted(thumbs.items()):
        dest.write_new(f"eval/{report_id}/thumbs/{rel}", data, "image/jpeg")


def write_report(dest: Location, report: dict[str, Any]) -> dict[str, str]:
    """Write ``eval/<id>/`` under ``dest``: report.json, report.md and index.html (beside the
    thumbs/ of write_thumbs); never overwriting (a new id per run). Returns the URIs written."""
    base = f"eval/{report['id']}"
    dest.write_new(f"{base}/report.json", json.dumps(report, indent=1).encode(), "application/json")
    dest.write_new(f"{base}/report.md", (format_table(report["table"]) + "\n").encode(), "text/markdown")
    dest.write_new(f"{base}/index.html", render_html(report).encode(), "text/html; charset=utf-8")
    return {"html": dest.uri_of(f"{base}/index.html"), "json": dest.uri_of(f"{base}/report.json")}


def new_report_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")


def evaluate_baselines(held_out: HeldOut, thumbs: dict[str, bytes]) -> tuple[list[dict[str, Any]],
                                                                            list[dict[str, Any]]]:
    """(the held-out images with the truth's colourfulness, the per-image rows of the gray and
    mean-ab baselines); the truth's thumbnails go into ``thumbs``."""
    images = []
    for r, img in zip(held_out.records, held_out.images):
        thumbs[f"{r.sha256[:12]}/truth.jpg"] = _thumb(img)
        images.append({"image": r.file, "sha256": r.sha256, "colourfulness": colourfulness(img)})
    rows = []
    for baseline in (Baseline("baseline-gray"),
                     Baseline("baseline-mean-ab", mean_ab(held_out.dataset, held_out.train_records))):
        rows += evaluate_predictor(baseline, held_out, "none", thumbs=thumbs)
    return images, rows


def build_report(report_id: str, dataset: str, residue: int, images: list[dict[str, Any]],
                 models: list[dict[str, Any]], per_image: list[dict[str, Any]]) -> dict[str, Any]:
    """The report: table (one row per predictor and refinement, in evaluation order), the
    models evaluated or refused, the held-out images, and every per-image figure."""
    truth = float(np.mean([i["colourfulness"] for i in images]))
    table = summarise(per_image, truth)
    for m in models:  # each row carries how its model is known not to have seen these images
        for r in table:
            if "label" in m and (r["row"] == m["label"] or r["row"].startswith(m["label"] + "+")):
                r["disjoint"] = m["disjoint"]
    return {
        "format": "colorize-evaluation/1", "id": report_id, "dataset": dataset, "residue": residue,
        "truth_colourfulness": truth, "rows": list(dict.fromkeys(r["row"] for r in per_image)),
        "models": models, "table": table, "images": images, "per_image": per_image,
    }
