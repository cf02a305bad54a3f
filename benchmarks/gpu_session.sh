#!/usr/bin/env bash
# One lent-GPU session, prepared ahead (run from the repository root on the device machine):
# GPU checks, the campaign's LeNet-5 step (its 50-run search, continued from the records
# committed under results/<gpu>/), the recipe calibration (benchmarks.calibrate), then the
# rest of the campaign's plan and the throughput benchmark with what is left of SESSION_S.
# Everything that comes back lands under $OUT. Carry the CIFAR-10 archive in .gpu-data/.
#   SESSION_S   seconds for the whole script (default 600, so a second call fits in 15 min)
#   CAMPAIGN_S  seconds for the LeNet-5 step (default 330)   FIRST  its --plan (lenet5:50)
#   CALIB       architectures to calibrate, comma-separated (default resnet32; "" skips)
#   CALIB_S     seconds for the calibration (default 150)   CALIB_EPOCHS (8,12,16,24)
#   CALIB_REPS  runs per epoch budget (default 2)
#   PLAN        the campaign's later items (default: the width family, PNASNet-A, ResNet32)
#   BENCH_S     seconds for the benchmark at most (default 170; 0 skips it)
# Each step gets the smaller of its own seconds and what is left of SESSION_S (a step with
# under 20 s left is skipped); the calibration writes its evidence as members finish, so
# a timeout keeps the budgets it finished.
set -u
export PYTHONUNBUFFERED=1 LTH_CACHE=/tmp/lth-cache
OUT=${OUT:-/tmp/out}
DATA=${DATA:-.gpu-data/cifar10-jpeg.tar.gz}
SESSION_S=${SESSION_S:-600}
mkdir -p "$OUT"
left() { echo $(( SESSION_S - SECONDS )); }
# the smaller of $1 and the time left; 0 when under 20 s would be left
share() { local l; l=$(left); [ "$1" -lt "$l" ] && l=$1; [ "$l" -ge 20 ] && echo "$l" || echo 0; }
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
campaign() {  # $1: plan, $2: seconds, $3: name of the summary
  python3 -m benchmarks.gpu_campaign --budget-s "$2" $graphs --data "$DATA" \
    --results results --plan "$1" --out "$OUT" 2>&1 | grep -v Warning | tail -20
  [ -f "$OUT/campaign.json" ] && mv "$OUT/campaign.json" "$OUT/campaign-$3.json"
}
s=$(share "${CAMPAIGN_S:-330}")
[ "$s" != 0 ] && campaign "${FIRST:-lenet5:50}" "$s" lenet5
s=$(share "${CALIB_S:-150}")
if [ -n "${CALIB-resnet32}" ] && [ "$s" != 0 ]; then
  set_graphs=""; [ -n "$graphs" ] && set_graphs="--set cuda_graphs=false"
  IFS=, read -r -a calib <<< "${CALIB-resnet32}"
  per=$(( s / ${#calib[@]} ))
  for arch in "${calib[@]}"; do
    timeout "$per" python3 -m benchmarks.calibrate --arch "$arch" --data "$DATA" \
      --epochs "${CALIB_EPOCHS:-8,12,16,24}" --replicates "${CALIB_REPS:-2}" $set_graphs \
      --out "$OUT/calibrate-$arch.json" 2>&1 | grep -v Warning | tail -12
  done
fi
PLAN=${PLAN-lenet5-w0.125:50,lenet5-w0.25:50,lenet5-w0.5:50,lenet5-w2:50,pnasnet_a:16,resnet32:16}
BENCH_S=${BENCH_S:-170}
s=$(( $(left) - BENCH_S ))  # the benchmark keeps its seconds
[ -n "$PLAN" ] && [ "$s" -ge 20 ] && campaign "$PLAN" "$s" later
b=$(share "$BENCH_S")
if [ "$BENCH_S" != 0 ] && [ "$b" != 0 ]; then
  timeout "$(( b * 2 / 3 ))" python3 -m benchmarks.search_throughput --device cuda \
    --archs lenet5,resnet32,resnet18 --steps 40 --warmup 8 --population 50 \
    --out "$OUT/bench.json" 2>&1 | tee "$OUT/bench.txt"
  timeout "$(( b / 3 ))" python3 -m benchmarks.search_throughput --device cuda \
    --archs pnasnet_b --steps 20 --warmup 6 --population 16 \
    --out "$OUT/bench-pnasnet.json" 2>&1 | tee "$OUT/bench-pnasnet.txt"
fi
