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


def benchmark(width=(2, 16, 16, 1), points: int = 1024, reps: int = 3, curve_steps: int = 10, rounds: int = 5,
              min_run_time: float = 1.0, seed: int = 0, progress=print, preact_trainable: bool = False) -> dict:
    """Workload P1 of `qkan-fast bench`: one training step (forward, u_xx + u_yy with the graph kept,
    the parameter gradient) of QKAN(width) on `points` collocation points, on qkan_fast and on
    qkan's exact solver (when installed) from the same parameters.

    Timing: torch.utils.benchmark `blocked_autorange` blocks, the engines interleaved round by
    round, merged per engine (median per step). Parity: both train `curve_steps` Adam steps from
    the same start; the report holds both loss curves and their largest relative difference.
    `preact_trainable`: the model's encodings w * x + b are trained too (its higher derivatives
    then run the Bloch-vector form of higher_order.py instead of the spectral one)."""
    from torch.utils import benchmark as tb

    from .modules import QKAN

    problem = PoissonProblem(points=points, seed=seed)
    ours = QKAN(list(width), reps=reps, seed=seed, preact_trainable=preact_trainable)
    models = {"qkan_fast": ours}
    try:
        models["qkan exact"] = qkan_exact_twin(ours)
    except ImportError as err:
        progress(f"P1: qkan not installed ({err}); timing qkan_fast alone")
    start_state = {name: {k: v.clone() for k, v in m.state_dict().items()} for name, m in models.items()}

    def one_step(model):
        model.zero_grad(set_to_none=True)
        loss(model, problem).backward()

    blocks = {name: [] for name in models}
    for r in range(rounds):
        for name, model in models.items():
            timer = tb.Timer("step(model)", globals={"step": one_step, "model": model}, label="P1", sub_label=name,
                             description="train step", num_threads=torch.get_num_threads())
            blocks[name].append(timer.blocked_autorange(min_run_time=min_run_time / rounds))
        progress(f"P1: round {r + 1}/{rounds} timed")
    times = {name: tb.Measurement.merge(ms)[0] for name, ms in blocks.items()}
    curves = {}
    for name, model in models.items():
        model.load_state_dict(start_state[name])
        curves[name] = train(model, problem, steps=curve_steps)["loss"]
    out = {
        "workload": {"name": "P1", "width": list(width), "points": points, "reps": reps,
                     "preact_trainable": preact_trainable, "boundary_points":
                     problem.boundary_points, "dtype": str(problem.dtype), "loss": "mean (u_xx + u_yy - f)^2 + "
                     "mean u_boundary^2"},
        "step_seconds": {name: {"median": m.median, "iqr": m.iqr, "runs": len(m.times)} for name, m in times.items()},
        "loss_curves": curves,
    }
    if "qkan exact" in models:
        out["speedup_vs_qkan_exact"] = times["qkan exact"].median / times["qkan_fast"].median
        out["loss_curve_max_rel_diff"] = max(abs(a - b) / abs(b) for a, b in zip(curves["qkan_fast"],
                                                                                 curves["qkan exact"]))
    return out


def format_benchmark(result: dict) -> str:
    w = result["workload"]
    enc = ", trainable encodings" if w.get("preact_trainable") else ""
    lines = [f"P1: 2-D Poisson PINN, QKAN({w['width']}), R={w['reps']}{enc}, {w['points']} collocation points, "
             f"one training step (forward, u_xx + u_yy with the graph kept, parameter gradient)"]
    for name, s in result["step_seconds"].items():
        lines.append(f"  {name:12s} median {s['median'] * 1e3:9.1f} ms per step (IQR {s['iqr'] * 1e3:.1f} ms, "
                     f"{s['runs']} runs)")
    if "speedup_vs_qkan_exact" in result:
        lines.append(f"  qkan_fast is {result['speedup_vs_qkan_exact']:.1f}x faster than qkan exact; loss curves over "
                     f"{len(result['loss_curves']['qkan_fast'])} Adam steps agree to "
                     f"{result['loss_curve_max_rel_diff']:.1e} (largest relative difference)")
    return "\n".join(lines)
