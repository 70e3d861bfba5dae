#!/usr/bin/env bash
# Fails when a source file includes a header of a part it must not know (the arrows of the data flow in
# ../shared/DESIGN.md), or when ONNX/protobuf headers leak outside formats/onnx. The build runs it before
# compiling anything (target check_layers), so a wrong-way include fails the build; a test runs it on a
# copy of the tree with one bad include planted, to prove it does.
#   scripts/check-layers.sh [ROOT]      exit 0 when clean, 1 listing every violation
set -euo pipefail
root="${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
cd "$root"

# The part a path belongs to.
part_of() {
  case "$1" in
    lib/util/*) echo util ;;
    lib/quant/*) echo quant ;;
    lib/ir/*) echo ir ;;
    lib/runtime/*) echo runtime ;;
    lib/calib/*) echo calib ;;
    lib/pipeline/*) echo pipeline ;;
    lib/driver/*) echo driver ;;
    passes/*) echo passes ;;
    formats/*) echo formats ;;
    apps/*) echo apps ;;
    *) echo other ;;
  esac
}

# Parts each part may include besides itself.
allowed() {
  case "$1" in
    util) echo "" ;;
    quant) echo "util" ;;
    ir) echo "quant util" ;;
    runtime) echo "ir quant util" ;;
    calib) echo "ir quant util" ;;
    formats) echo "ir quant util" ;;
    pipeline) echo "runtime calib ir quant util" ;;
    passes) echo "pipeline runtime calib ir quant util" ;;
    driver) echo "passes pipeline formats runtime calib ir quant util" ;;
    apps) echo "driver util" ;;
  esac
}

violations=0
while IFS= read -r file; do
  from="$(part_of "$file")"
  [[ "$from" == other ]] && continue
  ok=" $from $(allowed "$from") "
  while IFS= read -r line; do
    inc="${line#*\"}"
    inc="${inc%%\"*}"
    to="$(part_of "$inc")"
    [[ "$to" == other ]] && continue
    if [[ "$ok" != *" $to "* ]]; then
      echo "check-layers: $file includes \"$inc\": $from must not depend on $to (allowed: $(allowed "$from"))" >&2
      violations=$((violations + 1))
    fi
  done < <(grep -E '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$file" || true)
  if [[ "$file" != formats/onnx/* ]] && grep -qE '^[[:space:]]*#[[:space:]]*include[[:space:]]*<(onnx|google/protobuf)/' "$file"; then
    echo "check-layers: $file includes ONNX/protobuf headers: only formats/onnx may" >&2
    violations=$((violations + 1))
  fi
done < <(find lib passes formats apps -type f \( -name '*.h' -o -name '*.cc' \) | sort)

if ((violations)); then
  echo "check-layers: $violations wrong-way include(s); see the arrows in lib/CMakeLists.txt" >&2
  exit 1
fi
exit 0
