"""The fixity flow: read back every output recorded for DEST and compare its sha256 with the
provenance database's, record a PREMIS fixity check event per item, list the files in DEST
that no record accounts for, and show what was found on the manifests reviewers open.
Scheduled weekly in deploy/prefect.yaml; `colorize verify` runs it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from prefect import flow, get_run_logger, unmapped
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run
from prefect.states import Completed, Failed, State

from colorize_core.fixity import check_scope, item_ranges, merge
from colorize_core.provenance import ProvenanceStore, utcnow
from colorize_core.settings import get_settings
from colorize_core.storage import open_location
from flows.archive import task_runner
from flows.handback import hand_back
from tasks.fixity import check_fixity, find_unrecorded, refresh_manifests

_defaults = get_settings()
SHOWN = 200   # problems listed in the run's artifact (all are in the result and the database)


@flow(name="verify-fixity", log_prints=True, task_runner=task_runner())
def verify_fixity(dest: str, db_url: str = _defaults.db_url, job_id: str | None = None, chunk_size: int = 500,
                  look_for_unrecorded: bool = True, s3_endpoint: str | None = _defaults.s3_endpoint,
                  unchecked_for_days: float | None = None, max_items: int | None = None,
                  remove_interrupted: bool = False) -> State:
    """Check the fixity of every output recorded for ``dest`` (only those job ``job_id`` shows,
    if given): each is read back whole and its sha256 and size compared with the recorded ones,
    ``chunk_size`` items per task. Every item checked gets a ``fixity check`` event in the
    provenance database. With ``look_for_unrecorded``, files in DEST that no record accounts for
    are listed too, and so are the partial copies that writes killed mid-way left (hidden
    ``.colorize-tmp-*`` files; removed with ``remove_interrupted``). The run ends Completed
    when every output is intact and Failed (with the same summary as its result) when any is
    missing, changed or unreadable, so that an automation on failed runs raises the alarm. A rolling check: ``unchecked_for_days`` checks only the items
    whose last check is older than that, and ``max_items`` caps a run (the lowest item ids
    first), so that a nightly run with both covers the whole archive in turn."""
    logger = get_run_logger()
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    if unchecked_for_days is not None and unchecked_for_days <= 0:
        raise ValueError("unchecked_for_days must be more than 0")
    location, store = open_location(dest, s3_endpoint), ProvenanceStore(db_url)
    started = utcnow()
    cutoff = started - timedelta(days=unchecked_for_days) if unchecked_for_days is not None else None
    scope = check_scope(store, location, job_id, cutoff)
    ranges = item_ranges(store, scope, chunk_size, max_items)
    logger.info("checking the outputs of %d item range(s) in %s%s%s", len(ranges), location.uri,
                f" shown by job {job_id}" if job_id else "",
                f", items not checked since {cutoff:%Y-%m-%d %H:%M} UTC" if cutoff else "")
    detail = {"flow_run": str(flow_run.id) if flow_run.id else None}
    unrec = (find_unrecorded.submit(location.uri, store.url, s3_endpoint, remove_interrupted)
             if look_for_unrecorded else None)
    checks = check_fixity.map([r[0] for r in ranges], [r[1] for r in ranges], unmapped(location.uri),
                              unmapped(store.url), unmapped(job_id), unmapped(s3_endpoint), unmapped(detail),
                              unmapped(cutoff))
    summary: dict[str, Any] = {"dest": location.uri, "job_id": job_id, "db_url": store.url,
                               "started_at": started.isoformat(), "not_checked_since": cutoff.isoformat() if cutoff
                               else None, "max_items": max_items, **merge(c.result() for c in checks)}
    found = unrec.result() if unrec else {"files": [], "interrupted": [], "looked": False, "why": "not asked for"}
    summary["unrecorded"] = found
    # The pages reviewers open: the index, and the jobs whose items were found damaged, or intact again.
    touched = {p["job_id"] for p in summary["problems"]} | {r["job_id"] for r in summary["recovered"]}
    summary["manifests_refreshed"] = refresh_manifests(sorted(touched), location.uri, store.url, s3_endpoint)
    summary["finished_at"] = utcnow().isoformat()
    c = summary["counts"]
    create_table_artifact(key="verify-fixity-summary", table=[
        {"dest": location.uri, "job": job_id or "all", "items": summary["items"], **c,
         "unrecorded": len(found["files"]) if found["looked"] else "not looked for",
         "interrupted": len(found["interrupted"]) if found["looked"] else "not looked for"}],
        description=f"Fixity check of {location.uri}")
    if summary["problems"]:
        rows = "\n".join(f"| {p['status']} | {p['uri']} | {p['kind']} | {p['source']} | {p['item_id']} | {p['job_id']} |"
                         for p in summary["problems"][:SHOWN])
        more = len(summary["problems"]) - SHOWN
        create_markdown_artifact(key="verify-fixity-problems", markdown=(
            f"# Outputs not intact in {location.uri}\n\n| status | output | kind | source | item | job |\n"
            f"|---|---|---|---|---|---|\n{rows}\n" + (f"\n... and {more} more (in the flow run's result and the "
                                                      f"provenance database's fixity check events)\n" if more > 0 else "")),
            description="Missing, changed or unreadable outputs")
        bad = c["missing"] + c["changed"] + c["unreadable"]
        return Failed(message=f"{bad} output(s) of {summary['items_not_intact']} item(s) in {location.uri} are not "
                              f"intact ({c['missing']} missing, {c['changed']} changed, {c['unreadable']} unreadable)",
                      data=hand_back(summary))
    return Completed(message=f"{c['intact']} output(s) of {summary['items']} item(s) intact",
                     data=hand_back(summary))


if __name__ == "__main__":
    verify_fixity(dest="var/colour", db_url="sqlite:///var/provenance.db")
