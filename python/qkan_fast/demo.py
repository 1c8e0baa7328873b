"""`qkan-fast demo`: QKAN-LSTM, HQKAN-LSTM and classical LSTMs on the QKAN-LSTM paper's two series.

The package generates both series itself (docs/math.md, "Networks"; nothing is downloaded):
- damped pendulum: theta'' = -(b/m) theta' - (g/l) sin theta, b = 0.15, g = 9.81, l = m = 1,
  theta(0) = 0, theta'(0) = 3, integrated by RK4 on t in [0, 20] at 240 points; the series is
  the angular velocity theta', min-max scaled to [-1, 1];
- Bessel J2 on x in [2, 100] at 256 points (J2 = (2/x) J1 - J0), scaled to [-1, 1].
Windows of 4 points predict the next one; the windows are split 80/20 in time order; every model
is an LSTM-type recurrence over the window followed by Linear(H -> 1), trained with MSE and Adam
(lr 1e-3, mini-batches of 16) for `epochs` epochs, every model from the same seed and on the
same batch order.

Models (their sizes are fixed before training; see the table for the parameter counts):
- "LSTM": torch.nn.LSTM with hidden size `hidden` (the classical baseline);
- "QKAN-LSTM": our QKANLSTM (pz, reps 2) with hidden size `qkan_hidden` (default hidden // 4,
  at least 2): a QKAN gate map has several parameters per edge where an LSTM has one weight, so
  the parameter savings the paper reports need a smaller hidden state;
- "HQKAN-LSTM": our HQKANLSTM with hidden size `hidden` (its gate map goes through a latent QKAN);
- "LSTM (matched)": nn.LSTM with the hidden size whose parameter count is closest to the
  QKAN-LSTM's: the control that separates "QKAN gates" from "a smaller model".
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import _machine
from ._progress import Progress
from .networks import HQKANLSTM, QKANLSTM

__all__ = [
    "bessel_j2",
    "bessel_series",
    "damped_pendulum",
    "make_windows",
    "minmax_scale",
    "pendulum_series",
    "run_demo",
]

PAPER_HEADLINE = "QKAN-LSTM: 79% fewer trainable parameters than a classical LSTM at better test MSE"
WINDOW = 4
BATCH = 16
LR = 1e-3
TRAIN_FRACTION = 0.8


# --------------------------------------------------------------------------------------------
# data


def damped_pendulum(n: int = 240, t_max: float = 20.0, b: float = 0.15, g: float = 9.81, l: float = 1.0,
                    m: float = 1.0, theta0: float = 0.0, omega0: float = 3.0, substeps: int = 8):
    """RK4 solution of theta'' = -(b/m) theta' - (g/l) sin theta at n points of [0, t_max].
    Returns float64 tensors (t, theta, omega). Each sample interval is integrated in `substeps`
    RK4 steps (accuracy only; the samples are the same points)."""

    def f(th: float, om: float):
        return om, -(b / m) * om - (g / l) * math.sin(th)

    t = torch.linspace(0.0, t_max, n, dtype=torch.float64)
    theta, omega = [theta0], [omega0]
    th, om = theta0, omega0
    for k in range(1, n):
        h = float(t[k] - t[k - 1]) / substeps
        for _ in range(substeps):
            k1 = f(th, om)
            k2 = f(th + 0.5 * h * k1[0], om + 0.5 * h * k1[1])
            k3 = f(th + 0.5 * h * k2[0], om + 0.5 * h * k2[1])
            k4 = f(th + h * k3[0], om + h * k3[1])
            th += h / 6.0 * (k1[0] + 2 * k2[0] + 2 * k3[0] + k4[0])
            om += h / 6.0 * (k1[1] + 2 * k2[1] + 2 * k3[1] + k4[1])
        theta.append(th)
        omega.append(om)
    return t, torch.tensor(theta, dtype=torch.float64), torch.tensor(omega, dtype=torch.float64)


def bessel_j2(x: Tensor) -> Tensor:
    """J2(x) = (2/x) J1(x) - J0(x) (x != 0), from torch.special's J0 and J1."""
    return 2.0 / x * torch.special.bessel_j1(x) - torch.special.bessel_j0(x)


