"""A small stand-in network shared by the sampler tests."""

import torch


class TanhNet(torch.nn.Module):
    """A fixed, non-linear ε-predictor in training mode that logs how it was called."""

    def __init__(self, dim=3):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.weight = torch.nn.Parameter(torch.randn(dim, dim, generator=g, dtype=torch.float64) / dim)
        self.calls = []

    def forward(self, xt, t):
        self.calls.append((int(t[0]), self.training, torch.is_grad_enabled()))
        return torch.tanh(xt @ self.weight.to(xt.dtype) + t[:, None].to(xt.dtype) / 50)
