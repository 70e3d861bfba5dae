#!/bin/bash
# Executor vs ONNX Runtime throughput on the zoo models, same thread count, ORT graph optimisation
# "all". Usage: benchmarks/bench_executor.sh BUILD_DIR [ZOO_DIR] [THREADS]
# Prints per case: median ms/batch of 30 runs for both and the ratio executor/ORT (targets: <= 1.5 transformers,
# <= 2 CNNs).
set -euo pipefail
build=${1:?usage: bench_executor.sh BUILD_DIR [ZOO_DIR] [THREADS]}
here=$(cd "$(dirname "$0")" && pwd)
zoo=${2:-$here/../../shared/zoo}
threads=${3:-$(nproc)}
ours=$("$build/benchmarks/bench_executor" "$zoo" --threads "$threads" --json)
theirs=$(node "$here/bench_executor_ort.js" "$zoo" --threads "$threads")
printf '%-20s %-16s %10s %10s %7s\n' model batch "ptq ms" "ort ms" ratio
paste -d'\n' <(echo "$ours") <(echo "$theirs") | paste - - | while IFS=$'\t' read -r a b; do
  model=$(sed -E 's/.*"model":"([^"]*)".*/\1/' <<<"$a")
  batch=$(sed -E 's/.*"batch":"([^"]*)".*/\1/' <<<"$a")
  ma=$(sed -E 's/.*"ms":([0-9.]+).*/\1/' <<<"$a")
  mb=$(sed -E 's/.*"ms":([0-9.]+).*/\1/' <<<"$b")
  printf '%-20s %-16s %10.3f %10.3f %7.2f\n' "$model" "$batch" "$ma" "$mb" "$(echo "$ma / $mb" | bc -l)"
done
