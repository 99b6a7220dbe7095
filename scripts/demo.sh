#!/usr/bin/env bash
# `make demo`: what the toolkit does today, end to end, on an embedded default.
# Grows with the pipeline (train, export, predict through entrypoint.sh).
set -euo pipefail
BIN=${BIN:-.venv/bin}
DEMO=${DEMO:-demo}
REAL=${REAL:-../shared/data/real}
rm -rf "$DEMO" && mkdir -p "$DEMO"

echo "== 1. synthesise BraTS-like cases (2021 and 2023 layouts)"
"$BIN/bratskit" synth "$DEMO/synth-2021" --cases 3 --layout 2021 --seed 1
"$BIN/bratskit" synth "$DEMO/synth-2023" --cases 3 --layout 2023 --seed 2

echo "== 2. validate them by the challenge rules"
"$BIN/bratskit" validate "$DEMO/synth-2021"
"$BIN/bratskit" validate "$DEMO/synth-2023"

if [ -d "$REAL/TCGA-FG-6692" ]; then
  echo "== 3. evaluate real label maps: five BraTS 2020 methods on TCGA-FG-6692,"
  echo "      each scored against the majority-vote fusion of all five"
  mkdir -p "$DEMO/pred" "$DEMO/ref"
  for seg in "$REAL"/TCGA-FG-6692/segmentations/*.nii.gz; do
    method=$(basename "$seg" .nii.gz)
    cp "$seg" "$DEMO/pred/TCGA-FG-6692-$method.nii.gz"
    cp "$REAL/TCGA-FG-6692/fusions/mav.nii.gz" "$DEMO/ref/TCGA-FG-6692-${method}_seg.nii.gz"
  done
  "$BIN/bratskit" evaluate --pred "$DEMO/pred" --ref "$DEMO/ref" --scheme 2021 \
    --csv "$DEMO/eval-2021.csv" --json "$DEMO/eval-2021.json"
  "$BIN/bratskit" evaluate --pred "$DEMO/pred" --ref "$DEMO/ref" --scheme 2025 --labels 2021 \
    --json "$DEMO/eval-2025.json"
else
  echo "== 3. skipped: $REAL not found (real label maps for the evaluation demo)"
fi
echo "== demo finished; files under $DEMO/"
