"""Workloads L1 and LD of `qkan-fast bench`: a QKAN-LSTM recurrence's forward+backward with the
fused recurrence (QKANLSTM's default), the same model on its per-step Python loop
(``fused=False``), and ``torch.nn.LSTM`` of the same hidden size, side by side in one process.

- L1: batch 64, window 4, d_in 1, hidden 16, reps 2 (docs/benchmarks.md);
- LD: the demo's shapes, batch 2, window 4, d_in 1, hidden 5, reps 2.

Timing as `qkan-fast bench`: torch.utils.benchmark `blocked_autorange` blocks, the three models
(and the fused model's forward alone, under no_grad) interleaved round by round, merged per model
(median). Parity: the largest difference of the
outputs and of every gradient between the fused recurrence and the loop, relative to each tensor's scale.
"""

from __future__ import annotations

import copy
from typing import Dict, Sequence

import torch
from torch import nn

from .networks import QKANLSTM

WORKLOADS = {  # name: (batch, window, d_in, hidden, reps)
    "L1": (64, 4, 1, 16, 2),
    "LD": (2, 4, 1, 5, 2),
}


def _step(model: nn.Module, x: torch.Tensor):
    out, (h, c) = model(x)
    (out.sum() + c.sum()).backward()
    return out


def _forward(model: nn.Module, x: torch.Tensor):
    with torch.no_grad():
        return model(x)


def _parity(fused: nn.Module, loop: nn.Module, x: torch.Tensor) -> float:
    """Largest |fused - loop| over the output and every gradient, each relative to the loop's
    largest magnitude in that tensor (float32 sums over B * L samples reach hundreds)."""
    for m in (fused, loop):
        m.zero_grad(set_to_none=True)
    pairs = [(_step(fused, x).detach(), _step(loop, x).detach())]
    pairs += [(pf.grad, pl.grad) for pf, pl in zip(fused.parameters(), loop.parameters()) if pf.grad is not None]
    return max(float((a - b).abs().max() / b.abs().max().clamp_min(1e-30)) for a, b in pairs)


def benchmark(names: Sequence[str] = ("LD", "L1"), rounds: int = 5, min_run_time: float = 1.0, seed: int = 0,
              progress=print) -> dict:
    from torch.utils import benchmark as tb

    results: Dict[str, dict] = {}
    for name in names:
        B, L, d, H, reps = WORKLOADS[name]
        fused = QKANLSTM(d, H, reps=reps, seed=seed)
        loop = copy.deepcopy(fused)
        loop.fused = False
        torch.manual_seed(seed)
        lstm = nn.LSTM(d, H)
        x = torch.randn(L, B, d, generator=torch.Generator().manual_seed(seed))
        models = {"qkan_fast fused": fused, "qkan_fast loop": loop, "nn.LSTM": lstm}
        # forward+backward of each model, and the forward alone of the fused one (how the time splits)
        runs = {label: (_step, model) for label, model in models.items()}
        runs["qkan_fast fused, forward only"] = (_forward, fused)
        blocks = {k: [] for k in runs}
        for r in range(rounds):
            for label, (fn, model) in runs.items():
                timer = tb.Timer("fn(model, x)", globals={"fn": fn, "model": model, "x": x}, label=name,
                                 sub_label=label, num_threads=torch.get_num_threads())
                blocks[label].append(timer.blocked_autorange(min_run_time=min_run_time / rounds))
            progress(f"{name}: round {r + 1}/{rounds} timed")
        med = {k: tb.Measurement.merge(ms)[0] for k, ms in blocks.items()}
        fwd = med.pop("qkan_fast fused, forward only")
        results[name] = {
            "shape": {"batch": B, "window": L, "d_in": d, "hidden": H, "reps": reps, "ansatz": "pz",
                      "fast_measure": True, "engine": "auto", "dtype": "float32"},
            "forward_backward_seconds": {k: {"median": m.median, "iqr": m.iqr, "runs": len(m.times)}
                                         for k, m in med.items()},
            "fused_forward_seconds": {"median": fwd.median, "iqr": fwd.iqr, "runs": len(fwd.times)},
            "fused_over_nn_lstm": med["qkan_fast fused"].median / med["nn.LSTM"].median,
            "loop_over_fused": med["qkan_fast loop"].median / med["qkan_fast fused"].median,
            "max_rel_diff_fused_vs_loop": _parity(fused, loop, x),
        }
    return {"workloads": results, "threads": torch.get_num_threads()}


def format_benchmark(result: dict) -> str:
    lines = []
    for name, r in result["workloads"].items():
        s = r["shape"]
        lines.append(f"{name}: QKAN-LSTM recurrence forward+backward, batch {s['batch']}, window {s['window']}, "
                     f"d_in {s['d_in']}, hidden {s['hidden']}, reps {s['reps']} ({result['threads']} threads)")
        for label, t in r["forward_backward_seconds"].items():
            lines.append(f"  {label:16s} median {t['median'] * 1e3:8.3f} ms (IQR {t['iqr'] * 1e3:.3f} ms, "
                         f"{t['runs']} runs)")
        lines.append(f"  (the fused forward alone, no grad: {r['fused_forward_seconds']['median'] * 1e3:.3f} ms)")
        lines.append(f"  fused = {r['fused_over_nn_lstm']:.2f}x nn.LSTM's time; the loop takes "
                     f"{r['loop_over_fused']:.2f}x the fused time; fused vs loop agree to "
                     f"{r['max_rel_diff_fused_vs_loop']:.1e} (largest difference / largest value, per tensor)")
    return "\n".join(lines)
