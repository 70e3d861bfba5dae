#include "passes/bit_ilp.h"

#include <glpk.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <sstream>

#include "lib/util/error.h"

namespace ptq::passes {

namespace {

std::string number(double v) {
  std::ostringstream o;
  o.precision(12);
  o << v;
  return o.str();
}

void checkProblem(const IlpProblem& p) {
  for (const IlpLayer& l : p.layers) {
    const size_t n = l.keys.size();
    if (n == 0) throwInternal("bit ILP: layer '" + l.name + "' has no candidates");
    if (l.cost.size() != n) throwInternal("bit ILP: layer '" + l.name + "': costs and candidates differ in number");
    if (l.weight.size() != p.budgets.size()) throwInternal("bit ILP: layer '" + l.name + "': one weight row per budget needed");
    for (const auto& w : l.weight) {
      if (w.size() != n) throwInternal("bit ILP: layer '" + l.name + "': weights and candidates differ in number");
      for (double x : w)
        if (!(x >= 0) || !std::isfinite(x)) throwInternal("bit ILP: layer '" + l.name + "': weight " + number(x));
    }
    for (double c : l.cost)
      if (!std::isfinite(c)) throwInternal("bit ILP: layer '" + l.name + "': cost " + number(c));
    if (l.pinned < -1 || l.pinned >= static_cast<int>(n)) throwInternal("bit ILP: layer '" + l.name + "': pin out of range");
  }
  for (const auto& t : p.ties)
    for (size_t i : t)
      if (i >= p.layers.size()) throwInternal("bit ILP: tie group names layer " + std::to_string(i));
}

struct GlpDeleter {
  void operator()(glp_prob* p) const { glp_delete_prob(p); }
};

enum class Outcome { kOptimal, kInfeasible };

// Builds and solves: minimise sum objective[i][c] x[i][c] under one-hot rows, ties, pins and the budgets
// listed in `budgets` (indices into p.budgets, with the limits given). Returns the choice per layer.
Outcome solve(const IlpProblem& p, const std::vector<std::vector<double>>& objective, const std::vector<size_t>& budgets,
              const std::vector<double>& limits, std::vector<int>* choice, int64_t* columns, int64_t* rows) {
  glp_term_out(GLP_OFF);
  std::unique_ptr<glp_prob, GlpDeleter> lp(glp_create_prob());
  glp_prob* P = lp.get();
  glp_set_obj_dir(P, GLP_MIN);
  // Columns: x[i][c], layer-major.
  std::vector<int> first(p.layers.size());
  int ncols = 0;
  for (size_t i = 0; i < p.layers.size(); ++i) {
    first[i] = ncols + 1;
    ncols += static_cast<int>(p.layers[i].keys.size());
  }
  glp_add_cols(P, ncols);
  // Objective scaled to a largest |coefficient| of 1 (sensitivities span many decades).
  double scale = 0;
  for (const auto& o : objective)
    for (double v : o) scale = std::max(scale, std::fabs(v));
  if (scale == 0) scale = 1;
  for (size_t i = 0; i < p.layers.size(); ++i)
    for (size_t c = 0; c < p.layers[i].keys.size(); ++c) {
      const int j = first[i] + static_cast<int>(c);
      glp_set_col_kind(P, j, GLP_BV);
      glp_set_obj_coef(P, j, objective[i][c] / scale);
    }
  std::vector<int> ia{0}, ja{0};
  std::vector<double> ar{0};
  auto addRow = [&](int type, double lo, double hi) {
    const int r = glp_add_rows(P, 1);
    glp_set_row_bnds(P, r, type, lo, hi);
    return r;
  };
  auto put = [&](int r, int j, double v) {
    ia.push_back(r);
    ja.push_back(j);
    ar.push_back(v);
  };
  for (size_t i = 0; i < p.layers.size(); ++i) {
    const int r = addRow(GLP_FX, 1, 1);
    for (size_t c = 0; c < p.layers[i].keys.size(); ++c) put(r, first[i] + static_cast<int>(c), 1);
    if (p.layers[i].pinned >= 0) glp_set_col_bnds(P, first[i] + p.layers[i].pinned, GLP_FX, 1, 1);
  }
  // Budgets, each row scaled by its limit so every row reads "<= 1".
  for (size_t b = 0; b < budgets.size(); ++b) {
    const size_t k = budgets[b];
    const double lim = limits[b];
    const double s = lim > 0 ? lim : 1;
    const int r = addRow(GLP_UP, 0, lim / s);
    for (size_t i = 0; i < p.layers.size(); ++i)
      for (size_t c = 0; c < p.layers[i].keys.size(); ++c)
        if (p.layers[i].weight[k][c] != 0) put(r, first[i] + static_cast<int>(c), p.layers[i].weight[k][c] / s);
  }
  // Ties: every layer of a group takes the key its first layer takes.
  for (const auto& t : p.ties) {
    if (t.size() < 2) continue;
    const size_t a = t[0];
    for (size_t m = 1; m < t.size(); ++m) {
      const size_t b = t[m];
      std::map<int, int> col_a, col_b;
      for (size_t c = 0; c < p.layers[a].keys.size(); ++c) col_a[p.layers[a].keys[c]] = first[a] + static_cast<int>(c);
      for (size_t c = 0; c < p.layers[b].keys.size(); ++c) col_b[p.layers[b].keys[c]] = first[b] + static_cast<int>(c);
      for (const auto& [key, ja_] : col_a) {
        auto it = col_b.find(key);
        if (it == col_b.end()) {
          glp_set_col_bnds(P, ja_, GLP_FX, 0, 0);
          continue;
        }
        const int r = addRow(GLP_FX, 0, 0);
        put(r, ja_, 1);
        put(r, it->second, -1);
      }
      for (const auto& [key, jb] : col_b)
        if (!col_a.count(key)) glp_set_col_bnds(P, jb, GLP_FX, 0, 0);
    }
  }
  // A pin on a column a tie fixed at 0 would make GLPK's bounds inconsistent: that is infeasible.
  for (int j = 1; j <= ncols; ++j)
    if (glp_get_col_lb(P, j) > glp_get_col_ub(P, j)) return Outcome::kInfeasible;
  for (size_t i = 0; i < p.layers.size(); ++i)
    if (p.layers[i].pinned >= 0) {
      const int j = first[i] + p.layers[i].pinned;
      if (glp_get_col_ub(P, j) < 1) return Outcome::kInfeasible;
    }
  const int nz = static_cast<int>(ia.size()) - 1;
  glp_load_matrix(P, nz, ia.data(), ja.data(), ar.data());
  *columns = ncols;
  *rows = glp_get_num_rows(P);

  glp_iocp parm;
  glp_init_iocp(&parm);
  parm.presolve = GLP_ON;
  parm.msg_lev = GLP_MSG_OFF;
  parm.mip_gap = 0.0;
  const int ret = glp_intopt(P, &parm);
  if (ret == GLP_ENOPFS || ret == GLP_ENODFS) return Outcome::kInfeasible;
  if (ret != 0) throwInternal("bit ILP: glp_intopt failed with code " + std::to_string(ret));
  const int status = glp_mip_status(P);
  if (status == GLP_NOFEAS) return Outcome::kInfeasible;
  if (status != GLP_OPT) throwInternal("bit ILP: glp_intopt ended with status " + std::to_string(status));
  choice->assign(p.layers.size(), -1);
  for (size_t i = 0; i < p.layers.size(); ++i) {
    double best = -1;
    for (size_t c = 0; c < p.layers[i].keys.size(); ++c) {
      const double v = glp_mip_col_val(P, first[i] + static_cast<int>(c));
      if (v > best) {
        best = v;
        (*choice)[i] = static_cast<int>(c);
      }
    }
  }
  return Outcome::kOptimal;
}

double budgetUse(const IlpProblem& p, size_t k, const std::vector<int>& choice) {
  double s = 0;
  for (size_t i = 0; i < p.layers.size(); ++i) s += p.layers[i].weight[k][static_cast<size_t>(choice[i])];
  return s;
}

}  // namespace

double smallestFeasibleBudget(const IlpProblem& p, size_t k) {
  checkProblem(p);
  std::vector<std::vector<double>> obj;
  for (const IlpLayer& l : p.layers) obj.push_back(l.weight[k]);
  std::vector<int> choice;
  int64_t cols = 0, rows = 0;
  if (solve(p, obj, {}, {}, &choice, &cols, &rows) == Outcome::kInfeasible)
    throwUsage("bit allocation: the pinned choices and the tied layers (readers of one tensor take the same bits) "
               "contradict each other");
  return budgetUse(p, k, choice);
}

IlpSolution solveBitIlp(const IlpProblem& p) {
  checkProblem(p);
  std::vector<std::vector<double>> obj;
  for (const IlpLayer& l : p.layers) obj.push_back(l.cost);
  std::vector<size_t> budgets;
  std::vector<double> limits;
  for (size_t k = 0; k < p.budgets.size(); ++k) {
    budgets.push_back(k);
    limits.push_back(p.budgets[k].limit);
  }
  IlpSolution s;
  // GLPK meets rows to its feasibility tolerance (1e-7 of the scaled row): a choice that overshoots a
  // budget by that much is solved again under a limit lowered by the overshoot.
  for (int attempt = 0;; ++attempt) {
    if (solve(p, obj, budgets, limits, &s.choice, &s.columns, &s.rows) == Outcome::kInfeasible) {
      std::string why;
      for (size_t k = 0; k < p.budgets.size(); ++k) {
        const double least = smallestFeasibleBudget(p, k);
        if (least > p.budgets[k].limit)
          why += (why.empty() ? "" : "; ") + std::string("budget ") + p.budgets[k].name + " <= " + number(p.budgets[k].limit) +
                 " cannot be met: the smallest feasible is " + number(least) +
                 " (every layer at its cheapest candidate the pins and ties allow)";
      }
      if (why.empty()) {
        why = "the budgets";
        for (size_t k = 0; k < p.budgets.size(); ++k)
          why += (k ? ", " : " ") + p.budgets[k].name + " <= " + number(p.budgets[k].limit) + " (alone: smallest feasible " +
                 number(smallestFeasibleBudget(p, k)) + ")";
        why += " cannot all be met at once";
      }
      throwUsage("bit allocation: " + why);
    }
    bool over = false;
    for (size_t k = 0; k < p.budgets.size(); ++k) {
      const double used = budgetUse(p, k, s.choice);
      if (used > p.budgets[k].limit) {
        over = true;
        limits[k] -= (used - p.budgets[k].limit) + 1e-9 * std::fabs(p.budgets[k].limit);
      }
    }
    if (!over) break;
    if (attempt == 5) throwInternal("bit ILP: GLPK's answer keeps exceeding a budget by its tolerance");
  }
  s.objective = 0;
  for (size_t i = 0; i < p.layers.size(); ++i) s.objective += p.layers[i].cost[static_cast<size_t>(s.choice[i])];
  for (size_t k = 0; k < p.budgets.size(); ++k) s.used.push_back(budgetUse(p, k, s.choice));
  return s;
}

}  // namespace ptq::passes
