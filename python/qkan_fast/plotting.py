"""Draw every edge's learned activation of a QKAN to a PNG (matplotlib is the optional `plot` extra).

    import qkan_fast
    from qkan_fast.plotting import plot
    model = qkan_fast.QKAN([2, 3, 1])
    plot(model, "edges.png", x=train_x)     # one panel per edge, one block of panels per layer

Works on a QKANLayer, a QKAN and any module that contains QKANLayers (HQKAN, QKANLSTM, ...): each
QKANLayer found by `model.modules()` gets a block of out_dim x in_dim panels; panel (o, i) shows
the edge's function of its input x_i.
"""

from __future__ import annotations

import os
from typing import Optional, Union

import torch
from torch import Tensor, nn

from .modules import QKANLayer

__all__ = ["plot"]

_KINDS = ("phi", "edge")


def _require_matplotlib():
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError(
            "qkan_fast.plotting.plot needs matplotlib, which is the optional `plot` extra: "
            "pip install qkan_fast[plot]  (or: pip install matplotlib)"
        ) from err
    return matplotlib, Figure, FigureCanvasAgg


def _qkan_layers(model: nn.Module) -> list:
    if isinstance(model, QKANLayer):
        return [model]
    if not isinstance(model, nn.Module):
        raise TypeError(f"plot expects a QKANLayer, a QKAN or a module containing QKANLayers, got {type(model).__name__}")
    layers = [m for m in model.modules() if isinstance(m, QKANLayer)]
    if not layers:
        raise ValueError(f"{type(model).__name__} contains no QKANLayer to plot")
    return layers


@torch.no_grad()
def _layer_inputs(model: nn.Module, layers: list, x: Tensor) -> dict:
    """Run the model on x and record each QKANLayer's inputs (all calls, e.g. every LSTM step)."""
    seen = {id(layer): [] for layer in layers}
    hooks = [layer.register_forward_pre_hook(lambda mod, args: seen[id(mod)].append(args[0].detach()))
             for layer in layers]
    try:
        model(x)
    finally:
        for h in hooks:
            h.remove()
    return {key: torch.cat(v) for key, v in seen.items() if v}


