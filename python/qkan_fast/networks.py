"""Networks built from DARUAN layers (docs/math.md, "Networks"), all on the fused engines.

- `DARUAN(dim)`: the element-wise activation, one circuit per feature: y[..., i] = phi_i(x[..., i]).
  A drop-in for `nn.SiLU` / `nn.GELU` (inputs of any leading shape).
- `HQKAN(d_in, d_out)`: hybrid QKAN, Linear(d_in -> a) -> QKAN([a, b]) -> Linear(b -> d_out) with
  a = ceil(log2 d_in), b = ceil(log2 d_out) by default (a latent KAN).
- `QKANLSTM` / `HQKANLSTM`: LSTMs whose gate map is one QKANLayer (or one HQKAN) of out size 4H,
  with the interface of `torch.nn.LSTM`.

Input ranges: the `px` ansatz encodes RX(arccos(e)) and accepts only encoded inputs in [-1, 1]
(the engines raise a ValueError otherwise). The default `pz` (and `rpz`, `real`, `mix`) take any
real input. In the LSTMs the hidden part of z_t = [x_t, h_{t-1}] always lies in (-1, 1); with
`px` the caller must keep x_t in [-1, 1] too (e.g. min-max scale or tanh it). An HQKAN's latent
is the output of a Linear layer and is unbounded: use `px` there only behind a bounded map.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import engines, recurrence
from .common import canonical_ansatz, check_engine, seeded_generator, theta_shape
from .modules import QKAN, QKANLayer

__all__ = ["DARUAN", "HQKAN", "QKANLSTM", "HQKANLSTM", "hqkan_latent"]


def _positive(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


# --------------------------------------------------------------------------------------------
# DARUAN: the element-wise activation


class DARUAN(nn.Module):
    """Element-wise quantum-inspired activation: one single-qubit circuit per feature.

    Feature ``i`` goes through its own data re-uploading circuit, ``y[..., i] = phi_i(x[..., i])``
    with ``phi`` in ``[-1, 1]`` (docs/math.md, "One edge"). Usable like ``nn.SiLU`` for inputs of
    shape ``(..., dim)``. It is a QKAN layer that keeps only the diagonal edges and no
    post-activation terms, evaluated by one kernel call.

    Parameters: ``theta`` ``(dim, Rt, P)`` (``Rt = reps + 1``, or ``reps`` for ``real``; ``P`` = 2
    for pz and mix, else 1), ``preacts_weight`` and ``preacts_bias`` ``(dim, reps)``, 1 and 0,
    read only with ``preact_trainable=True`` or for ``rpz``.

    Args:
        dim (int): number of features (size of the last input dimension).
        reps (int): repetitions of the data gate.
        ansatz (str): ``"pz"``, ``"rpz"``, ``"px"``, ``"real"`` or ``"mix"`` (or an alias).
            ``px`` needs inputs in ``[-1, 1]``.
        fast_measure (bool): ``|alpha| - |beta|`` (True) or the Born value (False).
        preact_trainable (bool): train the encodings ``w * x + b``.
        engine (str): ``"auto"``, ``"circuit"``, ``"spectral"`` or ``"reference"`` (``auto`` and
            ``spectral`` run the circuit kernels here: see docs/engines.md).
        theta_init (str): ``"small_gaussian"`` (default: ``N(0, 1/reps)``, independent of
            ``dim``, so every feature starts with a non-trivial function of its input) or
            ``"xavier"`` (qkan's layer initialisation applied to a ``(1, dim, Rt, P)`` tensor;
            its scale shrinks as ``dim`` grows and the activations start almost flat).
        seed (int | None): if given, initial values are drawn from a local
            ``torch.Generator`` seeded with it (the values ``torch.manual_seed(seed)`` would give;
            the global RNG is not touched).
        generator (torch.Generator | None): draw initial values from this generator instead of
            torch's global RNG (ignored when ``seed`` is given).
        device (torch.device | str | None): device of the parameters.
        dtype (torch.dtype | None): dtype of the parameters (default: torch's default dtype).

    Raises:
        ValueError: ``dim`` or ``reps`` is not a positive int, or an unknown ansatz, engine or
            ``theta_init``.

    Example:
        >>> act = qkan_fast.DARUAN(32, reps=2)
        >>> act(torch.randn(4, 10, 32)).shape
        torch.Size([4, 10, 32])
    """

    def __init__(
        self,
        dim: int,
        reps: int = 3,
        ansatz: str = "pz",
        fast_measure: bool = True,
        preact_trainable: bool = False,
        engine: str = "auto",
        theta_init: str = "small_gaussian",
        seed: Optional[int] = None,
        device=None,
        dtype: Optional[torch.dtype] = None,
        generator: Optional[torch.Generator] = None,
    ):
        super().__init__()
        self.dim = _positive("dim", dim)
        self.reps = _positive("reps", reps)
        self.ansatz = canonical_ansatz(ansatz)
        self.fast_measure = bool(fast_measure)
        self.preact_trainable = bool(preact_trainable)
        self.engine = check_engine(engine)
        if theta_init not in ("small_gaussian", "xavier"):
            raise ValueError(f"theta_init must be 'small_gaussian' or 'xavier', got {theta_init!r}")
        self.theta_init = theta_init
        factory = {"device": device, "dtype": dtype or torch.get_default_dtype()}
        rows, cols = theta_shape(self.ansatz, 1, dim, reps)[2:]
        encode_bias = self.preact_trainable or self.ansatz == "rpz"
        self.theta = nn.Parameter(torch.empty(dim, rows, cols, **factory))
        self.preacts_weight = nn.Parameter(torch.ones(dim, reps, **factory), requires_grad=self.preact_trainable)
        self.preacts_bias = nn.Parameter(torch.zeros(dim, reps, **factory), requires_grad=encode_bias)
        self.reset_parameters(generator if seed is None else seeded_generator(seed, self.theta.device))

    @torch.no_grad()
    def reset_parameters(self, generator: Optional[torch.Generator] = None) -> None:
        """Redraw ``theta`` by ``theta_init`` (from ``generator``, or torch's global RNG) and reset
        the encodings to ``w = 1``, ``b = 0``."""
        if self.theta_init == "xavier":
            nn.init.xavier_normal_(self.theta.view(1, *self.theta.shape), generator=generator)
        else:
            nn.init.normal_(self.theta, 0.0, 1.0 / math.sqrt(self.reps), generator=generator)
        self.preacts_weight.fill_(1.0)
        self.preacts_bias.zero_()

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, reps={self.reps}, ansatz={self.ansatz!r}, fast_measure={self.fast_measure}, "
            f"engine={self.engine!r}"
        )

    def forward(self, x: Tensor) -> Tensor:  # (..., dim) -> (..., dim)
        """Apply each feature's circuit to that feature.

        Args:
            x (torch.Tensor): ``(..., dim)``, any leading shape (an empty one included), float32
                or float64, dtype and device of the parameters.

        Returns:
            torch.Tensor: the shape of ``x``, values in ``[-1, 1]``.

        Raises:
            TypeError: ``x`` is not a tensor or has another dtype than the parameters.
            ValueError: the last dimension is not ``dim``, or a ``px`` input lies outside
                ``[-1, 1]``.

        Example:
            >>> qkan_fast.DARUAN(3)(torch.zeros(2, 3)).shape
            torch.Size([2, 3])
        """
        if not isinstance(x, Tensor):
            raise TypeError(f"DARUAN expects a torch.Tensor, got {type(x).__name__}")
        if x.dim() == 0 or x.shape[-1] != self.dim:
            raise ValueError(f"DARUAN expects x of shape (..., {self.dim}), got {tuple(x.shape)}")
        flat = x.reshape(-1, self.dim)
        phi = engines.daruan_postacts(
            flat, self.theta.unsqueeze(0), self.preacts_weight.unsqueeze(0), self.preacts_bias.unsqueeze(0),
            ansatz=self.ansatz, reps=self.reps, fast_measure=self.fast_measure,
            preact_trainable=self.preact_trainable, engine=self.engine,
        )  # (N, 1, dim)
        return phi.reshape(x.shape)


# --------------------------------------------------------------------------------------------
# HQKAN: Linear -> QKAN -> Linear


def hqkan_latent(d_in: int, d_out: int) -> Tuple[int, int]:
    """The default HQKAN latent sizes (a, b) = (ceil(log2 d_in), ceil(log2 d_out)), each at least 1."""
    return max(1, math.ceil(math.log2(d_in))), max(1, math.ceil(math.log2(d_out)))


def _linear(d_in: int, d_out: int, bias: bool, factory: dict, generator: Optional[torch.Generator]) -> nn.Linear:
    """nn.Linear, initialised as nn.Linear.reset_parameters does but from `generator` when given."""
    lin = nn.Linear(d_in, d_out, bias=bias, **factory) if generator is None else \
        nn.Linear(d_in, d_out, bias=bias, device="meta", dtype=factory["dtype"]).to_empty(device=factory["device"] or "cpu")
    if generator is not None:
        with torch.no_grad():
            nn.init.kaiming_uniform_(lin.weight, a=math.sqrt(5), generator=generator)
            if bias:
                bound = 1 / math.sqrt(d_in)
                nn.init.uniform_(lin.bias, -bound, bound, generator=generator)
    return lin


class HQKAN(nn.Module):
    """Hybrid QKAN (a latent KAN): ``Linear(d_in -> a) -> QKAN([a, b]) -> Linear(b -> d_out)``.

    Submodules: ``down`` (``nn.Linear(d_in, a)``), ``qkan`` (:class:`QKAN` ``[a, b]``), ``up``
    (``nn.Linear(b, d_out)``). The GPT-2 "HQKANsformer" MLP is
    ``HQKAN(768, 768, latent=(10, 10), reps=1)``.

    Args:
        d_in (int): input features.
        d_out (int): output features.
        latent (None | int | tuple[int, int]): the latent sizes ``(a, b)``; an int sets both;
            None (default) takes ``(ceil(log2 d_in), ceil(log2 d_out))``, each at least 1.
        reps (int): repetitions of the inner QKAN.
        bias (bool): biases in both Linear layers.
        device (torch.device | str | None): device of the parameters.
        dtype (torch.dtype | None): dtype of the parameters.
        seed (int | None): draw the initial values (both Linear layers and the QKAN's theta, in
            that order) from a local generator seeded with it; the global RNG is not touched.
        generator (torch.Generator | None): draw them from this generator instead.
        **qkan_kwargs: passed to the inner :class:`QKAN` (``ansatz``, ``fast_measure``,
            ``group``, the trainable flags, ``engine``, ...). The latent is a Linear output and
            unbounded: with ``ansatz="px"`` put a bounded map in front yourself.

    Raises:
        ValueError: a size that is not a positive int, or a ``latent`` that is not None, an int
            or a pair; invalid QKAN keywords as in :class:`QKAN`.

    Example:
        >>> model = qkan_fast.HQKAN(64, 10)
        >>> model.latent
        (6, 4)
        >>> model(torch.randn(8, 64)).shape
        torch.Size([8, 10])
    """

    def __init__(
        self,
        d_in: int,
        d_out: int,
        latent: Union[None, int, Sequence[int]] = None,
        reps: int = 3,
        bias: bool = True,
        device=None,
        dtype: Optional[torch.dtype] = None,
        seed: Optional[int] = None,
        generator: Optional[torch.Generator] = None,
        **qkan_kwargs,
    ):
        super().__init__()
        self.d_in = _positive("d_in", d_in)
        self.d_out = _positive("d_out", d_out)
        if latent is None:
            a, b = hqkan_latent(d_in, d_out)
        elif isinstance(latent, int) and not isinstance(latent, bool):
            a = b = latent
        else:
            try:
                a, b = latent
            except (TypeError, ValueError):
                raise ValueError(f"latent must be None, an int or a pair (a, b), got {latent!r}") from None
        self.latent = (_positive("latent a", a), _positive("latent b", b))
        factory = {"device": device, "dtype": dtype}
        # draws in construction order (down, the QKAN's theta, up) from one stream
        generator = generator if seed is None else seeded_generator(seed, device)
        self.down = _linear(d_in, a, bias, factory, generator)
        self.qkan = QKAN([a, b], reps=reps, device=device, dtype=dtype, generator=generator, **qkan_kwargs)
        self.up = _linear(b, d_out, bias, factory, generator)

    def extra_repr(self) -> str:
        return f"d_in={self.d_in}, d_out={self.d_out}, latent={self.latent}"

    def forward(self, x: Tensor) -> Tensor:  # (..., d_in) -> (..., d_out)
        """Down-project, run the latent QKAN, up-project.

        Args:
            x (torch.Tensor): ``(..., d_in)``, any leading shape, dtype and device of the
                parameters.

        Returns:
            torch.Tensor: ``(..., d_out)``.

        Raises:
            ValueError: ``x`` is not a tensor with last dimension ``d_in``.

        Example:
            >>> qkan_fast.HQKAN(16, 4)(torch.randn(2, 5, 16)).shape
            torch.Size([2, 5, 4])
        """
        if not isinstance(x, Tensor) or x.dim() == 0 or x.shape[-1] != self.d_in:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"HQKAN expects x of shape (..., {self.d_in}), got {got}")
        lead = x.shape[:-1]
        h = self.down(x.reshape(-1, self.d_in))
        h = self.qkan(h)
        return self.up(h).reshape(*lead, self.d_out)


# --------------------------------------------------------------------------------------------
# LSTMs with DARUAN gate maps


class _GatedLSTM(nn.Module):
    """nn.LSTM-style recurrence around one gate map per layer: [f, i, g, o] = gates(z_t) (+ bias),
    z_t = [x_t, h_{t-1}], c_t = sigmoid(f) c_{t-1} + sigmoid(i) tanh(g), h_t = sigmoid(o) tanh(c_t)."""

    _separate_bias = True
    fused = False  # run each layer's recurrence as one compiled call where it can (recurrence.py)

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, bias: bool, batch_first: bool,
                 dropout: float, device, dtype):
        super().__init__()
        self.input_size = _positive("input_size", input_size)
        self.hidden_size = _positive("hidden_size", hidden_size)
        self.num_layers = _positive("num_layers", num_layers)
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        if not (isinstance(dropout, (int, float)) and 0.0 <= dropout <= 1.0):
            raise ValueError(f"dropout must be a number in [0, 1], got {dropout!r}")
        self.dropout = float(dropout)
        H = hidden_size
        self.gates = nn.ModuleList(
            self._make_gates((input_size if layer == 0 else H) + H, 4 * H) for layer in range(num_layers)
        )
        if self.bias and self._separate_bias:
            factory = {"device": device, "dtype": dtype or torch.get_default_dtype()}
            self.gate_bias = nn.ParameterList(nn.Parameter(torch.zeros(4 * H, **factory)) for _ in range(num_layers))
        else:
            self.gate_bias = None

    def _make_gates(self, in_features: int, out_features: int) -> nn.Module:  # pragma: no cover
        raise NotImplementedError

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        return s

    def flatten_parameters(self) -> None:
        """No-op, for code written against nn.LSTM (whose cuDNN weights this call compacts)."""

    def gate_preactivations(self, layer: int, z: Tensor) -> Tensor:
        """The four gates ``[f, i, g, o]`` of one layer before their nonlinearities.

        Args:
            layer (int): the LSTM layer, ``0 <= layer < num_layers``.
            z (torch.Tensor): ``(B, d + H)``, the concatenation ``[x_t, h_{t-1}]`` (``d`` is
                ``input_size`` for layer 0, else ``hidden_size``).

        Returns:
            torch.Tensor: ``(B, 4H)``, the gate map's output plus the gate bias (if any).
        """
        y = self.gates[layer](z)
        if self.gate_bias is not None:
            y = y + self.gate_bias[layer]
        return y

    def forward(self, input: Tensor, hx: Optional[Tuple[Tensor, Tensor]] = None):
        """Run the recurrence over a sequence, as ``torch.nn.LSTM.forward``.

        Args:
            input (torch.Tensor): ``(L, B, input_size)``; ``(B, L, input_size)`` with
                ``batch_first``; ``(L, input_size)`` unbatched. With ``ansatz="px"`` the values
                must lie in ``[-1, 1]``.
            hx (tuple[torch.Tensor, torch.Tensor] | None): ``(h0, c0)``, each
                ``(num_layers, B, H)`` (``(num_layers, H)`` unbatched); zeros when None.

        Returns:
            tuple: ``output`` ``(L, B, H)`` (``(B, L, H)`` with ``batch_first``, ``(L, H)``
            unbatched), the last layer's ``h_t`` at every step, and ``(h_n, c_n)``, each
            ``(num_layers, B, H)``.

        Raises:
            TypeError: ``input`` is not a tensor, or ``hx`` is not a pair.
            ValueError: a wrong input or state shape, or a sequence of length 0.

        Example:
            >>> lstm = qkan_fast.QKANLSTM(1, 8, batch_first=True)
            >>> out, (h, c) = lstm(torch.randn(16, 4, 1))
            >>> out.shape, h.shape
            (torch.Size([16, 4, 8]), torch.Size([1, 16, 8]))
        """
        if not isinstance(input, Tensor):
            raise TypeError(f"{type(self).__name__} expects a torch.Tensor, got {type(input).__name__}")
        if input.dim() not in (2, 3) or input.shape[-1] != self.input_size:
            raise ValueError(
                f"{type(self).__name__} expects input of shape (L, B, {self.input_size}) "
                f"{'(batch_first: (B, L, ...)) ' if self.batch_first else ''}or unbatched (L, {self.input_size}), "
                f"got {tuple(input.shape)}"
            )
        batched = input.dim() == 3
        if not batched:
            input = input.unsqueeze(1)
        elif self.batch_first:
            input = input.transpose(0, 1)
        L, B, _ = input.shape
        if L == 0:
            raise ValueError("input has sequence length 0")
        H, N = self.hidden_size, self.num_layers
        if hx is None:
            h0 = c0 = input.new_zeros(N, B, H)
        else:
            try:
                h0, c0 = hx
            except (TypeError, ValueError):
                raise TypeError("hx must be a pair (h0, c0) of tensors") from None
            want = (N, B, H) if batched else (N, H)
            for name, t in (("h0", h0), ("c0", c0)):
                if not isinstance(t, Tensor) or tuple(t.shape) != want:
                    got = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
                    raise ValueError(f"{name} must have shape {want}, got {got}")
            if not batched:
                h0, c0 = h0.unsqueeze(1), c0.unsqueeze(1)
        layer_input = input
        h_n, c_n = [], []
        for layer in range(N):
            h, c = h0[layer], c0[layer]
            if self.fused and recurrence.unsupported_reason(self.gates[layer], layer_input) is None:
                bias = self.gate_bias[layer] if self.gate_bias is not None else None
                layer_input, c_seq = recurrence.lstm_layer(layer_input, h, c, self.gates[layer], bias)
                h_n.append(layer_input[-1])
                c_n.append(c_seq[-1])
                if self.dropout and self.training and layer < N - 1:
                    layer_input = F.dropout(layer_input, p=self.dropout, training=True)
                continue
            outs = []
            for t in range(L):
                # one fused gate-layer call per time step for the whole batch: out size 4H = [f, i, g, o]
                gates = self.gate_preactivations(layer, torch.cat([layer_input[t], h], dim=1))
                f, i, g, o = gates.chunk(4, dim=1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
                outs.append(h)
            h_n.append(h)
            c_n.append(c)
            layer_input = torch.stack(outs)
            if self.dropout and self.training and layer < N - 1:
                layer_input = F.dropout(layer_input, p=self.dropout, training=True)
        output = layer_input
        h_n, c_n = torch.stack(h_n), torch.stack(c_n)
        if not batched:
            return output.squeeze(1), (h_n.squeeze(1), c_n.squeeze(1))
        if self.batch_first:
            output = output.transpose(0, 1)
        return output, (h_n, c_n)


class QKANLSTM(_GatedLSTM):
    """QKAN-LSTM: an LSTM whose four gate maps are one QKAN layer per LSTM layer.

    With ``z_t = [x_t, h_{t-1}]`` (size ``d + H``), ``[f, i, g, o] = QKANLayer(d + H -> 4H)(z_t)``
    plus a bias, ``c_t = sigmoid(f) * c_{t-1} + sigmoid(i) * tanh(g)`` and
    ``h_t = sigmoid(o) * tanh(c_t)`` (docs/math.md, "Networks"). Each layer's whole recurrence runs
    as one compiled call forward and one backward (``fused``; docs/engines.md, "The fused
    recurrence"). The interface is that of ``torch.nn.LSTM``.

    Parameters: ``gates[l]`` (the :class:`QKANLayer` of layer ``l``, gate order
    ``[f, i, g, o]`` in its outputs) and ``gate_bias[l]`` (``(4H,)``, zeros at start; only with
    ``bias=True``).

    Args:
        input_size (int): features ``d`` of ``x_t``.
        hidden_size (int): hidden size ``H``.
        num_layers (int): stacked LSTM layers.
        bias (bool): one learnable bias per gate unit (``4H`` per layer).
        batch_first (bool): ``(B, L, .)`` instead of ``(L, B, .)`` input and output.
        dropout (float): dropout on every layer's output but the last, in training mode.
        reps (int): repetitions of the gate layers' circuits.
        ansatz (str): ansatz of the gate layers. With ``"px"`` keep the inputs in ``[-1, 1]``
            (the hidden state always is).
        fast_measure (bool): measure of the gate layers.
        engine (str): engine of the gate layers.
        seed (int | None): if given, initial values are drawn from a local
            ``torch.Generator`` seeded with it (the values ``torch.manual_seed(seed)`` would give;
            the global RNG is not touched).
        generator (torch.Generator | None): draw initial values from this generator instead of
            torch's global RNG (ignored when ``seed`` is given).
        device (torch.device | str | None): device of the parameters.
        dtype (torch.dtype | None): dtype of the parameters.
        fused (bool): run each layer's whole recurrence as one compiled call forward and one
            backward (CPU or CUDA; the same numbers as the per-step loop). It falls back to the
            loop where it does not apply: other devices, an empty batch, batch normalisation, a base activation
            other than SiLU, ``engine="reference"``, ``px`` with trainable encodings, torch.func
            transforms. ``False`` always runs the loop, which also supports second derivatives.
        **layer_kwargs: passed to every :class:`QKANLayer` (``ba_trainable``, ``group``,
            ``preact_trainable``, ...). :class:`QKANLayer` defaults ``ba_trainable=True``, a
            trainable SiLU base branch per edge.

    Raises:
        ValueError: a size that is not a positive int, or a ``dropout`` outside ``[0, 1]``;
            invalid layer keywords as in :class:`QKANLayer`.

    Example:
        >>> lstm = qkan_fast.QKANLSTM(input_size=1, hidden_size=16, reps=2)
        >>> out, (h_n, c_n) = lstm(torch.randn(4, 64, 1))   # (L, B, d)
        >>> out.shape, h_n.shape
        (torch.Size([4, 64, 16]), torch.Size([1, 64, 16]))
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        reps: int = 2,
        ansatz: str = "pz",
        fast_measure: bool = True,
        engine: str = "auto",
        seed: Optional[int] = None,
        device=None,
        dtype: Optional[torch.dtype] = None,
        fused: bool = True,
        **layer_kwargs,
    ):
        generator = seeded_generator(seed, device) if seed is not None else layer_kwargs.pop("generator", None)
        self._layer_kwargs = dict(reps=reps, ansatz=ansatz, fast_measure=fast_measure, engine=engine, device=device,
                                  dtype=dtype, generator=generator, **layer_kwargs)
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, device, dtype)
        del self._layer_kwargs["generator"]  # construction only: the module keeps no RNG state
        self.reps, self.ansatz, self.fast_measure = reps, canonical_ansatz(ansatz), bool(fast_measure)
        self.fused = bool(fused)

    def _make_gates(self, in_features: int, out_features: int) -> nn.Module:
        return QKANLayer(in_features, out_features, **self._layer_kwargs)


class HQKANLSTM(_GatedLSTM):
    """HQKAN-LSTM: the recurrence of :class:`QKANLSTM` with an :class:`HQKAN` gate map.

    Every LSTM layer's gates are ``HQKAN(d + H -> 4H)`` (``Linear -> QKAN([a, b]) -> Linear``,
    default latent ``(ceil(log2(d + H)), ceil(log2 4H))``), in ``gates[l]``. There is no separate
    gate bias: ``bias`` goes to the HQKAN's Linear layers. The interface is that of
    ``torch.nn.LSTM``.

    Args:
        input_size (int): features ``d`` of ``x_t``.
        hidden_size (int): hidden size ``H``.
        num_layers (int): stacked LSTM layers.
        bias (bool): biases in the HQKANs' Linear layers.
        batch_first (bool): ``(B, L, .)`` instead of ``(L, B, .)`` input and output.
        dropout (float): dropout on every layer's output but the last, in training mode.
        latent (None | int | tuple[int, int]): the HQKAN latent sizes (see :class:`HQKAN`).
        reps (int): repetitions of the latent QKAN.
        ansatz (str): ansatz of the latent QKAN (its input is a Linear output, unbounded: avoid
            ``"px"``).
        fast_measure (bool): measure of the latent QKAN.
        engine (str): engine of the latent QKAN.
        seed (int | None): if given, initial values are drawn from a local
            ``torch.Generator`` seeded with it (the values ``torch.manual_seed(seed)`` would give;
            the global RNG is not touched).
        generator (torch.Generator | None): draw initial values from this generator instead of
            torch's global RNG (ignored when ``seed`` is given).
        device (torch.device | str | None): device of the parameters.
        dtype (torch.dtype | None): dtype of the parameters.
        fused (bool): run each layer's whole recurrence, the HQKAN's Linear maps included, as one
            compiled call forward and one backward, as :class:`QKANLSTM` (same fallbacks; also
            ``px`` and a latent QKAN of more than one layer or with ``norm_out`` run the loop).
        **qkan_kwargs: passed to every :class:`HQKAN` and on to its :class:`QKAN`.

    Raises:
        ValueError: a size that is not a positive int, a ``dropout`` outside ``[0, 1]``, or an
            invalid ``latent``.

    Example:
        >>> lstm = qkan_fast.HQKANLSTM(1, 16)
        >>> out, _ = lstm(torch.randn(4, 64, 1))
        >>> out.shape
        torch.Size([4, 64, 16])
    """

    _separate_bias = False

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        latent: Union[None, int, Sequence[int]] = None,
        reps: int = 2,
        ansatz: str = "pz",
        fast_measure: bool = True,
        engine: str = "auto",
        seed: Optional[int] = None,
        device=None,
        dtype: Optional[torch.dtype] = None,
        fused: bool = True,
        **qkan_kwargs,
    ):
        generator = seeded_generator(seed, device) if seed is not None else qkan_kwargs.pop("generator", None)
        self._hqkan_kwargs = dict(latent=latent, reps=reps, bias=bias, ansatz=ansatz, fast_measure=fast_measure,
                                  engine=engine, device=device, dtype=dtype, generator=generator, **qkan_kwargs)
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, device, dtype)
        del self._hqkan_kwargs["generator"]  # construction only: the module keeps no RNG state
        self.reps, self.ansatz, self.fast_measure = reps, canonical_ansatz(ansatz), bool(fast_measure)
        self.fused = bool(fused)

    def _make_gates(self, in_features: int, out_features: int) -> nn.Module:
        return HQKAN(in_features, out_features, **self._hqkan_kwargs)
