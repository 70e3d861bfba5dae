// `--report-html FILE` of quantize, eval and batch: one self-contained HTML page (inline CSS and SVG;
// no scripts, no fonts, images or style sheets from anywhere), rendered from the JSON documents the
// commands already write, so the page says exactly what the JSON says.
//
// Every bar is an SVG <rect class="bar"> with data-kind (weight_sqnr, output_sqnr, ratio) and
// data-layer / data-model naming what it stands for, so a test (or a script) can count them.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

namespace ptq::driver {

// The quantize --report document (with "evaluation" and "gates" when the run evaluated): per-layer
// bars of weight SQNR and, with attribution, of output SQNR; bits and bytes per layer; the metrics of
// the reference and the candidate; the gate verdicts.
std::string renderQuantizeHtml(const nlohmann::json& report);
// The eval --report document: per-output figures, classifier/perplexity figures, attribution bars.
std::string renderEvalHtml(const nlohmann::json& eval);
// A batch summary.json: one row (and one compression-ratio bar) per model, linking each model's page.
std::string renderBatchHtml(const nlohmann::json& summary);

}  // namespace ptq::driver
