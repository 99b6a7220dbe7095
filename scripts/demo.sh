#!/usr/bin/env bash
# `make demo`: the main job end to end on an embedded default, on a CPU in about 15 min:
# synthesise BraTS-like cases, train the `tiny` recipe for 5 folds, export the bundle, tune
# its defaults out of fold, predict held-out cases through the container's entrypoint.sh
# (or, with DEMO_PREDICT=docker, through the built image, as `make demo-docker` does),
# evaluate with the 2021 metrics, print the tables and draw pictures.
#
# env: BIN (.venv/bin), DEMO (demo), TRAIN_CASES (32), HELD_OUT (10), TRAIN_SEED (1),
#      HELD_OUT_SEED (1000), EPOCHS (the recipe's 10), CONFIG (tiny), TUNE_ARGS,
#      DEMO_PREDICT (entrypoint | docker), IMAGE, BASE_IMAGE (for docker)
set -euo pipefail
BIN=${BIN:-.venv/bin}
DEMO=${DEMO:-demo}
TRAIN_CASES=${TRAIN_CASES:-32}
HELD_OUT=${HELD_OUT:-10}
# Held-out cases come from a synth seed the training never saw, numbered after the training
# cases (case i of a seed depends only on (seed, i), so the ids never collide either).
TRAIN_SEED=${TRAIN_SEED:-1}
HELD_OUT_SEED=${HELD_OUT_SEED:-1000}
DEMO_PREDICT=${DEMO_PREDICT:-entrypoint}
IMAGE=${IMAGE:-bratskit:demo}
SHAPE=(96 96 64)
[[ "$BIN" == /* ]] || BIN="$PWD/$BIN"
export PATH="$BIN:$PATH" # entrypoint.sh runs `python -m submission`
start=$SECONDS
step() { printf '\n== [%2d:%02d] %s\n' $(((SECONDS - start) / 60)) $(((SECONDS - start) % 60)) "$*"; }

rm -rf "$DEMO" && mkdir -p "$DEMO"

step "1/8 synthesise $TRAIN_CASES training and $HELD_OUT held-out cases (2021 layout, ${SHAPE[*]})"
bratskit synth "$DEMO/train" --cases "$TRAIN_CASES" --seed "$TRAIN_SEED" --shape "${SHAPE[@]}" \
    2>/dev/null
bratskit synth "$DEMO/held-out" --cases "$HELD_OUT" --seed "$HELD_OUT_SEED" --first "$TRAIN_CASES" \
    --shape "${SHAPE[@]}" 2>/dev/null
bratskit validate "$DEMO/train" | tail -1

step "2/8 train the ${CONFIG:-tiny} recipe, 5 folds (bratskit train)"
bratskit train --data "$DEMO/train" --config "${CONFIG:-tiny}" --out "$DEMO/run" ${EPOCHS:+--epochs "$EPOCHS"}

step "3/8 export the 5 folds to an ONNX bundle, each checked against its eager model"
bratskit export "$DEMO/run" --out "$DEMO/bundle" --format onnx

step "4/8 tune ensemble, ET and region thresholds on out-of-fold predictions (bratskit tune)"
# TUNE_ARGS: extra tune flags, e.g. --et-thresholds 0,250 (the tests use it)
bratskit tune "$DEMO/bundle" --data "$DEMO/train" --run "$DEMO/run" --json "$DEMO/tune.json" \
    ${TUNE_ARGS:-} | sed -n '1,7p;/(current)/,$p'
tuned=$(python -c "import json; b = json.load(open('$DEMO/tune.json'))['best']; \
print(f\"{b['ensemble']},{b['et_threshold']}\")")

step "5/8 predict the held-out cases through the container's entrypoint: the tuned defaults, then each ensemble"
echo "(the tuned region thresholds apply to all four; the table's ET thresholds come in step 6)"
predict() { # output folder, then predict flags
    local out=$1
    shift
    if [[ "$DEMO_PREDICT" == docker ]]; then
        mkdir -p "$out" && chmod 777 "$out"
        docker run --rm --network none --user 4242:4242 --memory 16g --shm-size 4g \
            -v "$(realpath "$DEMO/held-out")":/mlcube_io0:ro -v "$(realpath "$out")":/mlcube_io2 \
            "$IMAGE" \
            infer --data_path /mlcube_io0 --output_path /mlcube_io2 "$@"
    else
        BRATSKIT_BUNDLE="$DEMO/bundle" ./entrypoint.sh infer --data_path "$DEMO/held-out" \
            --output_path "$out" "$@"
    fi
}
if [[ "$DEMO_PREDICT" == docker ]]; then
    make build BUNDLE="$DEMO/bundle" IMAGE="$IMAGE" ${BASE_IMAGE:+BASE_IMAGE="$BASE_IMAGE"}
fi
# The bundle's own defaults, as the organisers' run uses them: whatever tune chose.
predict "$DEMO/pred/tuned" 2>&1 | grep -E "entrypoint|cases written|FAILED"
for method in mean vote confidence; do
    predict "$DEMO/pred/$method" --ensemble "$method" --et-threshold 0 2>&1 \
        | grep -E "entrypoint|cases written|FAILED"
done
bratskit validate "$DEMO/held-out" --output "$DEMO/pred/tuned" | tail -1

step "6/8 evaluate (2021 metrics): three ensembles side by side, ET thresholds 0/100/400/600"
python scripts/demo_report.py --pred "$DEMO/pred" --ref "$DEMO/held-out" \
    --out "$DEMO/report" --tuned "$tuned"

step "7/8 the tuned defaults ($tuned) in detail: Markdown summary and box plot"
chosen="$DEMO/pred/tuned"
bratskit evaluate --pred "$chosen" --ref "$DEMO/held-out" --report "$DEMO/report/tuned"

step "8/8 pictures: prediction next to reference for three held-out cases"
mkdir -p "$DEMO/pictures"
for case in $(ls "$DEMO/held-out" | head -3); do
    bratskit view "$DEMO/held-out/$case" --seg "$chosen/$case.nii.gz" \
        --png "$DEMO/pictures/$case.png"
done

step "done: demo/report/ensembles.txt, demo/report/tuned/ (evaluation.md, boxplot.png), demo/pictures/"
