"""Bias-corrected exponential moving average of a network's parameters.

    m_t = beta m_{t-1} + (1 - beta) theta_t,   m_0 = 0,   ema_t = m_t / (1 - beta^t)

The correction is Adam's (Kingma & Ba 2015, Sec. 3): without it a 0.999 average over
a few thousand steps still remembers the random initialisation.  ema_t is a weighted
mean of theta_1..theta_t with weights proportional to beta^(t - s), i.e. an average
over the last ~1 / (1 - beta) steps (the EMA horizon), and it equals the raw weights
at t = 1.  Buffers (none in the compact UNet: GroupNorm keeps no statistics) are copied.
"""
from __future__ import annotations

import torch
from torch import nn


class EMA:
    def __init__(self, model: nn.Module, beta: float) -> None:
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"EMA beta must be in [0, 1), got {beta}")
        self.beta = beta
        self.steps = 0
        self.sums = {k: torch.zeros_like(p, dtype=torch.float32) for k, p in model.named_parameters()}

    @property
    def horizon(self) -> float:
        """1 / (1 - beta): the number of recent steps the average effectively spans."""
        return 1.0 / (1.0 - self.beta)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.steps += 1
        for k, p in model.named_parameters():
            self.sums[k].mul_(self.beta).add_(p.detach().float(), alpha=1.0 - self.beta)

    @torch.no_grad()
    def state_for(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """``model``'s state dict with the bias-corrected averages in place of its parameters."""
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if self.steps:
            correction = 1.0 - self.beta**self.steps
            for k, s in self.sums.items():
                state[k] = (s / correction).to(state[k].dtype)
        return state

    def state_dict(self) -> dict:
        return {"beta": self.beta, "steps": self.steps, "sums": self.sums}

    def load_state_dict(self, state: dict) -> None:
        if float(state["beta"]) != self.beta:
            raise ValueError(f"checkpoint EMA beta {state['beta']} differs from the requested {self.beta}")
        missing = set(self.sums) ^ set(state["sums"])
        if missing:
            raise ValueError(f"checkpoint EMA has different parameters: {sorted(missing)[:5]}")
        self.steps = int(state["steps"])
        for k, v in state["sums"].items():
            self.sums[k].copy_(v)
