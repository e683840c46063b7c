"""torchao's Float8Linear (emulated, as on CPU) on seeded data: the peer of
//precision:fp8_linear_test.

Usage: fp8_linear_peer.py OUT_DIR RECIPE   (RECIPE: tensorwise or rowwise)

Writes little-endian float32 files: input, weight, bias, grad_output (the
data), and output, grad_input, grad_weight, grad_bias (torchao's results).
"""

import os
import sys

import torch
from torchao.float8 import Float8LinearConfig, convert_to_float8_training


def main():
    out_dir, recipe = sys.argv[1], sys.argv[2]
    torch.manual_seed(0)
    m, k, n = 24, 64, 32
    # Rows of different magnitudes, so that row-wise scales differ.
    x = torch.randn(m, k) * torch.logspace(-2, 2, m).unsqueeze(1)
    layer = torch.nn.Linear(k, n)
    grad_output = torch.randn(m, n) * 3
    data = {
        "input": x,
        "weight": layer.weight.detach().clone(),
        "bias": layer.bias.detach().clone(),
        "grad_output": grad_output,
    }
    config = Float8LinearConfig.from_recipe_name(recipe)
    config = Float8LinearConfig(**{**config.__dict__, "emulate": True})
    model = torch.nn.Sequential(layer)
    convert_to_float8_training(model, config=config)
    x_in = x.clone().requires_grad_(True)
    y = model(x_in)
    y.backward(grad_output)
    data["output"] = y.detach()
    data["grad_input"] = x_in.grad
    data["grad_weight"] = model[0].weight.grad
    data["grad_bias"] = model[0].bias.grad
    os.makedirs(out_dir, exist_ok=True)
    for name, tensor in data.items():
        tensor.detach().contiguous().to(torch.float32).numpy().tofile(
            os.path.join(out_dir, name + ".f32"))
    print("shapes", m, k, n)


if __name__ == "__main__":
    main()