def minmax_scale(s: Tensor) -> Tensor:
    """Affine map of s onto [-1, 1] (min -> -1, max -> 1)."""
    lo, hi = s.min(), s.max()
    return 2.0 * (s - lo) / (hi - lo) - 1.0


def pendulum_series(n: int = 240) -> Tensor:
    """The damped pendulum's angular velocity at n points, scaled to [-1, 1] (float64)."""
    return minmax_scale(damped_pendulum(n)[2])


def bessel_series(n: int = 256) -> Tensor:
    """J2 on n points of [2, 100], scaled to [-1, 1] (float64)."""
    return minmax_scale(bessel_j2(torch.linspace(2.0, 100.0, n, dtype=torch.float64)))


def make_windows(series: Tensor, window: int = WINDOW):
    """Windows of `window` consecutive points (N, window, 1) and the next point (N, 1)."""
    n = series.shape[0] - window
    if n < 2:
        raise ValueError(f"a series of {series.shape[0]} points has too few windows of {window}")
    idx = torch.arange(window)[None, :] + torch.arange(n)[:, None]
    return series[idx].unsqueeze(-1), series[window:].unsqueeze(-1)


# --------------------------------------------------------------------------------------------
# models


class SequenceRegressor(nn.Module):
    """A recurrent model over the window (batch_first) and Linear(H -> 1) on its last output."""

    def __init__(self, rnn: nn.Module, hidden: int):
        super().__init__()
        self.rnn = rnn
        self.head = nn.Linear(hidden, 1)

    def forward(self, x: Tensor) -> Tensor:  # (B, L, 1) -> (B, 1)
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


def _trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def lstm_params(hidden: int, input_size: int = 1) -> int:
    """Trainable parameters of nn.LSTM(input_size, hidden) plus the Linear(hidden -> 1) head."""
    return 4 * hidden * (input_size + hidden) + 8 * hidden + hidden + 1


def matched_lstm_hidden(target_params: int) -> int:
    """The nn.LSTM hidden size whose parameter count (with the head) is closest to target_params."""
    best = min(range(1, 513), key=lambda h: (abs(lstm_params(h) - target_params), h))
    return best


def _build(kind: str, hidden: int) -> nn.Module:
    if kind == "qkan":
        rnn = QKANLSTM(1, hidden, batch_first=True, reps=2, ansatz="pz")
    elif kind == "hqkan":
        rnn = HQKANLSTM(1, hidden, batch_first=True, reps=2, ansatz="pz")
    else:
        rnn = nn.LSTM(1, hidden, batch_first=True)
    return SequenceRegressor(rnn, hidden)


# --------------------------------------------------------------------------------------------
# training


def _train_one(model: nn.Module, data: dict, epochs: int, seed: int, desc: str, progress: bool) -> dict:
    x_tr, y_tr, x_te, y_te = data["x_train"], data["y_train"], data["x_test"], data["y_test"]
    # warm-up: one forward/backward outside the clock (first calls of an op pay one-time set-up costs)
    F.mse_loss(model(x_tr[:BATCH]), y_tr[:BATCH]).backward()
    model.zero_grad(set_to_none=True)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    gen = torch.Generator().manual_seed(seed)  # the same batch order for every model
    bar = Progress(epochs, desc, progress)
    losses = []
    train_seconds = 0.0
    for _ in range(epochs):
        model.train()
        start = time.perf_counter()
        perm = torch.randperm(x_tr.shape[0], generator=gen)
        total = 0.0
        for k in range(0, x_tr.shape[0], BATCH):
            idx = perm[k:k + BATCH]
            opt.zero_grad(set_to_none=True)
            loss = F.mse_loss(model(x_tr[idx]), y_tr[idx])
            loss.backward()
            opt.step()
            total += float(loss.detach()) * idx.shape[0]
        train_seconds += time.perf_counter() - start
        losses.append(total / x_tr.shape[0])
        bar.step(f"loss {losses[-1]:.2e}")
    bar.close()
    model.eval()
    with torch.no_grad():
        pred_tr, pred_te = model(x_tr), model(x_te)
    return dict(
        train_mse=float(F.mse_loss(pred_tr, y_tr)),
        test_mse=float(F.mse_loss(pred_te, y_te)),
        sec_per_epoch=train_seconds / max(1, epochs),
        loss_curve=losses,
        predictions=torch.cat([pred_tr, pred_te]).squeeze(-1).tolist(),
    )


