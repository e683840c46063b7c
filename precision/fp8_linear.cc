#include "precision/fp8_linear.h"

#include <cmath>
#include <cstdint>
#include <optional>
#include <vector>

#include "absl/strings/str_cat.h"
#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <torch/autograd.h>
#include <torch/nn/functional/linear.h>
#include <torch/nn/init.h>
#include "precision/autocast.h"
#include "precision/float8.h"
#include "precision/internal/scaled_product.h"
#include "state/collectives.h"
#include "state/logging.h"
#include "state/status_macros.h"

namespace accelerate::precision {
namespace {

using ::accelerate::precision_internal::ScaledOperand;
using ::accelerate::precision_internal::ScaledProduct;
using ::torch::autograd::AutogradContext;
using ::torch::autograd::variable_list;

// `x` cast to float8 with a scale from its own amax (over `dim`, keeping
// it, or over everything).
ScaledOperand QuantizeDynamic(const at::Tensor& x, Float8Format format,
                              std::optional<int64_t> dim, bool power_of_2) {
  const at::Tensor magnitude = x.abs();
  const at::Tensor amax =
      dim.has_value() ? at::amax(magnitude, {*dim}, /*keepdim=*/true)
                      : magnitude.max();
  const at::Tensor scale = AmaxToScale(amax, format, power_of_2);
  return {CastToFloat8(x, scale, format), scale};
}

// The float8 value of `x` as the product sees it, dequantized.
at::Tensor CastDynamic(const at::Tensor& x, Float8Format format,
                       std::optional<int64_t> dim, bool power_of_2) {
  const ScaledOperand q = QuantizeDynamic(x, format, dim, power_of_2);
  return Dequantize(q.bits, q.scale);
}

// `x` cast with a delayed scale, recording this tensor's amax for it.
ScaledOperand QuantizeDelayed(const at::Tensor& x, DelayedScale& scale) {
  scale.MoveTo(x.device());
  scale.Record(x.abs().max());
  return {CastToFloat8(x, scale.scale(), scale.format()), scale.scale()};
}

// The same, dequantized.
at::Tensor CastDelayed(const at::Tensor& x, DelayedScale& scale) {
  const ScaledOperand q = QuantizeDelayed(x, scale);
  return Dequantize(q.bits, q.scale);
}

// The recipe travels to backward inside the autograd context.
void SaveRecipe(AutogradContext* ctx, const Fp8Recipe& recipe,
                const c10::intrusive_ptr<Fp8LayerScales>& scales) {
  ctx->saved_data["scaling"] = static_cast<int64_t>(recipe.scaling);
  ctx->saved_data["forward"] = static_cast<int64_t>(recipe.forward_format);
  ctx->saved_data["backward"] = static_cast<int64_t>(recipe.backward_format);
  ctx->saved_data["power_of_2"] = recipe.round_scales_to_power_of_2;
  // The context shares the scales: the layer may change or go first.
  if (scales) {
    ctx->saved_data["scales"] = c10::IValue::make_capsule(
        c10::intrusive_ptr<torch::CustomClassHolder>(scales));
  }
}

struct SavedRecipe {
  Fp8Scaling scaling;
  Float8Format forward;
  Float8Format backward;
  bool power_of_2;
  c10::intrusive_ptr<Fp8LayerScales> scales;  // Delayed scaling only.
};

SavedRecipe LoadRecipe(AutogradContext* ctx) {
  return {static_cast<Fp8Scaling>(ctx->saved_data["scaling"].toInt()),
          static_cast<Float8Format>(ctx->saved_data["forward"].toInt()),
          static_cast<Float8Format>(ctx->saved_data["backward"].toInt()),
          ctx->saved_data["power_of_2"].toBool(),
          ctx->saved_data.count("scales") > 0
              ? c10::static_intrusive_pointer_cast<Fp8LayerScales>(
                    ctx->saved_data["scales"].toCapsule())
              : c10::intrusive_ptr<Fp8LayerScales>()};
}

// input [M, K] x weight [N, K]^T -> [M, N], the products in float32 from
// float8 operands. Dynamic scaling recasts the high-precision operands in
// backward along each product's own axes (torchao); delayed scaling reuses
// the forward's float8 operands (Transformer Engine).
class Fp8MatmulFunction
    : public torch::autograd::Function<Fp8MatmulFunction> {
 public:
  static at::Tensor forward(
      AutogradContext* ctx, const at::Tensor& input, const at::Tensor& weight,
      const Fp8Recipe* recipe,
      const c10::intrusive_ptr<Fp8LayerScales>& scales) {
    AutocastOff no_autocast;
    SaveRecipe(ctx, *recipe, scales);
    const Float8Format f = recipe->forward_format;
    const bool pow2 = recipe->round_scales_to_power_of_2;
    ctx->saved_data["input_dtype"] = input.scalar_type();
    ctx->saved_data["weight_dtype"] = weight.scalar_type();
    at::Tensor out;
    switch (recipe->scaling) {
      case Fp8Scaling::kDynamicTensorwise:
        // Per-tensor scales: _scaled_mm where the device has float8 units.
        out = ScaledProduct(QuantizeDynamic(input, f, std::nullopt, pow2),
                            QuantizeDynamic(weight, f, std::nullopt, pow2));
        ctx->save_for_backward({input, weight});
        break;
      case Fp8Scaling::kDynamicRowwise: {
        // A scale per input row and per output feature.
        const at::Tensor x = CastDynamic(input, f, 1, pow2);
        const at::Tensor w = CastDynamic(weight, f, 1, pow2);
        out = at::mm(x, w.t());
        ctx->save_for_backward({input, weight});
        break;
      }
      case Fp8Scaling::kDelayed: {
        const ScaledOperand x = QuantizeDelayed(input, scales->input);
        const ScaledOperand w = QuantizeDelayed(weight, scales->weight);
        out = ScaledProduct(x, w);
        ctx->save_for_backward(
            {Dequantize(x.bits, x.scale), Dequantize(w.bits, w.scale)});
        break;
      }
    }
    return out.to(input.scalar_type());
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    AutocastOff no_autocast;
    const SavedRecipe recipe = LoadRecipe(ctx);
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor& grad = grads[0];
    const at::ScalarType input_dtype =
        ctx->saved_data["input_dtype"].toScalarType();
    const at::ScalarType weight_dtype =
        ctx->saved_data["weight_dtype"].toScalarType();
    const Float8Format f = recipe.forward;
    const Float8Format b = recipe.backward;
    const bool pow2 = recipe.power_of_2;
    at::Tensor grad_input, grad_weight;
    switch (recipe.scaling) {
      case Fp8Scaling::kDynamicTensorwise: {
        // grad_input = grad [M, N] x weight [N, K]; grad_weight = grad^T x
        // input: ScaledProduct's second operand is [columns, K].
        const ScaledOperand g = QuantizeDynamic(grad, b, std::nullopt, pow2);
        const ScaledOperand w =
            QuantizeDynamic(saved[1], f, std::nullopt, pow2);
        const ScaledOperand x =
            QuantizeDynamic(saved[0], f, std::nullopt, pow2);
        grad_input = ScaledProduct(g, {w.bits.t(), w.scale});
        grad_weight =
            ScaledProduct({g.bits.t(), g.scale}, {x.bits.t(), x.scale});
        break;
      }
      case Fp8Scaling::kDynamicRowwise:
        // grad_input = grad [M, N] (a scale per row) x weight [N, K] (a
        // scale per input feature); grad_weight = grad^T (a scale per output
        // feature) x input (a scale per input feature).
        grad_input = at::mm(CastDynamic(grad, b, 1, pow2),
                            CastDynamic(saved[1], f, 0, pow2));
        grad_weight = at::mm(CastDynamic(grad, b, 0, pow2).t(),
                             CastDynamic(saved[0], f, 0, pow2));
        break;
      case Fp8Scaling::kDelayed: {
        const at::Tensor g = CastDelayed(grad, recipe.scales->grad_output);
        grad_input = at::mm(g, saved[1]);
        grad_weight = at::mm(g.t(), saved[0]);
        break;
      }
    }
    return {grad_input.to(input_dtype), grad_weight.to(weight_dtype),
            at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor Fp8Matmul(const at::Tensor& input, const at::Tensor& weight,
                     const Fp8Recipe& recipe,
                     const c10::intrusive_ptr<Fp8LayerScales>& scales) {
  ACCELERATE_CHECK(recipe.scaling != Fp8Scaling::kDelayed || scales)
      << "fp8 delayed scaling needs the layer's scales";
  ACCELERATE_CHECK(input.size(-1) == weight.size(1))
      << "fp8 linear: input has " << input.size(-1)
      << " features, the weight expects " << weight.size(1);
  std::vector<int64_t> shape = input.sizes().vec();
  const at::Tensor flat = input.reshape({-1, input.size(-1)});
  at::Tensor out = Fp8MatmulFunction::apply(flat, weight, &recipe, scales);
  shape.back() = weight.size(0);
  return out.reshape(shape);
}

Fp8LinearImpl::Fp8LinearImpl(const torch::nn::LinearOptions& options_)
    : options(options_) {
  reset();
}

void Fp8LinearImpl::reset() {
  // A clone() copies this layer and resets it: its delayed scales become its
  // own.
  if (scales_) scales_ = scales_->Clone();
  weight = register_parameter(
      "weight", torch::empty({options.out_features(), options.in_features()}));
  if (options.bias()) {
    bias = register_parameter("bias", torch::empty(options.out_features()));
  } else {
    bias = register_parameter("bias", {}, /*requires_grad=*/false);
  }
  reset_parameters();
}

void Fp8LinearImpl::reset_parameters() {
  // As torch::nn::Linear.
  torch::nn::init::kaiming_uniform_(weight, std::sqrt(5));
  if (bias.defined()) {
    const auto [fan_in, fan_out] =
        torch::nn::init::_calculate_fan_in_and_fan_out(weight);
    const double bound = 1 / std::sqrt(fan_in);
    torch::nn::init::uniform_(bias, -bound, bound);
  }
}

void Fp8LinearImpl::EnableFp8(const Fp8Recipe& recipe,
                              const state::PartialState* state) {
  recipe_ = recipe;
  state_ = state;
  scales_ = recipe.scaling == Fp8Scaling::kDelayed
                ? c10::make_intrusive<Fp8LayerScales>(recipe)
                : c10::intrusive_ptr<Fp8LayerScales>();
}

absl::Status Fp8LinearImpl::UpdateDelayedScales() {
  DelayedScale* all[] = {&scales_->input, &scales_->weight,
                         &scales_->grad_output};
  bool any = false;
  for (DelayedScale* scale : all) any |= scale->pending();
  if (!any) return absl::OkStatus();
  if (state_ != nullptr && state_->use_distributed()) {
    // One all-gather for the three amaxes; the max over processes.
    const at::Tensor mine = at::stack({all[0]->newest().cpu(),
                                       all[1]->newest().cpu(),
                                       all[2]->newest().cpu()});
    ACCELERATE_ASSIGN_OR_RETURN(
        at::Tensor gathered, state::Gather(*state_, mine.to(state_->device())));
    const at::Tensor maxima =
        std::get<0>(gathered.cpu().view({-1, 3}).max(0));
    for (int i = 0; i < 3; ++i) all[i]->newest().copy_(maxima[i]);
  }
  for (DelayedScale* scale : all) {
    if (scale->pending()) scale->Update();
  }
  return absl::OkStatus();
}

at::Tensor Fp8LinearImpl::forward(const at::Tensor& input) {
  // Disabled: exactly torch::nn::Linear's forward.
  if (!recipe_.has_value()) {
    return torch::nn::functional::linear(input, weight, bias);
  }
  at::Tensor x = input;
  const c10::DeviceType device = input.device().type();
  if (at::autocast::is_autocast_enabled(device)) {
    x = x.to(at::autocast::get_autocast_dtype(device));
  }
  if (scales_ != nullptr) {
    const absl::Status updated = UpdateDelayedScales();
    TORCH_CHECK(updated.ok(), "fp8 delayed scaling: ", updated.ToString());
  }
  at::Tensor out = Fp8Matmul(x, weight, *recipe_, scales_);
  if (bias.defined()) out = out + bias.to(out.scalar_type());
  return out;
}

}  // namespace accelerate::precision
