#!/usr/bin/env bash
# Install everything ptq-tool needs to build, test and cross-check on Debian 12 (bookworm).
# Idempotent: apt runs only when a package is missing, npm only when onnxruntime-node is missing.
#
#   scripts/setup-deps.sh            # Debian packages + scripts/ort/node_modules/onnxruntime-node
#   PTQ_SKIP_NODE=1 scripts/setup-deps.sh   # Debian packages only (no Node.js, no ONNX Runtime)
#   PTQ_VERBOSE=1 scripts/setup-deps.sh     # show apt/npm output
#   PTQ_SKIP_FUZZ=1 scripts/setup-deps.sh   # without the optional fuzzing toolchain
#
# The fuzzing toolchain (clang-14, libclang-rt-14-dev, libfuzzer-14-dev, libomp-14-dev: scripts/fuzz.sh)
# is optional: when apt cannot install it, this says so and goes on; the fuzz step then reports itself
# skipped.
#
# Runs as root, or through sudo when not root. Exit status non-zero with a message on any failure.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ort_dir="$here/ort"
verbose="${PTQ_VERBOSE:-0}"

say()  { printf 'setup-deps: %s\n' "$*" >&2; }
die()  { printf 'setup-deps: error: %s\n' "$*" >&2; exit 1; }

# run CMD... quietly; on failure show the tail of its output and die with a message
log="$(mktemp "${TMPDIR:-/tmp}/ptq-setup-deps.XXXXXX")"
trap 'rm -f "$log"' EXIT
quiet() {
  local what="$1"; shift
  if [[ "$verbose" == 1 ]]; then "$@" || die "$what failed (command: $*)"; return; fi
  if ! "$@" >"$log" 2>&1; then
    tail -n 25 "$log" >&2
    die "$what failed (command: $*)"
  fi
}

packages=(
  build-essential cmake ninja-build ccache pkg-config git
  libonnx-dev libprotobuf-dev protobuf-compiler
  libcli11-dev libspdlog-dev libfmt-dev nlohmann-json3-dev catch2
  libeigen3-dev libglpk-dev libxxhash-dev libopenblas-dev libdnnl2
  libonnx-testdata python3-numpy python3-onnx
  python3-pil fonts-dejavu-core wamerican
)
# Node.js: take Debian's only when no node/npm is on PATH (Debian's npm conflicts with e.g. NodeSource's nodejs).
if [[ "${PTQ_SKIP_NODE:-0}" != 1 ]]; then
  command -v node >/dev/null 2>&1 || packages+=(nodejs)
  command -v npm  >/dev/null 2>&1 || packages+=(npm)
fi

installed() {  # true when the package is fully installed
  [[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" == installed ]]
}

missing=()
for p in "${packages[@]}"; do installed "$p" || missing+=("$p"); done

if ((${#missing[@]})); then
  command -v apt-get >/dev/null 2>&1 || die "apt-get not found; this script targets Debian 12. Missing: ${missing[*]}"
  if [[ "$(id -u)" == 0 ]]; then sudo=()
  elif command -v sudo >/dev/null 2>&1; then sudo=(sudo)
  else die "not root and no sudo: install as root: apt-get install ${missing[*]}"
  fi
  say "installing ${#missing[@]} Debian package(s): ${missing[*]}"
  quiet "apt-get update" "${sudo[@]}" apt-get update
  quiet "apt-get install" "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends "${missing[@]}"
  still=()
  for p in "${missing[@]}"; do installed "$p" || still+=("$p"); done
  ((${#still[@]} == 0)) || die "packages still not installed after apt-get: ${still[*]}"
else
  say "Debian packages: all ${#packages[@]} present"
fi

# Optional: the fuzzing toolchain. A failure here is reported, never fatal.
fuzz_packages=(clang-14 libclang-rt-14-dev libfuzzer-14-dev libomp-14-dev)
if [[ "${PTQ_SKIP_FUZZ:-0}" != 1 ]]; then
  fuzz_missing=()
  for p in "${fuzz_packages[@]}"; do installed "$p" || fuzz_missing+=("$p"); done
  if ((${#fuzz_missing[@]} == 0)); then
    say "fuzzing toolchain: present (${fuzz_packages[*]})"
  elif ! command -v apt-get >/dev/null 2>&1 || { [[ "$(id -u)" != 0 ]] && ! command -v sudo >/dev/null 2>&1; }; then
    say "fuzzing toolchain not installed and cannot be (${fuzz_missing[*]}): scripts/fuzz.sh will skip"
  else
    sudo_f=(); [[ "$(id -u)" == 0 ]] || sudo_f=(sudo)
    say "installing the optional fuzzing toolchain: ${fuzz_missing[*]}"
    if ! "${sudo_f[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${fuzz_missing[@]}" \
        >"$log" 2>&1 && ! { "${sudo_f[@]}" apt-get update >"$log" 2>&1 && "${sudo_f[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y --no-install-recommends "${fuzz_missing[@]}" >"$log" 2>&1; }; then
      tail -n 5 "$log" >&2
      say "could not install the fuzzing toolchain (optional): scripts/fuzz.sh will skip"
    fi
  fi
fi

if [[ "${PTQ_SKIP_NODE:-0}" == 1 ]]; then
  say "PTQ_SKIP_NODE=1: skipping onnxruntime-node"
  exit 0
fi

command -v node >/dev/null 2>&1 || die "node not on PATH after install"
command -v npm  >/dev/null 2>&1 || die "npm not on PATH after install"
node_major="$(node -p 'process.versions.node.split(".")[0]')"
((node_major >= 18)) || die "Node.js >= 18 needed for onnxruntime-node, found $(node --version)"

[[ -f "$ort_dir/package.json" ]] || die "$ort_dir/package.json is missing"
if [[ -f "$ort_dir/node_modules/onnxruntime-node/package.json" ]]; then
  say "onnxruntime-node $(node -p "require('$ort_dir/node_modules/onnxruntime-node/package.json').version") already in $ort_dir/node_modules"
else
  say "installing onnxruntime-node into $ort_dir/node_modules"
  # --ignore-scripts: the package ships libonnxruntime for linux-x64; its install script would only
  # try to download optional GPU binaries.
  (cd "$ort_dir" && quiet "npm install" npm install --ignore-scripts --no-audit --no-fund --loglevel=error)
fi

# Smoke test: the native binding loads and can build a tensor.
if ! out="$(cd "$ort_dir" && node -e '
  const ort = require("onnxruntime-node");
  new ort.Tensor("float32", new Float32Array(4), [2, 2]);
  process.stdout.write(require("onnxruntime-node/package.json").version);' 2>&1)"; then
  printf '%s\n' "$out" >&2
  die "onnxruntime-node is installed in $ort_dir/node_modules but does not load (delete that folder and re-run)"
fi
say "onnxruntime-node $out loads (node $(node --version)); cross-check CLI: node $ort_dir/ort_run.js --help"