def _datasets() -> dict:
    out = {}
    for name, series in (("pendulum", pendulum_series()), ("bessel_j2", bessel_series())):
        series = series.to(torch.float32)
        x, y = make_windows(series)
        n_train = int(round(TRAIN_FRACTION * x.shape[0]))
        out[name] = dict(series=series, x_train=x[:n_train], y_train=y[:n_train], x_test=x[n_train:],
                         y_test=y[n_train:])
    return out


def _print_table(results: dict, stream) -> None:
    head = f"{'dataset':<10} {'model':<15} {'hidden':>6} {'params':>7} {'train MSE':>10} {'test MSE':>10} {'s/epoch':>8}"
    print(head, file=stream)
    print("-" * len(head), file=stream)
    for dname, d in results["datasets"].items():
        for m in d["models"]:
            print(f"{dname:<10} {m['name']:<15} {m['hidden']:>6} {m['params']:>7} {m['train_mse']:>10.3e} "
                  f"{m['test_mse']:>10.3e} {m['sec_per_epoch']:>8.3f}", file=stream)
    print(file=stream)
    for line in results["summary"]:
        print(line, file=stream)


def _summary(results: dict) -> list:
    lines = [f"paper: {PAPER_HEADLINE}."]
    for dname, d in results["datasets"].items():
        by = {m["name"]: m for m in d["models"]}
        base = by["LSTM"]
        for name in ("QKAN-LSTM", "HQKAN-LSTM"):
            m = by[name]
            fewer = 100.0 * (1.0 - m["params"] / base["params"])
            verdict = "lower" if m["test_mse"] < base["test_mse"] else "higher"
            lines.append(
                f"{dname}: {name} has {abs(fewer):.0f}% {'fewer' if fewer >= 0 else 'more'} parameters than LSTM "
                f"({m['params']} vs {base['params']}) and a {verdict} test MSE "
                f"({m['test_mse']:.3e} vs {base['test_mse']:.3e}, ratio {m['test_mse'] / base['test_mse']:.2f})"
            )
        if "LSTM (matched)" in by:
            mm, q = by["LSTM (matched)"], by["QKAN-LSTM"]
            verdict = "lower" if q["test_mse"] < mm["test_mse"] else "higher"
            lines.append(
                f"{dname}: against an LSTM of about its size ({mm['params']} parameters), QKAN-LSTM has a {verdict} "
                f"test MSE ({q['test_mse']:.3e} vs {mm['test_mse']:.3e})"
            )
    lines.append("(one seed and few epochs: differences within a factor ~2 are not significant; rerun with --seed)")
    return lines


