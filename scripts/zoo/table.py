#!/usr/bin/env python3
"""The accuracy table of scripts/eval-zoo.sh: preset x model from a `ptq-tool batch` summary.json.

usage: python3 scripts/zoo/table.py SUMMARY.json

Entries are named MODEL-PRESET (scripts/zoo/manifest.json). Per cell: the candidate's metric (perplexity for
language models, top-1 accuracy for the digit classifiers, per-frame top-1 agreement with fp32 and output SQNR for PP-OCRv4 rec), its change
against fp32 (the reference every entry is evaluated against), and the file size; the fp32 column holds the
reference's metric and size. A failed model shows its status; a failed gate is marked with '!'."""
import json
import sys

PRESETS = ["w8a16", "w4a16", "w8a8", "w4a8"]


def main(path):
    s = json.load(open(path))
    rows = {}
    for m in s["models"]:
        name = m["name"]
        for p in PRESETS:
            if name.endswith("-" + p):
                rows.setdefault(name[: -len(p) - 1], {})[p] = m
    print("| model | metric | fp32 | " + " | ".join(PRESETS) + " |")
    print("|---|---|---|" + "---|" * len(PRESETS))
    for model in rows:
        cells, ref, metric = [], None, ""
        for p in PRESETS:
            m = rows[model].get(p)
            if m is None:
                cells.append("")
                continue
            st = m["status"] if m["status"] != "skipped" else m.get("previous_status", "skipped")
            if st == "failed":
                cells.append("failed (exit %s)" % m["exit_code"])
                continue
            x = m.get("metrics", {})
            mb = m["bytes_after"] / 1e6
            mark = " !" if st == "gate_failed" else ""
            if "ppl_reference" in x:
                metric, ref = "perplexity", ("%.3f" % x["ppl_reference"], m["bytes_before"] / 1e6)
                cells.append("%.3f (%+.2f%%), %.2f MB%s" % (x["ppl_candidate"], x["ppl_delta_pct"], mb, mark))
            elif "accuracy_reference" in x:
                metric, ref = "top-1 accuracy", ("%.3f" % x["accuracy_reference"], m["bytes_before"] / 1e6)
                cells.append("%.3f (%+.1f pt, agree %.3f), %.2f MB%s" % (x["accuracy_candidate"],
                             100 * (x["accuracy_candidate"] - x["accuracy_reference"]), x.get("top1_agreement", 0), mb, mark))
            else:
                metric, ref = "per-frame top-1 agreement (output SQNR)", ("1", m["bytes_before"] / 1e6)
                cells.append("%.4f (%.1f dB), %.2f MB%s" % (x.get("top1_agreement", 0), x.get("sqnr_db", 0), mb, mark))
        fp32 = "%s, %.2f MB" % ref if ref else ""
        print("| %s | %s | %s | %s |" % (model, metric, fp32, " | ".join(cells)))


if __name__ == "__main__":
    main(sys.argv[1])
