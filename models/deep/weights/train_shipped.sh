#!/usr/bin/env bash
# Train the shipped weights: every deep model on three sets (models/deep/weights/README.md).
#   landsat7: 6 bands, ratio 2, the 28 Landsat 7 training crops (landsat7_train.csv)
#   landsat8: 4 bands B2-B5, ratio 2, the Landsat 8 scene LC80200392015216 (whole scene:
#             pansharp train holds out a band of rows for validation)
#   ratio4:   4 bands at ratio 4 (sensor preset landsat-r4), Landsat-derived pairs written
#             by make_ratio4_pairs.py, warm-started from the model's Landsat 8 weights
# Usage, from anywhere (runs from the repository root):
#   models/deep/weights/train_shipped.sh                       # every model, every set
#   SETS="landsat8 ratio4" MODELS="pnn lagnet" models/deep/weights/train_shipped.sh
# Budget: TIME_LIMIT seconds of wall clock per file (default 240); LAGNET_TIME_LIMIT and
# PNN_TIME_LIMIT (default 480) for the two that learn slowest on a CPU (LAGNet is ~10x
# slower per step; PNN learns the whole image, not a residual). Each file stays under
# the 30 minutes of CPU the issue allows. Seed 0, CPU, fp32. SKIP_DONE=1 keeps files that
# exist (to continue an interrupted run of the script); a run killed midway can be
# continued with `pansharp train ... --resume OUT.ckpt.safetensors` (checkpoints every
# CHECKPOINT_EVERY steps), which counts its own --time-limit again.
set -euo pipefail
cd "$(dirname "$0")/../../.."
OUT=models/deep/weights
SETS="${SETS:-landsat7 landsat8 ratio4}"
MODELS="${MODELS:-pnn pannet dicnn fusionnet lagnet otpnet premix-b premix-h}"
TIME_LIMIT="${TIME_LIMIT:-240}"
SEED="${SEED:-0}"
LOG_DIR="${LOG_DIR:-/tmp}"
R4_DIR="${R4_DIR:-/tmp/pansharp_ratio4}"
CHECKPOINT_EVERY="${CHECKPOINT_EVERY:-250}"
L8=../shared/data/landsat8_lc80200392015216

budget() {  # seconds for model $1
  case "$1" in
    lagnet) echo "${LAGNET_TIME_LIMIT:-480}" ;;
    pnn) echo "${PNN_TIME_LIMIT:-480}" ;;
    *) echo "$TIME_LIMIT" ;;
  esac
}

run() {  # model set file args...
  local m=$1 set=$2 file=$3
  shift 3
  if [ "${SKIP_DONE:-0}" = 1 ] && [ -f "$file" ]; then
    echo "=== $m $set: $file exists, kept"
    return
  fi
  echo "=== $m $set ($(date -u +%H:%M:%S))"
  pansharp train -m "$m" "$@" --time-limit "$(budget "$m")" --seed "$SEED" --device cpu \
    --checkpoint-every "$CHECKPOINT_EVERY" -o "$file" --overwrite --quiet --json \
    | tee "$LOG_DIR/train_${m}_${set}.json"
  # pansharp train also leaves a resume checkpoint next to the weights: not shipped.
  rm -f "${file%.safetensors}.ckpt.safetensors" "${file%.safetensors}.ckpt.optim.safetensors"
}

for set in $SETS; do
  if [ "$set" = ratio4 ] && [ ! -f "$R4_DIR/ratio4.csv" ]; then
    python3 "$OUT/make_ratio4_pairs.py" --out "$R4_DIR"
  fi
  for m in $MODELS; do
    case "$set" in
      landsat7)
        run "$m" landsat7 "$OUT/${m}_landsat7.safetensors" \
          "$OUT/landsat7_train.csv" --sensor landsat7 --ratio 2 ;;
      landsat8)
        # The MS comes as four single-band files; landsat8_lc80200392015216_ms.vrt stacks
        # B2-B5 (gdalbuildvrt -separate ... test_B{2,3,4,5}.tif, run in this folder).
        run "$m" landsat8 "$OUT/${m}_landsat8.safetensors" \
          "$L8/test_B8.tif:$OUT/landsat8_lc80200392015216_ms.vrt" --sensor landsat8 ;;
      ratio4)
        init=()
        if [ -f "$OUT/${m}_landsat8.safetensors" ]; then
          init=(--init "$OUT/${m}_landsat8.safetensors")
        fi
        run "$m" ratio4 "$OUT/${m}_landsat-r4.safetensors" \
          "$R4_DIR/ratio4.csv" --sensor landsat-r4 --ratio 4 "${init[@]}" ;;
      *) echo "unknown set $set (landsat7, landsat8, ratio4)" >&2; exit 2 ;;
    esac
  done
done
