"""The review flow (``record-review``): a curator's decisions on a job's outputs, for those who
review from Prefect's UI (the deployment's run form) rather than a shell; `colorize review
approve|reject` takes the same decisions."""

from __future__ import annotations

from typing import Any, Literal

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from colorize_core.errors import ReviewError
from colorize_core.manifest import refresh_jobs
from colorize_core.provenance import ProvenanceStore
from colorize_core.review import apply_sheet, parse_redo, take_decisions
from colorize_core.settings import get_settings
from colorize_core.storage import read_uri
from flows.fixity import SHOWN

_defaults = get_settings()


@flow(name="record-review", log_prints=True)
def record_review(by: str, decision: Literal["approved", "rejected"] = "approved", items: list[int] | None = None,
                  job_id: str | None = None, sheet: str | None = None, note: str = "", redo: list[str] | None = None,
                  db_url: str = _defaults.db_url, s3_endpoint: str | None = _defaults.s3_endpoint) -> dict[str, Any]:
    """Record ``decision`` by the reviewer ``by`` on the colour renditions of ``items`` (item ids
    as `colorize review list` shows them; all or none), or, approving, on every item of
    ``job_id`` that needs no attention and has no decision yet. A rejection needs a ``note`` and
    may ask for a redo (``redo``: ``["refine=none", "model=NAME"]``, which `colorize run
    --redo-rejected JOB` then runs). Or ``sheet``: the URI (a path on the worker, or s3://) of a
    filled-in review sheet (`colorize review list JOB --csv`), whose rows say each decision. The
    manifests that show the items are rendered again. A decision that cannot be taken fails the
    run, recording nothing."""
    logger = get_run_logger()
    store = ProvenanceStore(db_url)
    if sheet:
        if items or job_id:
            raise ReviewError("a review sheet names its items: give the sheet, or the items or job, not both")
        decisions, clear = apply_sheet(store, read_uri(sheet, s3_endpoint), by), None
    else:
        decisions, clear = take_decisions(store, decision, by, tuple(items or ()), job_id, note, parse_redo(redo or []))
    problems = refresh_jobs(store, [d["job_id"] for d in decisions] + ([job_id] if job_id else []), s3_endpoint)
    for problem in problems.values():
        if problem:
            logger.warning("decisions recorded, but %s", problem)
    logger.info("%d decision(s) by %s%s", len(decisions), by.strip(),
                f" (job {job_id}'s items that needed no attention)" if job_id else f" (sheet {sheet})" if sheet else "")
    create_table_artifact(key="record-review", description=f"decisions by {by.strip()}", table=[
        {"item": d["item_id"], "path": d["rel_path"], "job": d["job_id"], "decision": d["decision"],
         "note": d["note"], "redo": ", ".join(f"{k}={v}" for k, v in d["redo"].items())} for d in decisions[:SHOWN]])
    if clear is not None and clear.attention:
        rows = "\n".join(f"| {it['id']} | {it['rel_path']} | {', '.join(it['reasons'])} |"
                         for it in clear.attention[:SHOWN])
        more = len(clear.attention) - SHOWN
        create_markdown_artifact(key="record-review-left", description=f"job {job_id}: left to decide", markdown=(
            f"{len(clear.attention)} item(s) of job {job_id} need attention and were left to decide one by one:\n\n"
            "| item | path | why |\n|---|---|---|\n" + rows + (f"\n\n... and {more} more" if more > 0 else "")))
    return {"by": by.strip(), "job_id": job_id, "sheet": sheet, "decided": len(decisions),
            "decisions": {d["item_id"]: d["decision"] for d in decisions},
            "left": clear.__dict__ if clear is not None else None,
            "manifests_not_refreshed": {j: p for j, p in problems.items() if p}}
