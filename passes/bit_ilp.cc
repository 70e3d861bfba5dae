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
  // Budgets, written as increments over each layer's cheapest candidate: sum_c x[i][c] = 1 makes
  //   sum w[i][c] x[i][c] <= limit   the same as   sum (w[i][c] - min_c w[i][c]) x[i][c] <= limit - sum_i min_c w[i][c].
  // Candidates of nearly equal size have nearly parallel columns in the first form (bytes 482000000 and
  // 482000040 against a limit of 3e9), on which GLPK's simplex loops forever reporting numerical
  // instability; the increments are well scaled, and GLPK's tolerance then applies to them rather than
  // to the whole budget. Each row is scaled to a largest coefficient of 1.
  for (size_t b = 0; b < budgets.size(); ++b) {
    const size_t k = budgets[b];
    double floor_sum = 0, largest = 0;
    std::vector<double> least(p.layers.size());
    for (size_t i = 0; i < p.layers.size(); ++i) {
      const auto& w = p.layers[i].weight[k];
      least[i] = *std::min_element(w.begin(), w.end());
      floor_sum += least[i];
      for (double x : w) largest = std::max(largest, x - least[i]);
    }
    const double room = limits[b] - floor_sum;
    if (room < 0) return Outcome::kInfeasible;
    const double s = largest > 0 ? largest : 1;
    const int r = addRow(GLP_UP, 0, room / s);
    for (size_t i = 0; i < p.layers.size(); ++i)
      for (size_t c = 0; c < p.layers[i].keys.size(); ++c) {
        const double d = p.layers[i].weight[k][c] - least[i];
        if (d != 0) put(r, first[i] + static_cast<int>(c), d / s);
      }
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
  // Integrality to 1e-10, not GLPK's 1e-5: a binary at 1 - 1e-5 on a layer of 50 MB hides hundreds of bytes
  // of a budget row, enough to take a choice over the budget or to shut out one that meets it exactly.
  parm.tol_int = 1e-10;
  // A safety net, not a tuning knob: programs of a few thousand binaries solve in well under a second.
  parm.tm_lim = 600 * 1000;
  const int ret = glp_intopt(P, &parm);
  if (ret == GLP_ETMLIM)
    throwInternal("bit ILP: GLPK did not finish within 600 s (" + std::to_string(ncols) + " columns, " +
                  std::to_string(*rows) + " rows)");
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

// Reports a budget set no assignment meets, naming the smallest feasible value of each budget.
[[noreturn]] static void throwInfeasible(const IlpProblem& p) {
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
  // GLPK accepts a row within its feasibility tolerance (about 2e-7 of the row's largest increment), so its optimum
  // may overshoot a budget by that much. The limits are then lowered by t times the overshoot seen,
  // t found by doubling and bisection: too small a t lets an overshooting choice through again, too
  // large a t also shuts out the choices that meet a budget exactly (often the only ones, e.g. every
  // layer at the uniform_bits width), which must not be reported as infeasible.
  std::vector<double> drop(p.budgets.size(), 0.0);  // lowering per unit of t
  double t = 0, t_over = 0, t_infeasible = -1;
  for (int attempt = 0;; ++attempt) {
    for (size_t k = 0; k < p.budgets.size(); ++k) limits[k] = p.budgets[k].limit - t * drop[k];
    if (solve(p, obj, budgets, limits, &s.choice, &s.columns, &s.rows) == Outcome::kInfeasible) {
      if (t > 0) {
        t_infeasible = t;
        t = 0.5 * (t_over + t_infeasible);
      } else {
        throwInfeasible(p);
      }
    } else {
      bool over = false;
      for (size_t k = 0; k < p.budgets.size(); ++k) {
        const double excess = budgetUse(p, k, s.choice) - p.budgets[k].limit;
        if (excess > 0) {
          over = true;
          if (drop[k] == 0) drop[k] = excess + 1e-9 * std::fabs(p.budgets[k].limit);
        }
      }
      if (!over) break;
      t_over = t;
      t = t_infeasible < 0 ? (t == 0 ? 1 : 2 * t) : 0.5 * (t_over + t_infeasible);
    }
    if (attempt == 60) throwInternal("bit ILP: no limit between GLPK's tolerance and the budget gives an answer within it");
  }
  s.objective = 0;
  for (size_t i = 0; i < p.layers.size(); ++i) s.objective += p.layers[i].cost[static_cast<size_t>(s.choice[i])];
  for (size_t k = 0; k < p.budgets.size(); ++k) s.used.push_back(budgetUse(p, k, s.choice));
  return s;
}

}  // namespace ptq::passes
