#!/usr/bin/env bash
# Train the shipped Landsat 7 weights of the five deep baselines.
# Run from anywhere; works from the repository root. CPU only, fixed seed. Budget:
# TIME_LIMIT seconds of wall clock (default 240) for pannet dicnn fusionnet;
# LAGNet, ~10x slower per step on a CPU, gets LAGNET_STEPS steps (default 1000,
# with LAGNET_TIME_LIMIT, default 3600 s, as a cap); PNN, which learns the whole image
# rather than a residual and was still worse than plain interpolation after 240 s
# (573 steps), gets PNN_STEPS steps (default 10000, PNN_TIME_LIMIT 3600 s as a cap).
# Machine used for the shipped files: 2 CPU cores (shared), no GPU.
set -euo pipefail
cd "$(dirname "$0")/../../.."
TIME_LIMIT="${TIME_LIMIT:-240}"
SEED="${SEED:-0}"
OUT=models/deep/weights
for m in pnn pannet dicnn fusionnet lagnet; do
  echo "=== $m ($(date -u +%H:%M:%S))"
  budget=(--time-limit "$TIME_LIMIT")
  if [ "$m" = lagnet ]; then
    budget=(--steps "${LAGNET_STEPS:-1000}" --time-limit "${LAGNET_TIME_LIMIT:-3600}")
  elif [ "$m" = pnn ]; then
    budget=(--steps "${PNN_STEPS:-10000}" --time-limit "${PNN_TIME_LIMIT:-3600}")
  fi
  pansharp train -m "$m" "$OUT/landsat7_train.csv" --sensor landsat7 --ratio 2 \
    "${budget[@]}" --seed "$SEED" --device cpu --checkpoint-every 100000 \
    -o "$OUT/${m}_landsat7.safetensors" --overwrite --quiet --json \
    | tee "${LOG_DIR:-/tmp}/train_${m}_landsat7.json"
  # pansharp train also leaves a resume checkpoint next to the weights: not shipped.
  rm -f "$OUT/${m}_landsat7.ckpt.safetensors" "$OUT/${m}_landsat7.ckpt.optim.safetensors"
done
# Landsat 8: FusionNet only, on the single scene LC80200392015216 (whole scene, so
# no validation or held-out test). Its MS comes as four single-band files and
# `pansharp train` takes one multi-band MS per scene, so landsat8_lc80200392015216_ms.vrt
# stacks B2-B5 (made with: gdalbuildvrt -separate landsat8_lc80200392015216_ms.vrt
# ../../../../shared/data/landsat8_lc80200392015216/test_B{2,3,4,5}.tif, run in this folder).
pansharp train -m fusionnet \
  ../shared/data/landsat8_lc80200392015216/test_B8.tif:$OUT/landsat8_lc80200392015216_ms.vrt \
  --sensor landsat8 --time-limit "$TIME_LIMIT" --seed "$SEED" --device cpu --checkpoint-every 100000 \
  -o "$OUT/fusionnet_landsat8.safetensors" --overwrite --quiet --json \
  | tee "${LOG_DIR:-/tmp}/train_fusionnet_landsat8.json"
rm -f "$OUT/fusionnet_landsat8.ckpt.safetensors" "$OUT/fusionnet_landsat8.ckpt.optim.safetensors"
