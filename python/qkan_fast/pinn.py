"""A physics-informed training task: the 2-D Poisson problem on the unit square.

    u_xx + u_yy = f  in (0, 1)^2,   u = 0 on the boundary,   f = -2 pi^2 sin(pi x) sin(pi y),

whose solution is u*(x, y) = sin(pi x) sin(pi y). The loss is the mean squared residual at
interior collocation points plus the mean squared boundary value, so a training step takes the
network's second derivatives in its input with the graph kept and then the parameter gradient of
that loss. Used by examples/poisson_pinn.py and `qkan-fast bench` (workload P1); it sits above the
modules (imports them, never the other way round).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Dict, List

import torch
from torch import Tensor, nn


@dataclass
class PoissonProblem:
    """Collocation points (uniform random, fixed by `seed`) and the exact solution.

    Args:
        points: interior collocation points.
        boundary_points: points on the boundary (a quarter on each side).
        seed: draws the points from a local generator (the global RNG is not touched).
        dtype: of the points.
    """

    points: int = 1024
    boundary_points: int = 256
    seed: int = 0
    dtype: torch.dtype = torch.float32
    interior: Tensor = field(init=False)  # [N, 2]
    boundary: Tensor = field(init=False)  # [M, 2]

    def __post_init__(self) -> None:
        g = torch.Generator().manual_seed(self.seed)
        self.interior = torch.rand(self.points, 2, generator=g, dtype=self.dtype)
        t = torch.rand(self.boundary_points, generator=g, dtype=self.dtype)
        side = torch.arange(self.boundary_points) % 4  # x = 0, x = 1, y = 0, y = 1
        zero, one = torch.zeros_like(t), torch.ones_like(t)
        xs = torch.where(side == 0, zero, torch.where(side == 1, one, t))
        ys = torch.where(side == 2, zero, torch.where(side == 3, one, t))
        self.boundary = torch.stack([xs, ys], dim=1)

    @staticmethod
    def solution(xy: Tensor) -> Tensor:  # [N, 2] -> [N]
        return torch.sin(math.pi * xy[:, 0]) * torch.sin(math.pi * xy[:, 1])

    @staticmethod
    def source(xy: Tensor) -> Tensor:  # [N, 2] -> [N]
        return -2 * math.pi**2 * PoissonProblem.solution(xy)


def laplacian(model: nn.Module, xy: Tensor) -> Tensor:
    """u_xx + u_yy of a model with one output, at xy [N, 2] (which must require grad); keeps the
    graph, so the result is differentiable in the parameters."""
    u = model(xy)[:, 0]
    (grad_u,) = torch.autograd.grad(u.sum(), xy, create_graph=True)
    u_xx = torch.autograd.grad(grad_u[:, 0].sum(), xy, create_graph=True)[0][:, 0]
    u_yy = torch.autograd.grad(grad_u[:, 1].sum(), xy, create_graph=True)[0][:, 1]
    return u_xx + u_yy


def loss(model: nn.Module, problem: PoissonProblem) -> Tensor:
    """Mean squared PDE residual at the interior points plus mean squared boundary value."""
    xy = problem.interior.detach().requires_grad_()
    residual = laplacian(model, xy) - problem.source(problem.interior)
    return residual.square().mean() + model(problem.boundary)[:, 0].square().mean()


def train(model: nn.Module, problem: PoissonProblem, steps: int, lr: float = 1e-2) -> Dict[str, List[float]]:
    """Adam on `loss`; returns the loss before each step and each step's wall time in seconds."""
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    losses, seconds = [], []
    for _ in range(steps):
        start = time.perf_counter()
        opt.zero_grad()
        value = loss(model, problem)
        value.backward()
        opt.step()
        seconds.append(time.perf_counter() - start)
        losses.append(float(value.detach()))
    return {"loss": losses, "step_seconds": seconds}


def relative_error(model: nn.Module, problem: PoissonProblem) -> float:
    """||u - u*|| / ||u*|| over the interior points."""
    with torch.no_grad():
        u, want = model(problem.interior)[:, 0], problem.solution(problem.interior)
    return float((u - want).norm() / want.norm())


def qkan_exact_twin(model: nn.Module) -> nn.Module:
    """The same network as a `qkan.QKAN` on qkan's exact solver, with the same parameters (needs
    qkan installed: ImportError otherwise)."""
    from .integrations.qkan import to_qkan

    return to_qkan(model, solver="exact")
