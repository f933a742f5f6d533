#!/bin/sh
# Issue 3's comparison: every trainable architecture under one budget, then one evaluation
# table with the packaged default and the gray and mean-ab baselines (DEST/eval/<id>/).
#
#   bench/compare_models.sh [DATA] [OUT] [STEPS] [CROP] [BATCH]
#
# Defaults (data/train build/compare 600 128 12) are the budget sized to a 2-core CPU that
# README's table comes from; on a GPU, give more steps and larger crops. A run interrupted
# part-way resumes each model from its checkpoint. Extra `colorize eval` options go in
# EVAL_ARGS (e.g. EVAL_ARGS="--limit 8 --device cpu"). PARALLEL=1 trains the four side by
# side (on one GPU: README's GPU table came from 3000 steps of 24 crops of 192 px that way).
set -eu
DATA=${1:-data/train}
OUT=${2:-build/compare}
STEPS=${3:-600}
CROP=${4:-128}
BATCH=${5:-12}
COLORIZE=${COLORIZE:-.venv/bin/colorize}

mkdir -p "$OUT"
models=""
pids=""
for arch in autoencoder zhang-classifier pix2pix unet-pretrained; do
  echo "training $arch ($STEPS steps of $BATCH crops of ${CROP}px): log in $OUT/$arch.log"
  set -- train "$DATA" "$OUT/$arch" --name "$arch" --arch "$arch" --steps "$STEPS" --batch-size "$BATCH" --crop "$CROP"
  if [ "${PARALLEL:-0}" = 1 ]; then
    "$COLORIZE" "$@" > "$OUT/$arch.log" 2>&1 &
    pids="$pids $!"
  else
    "$COLORIZE" "$@" > "$OUT/$arch.log" 2>&1
  fi
  models="$models --model $OUT/$arch/$arch.pt"
done
for pid in $pids; do
  wait "$pid"  # a failed training stops the script (set -e); its log says why
done
# shellcheck disable=SC2086  # $models and $EVAL_ARGS are lists of options
"$COLORIZE" eval "$DATA" "$OUT" --model default $models ${EVAL_ARGS:-}
