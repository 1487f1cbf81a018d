#!/usr/bin/env bash
# The contrastive stage on a GPU machine that has torch, transformers, peft, onnx and onnxruntime but
# no network and none of the engine's other packages (the `device` tool's machine), from what this
# side packed into .carry/; then export. The model folder lands in $OUT/model. Prepare it here:
#
#   python -m trainer data --recipe trainer/recipes/default-cpu.toml --set run_dir=runs/gpu
#   python -m trainer.carry pack runs/gpu/data/pairs-train.jsonl .carry/pairs.jsonl.xz
#   cp runs/gpu/data/stats.json .carry/
#   python -m trainer.reload models/codesearch-cpu-small .carry/start --recipe trainer/recipes/default-cpu.toml
#
# (~52 MB in all, in .carry/, which git ignores: the `run` call names it in `carry`), and run there:
#
#   MINUTES=8 bash trainer/gpu_job.sh
#
# MINUTES bounds the contrastive training loop (contrastive.max_minutes); the query and code towers ([query],
# [code] max_steps) and export add a few minutes. Further
# `--set` overrides for the stage can follow as arguments. Back here: python -m trainer eval --model.
set -euo pipefail
cd "$(dirname "$0")/.."
RECIPE=${RECIPE:-trainer/recipes/default-cpu.toml}
MINUTES=${MINUTES:-8}
RUN=${RUN:-/tmp/codesearch-gpu-run}
CARRY=${CARRY:-.carry}
: "${OUT:?set OUT to the folder the model folder goes to}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}

$PY -c 'import torch; print(f"torch {torch.__version__}, CUDA {torch.cuda.is_available()}")'
$PY -m trainer.carry unpack "$CARRY/pairs.jsonl.xz" "$RUN/data/pairs-train.jsonl"
if [ -f "$CARRY/stats.json" ]; then cp "$CARRY/stats.json" "$RUN/data/stats.json"; fi

# GPU settings: 4x the CPU batch (more in-batch negatives), code cut at 256 tokens, not 128.
args=(--recipe "$RECIPE" --set "run_dir=\"$RUN\"" --set "tokenizer.from_model=\"$CARRY/start\""
      --set contrastive.max_steps=1000000 --set "contrastive.max_minutes=$MINUTES"
      --set contrastive.batch_size=256 --set contrastive.code_max_length=256
      --set contrastive.lr=2e-4 --set contrastive.warmup_steps=100 --set contrastive.checkpoint_every=500
      "$@")
$PY -m trainer tokenizer "${args[@]}"
$PY -m trainer contrastive "${args[@]}"
$PY -m trainer query "${args[@]}"
$PY -m trainer code "${args[@]}"
$PY -m trainer export "${args[@]}" --set "export.out_dir=\"$OUT/model\""
cp "$RUN/contrastive/summary.json" "$RUN/contrastive/log.jsonl" "$OUT/"
echo "done: $OUT/model"
