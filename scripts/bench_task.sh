#!/usr/bin/env bash
# Benchmark of one BraTS task (issue 14, must show 2), in `make demo`'s budget on 2 CPU
# cores: synthesise training and held-out cases of the task, train the `tiny` recipe
# retargeted to it for 5 folds, export, predict the held-out cases through the
# container's entrypoint.sh (no flag: the bundle's task sets the labels), check the outputs
# as the organisers do, and print the held-out Dice of every region the task's networks
# predict, and the official 2025 metrics of every group its config scores.
# Targets for gli-post: RC Dice >= 0.7 and WT Dice >= 0.85 on the held-out cases.
#
# env: BIN (.venv/bin), TASK (gli-post), OUT (bench-$TASK), TRAIN_CASES (32), HELD_OUT (10),
#      TRAIN_SEED (1), HELD_OUT_SEED (1000), EPOCHS (the recipe's 10), CONFIG (tiny)
set -euo pipefail
BIN=${BIN:-.venv/bin}
TASK=${TASK:-gli-post}
OUT=${OUT:-bench-$TASK}
TRAIN_CASES=${TRAIN_CASES:-32}
HELD_OUT=${HELD_OUT:-10}
TRAIN_SEED=${TRAIN_SEED:-1}
HELD_OUT_SEED=${HELD_OUT_SEED:-1000}
SHAPE=(96 96 64)
[[ "$BIN" == /* ]] || BIN="$PWD/$BIN"
export PATH="$BIN:$PATH" # entrypoint.sh runs `python -m submission`
start=$SECONDS
step() { printf '\n== [%2d:%02d] %s\n' $(((SECONDS - start) / 60)) $(((SECONDS - start) % 60)) "$*"; }

rm -rf "$OUT" && mkdir -p "$OUT"
step "1/6 synthesise $TRAIN_CASES training and $HELD_OUT held-out $TASK cases (${SHAPE[*]})"
bratskit synth "$OUT/train" --task "$TASK" --cases "$TRAIN_CASES" --seed "$TRAIN_SEED" \
    --shape "${SHAPE[@]}" 2>/dev/null
bratskit synth "$OUT/held-out" --task "$TASK" --cases "$HELD_OUT" --seed "$HELD_OUT_SEED" \
    --first "$TRAIN_CASES" --shape "${SHAPE[@]}" 2>/dev/null
bratskit validate "$OUT/train" --task "$TASK" | tail -1

step "2/6 train ${CONFIG:-tiny} for task $TASK, 5 folds"
bratskit train --data "$OUT/train" --config "${CONFIG:-tiny}" --task "$TASK" --out "$OUT/run" \
    ${EPOCHS:+--epochs "$EPOCHS"} 2>&1 | grep -E "^fold|summary"

step "3/6 export the 5 folds to an ONNX bundle"
bratskit export "$OUT/run" --out "$OUT/bundle" --format onnx | tail -1

step "4/6 predict the held-out cases through entrypoint.sh (MLCube infer, no flag)"
BRATSKIT_BUNDLE="$OUT/bundle" ./entrypoint.sh infer --data_path "$OUT/held-out" \
    --output_path "$OUT/pred" 2>&1 | grep -E "entrypoint|cases written|FAILED"

step "5/6 the organisers' checks of the outputs"
bratskit validate "$OUT/held-out" --output "$OUT/pred" --task "$TASK" | tail -1

step "6/6 held-out Dice per predicted region, then the official 2025 metrics per group"
python - "$OUT/held-out" "$OUT/pred" "$TASK" <<'PY'
import sys
from pathlib import Path

import numpy as np

from submission.brats import labels_to_regions
from submission.evaluation.overlap_2021 import dice
from submission.io.nifti import read_label_map
from submission.io.references import find_label_maps
from submission.tasks import get_task

held, pred, task = Path(sys.argv[1]), Path(sys.argv[2]), get_task(sys.argv[3])
scheme = task.label_scheme
scores = {r: [] for r in scheme.region_names}
for case_id, reference in find_label_maps(held).items():
    ref = labels_to_regions(read_label_map(reference)[0], scheme)
    out = labels_to_regions(read_label_map(pred / f"{case_id}.nii.gz")[0], scheme)
    for r, name in enumerate(scheme.region_names):
        scores[name].append(dice(out[r], ref[r]))
print(f"task {task.name}: held-out Dice over {len(scores[scheme.region_names[0]])} cases "
      "(both empty = 1)")
for name, values in scores.items():
    v = np.asarray(values)
    print(f"  {name:4s} mean {v.mean():.3f}  median {np.median(v):.3f}  min {v.min():.3f}")
PY
bratskit evaluate --pred "$OUT/pred" --ref "$OUT/held-out" --scheme 2025 --task "$TASK" \
    --markdown "$OUT/eval.md" | tail -n 12
echo "total $(((SECONDS - start) / 60)) min $(((SECONDS - start) % 60)) s"