def plot(
    model_or_layer: nn.Module,
    path: Union[str, os.PathLike],
    x: Optional[Tensor] = None,
    *,
    kind: str = "phi",
    n_points: int = 200,
    input_range: tuple = (-1.0, 1.0),
    max_panels: int = 24,
    panel_size: float = 1.3,
    dpi: int = 100,
    title: Optional[str] = None,
) -> str:
    """Draw every edge's learned activation of every QKAN layer in a model into one PNG.

    Each :class:`~qkan_fast.QKANLayer` found in ``model_or_layer.modules()`` gets a block of
    ``out_dim x in_dim`` panels; panel ``(o, i)`` shows the edge's function of input ``i``.
    Pruned edges (mask 0) are drawn greyed out. The model is evaluated in eval mode and put back
    into its previous mode afterwards. Needs matplotlib (``pip install "qkan_fast[plot]"``).

    Args:
        model_or_layer (torch.nn.Module): a :class:`~qkan_fast.QKANLayer`, a
            :class:`~qkan_fast.QKAN` or any module containing QKAN layers (HQKAN, QKANLSTM, ...).
        path (str | os.PathLike): the PNG file to write.
        x (torch.Tensor | None): a sample input of the model (its usual shape and dtype). Each
            layer is then drawn over the range its inputs take while the model runs on ``x``
            (recorded with hooks, every call counted, e.g. every LSTM step), with the samples as
            ticks along the axis. Without ``x`` every layer is drawn over ``input_range``.
        kind (str): ``"phi"`` (default) draws the raw circuit value ``phi_oi(t)`` in ``[-1, 1]``
            (``layer.postacts``); ``"edge"`` the whole contribution to the output,
            ``mask * (pw * (phi + pb) + bw * base_activation(t))`` (``layer.forward_no_sum``).
        n_points (int): points per curve, at least 2.
        input_range (tuple[float, float]): the input range drawn without ``x`` (``px`` layers
            need a range inside ``[-1, 1]``).
        max_panels (int): a layer wider than this shows only its first ``max_panels`` inputs and
            outputs.
        panel_size (float): size of one panel in inches.
        dpi (int): resolution of the PNG.
        title (str | None): a title above the figure.

    Returns:
        str: the path written.

    Raises:
        ImportError: matplotlib is not installed.
        TypeError: ``model_or_layer`` is not a ``torch.nn.Module``.
        ValueError: the model contains no QKAN layer, or ``kind`` / ``n_points`` is invalid.

    Example:
        >>> model = qkan_fast.QKAN([2, 3, 1])
        >>> qkan_fast.plot(model, "edges.png", x=torch.rand(64, 2))  # doctest: +SKIP
        'edges.png'
    """
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
    if not isinstance(n_points, int) or n_points < 2:
        raise ValueError(f"n_points must be an int >= 2, got {n_points!r}")
    _, Figure, FigureCanvasAgg = _require_matplotlib()
    model = model_or_layer
    layers = _qkan_layers(model)
    was_training = model.training
    model.eval()  # batchnorm: running statistics, not the grid's
    try:
        inputs = _layer_inputs(model, layers, x) if x is not None else {}
        blocks = []
        for k, layer in enumerate(layers):
            ref = layer.theta
            I, O = min(layer.in_dim, max_panels), min(layer.out_dim, max_panels)
            seen = inputs.get(id(layer))
            if seen is not None:
                seen = seen.reshape(-1, layer.in_dim)[:, :I].to(ref.dtype)
                lo, hi = seen.amin(dim=0), seen.amax(dim=0)
                pad = 0.05 * (hi - lo).clamp_min(1e-6)
                lo, hi = lo - pad, hi + pad
                if layer.ansatz == "px":
                    lo, hi = lo.clamp(-1.0, 1.0), hi.clamp(-1.0, 1.0)
            else:
                lo = torch.full((I,), float(input_range[0]), dtype=ref.dtype, device=ref.device)
                hi = torch.full((I,), float(input_range[1]), dtype=ref.dtype, device=ref.device)
            steps = torch.linspace(0.0, 1.0, n_points, dtype=ref.dtype, device=ref.device)
            grid = lo[None, :] + steps[:, None] * (hi - lo)[None, :]  # (n_points, I)
            if I < layer.in_dim:  # the panels drawn read only the first I inputs
                grid = torch.cat([grid, grid.new_zeros(n_points, layer.in_dim - I)], dim=1)
            with torch.no_grad():
                values = layer.postacts(grid) if kind == "phi" else layer.forward_no_sum(grid)  # (n, O, I)
            blocks.append(dict(
                index=k, layer=layer, I=I, O=O, grid=grid[:, :I].cpu(), values=values[:, :O, :I].cpu(),
                mask=layer.mask[:O, :I].detach().cpu(), samples=None if seen is None else seen.cpu(),
            ))
    finally:
        model.train(was_training)

    cols = max(b["I"] for b in blocks)
    rows = sum(b["O"] for b in blocks)
    fig = Figure(figsize=(panel_size * cols + 0.6, panel_size * rows + 0.5 * len(blocks) + 0.4), dpi=dpi,
                 layout="constrained")
    FigureCanvasAgg(fig)
    subfigs = fig.subfigures(len(blocks), 1, height_ratios=[b["O"] + 0.4 for b in blocks], squeeze=False)[:, 0]
    ylabel = "phi" if kind == "phi" else "edge"
    for sub, b in zip(subfigs, blocks):
        layer = b["layer"]
        sub.suptitle(
            f"layer {b['index']}: {layer.in_dim} -> {layer.out_dim}, {layer.ansatz}, reps={layer.reps}"
            + ("" if b["I"] == layer.in_dim and b["O"] == layer.out_dim else f" (first {b['O']} x {b['I']} edges)"),
            fontsize=9,
        )
        axes = sub.subplots(b["O"], cols, squeeze=False)
        for o in range(b["O"]):
            for i in range(cols):
                ax = axes[o][i]
                if i >= b["I"]:
                    ax.set_axis_off()
                    continue
                pruned = float(b["mask"][o, i]) == 0.0
                ax.plot(b["grid"][:, i].numpy(), b["values"][:, o, i].numpy(), lw=1.2,
                        color="0.75" if pruned else "C0")
                if b["samples"] is not None and not pruned:
                    ax.plot(b["samples"][:, i].numpy(), [0.0] * b["samples"].shape[0], "|", ms=4, color="C1", alpha=0.3,
                            transform=ax.get_xaxis_transform())
                if kind == "phi":
                    ax.set_ylim(-1.05, 1.05)
                if pruned:
                    ax.text(0.5, 0.5, "pruned", transform=ax.transAxes, ha="center", va="center", fontsize=7, color="0.5")
                ax.tick_params(labelsize=6)
                if o == b["O"] - 1:
                    ax.set_xlabel(f"x{i}", fontsize=7)
                if i == 0:
                    ax.set_ylabel(f"{ylabel}, out {o}", fontsize=7)
    if title:
        fig.suptitle(title)
    path = os.fspath(path)
    fig.savefig(path)
    return path
