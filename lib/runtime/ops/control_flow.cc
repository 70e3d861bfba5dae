// If and Loop. Each body is planned once, at session planning, as a child Plan whose outer-scope
// reads resolve to the enclosing plans' slots; at run time the body executes against the
// enclosing frame (ExecContext::frame).
#include <limits>
#include <memory>

#include "lib/runtime/ops/op_util.h"
#include "lib/runtime/ops/ops.h"
#include "lib/runtime/plan.h"

namespace ptq::runtime::ops {

namespace {
std::shared_ptr<Plan> planBody(const NodeInfo& info, const char* attr) {
  auto it = info.node.attrs.find(attr);
  if (it == info.node.attrs.end() || !it->second.g) info.unsupported(std::string("missing graph attribute '") + attr + "'");
  return std::make_shared<Plan>(*it->second.g, *info.options, info.scope, info.problems);
}

TensorList runBody(ExecContext& ctx, const Plan& body, TensorList inputs) {
  TensorList slots = body.newSlots(ctx.frame);
  const auto& in_slots = body.inputSlots();
  for (size_t i = 0; i < inputs.size() && i < in_slots.size(); ++i) slots[in_slots[i]] = std::move(inputs[i]);
  body.execute(ctx, body.defaultSchedule(), slots, ctx.frame);
  TensorList outs;
  for (int s : body.outputSlots()) outs.push_back(slots[s]);
  return outs;
}

// Stacks equally shaped tensors along a new leading axis.
Tensor stack(ExecContext& ctx, const TensorList& parts, DType dtype) {
  if (parts.empty()) return ctx.alloc(dtype == DType::kUndefined ? DType::kFloat32 : dtype, {0});
  Shape s = parts[0].shape();
  for (const Tensor& p : parts)
    if (p.shape() != s || p.dtype() != parts[0].dtype())
      runError("scan output changes shape across iterations: " + typeShape(parts[0]) + " vs " + typeShape(p));
  s.insert(s.begin(), static_cast<int64_t>(parts.size()));
  Tensor y = ctx.alloc(parts[0].dtype(), s);
  const size_t nb = parts[0].nbytes();
  for (size_t i = 0; i < parts.size(); ++i)
    if (nb) std::memcpy(outData<uint8_t>(y) + i * nb, parts[i].data(), nb);
  return y;
}
}  // namespace

Kernel makeIf(const NodeInfo& info, std::vector<DType>& out_types) {
  info.requireInputs(1, 1);
  info.requireType(0, {DType::kBool});
  std::shared_ptr<Plan> then_p = planBody(info, "then_branch");
  std::shared_ptr<Plan> else_p = planBody(info, "else_branch");
  const size_t n = info.node.numOutputs();
  if (then_p->outputSlots().size() != n || else_p->outputSlots().size() != n)
    info.unsupported("branches have a different number of outputs than the node");
  out_types.assign(n, DType::kUndefined);
  for (size_t i = 0; i < n; ++i) {
    const DType a = then_p->slotType(then_p->outputSlots()[i]), b = else_p->slotType(else_p->outputSlots()[i]);
    out_types[i] = a == b ? a : DType::kUndefined;
  }
  return [then_p, else_p](ExecContext& ctx, TensorList& in, TensorList& out) {
    if (in[0].numel() != 1) runError("cond must hold one value, got " + typeShape(in[0]));
    const bool c = in[0].data<uint8_t>()[0] != 0;
    TensorList r = runBody(ctx, c ? *then_p : *else_p, {});
    for (size_t i = 0; i < out.size() && i < r.size(); ++i) out[i] = std::move(r[i]);
  };
}

Kernel makeLoop(const NodeInfo& info, std::vector<DType>& out_types) {
  std::shared_ptr<Plan> body = planBody(info, "body");
  const size_t n_in = info.numInputs();
  if (n_in < 2) info.unsupported("Loop needs inputs M and cond (possibly empty)");
  const size_t carried = n_in - 2;
  const size_t n_out = info.node.numOutputs();
  if (body->inputSlots().size() != carried + 2) info.unsupported("body inputs do not match the loop-carried values");
  if (body->outputSlots().size() != 1 + n_out) info.unsupported("body outputs do not match the node outputs");
  if (n_out < carried) info.unsupported("fewer outputs than loop-carried values");
  info.requireType(0, {DType::kInt64});
  info.requireType(1, {DType::kBool});
  out_types.assign(n_out, DType::kUndefined);
  for (size_t i = 0; i < n_out; ++i) {
    const DType bt = body->slotType(body->outputSlots()[1 + i]);
    out_types[i] = i < carried && info.inType(2 + i) != DType::kUndefined ? info.inType(2 + i) : bt;
  }
  const size_t n_scan = n_out - carried;
  std::vector<DType> scan_types(out_types.begin() + static_cast<std::ptrdiff_t>(carried), out_types.end());
  return [body, carried, n_scan, scan_types](ExecContext& ctx, TensorList& in, TensorList& out) {
    const bool has_m = !in[0].empty();
    const int64_t max_trips = has_m ? scalarInt(in[0], "M") : std::numeric_limits<int64_t>::max();
    bool cond = in[1].empty() ? true : in[1].data<uint8_t>()[0] != 0;
    TensorList state(in.begin() + 2, in.end());
    std::vector<TensorList> scans(n_scan);
    for (int64_t it = 0; it < max_trips && cond; ++it) {
      TensorList args;
      args.push_back(Tensor::fromInt64s({}, {it}));
      Tensor c(DType::kBool, {});
      *c.mutableData<uint8_t>() = cond ? 1 : 0;
      args.push_back(std::move(c));
      for (Tensor& s : state) args.push_back(s);
      TensorList r = runBody(ctx, *body, std::move(args));
      if (r[0].empty() || r[0].numel() != 1) runError("body cond output must hold one value");
      cond = r[0].data<uint8_t>()[0] != 0;
      for (size_t i = 0; i < carried; ++i) state[i] = std::move(r[1 + i]);
      for (size_t i = 0; i < n_scan; ++i) scans[i].push_back(std::move(r[1 + carried + i]));
      if (!has_m && in[1].empty() && it > (int64_t{1} << 40)) runError("loop without M or cond does not end");
    }
    for (size_t i = 0; i < carried; ++i) out[i] = std::move(state[i]);
    for (size_t i = 0; i < n_scan; ++i) out[carried + i] = stack(ctx, scans[i], scan_types[i]);
  };
}

}  // namespace ptq::runtime::ops
