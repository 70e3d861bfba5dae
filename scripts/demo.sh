#!/usr/bin/env bash
# The README's main job: install dependencies, build, quantize the bundled digits CNN with the w8a16
# and w4a16 presets, and check the results in ONNX Runtime (accuracy and agreement with fp32).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$root/build"
"$root/scripts/setup-deps.sh"
# ccache keys on paths relative to the checkout, so a fresh clone elsewhere (CI) reuses earlier objects.
export CCACHE_BASEDIR="$root" CCACHE_NOHASHDIR=1
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j "$(nproc)" --target ptq-tool
tool="$build/apps/ptq-tool/ptq-tool"
data="$root/tests/data"
out="$build/demo"
mkdir -p "$out"

"$tool" inspect "$data/digits_cnn.onnx"
for preset in w8a16 w4a16; do
  echo
  echo "== ptq-tool quantize digits_cnn.onnx --config $preset"
  "$tool" quantize "$data/digits_cnn.onnx" --config "$root/configs/$preset.json" -o "$out/digits_cnn.$preset.onnx" \
    --report "$out/digits_cnn.$preset.report.json"
  if command -v node >/dev/null && [[ -d "$root/scripts/ort/node_modules/onnxruntime-node" ]]; then
    node "$root/scripts/ort/ort_run.js" accuracy "$out/digits_cnn.$preset.onnx" \
      "$data/digits_test_x_256x1x20x20_f32.bin" "$data/digits_test_y_256_i64.bin" --shape 256x1x20x20 \
      --agree "$data/digits_cnn.onnx"
  fi
done
echo
echo "fp32 reference in ONNX Runtime:"
node "$root/scripts/ort/ort_run.js" accuracy "$data/digits_cnn.onnx" "$data/digits_test_x_256x1x20x20_f32.bin" \
  "$data/digits_test_y_256_i64.bin" --shape 256x1x20x20 || true
echo "outputs and reports in $out"
