// The metrics of `ptq-tool eval`, as small pure functions and accumulators (no graphs, no files), so
// that tests check them on hand-computed cases. Sums are doubles, accumulated batch by batch.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace ptq::driver::eval {

// Largest SQNR reported (dB): identical outputs give exactly this; so does anything better.
constexpr double kMaxSqnrDb = 200.0;

// 10·log10(signal / noise) in dB, clamped to [-kMaxSqnrDb, kMaxSqnrDb]; noise 0 gives kMaxSqnrDb.
double sqnrDb(double signal_energy, double noise_energy);
// dot / sqrt(aa·bb); 1 when both vectors are zero, 0 when only one is.
double cosine(double dot, double aa, double bb);

// Element-wise error of a candidate against a reference, over every batch of one output.
struct ErrorStats {
  int64_t count = 0;
  double max_abs = 0;
  double sum_abs = 0;
  double sum_ref2 = 0;   // Σ ref²
  double sum_cand2 = 0;  // Σ cand²
  double sum_dot = 0;    // Σ ref·cand
  double sum_err2 = 0;   // Σ (ref − cand)²
  int64_t non_finite = 0;  // positions where either value is NaN/inf (left out of the sums)

  void add(const float* ref, const float* cand, size_t n);
  double meanAbs() const { return count ? sum_abs / static_cast<double>(count) : 0.0; }
  double cosineSimilarity() const { return cosine(sum_dot, sum_ref2, sum_cand2); }
  double sqnr() const { return sqnrDb(sum_ref2, sum_err2); }
};

// Indices of the k largest values of row[0..n), largest first; ties go to the lower index.
std::vector<int64_t> topK(const float* row, int64_t n, int64_t k);
int64_t argmax(const float* row, int64_t n);

// Classifier output [N, C]: agreement of the candidate with the reference and, with labels, the
// accuracy of each. top-1 agreement: same arg-max; top-5 agreement: the reference's top-1 class is
// among the candidate's 5 best (min(5, C)).
struct ClassStats {
  int64_t samples = 0;
  int64_t top1_agree = 0;
  int64_t top5_agree = 0;
  int64_t labelled = 0;
  int64_t ref_correct = 0;
  int64_t cand_correct = 0;

  // rows: [n, classes] row-major; labels: n labels or null.
  void add(const float* ref, const float* cand, int64_t n, int64_t classes, const int64_t* labels);
  double top1Agreement() const { return samples ? static_cast<double>(top1_agree) / samples : 0.0; }
  double top5Agreement() const { return samples ? static_cast<double>(top5_agree) / samples : 0.0; }
  double refAccuracy() const { return labelled ? static_cast<double>(ref_correct) / labelled : 0.0; }
  double candAccuracy() const { return labelled ? static_cast<double>(cand_correct) / labelled : 0.0; }
};

// −log softmax(logits)[target], computed in double with the max subtracted.
double nextTokenNll(const float* logits, int64_t vocab, int64_t target);

// Mean next-token cross-entropy → perplexity = exp(Σnll / count).
struct PerplexityStats {
  double sum_nll = 0;
  int64_t count = 0;
  void add(double nll) {
    sum_nll += nll;
    ++count;
  }
  double meanNll() const { return count ? sum_nll / static_cast<double>(count) : 0.0; }
  double perplexity() const;
};

// Whole windows of `seq` tokens in a token stream of `n_tokens` under the zoo protocol: window w is
// tokens[seq·w, seq·w+seq) and position t predicts token seq·w+t+1, so W windows need seq·W+1 tokens.
int64_t wholeWindows(int64_t n_tokens, int64_t seq);

}  // namespace ptq::driver::eval
