#!/usr/bin/env bash
# Issue #15's GPU check: ONE run (<= 14 minutes on an H200) that writes everything under $OUT.
#
#   OUT=/some/dir bash bench/gpu_check.sh            # on the GPU machine (device tool: $OUT is set)
#   OUT=/tmp/gc bash bench/gpu_check.sh --smoke      # anywhere: tiny shapes on CPU (tests run it)
#
# 1. the GPU tests (CUDA attention backends vs the reference; a block compiled as one graph);
# 2. train-step img/s + MFU of djepa_b at batch 128 x 256 tokens, bf16, compiled, with torch's
#    sync debug mode on in the timed loop (every host sync is printed); beside it MAR-B at the
#    same batch (LTH14/mar from $MAR_DIR, default /tmp/mar; skipped with a message if absent:
#    the machine has no network, so copy a checkout there or carry one and set MAR_DIR);
# 3. sampling ms/img at batch 256, 64 steps, CFG;
# 4. packed (mixed resolutions) vs fixed-resolution image tokens/s, and peak memory throughout;
# 5. recaption images/s at batch 1 and 8 (InternVL2-2B-shaped, random, left-padded batch generation);
# 6. curation pairs/s with the production backends on the GPU (CLIP ViT-L/14 heads, YOLO face;
#    random weights in the published formats) through the Prefect flow, and CPU ms per pair per
#    stage (issue #26.3; skipped in --smoke: bench/curate_throughput.py has its own CPU runs);
# 7. t2i generate at 2K/4K/4:1 at 65,536 tokens per 4K image (issue #28.2; skipped in --smoke:
#    docs/benchmarks.md has its CPU runs).
# Each stage has its own time limit; a failed stage is recorded and the next one still runs.
# $OUT/summary.txt gathers the hardware, the date and every stage's result lines.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:?set OUT to the output folder}
PY=${PYTHON:-python}
MAR_DIR=${MAR_DIR:-/tmp/mar}
SMOKE=0
[ "${1:-}" = "--smoke" ] && SMOKE=1
mkdir -p "$OUT"
export PYTHONPATH=$PWD HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 DO_NOT_TRACK=1 YOLO_OFFLINE=1
export PREFECT_SERVER_ANALYTICS_ENABLED=false

if [ $SMOKE = 1 ]; then
  DEV=(--device cpu --threads 1)
  TRAIN=(--model djepa_tiny --batch 2 --grid 4 --steps 2 --warmup 1)
  MAR=(--size tiny --batch 2 --grid 4 --steps 1 --warmup 1)
  SAMPLE=(--model djepa_tiny --batch 2 --grid 4 --steps 4 --cfg 3 --flow-steps 4)
  PACK=(--preset tiny --warmup 1 --repeats 2)
  CAP=(--size tiny --max-new-tokens 8 --warmup 1 --repeats 2 --device cpu --threads 1)
  LIMIT_TESTS=0; LIMIT_TRAIN=120; LIMIT_MAR=120; LIMIT_SAMPLE=120; LIMIT_PACK=120; LIMIT_CAP=240
else
  DEV=(--device cuda --compile --peak-tflops "${PEAK_TFLOPS:-989.4}")  # H100/H200 dense bf16
  TRAIN=(--model djepa_b --batch 128 --grid 16 --steps 20 --warmup 5 --check-syncs)
  MAR=(--batch 128 --grid 16 --steps 20 --warmup 5)
  SAMPLE=(--model djepa_b --batch 256 --grid 16 --steps 64 --cfg 3 --flow-steps 32)
  PACK=(--preset h100 --warmup 5 --repeats 10)
  CAP=(--size 2b --max-new-tokens 77 --warmup 1 --repeats 3 --device cuda)
  CURATE=(--production --n 1024 --workers 1 --no-inprocess --set curate.device=cuda
          --set curate.ocr.batch_size=64 --set curate.nsfw.batch_size=64)
  LIMIT_TESTS=60; LIMIT_TRAIN=120; LIMIT_MAR=90; LIMIT_SAMPLE=120; LIMIT_PACK=70; LIMIT_CAP=75
  LIMIT_CURATE=180
fi

stage() {  # stage NAME LIMIT_S CMD...: runs CMD with a time limit, output to $OUT/NAME.txt
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.txt" 2>&1
  local rc=$?
  echo "== $name: rc $rc, $((SECONDS - t0)) s" >> "$OUT/summary.txt"
  grep -E "img/s|images/s|pairs/s|ms/img|tokens/s|skipped|passed|failed|error|Error|synchroniz" "$OUT/$name.txt" \
    | grep -v "^ " | tail -n 8 >> "$OUT/summary.txt"
}

{
  echo "gpu_check $( [ $SMOKE = 1 ] && echo "--smoke " )$(date -u +%FT%TZ) commit $(git rev-parse --short HEAD 2>/dev/null)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null \
    || echo "no nvidia-smi"
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
} > "$OUT/summary.txt"

if [ $SMOKE = 0 ]; then
  stage tests "$LIMIT_TESTS" $PY -m pytest -q -x -p no:cacheprovider tests/test_model_attention.py
fi
stage train_djepa_b "$LIMIT_TRAIN" $PY bench/train_step.py "${DEV[@]}" "${TRAIN[@]}"
stage train_mar_b "$LIMIT_MAR" $PY bench/mar_train_step.py --mar-dir "$MAR_DIR" "${DEV[@]}" "${MAR[@]}"
stage sample_djepa_b "$LIMIT_SAMPLE" $PY bench/generate.py "${DEV[@]}" "${SAMPLE[@]}"
stage packed_vs_fixed "$LIMIT_PACK" $PY bench/packing_vs_fixed.py \
  $( [ $SMOKE = 1 ] && echo "--device cpu --threads 1" || echo "--device cuda --compile" ) "${PACK[@]}"
stage recaption_b1 "$LIMIT_CAP" $PY bench/caption_throughput.py "${CAP[@]}" --batch 1
stage recaption_b8 "$LIMIT_CAP" $PY bench/caption_throughput.py "${CAP[@]}" --batch 8
if [ $SMOKE = 0 ]; then
  stage curate_production "$LIMIT_CURATE" $PY bench/curate_throughput.py "${CURATE[@]}"
  # 7. issue #28.2: t2i generate at 2K, 4K and 4:1 with the paper's token stride (SD3-layout VAE x8,
  #    patch 2: 65,536 tokens at 4096²), steps by token count, peak RSS and GPU memory per size
  stage hires_generate 240 $PY bench/hires_generate.py --device cuda --patch 2 --tile 1024 \
    --sizes 2048x2048,4096x4096,4096x1024
  grep "^| [0-9]" "$OUT/hires_generate.txt" >> "$OUT/summary.txt"
fi
cat "$OUT/summary.txt"
