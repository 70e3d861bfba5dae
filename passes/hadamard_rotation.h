// hadamard-rotation: QuaRot (Ashkboos et al. 2024) — an orthogonal rotation of the residual stream
// fused into the weights, so that activation outliers are spread over all channels and low-bit
// (4-bit) activations become usable; plus an online Hadamard before the MLP's down-projection.
//
// With Q = D·H/√n (D random ±1 signs from the seed, H a Hadamard matrix of the stream width n):
//   contributions  embedding rows E ← E·Q; writers (attention out, MLP down / fc2) W ← W·Q, b ← b·Q;
//                  constant position / class tokens and a patch-embedding Conv's output channels · Q
//   readers        the linears after each norm (q/k/v, gate/up, fc1, the head) W ← Qᵀ·W
//   norms          RMSNorm(x·Q) = RMSNorm(x)·Q once γ = 1 (fold-norms first). LayerNorm models are made
//                  RMSNorm models first: every contribution zero-mean on the channel axis (the stream is
//                  then zero-mean, so LayerNorm = RMSNorm), then each LayerNorm rewritten as RMSNorm.
//   online         before each down-projection (and with online = all, the attention output
//                  projection): x ← x·H_m as small constant MatMuls (rotation_graph.h) with Hᵀ folded
//                  into the layer's input side, so its input activations are rotated too.
// Sizes: H_K ⊗ H_{2^m} for Paley orders K (lib/quant/hadamard.h), else block-diagonal (warned).
// All arithmetic in float64; the rewritten fp32 model computes the same function. The whole stream is
// checked before anything changes: a model the matcher cannot follow is an input error naming the node.
#pragma once
#include "lib/pipeline/pass.h"
#include "lib/pipeline/pass_registry.h"

namespace ptq::passes {

pipeline::PassInfo hadamardRotationPassInfo();

}  // namespace ptq::passes