def _save_plot(results: dict, data: dict, path: str) -> Optional[str]:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    names = list(results["datasets"])
    fig = Figure(figsize=(11, 3.6 * len(names)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(names), 1, squeeze=False)[:, 0]
    for ax, dname in zip(axes, names):
        d, series = results["datasets"][dname], data[dname]["series"]
        steps = torch.arange(series.shape[0])
        ax.plot(steps.numpy(), series.numpy(), color="black", lw=2.0, label="truth")
        targets = steps[WINDOW:].numpy()
        for k, m in enumerate(d["models"]):
            ax.plot(targets, m["predictions"], lw=1.1, color=f"C{k}",
                    label=f"{m['name']} ({m['params']} params, test MSE {m['test_mse']:.2e})")
        ax.axvline(WINDOW + d["n_train"] - 0.5, color="0.5", ls="--", lw=1)
        ax.set_title(f"{dname}: one-step-ahead predictions (test to the right of the dashed line)")
        ax.set_xlabel("time step")
        ax.set_ylabel("scaled value")
        ax.legend(fontsize=7, loc="upper right")
    fig.savefig(path, dpi=110)
    return path


def run_demo(epochs: int = 30, hidden: int = 16, seed: int = 0, out: Optional[str] = "qkan_fast_demo",
             quick: bool = False, progress: bool = True, qkan_hidden: Optional[int] = None,
             threads: Optional[int] = None, verbose: bool = True) -> dict:
    """Train the four models on both series and return the results (also written to out/results.json,
    with out/predictions.png when matplotlib is installed; out=None writes nothing).

    `quick`: caps epochs at 2 and hidden at 4: a smoke run of a few seconds.
    `threads`: torch.set_num_threads for the run (restored afterwards). Returns a dict with
    "config", "datasets" (per dataset: n_train, n_test and per model name, hidden, params,
    train_mse, test_mse, sec_per_epoch, loss_curve, predictions), "summary", "files", "machine"
    (CPU, commit, threads, load average before and after), "seconds" (wall) and "cpu_seconds".
    """
    if quick:
        epochs = min(epochs, 2)
        hidden = min(hidden, 4)
    for name, v in (("epochs", epochs), ("hidden", hidden)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if qkan_hidden is None:
        qkan_hidden = max(2, hidden // 4)
    for name, v in (("qkan_hidden", qkan_hidden), ("threads", 1 if threads is None else threads)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    machine = dict(_machine.describe(torch.device("cpu")), loadavg_before=_machine.load_average())
    start, cpu_start = time.perf_counter(), time.process_time()
    try:
        data = _datasets()
        matched = matched_lstm_hidden(_trainable(_build("qkan", qkan_hidden)))
        specs = [("QKAN-LSTM", "qkan", qkan_hidden), ("HQKAN-LSTM", "hqkan", hidden), ("LSTM", "lstm", hidden),
                 ("LSTM (matched)", "lstm", matched)]
        results = dict(
            config=dict(epochs=epochs, hidden=hidden, qkan_hidden=qkan_hidden, matched_lstm_hidden=matched,
                        seed=seed, window=WINDOW, batch=BATCH, lr=LR, train_fraction=TRAIN_FRACTION,
                        threads=torch.get_num_threads(), quick=quick, qkan_lstm="pz, reps=2, fast_measure",
                        torch=torch.__version__),
            datasets={},
        )
        for dname, d in data.items():
            models = []
            for label, kind, h in specs:
                torch.manual_seed(seed)
                model = _build(kind, h)
                res = _train_one(model, d, epochs, seed, f"{dname} | {label}", progress)
                models.append(dict(name=label, hidden=h, params=_trainable(model), **res))
            results["datasets"][dname] = dict(n_train=d["x_train"].shape[0], n_test=d["x_test"].shape[0],
                                              models=models)
        results["summary"] = _summary(results)
        results["machine"] = dict(machine, loadavg_after=_machine.load_average())
        results["files"] = {}
        if out is not None:
            os.makedirs(out, exist_ok=True)
            png = _save_plot(results, data, os.path.join(out, "predictions.png"))
            results["files"]["png"] = png
            if png is None:
                results["summary"].append("matplotlib is not installed: no PNG (pip install qkan_fast[plot])")
            results["files"]["json"] = os.path.join(out, "results.json")
        results["seconds"] = time.perf_counter() - start
        # CPU time of the whole process (all threads): on a shared machine wall time also counts the others
        results["cpu_seconds"] = time.process_time() - cpu_start
        if out is not None:
            with open(results["files"]["json"], "w") as fh:
                json.dump(results, fh, indent=1)
    finally:
        torch.set_num_threads(old_threads)
    if verbose:
        print(file=sys.stdout)
        _print_table(results, sys.stdout)
        for kind, path in results["files"].items():
            if path:
                print(f"wrote {path}", file=sys.stdout)
        print(f"total {results['seconds']:.1f} s ({results['cpu_seconds']:.1f} s CPU time)", file=sys.stdout)
    return results
