#!/usr/bin/env bash
# One lent-GPU session, prepared ahead (run from the repository root on the device machine):
# GPU checks, the campaign (LeNet-5's 50-run search first, continued from the records
# committed under results/<gpu>/), then the throughput benchmark with what is left.
# Everything that comes back lands under $OUT. Carry the CIFAR-10 archive in .gpu-data/.
#   CAMPAIGN_S  seconds for the campaign (default 330)   PLAN  its --plan (default: LeNet-5,
#   then the width family, then PNASNet-A and ResNet32)
#   BENCH_S     seconds for the benchmark (default 170; 0 skips it)
set -u
export PYTHONUNBUFFERED=1 LTH_CACHE=/tmp/lth-cache
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch; print('torch', torch.__version__)"; nproc; } > "$OUT/gpu.txt" 2>&1
cat "$OUT/gpu.txt"
graphs=""
if [ "${CHECKS:-1}" = 1 ]; then
  timeout 90 python3 -m benchmarks.gpu_checks > "$OUT/checks.txt" 2>&1
  rc=$?; cat "$OUT/checks.txt"
  # a failed check (or a crash) means the campaign trains without CUDA graphs
  [ $rc = 0 ] || graphs="--no-cuda-graphs"
fi
python3 -m benchmarks.gpu_campaign --budget-s "${CAMPAIGN_S:-330}" $graphs \
  --data .gpu-data/cifar10-jpeg.tar.gz --results results \
  --plan "${PLAN:-lenet5:50,lenet5-w0.125:50,lenet5-w0.25:50,lenet5-w0.5:50,lenet5-w2:50,pnasnet_a:16,resnet32:16}" \
  --out "$OUT" 2>&1 | grep -v Warning | tail -20
if [ "${BENCH_S:-170}" != 0 ]; then
  timeout "$(( ${BENCH_S:-170} * 2 / 3 ))" python3 -m benchmarks.search_throughput --device cuda \
    --archs lenet5,resnet32,resnet18 --steps 40 --warmup 8 --population 50 \
    --out "$OUT/bench.json" 2>&1 | tee "$OUT/bench.txt"
  timeout "$(( ${BENCH_S:-170} / 3 ))" python3 -m benchmarks.search_throughput --device cuda \
    --archs pnasnet_b --steps 20 --warmup 6 --population 16 \
    --out "$OUT/bench-pnasnet.json" 2>&1 | tee "$OUT/bench-pnasnet.txt"
fi
