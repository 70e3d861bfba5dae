// The residual stream of a pre-norm transformer, as rotation (QuaRot) needs it: every tensor that is
// added into the stream (embeddings, the linear layers writing to it, constant position / class
// tokens, a ViT patch-embedding Conv), every sum on the way, and the norms and linears that read it.
// Rotating the stream by an orthogonal Q is function-preserving exactly when this picture is the
// whole story: each contribution can be multiplied by Q on its output side, each reader by Qᵀ on its
// input side, and nothing else (a graph output, an op other than a norm) sees the rotated values.
// The matcher reads only; `why` names the first node that breaks the picture.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "lib/ir/patterns.h"

namespace ptq::ir {

struct StreamContribution {
  enum class Kind {
    kEmbedding,  // Gather(table[vocab, n], ids): rotate the table's rows
    kWriter,     // a linear layer whose output (after its bias) is added: rotate W's output side and the bias
    kConstant,   // a constant [..., n] added or concatenated (positions, class token): rotate its rows
    kPatchConv,  // Conv with n output channels, reshaped to [B, n, HW] and transposed to [B, HW, n]
  };
  Kind kind = Kind::kWriter;
  Value* value = nullptr;  // the tensor added to the stream
  LinearMatch writer;      // kWriter
  Node* node = nullptr;    // kEmbedding: the Gather; kConstant: the node reading the constant; kPatchConv: the Conv
  int slot = -1;           // kConstant: the constant's input slot of `node`
};

struct ResidualStream {
  int64_t channels = 0;
  std::vector<Value*> sums;                       // values of the stream built from contributions (Add, Concat)
  std::vector<StreamContribution> contributions;  // in discovery order
  std::vector<NormMatch> norms;                   // the norms reading the stream, in graph order
  NormKind kind = NormKind::kRmsNorm;             // all norms are of one kind
  std::vector<LinearMatch> readers;               // the linears reading the norms' outputs
  Node* blocker = nullptr;
  std::string why;                                // "" when the stream can be rotated
  bool ok() const { return why.empty(); }
};

// The stream of `g` (main graph only), traced back from the inputs of its norms. Norms must have an
// identity affine part (run fold-norms first); LayerNorm and RMSNorm are not mixed.
ResidualStream matchResidualStream(Graph& g);

}  // namespace ptq::ir
