#!/usr/bin/env bash
# One lent-GPU session, prepared ahead: throughput benchmark, GPU checks, then a LeNet-5
# ticket search on the real CIFAR-10 copy (carried in .gpu-data/) for as long as time allows.
# Everything lands under $OUT; the search's records (not checkpoints) are tarred.
set -u
export PYTHONUNBUFFERED=1 LTH_CACHE=/tmp/lth-cache
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__)" | tee -a "$OUT/gpu.txt"
timeout "${BENCH_S:-220}" python3 -m benchmarks.search_throughput --device cuda \
  --archs "${BENCH_ARCHS:-lenet5,resnet32,mobilenet_v1,resnet18}" --out "$OUT/bench.json" \
  2>&1 | tee "$OUT/bench.txt"
timeout 90 python3 -m benchmarks.gpu_checks 2>&1 | tee "$OUT/checks.txt"
if [ -f .gpu-data/cifar10-jpeg.tar.gz ]; then
  timeout "${SEARCH_S:-200}" python3 -m lth_core search --arch lenet5 --runs "${RUNS:-50}" \
    --population "${RUNS:-50}" --stages 5 --data .gpu-data/cifar10-jpeg.tar.gz \
    --results "$OUT/h100" --device cuda --no-progress 2>&1 | tail -5 | tee "$OUT/search.txt"
  tar czf "$OUT/results-h100.tgz" --exclude=ckpt --exclude='*.lock' -C "$OUT" h100 \
    && rm -rf "$OUT/h100"
fi
