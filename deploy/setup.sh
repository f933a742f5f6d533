#!/usr/bin/env bash
# One-time set-up of a Prefect server for colorize-archive (run from the repository root, with
# PREFECT_API_URL pointing at the server):
#   - the process work pool `colorize` (workers: `prefect worker start --pool colorize`);
#   - the tag concurrency limit `gpu`: at most COLORIZE_GPUS colorize tasks (photo batches, film
#     shots: they carry the tag) run at once across all workers, one per GPU;
#   - the deployments of deploy/prefect.yaml (DEPLOYMENTS: names to deploy, default all).
set -euo pipefail
cd "$(dirname "$0")/.."
export COLORIZE_HOME="${COLORIZE_HOME:-$PWD}"
export COLORIZE_DB_URL="${COLORIZE_DB_URL:-sqlite:///$PWD/var/provenance.db}"
export COLORIZE_NIGHTLY_SOURCE="${COLORIZE_NIGHTLY_SOURCE:-$PWD/samples/archive}"
export COLORIZE_NIGHTLY_DEST="${COLORIZE_NIGHTLY_DEST:-$PWD/var/nightly}"
PREFECT="${PREFECT:-prefect}"

"$PREFECT" work-pool inspect colorize >/dev/null 2>&1 || "$PREFECT" work-pool create colorize --type process
"$PREFECT" concurrency-limit create gpu "${COLORIZE_GPUS:-1}" >/dev/null
if [ -n "${DEPLOYMENTS:-}" ]; then
  args=()
  for name in $DEPLOYMENTS; do args+=(--name "$name"); done
  "$PREFECT" --no-prompt deploy --prefect-file deploy/prefect.yaml "${args[@]}"
else
  "$PREFECT" --no-prompt deploy --prefect-file deploy/prefect.yaml --all
fi
