"""qkan_fast as a backend of the `qkan` package (PyPI `qkan`), and model conversion both ways.

    import qkan
    from qkan_fast.integrations.qkan import register, from_qkan, to_qkan

    register()                                         # adds the solver "qkan_fast" to qkan's registry
    model = qkan.QKAN([4, 8, 1], solver="qkan_fast")   # qkan's model, our fused kernels

    fast = from_qkan(model)     # -> qkan_fast.QKAN with the same weights and flags
    back = to_qkan(fast)        # -> qkan.QKAN (solver "exact" unless told otherwise)

The solver computes every edge's DARUAN value, the (batch, out_dim, in_dim) tensor qkan's layers
expect, with `qkan_fast.daruan_postacts` (fused kernels, autograd-aware). It honours qkan's
keywords `ansatz` (names and aliases), `fast_measure`, `preacts_trainable`, `out_dim`, shared
parameter groups (theta (g, Rt, P): edge (o, i) uses set i % g, as qkan's exact solver tiles them)
and qkan's group=(1, n) layout (theta (1, n, Rt, P): edge (o, i) uses set i % n, the same tiling),
and `dtype` (qkan's complex compute dtype: we compute in float64 when x, theta or `dtype` is
double precision, else float32, and return the real dtype qkan's exact solver returns: float32
for complex64, float64 for complex128, x's dtype for anything else). Differences from "exact":
a custom (callable) ansatz runs qkan's own exact solver (a warning, once per process, says so),
and `px` inputs outside [-1, 1] raise a ValueError (exact returns NaN). `checkpoint_reps` is
accepted and has no effect: the kernels never store per-repetition states.

Conversion covers qkan's `is_map=True` models (a QKAN followed by the map head Linear, SiLU,
Linear: `from_qkan` returns a `QKANMap`) and group=(1, n) layers (they become group=n, the same
function; `to_qkan` writes them back as qkan's group=n, whose flat (n, ...) parameters qkan loads
from either layout).

Importing this module does not import `qkan`; `register`, `from_qkan` and `to_qkan` do.
"""

from __future__ import annotations

import copy
import warnings
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from .. import engines
from ..common import canonical_ansatz, check_engine, expand_group, theta_shape
from ..modules import QKAN, QKANLayer

__all__ = ["SOLVER_NAME", "register", "solve", "from_qkan", "to_qkan", "QKANFastSolver", "QKANMap"]

SOLVER_NAME = "qkan_fast"

# qkan's compute dtype -> the real dtype its exact solver returns (|amplitude| of the state)
_REAL_OF = {
    torch.complex64: torch.float32,
    torch.complex128: torch.float64,
    torch.float32: torch.float32,
    torch.float64: torch.float64,
}
# our canonical ansatz -> the name qkan's own docs use
_QKAN_NAME = {"pz": "pz_encoding", "rpz": "rpz_encoding", "px": "px_encoding", "real": "real", "mix": "mix"}
_PARAM_NAMES = ("theta", "preacts_weight", "preacts_bias", "base_weight", "postact_weights", "postact_bias", "mask")


def _import_qkan():
    try:
        import qkan
    except ImportError as err:  # pragma: no cover - exercised only without qkan
        raise ImportError(
            "qkan_fast.integrations.qkan needs the `qkan` package: "
            "QKAN_SKIP_CUDA_BUILD=TRUE pip install --no-build-isolation qkan"
        ) from err
    return qkan


# --------------------------------------------------------------------------------------------
# the solver


def _per_edge(t: Tensor, in_dim: int, per_edge_rank: int, name: str) -> Tensor:
    """(O', I, ...) per edge passes through; qkan's grouped (g, ...) becomes (1, I, ...) with edge
    (., i) reading set i % g (the tiling of qkan's exact solver)."""
    if t.dim() == per_edge_rank:
        if t.shape[1] != in_dim and t.shape[0] == 1:
            return expand_group(t[0], in_dim, per_edge_rank)  # qkan's group=(1, n): set i % n, as exact tiles it
        if t.shape[1] != in_dim:
            raise ValueError(
                f"{name} of shape {tuple(t.shape)} does not match in_dim={in_dim}; qkan_fast takes "
                f"per-edge (out_dim, in_dim, ...) or grouped (g, ...) parameters"
            )
        return t
    if t.dim() == per_edge_rank - 1:
        return expand_group(t, in_dim, per_edge_rank)
    raise ValueError(f"{name} has shape {tuple(t.shape)}: expected {per_edge_rank} dims (per edge) or "
                     f"{per_edge_rank - 1} (grouped)")


def solve(
    x: Tensor,
    theta: Tensor,
    preacts_weight: Tensor,
    preacts_bias: Tensor,
    reps: int,
    *,
    engine: str = "auto",
    **kwargs,
) -> Tensor:
    """qkan's solver contract: every edge's DARUAN value phi_oi(x[b, i]), shape (batch, out_dim, in_dim).

    Keywords read (as qkan passes them): ansatz, preacts_trainable, fast_measure, out_dim (default
    in_dim), dtype (qkan's c_dtype). Others (device, group, checkpoint_reps, ...) are ignored: the
    parameter layout says whether they are grouped.
    """
    ansatz = kwargs.get("ansatz", "pz_encoding")
    if callable(ansatz):
        raise NotImplementedError("the qkan_fast solver supports the built-in ansaetze only, not a callable ansatz")
    ansatz = canonical_ansatz(ansatz)
    preact_trainable = bool(kwargs.get("preacts_trainable", False))
    fast_measure = bool(kwargs.get("fast_measure", True))
    if not isinstance(x, Tensor) or x.dim() != 2:
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"x must have shape (batch, in_dim), got {got}")
    in_dim = x.shape[1]
    out_dim = kwargs.get("out_dim") or in_dim
    c_dtype = kwargs.get("dtype", torch.complex64)
    double = torch.float64 in (x.dtype, theta.dtype, _REAL_OF.get(c_dtype))
    compute = torch.float64 if double else torch.float32
    result = _REAL_OF.get(c_dtype, x.dtype)

    encode = preact_trainable or ansatz == "rpz"
    th = _per_edge(theta, in_dim, 4, "theta")
    if encode:
        pw = _per_edge(preacts_weight, in_dim, 3, "preacts_weight")
        pb = _per_edge(preacts_bias, in_dim, 3, "preacts_bias")
        lead = max(th.shape[0], pw.shape[0], pb.shape[0])  # 1 (shared over outputs) or out_dim
        th, pw, pb = (t if t.shape[0] == lead else t.expand(lead, *t.shape[1:]) for t in (th, pw, pb))
    else:
        # not read by the circuit: stand-ins in theta's layout (no copy of qkan's frozen tensors)
        pw = th.new_ones(()).expand(*th.shape[:2], reps)
        pb = th.new_zeros(()).expand(*th.shape[:2], reps)
    phi = engines.daruan_postacts(
        x.to(compute), th.to(compute), pw.to(compute), pb.to(compute), ansatz=ansatz, reps=reps,
        fast_measure=fast_measure, preact_trainable=preact_trainable, out_dim=out_dim, engine=engine,
    )
    return phi.to(result)


_FALLBACK_WARNED = False  # the custom-ansatz warning is issued once per process


def _qkan_exact(x, theta, preacts_weight, preacts_bias, reps, **kwargs):
    """qkan's own exact solver, for what our kernels do not compute (a custom callable ansatz)."""
    global _FALLBACK_WARNED
    if not _FALLBACK_WARNED:
        _FALLBACK_WARNED = True
        warnings.warn(
            "the qkan_fast solver got a custom (callable) ansatz, which its kernels do not run: using qkan's "
            "own 'exact' solver for such layers (this warning is shown once)",
            RuntimeWarning,
            stacklevel=3,
        )
    from qkan.solver.exact import torch_exact_solver

    return torch_exact_solver(x, theta, preacts_weight, preacts_bias, reps, **kwargs)


_SOLVER_CLASS = None


def _solver_class():
    global _SOLVER_CLASS
    if _SOLVER_CLASS is None:
        _import_qkan()
        from qkan.solver import QKANSolver

        class QKANFastSolver(QKANSolver):
            """qkan solver running qkan_fast's fused kernels (see `qkan_fast.integrations.qkan.solve`)."""

            name = SOLVER_NAME

            def __init__(self, engine: str = "auto", name: str = SOLVER_NAME):
                self.engine = check_engine(engine)
                self.name = name

            def __call__(self, x, theta, preacts_weight, preacts_bias, reps, **kwargs):
                if callable(kwargs.get("ansatz")):
                    return _qkan_exact(x, theta, preacts_weight, preacts_bias, reps, **kwargs)
                return solve(x, theta, preacts_weight, preacts_bias, reps, engine=self.engine, **kwargs)

            def __repr__(self) -> str:
                return f"QKANFastSolver(name={self.name!r}, engine={self.engine!r})"

        # made on first use (qkan is imported only then) but named as a module attribute: pickle finds
        # it through this module's __getattr__, so whole qkan models on our solver pickle
        QKANFastSolver.__module__ = __name__
        QKANFastSolver.__qualname__ = "QKANFastSolver"
        _SOLVER_CLASS = QKANFastSolver
    return _SOLVER_CLASS


def __getattr__(name):
    if name == "QKANFastSolver":
        return _solver_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def register(engine: str = "auto", name: str = SOLVER_NAME):
    """Add a qkan_fast solver to the ``qkan`` package's solver registry.

    Afterwards ``qkan.QKAN(width, solver="qkan_fast")`` and
    ``qkan.QKANLayer(..., solver="qkan_fast")`` compute their circuits with qkan_fast's kernels
    (every edge's value, the ``(B, O, I)`` tensor qkan's layer expects; qkan does the rest).
    Call it before building those models: qkan looks the solver up at construction. Calling it
    again replaces the entry, e.g. to switch ``engine``. Needs ``qkan`` installed
    (``QKAN_SKIP_CUDA_BUILD=TRUE pip install --no-build-isolation qkan==0.2.3``); see
    docs/interop.md.

    Args:
        engine (str): the qkan_fast engine the solver runs: ``"auto"`` (default),
            ``"circuit"``, ``"spectral"`` or ``"reference"`` (``auto`` and ``spectral`` run the
            circuit kernels, as every per-edge value does).
        name (str): the registry name (default ``"qkan_fast"``).

    Returns:
        QKANFastSolver: the registered solver, a ``qkan.solver.QKANSolver``; calling it with
        qkan's solver arguments returns ``(B, O, I)`` edge values.

    Raises:
        ImportError: ``qkan`` is not installed.
        ValueError: an unknown ``engine``.

    Example:
        >>> import qkan  # doctest: +SKIP
        >>> from qkan_fast.integrations.qkan import register
        >>> register()  # doctest: +SKIP
        QKANFastSolver(name='qkan_fast', engine='auto')
        >>> model = qkan.QKAN([4, 8, 1], solver="qkan_fast")  # doctest: +SKIP
    """
    _import_qkan()
    from qkan.solver import register as qkan_register

    return qkan_register(_solver_class()(engine=engine, name=name))


# --------------------------------------------------------------------------------------------
# model conversion


class _Zero(nn.Module):
    """Stands in for "no base activation" in qkan, which always calls base_activation(x)."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.zeros_like(x)


_FROM_TORCH = ((nn.SiLU, "silu"), (nn.ReLU, "relu"), (nn.Tanh, "tanh"), (nn.Sigmoid, "sigmoid"),
               (nn.Identity, "identity"))
_FROM_KIND = {"silu": "silu", "gelu_exact": "gelu", "relu": "relu", "tanh": "tanh", "sigmoid": "sigmoid"}


def _activation_from_qkan(act):
    if act is None or isinstance(act, _Zero):
        return None
    for cls, name in _FROM_TORCH:
        if type(act) is cls:
            return name
    if type(act) is nn.GELU and act.approximate == "none":
        return "gelu"
    kind = getattr(act, "kind", None)  # qkan's fused activation modules carry their kind
    if isinstance(kind, str) and kind in _FROM_KIND:
        return _FROM_KIND[kind]
    return copy.deepcopy(act)  # any other callable works as is (a copy: modules may hold parameters)


def _activation_to_qkan(spec):
    if spec is None:
        return _Zero()
    if isinstance(spec, str):
        key = spec.lower()
        return nn.Identity() if key in ("identity", "linear") else key
    return copy.deepcopy(spec)


def _group_from_qkan(layer) -> int:
    group = layer.group
    if isinstance(group, int):
        return group
    group = tuple(group)
    if group == (layer.out_dim, layer.in_dim):
        return -1
    if len(group) == 1:
        return int(group[0])
    if len(group) == 2 and group[0] == 1:
        # (1, n): sets shared over the outputs, edge (o, i) on set i % n (exact's tiling) = our group n
        return int(group[1])
    # exact's tiling gives other two-entry layouts no consistent meaning (it repeats the first axis
    # out_dim times), so they are refused
    raise NotImplementedError(f"qkan group layout {group} has no qkan_fast equivalent: qkan_fast takes "
                              f"({layer.out_dim}, {layer.in_dim}) (per edge), (1, n) or (n,)")


def _copy_state(dst: nn.Module, src: nn.Module) -> None:
    """Load every entry of dst's state_dict from src's, reshaped to dst's shapes (qkan's p_dim=2
    storage is flat). A module-valued base activation may be registered under a second name
    (qkan_fast keeps the spec it was given): such entries are found under `base_activation.`."""
    theirs = src.state_dict()
    state = {}
    for key, target in dst.state_dict().items():
        src_key = key
        if key not in theirs and key.startswith("base_activation_spec."):
            src_key = "base_activation." + key[len("base_activation_spec."):]
        if src_key not in theirs:
            raise KeyError(f"{type(src).__name__} has no {key!r} to convert")
        state[key] = theirs[src_key].reshape(target.shape)
    dst.load_state_dict(state)


class QKANMap(QKAN):
    """``qkan.QKAN(is_map=True)`` on qkan_fast: QKAN layers ``width[0] -> ... -> width[-2]``, then
    qkan's map head ``Linear(width[-2], hidden)``, ``SiLU``, ``Linear(hidden, width[-1])``.

    The head sits in ``layers`` after the QKAN layers, as in qkan, so state dicts load both ways;
    ``norm_out`` normalises the head's output. ``from_qkan`` returns this class for an ``is_map``
    model and ``to_qkan`` converts it back.

    Args:
        width (Sequence[int]): ``[n0, ..., n_{L-1}, n_out]``, at least three positive ints (the
            last is the head's output).
        hidden (int): the head's hidden width (qkan's ``hidden``; 0 is allowed, as in qkan: the
            output is then the last Linear's bias).
        **kwargs: as :class:`qkan_fast.QKAN` (for the QKAN layers). The head's initial values
            come from torch's global RNG, as ``nn.Linear``'s do.

    Example:
        >>> model = QKANMap([2, 4, 3], hidden=8, seed=0)
        >>> model(torch.rand(5, 2)).shape
        torch.Size([5, 3])
    """

    def __init__(self, width: Sequence[int], hidden: int, **kwargs):
        width = list(width)
        if len(width) < 3:
            raise ValueError(f"QKANMap needs width [n0, ..., n_{{L-1}}, n_out] with at least three entries, got {width}")
        if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 0:
            raise ValueError(f"hidden must be a non-negative int, got {hidden!r}")
        super().__init__(width[:-1], **kwargs)
        ref = self.layers[0].theta
        factory = {"device": ref.device, "dtype": ref.dtype}
        self.layers.extend([nn.Linear(width[-2], hidden, **factory), nn.SiLU(),
                            nn.Linear(hidden, width[-1], **factory)])
        self.width = width
        self.hidden = hidden
        self.is_map = True

    def qkan_layers(self) -> list:
        """The QKAN layers (without the map head)."""
        return [layer for layer in self.layers if isinstance(layer, QKANLayer)]

    @property
    def engine(self) -> str:
        return self.qkan_layers()[0].engine

    @engine.setter
    def engine(self, value: str) -> None:
        check_engine(value)
        for layer in self.qkan_layers():
            layer.engine = value

    @torch.no_grad()
    def refine(self, new_reps: int) -> "QKANMap":
        """A copy with ``new_reps`` repetitions in every QKAN layer (see ``QKANLayer.refine``); the
        head is copied."""
        new = copy.deepcopy(self)
        for k, layer in enumerate(self.layers):
            if isinstance(layer, QKANLayer):
                new.layers[k] = layer.refine(new_reps)
        new.reps = new_reps
        return new

    @torch.no_grad()
    def prune_edges(self, threshold: float, x: Tensor) -> int:
        """Prune the QKAN layers' edges as ``QKAN.prune_edges`` does; the head is left as it is."""
        pruned = 0
        h = x.reshape(-1, x.shape[-1])
        for layer in self.qkan_layers():
            pruned += layer.prune_edges(threshold, h)
            h = layer(h)
        return pruned


def _layer_from_qkan(layer, engine: str):
    if callable(layer.ansatz):
        raise NotImplementedError("a qkan layer with a custom (callable) ansatz cannot be converted (qkan_fast has "
                                  "no such ansatz); a qkan model on the qkan_fast solver runs it with qkan's exact solver")
    ansatz = canonical_ansatz(layer.ansatz)
    natural = (*tuple(layer.group), *theta_shape(ansatz, 1, 1, layer.reps)[2:])
    if getattr(layer, "_theta_collapsible", True) is False and tuple(layer.theta.shape) != natural:
        # a callable solver makes qkan take theta_size literally: convertible only in the usual layout
        raise NotImplementedError(f"a qkan layer with a custom theta_size {tuple(layer.theta.shape)} (set for a "
                                  f"callable solver) has no qkan_fast layout; expected {natural}")
    ref = layer.theta
    ours = QKANLayer(
        layer.in_dim, layer.out_dim, reps=layer.reps, group=_group_from_qkan(layer),
        ansatz=ansatz, fast_measure=layer.fast_measure,
        preact_trainable=layer.preact_trainable, postact_weight_trainable=layer.postact_weight_trainable,
        postact_bias_trainable=layer.postact_bias_trainable, ba_trainable=layer.ba_trainable,
        base_activation=_activation_from_qkan(layer.base_activation), is_batchnorm=layer.is_batchnorm,
        engine=engine, theta_init=getattr(layer, "theta_init", "xavier"), device=ref.device, dtype=ref.dtype,
    )
    _copy_state(ours, layer)
    ours.train(layer.training)
    return ours


def _layer_to_qkan(layer, solver: str, c_dtype: Optional[torch.dtype], p_dim: int):
    qkan = _import_qkan()
    ref = layer.theta
    want = c_dtype if c_dtype is not None else (torch.complex128 if ref.dtype == torch.float64 else torch.complex64)
    theirs = qkan.QKANLayer(
        layer.in_dim, layer.out_dim, reps=layer.reps, group=layer.group, device=ref.device, solver=solver,
        ansatz=_QKAN_NAME[layer.ansatz], preact_trainable=layer.preact_trainable,
        postact_weight_trainable=layer.postact_weight_trainable, postact_bias_trainable=layer.postact_bias_trainable,
        base_activation=_activation_to_qkan(layer.base_activation_spec), ba_trainable=layer.ba_trainable,
        is_batchnorm=layer.is_batchnorm, fast_measure=layer.fast_measure, c_dtype=want, p_dtype=ref.dtype,
        p_dim=p_dim, theta_init=layer.theta_init,
    )
    if c_dtype is not None and theirs.c_dtype != c_dtype:  # qkan switches `real` to bf16 compute
        theirs.c_dtype = c_dtype
        theirs._resolve_solver_fn()
    _copy_state(theirs, layer)
    theirs.train(layer.training)  # qkan caches folded weights when switched to eval
    return theirs


def from_qkan(model, engine: str = "auto"):
    """Convert a ``qkan`` model into the equivalent qkan_fast module.

    The new module has the same weights, flags, trainable parameters, base activation, batch-norm
    state and train/eval mode, on the same device and dtype; qkan's flat ``p_dim=2`` storage is
    reshaped. Needs ``qkan`` installed (see docs/interop.md).

    Args:
        model (qkan.QKANLayer | qkan.QKAN): the model to convert; it is not modified.
        engine (str): the engine of the new module (``"auto"``, ``"circuit"``, ``"spectral"``
            or ``"reference"``).

    Returns:
        QKANLayer | QKAN: a :class:`qkan_fast.QKANLayer` for a layer, a :class:`qkan_fast.QKAN`
        for a network, a :class:`QKANMap` (a ``qkan_fast.QKAN`` subclass) for ``is_map=True``.

    Raises:
        ImportError: ``qkan`` is not installed.
        TypeError: ``model`` is neither a ``qkan.QKANLayer`` nor a ``qkan.QKAN``.
        NotImplementedError: a custom (callable) ansatz (a qkan model on the ``qkan_fast``
            solver runs it with qkan's exact solver instead), a custom ``theta_size``, pruned
            inputs (``input_id``), or a ``group`` layout other than per edge, ``(1, n)`` or ``n``.

    Example:
        >>> import qkan  # doctest: +SKIP
        >>> theirs = qkan.QKAN([4, 8, 1], solver="exact")  # doctest: +SKIP
        >>> fast = qkan_fast.from_qkan(theirs)  # doctest: +SKIP
        >>> x = torch.randn(16, 4)  # doctest: +SKIP
        >>> torch.allclose(fast(x), theirs(x), atol=1e-5)  # doctest: +SKIP
        True
    """
    qkan = _import_qkan()

    if isinstance(model, qkan.QKANLayer):
        return _layer_from_qkan(model, engine)
    if isinstance(model, qkan.QKAN):
        if getattr(model, "input_id", None) is not None:
            raise NotImplementedError("qkan.QKAN with pruned inputs (input_id) cannot be converted")
        # qkan's map head (is_map) is plain torch: copied as it is
        layers = [_layer_from_qkan(layer, engine) if isinstance(layer, qkan.QKANLayer) else copy.deepcopy(layer)
                  for layer in model.layers]
        qkan_layers = [layer for layer in layers if isinstance(layer, QKANLayer)]
        width = [qkan_layers[0].in_dim] + [layer.out_dim for layer in qkan_layers]
        ref = qkan_layers[0].theta
        kw = dict(reps=qkan_layers[0].reps, norm_out=model.norm_out, engine=engine, device=ref.device, dtype=ref.dtype)
        if getattr(model, "is_map", False):
            ours = QKANMap(list(model.width), hidden=model.hidden, **kw)
        else:
            ours = QKAN(width, **kw)
        ours.layers = nn.ModuleList(layers)
        ours.seed = model.seed
        ours.train(model.training)
        return ours
    raise TypeError(f"from_qkan expects a qkan.QKANLayer or qkan.QKAN, got {type(model).__name__}")


def to_qkan(model, solver: str = "exact", c_dtype: Optional[torch.dtype] = None, p_dim: int = 4):
    """Convert a qkan_fast model into the equivalent ``qkan`` module.

    The new module has the same weights, flags, base activation, batch-norm state and train/eval
    mode, on the same device. Needs ``qkan`` installed (see docs/interop.md).

    Args:
        model (QKANLayer | QKAN): the qkan_fast model to convert; it is not modified.
        solver (str): the qkan solver of the new model: ``"exact"`` (default), another of qkan's,
            or ``"qkan_fast"`` after :func:`qkan_fast.integrations.qkan.register`.
        c_dtype (torch.dtype | None): qkan's complex compute dtype. By default complex128 for
            float64 parameters, else complex64; qkan itself then picks bfloat16 for the ``real``
            ansatz, which an explicit ``c_dtype`` overrides.
        p_dim (int): qkan's parameter storage layout, 4 (natural shapes) or 2 (flat).

    Returns:
        qkan.QKANLayer | qkan.QKAN: a ``qkan.QKANLayer`` for a layer, a ``qkan.QKAN`` for a
        network (``is_map=True`` with the same ``hidden`` and head weights for a :class:`QKANMap`).

    Raises:
        ImportError: ``qkan`` is not installed.
        TypeError: ``model`` is neither a :class:`qkan_fast.QKANLayer` nor a
            :class:`qkan_fast.QKAN`.

    Example:
        >>> fast = qkan_fast.QKAN([4, 8, 1], seed=0)
        >>> theirs = qkan_fast.to_qkan(fast)  # doctest: +SKIP
        >>> x = torch.randn(16, 4)
        >>> torch.allclose(theirs(x), fast(x), atol=1e-5)  # doctest: +SKIP
        True
    """
    qkan = _import_qkan()

    if isinstance(model, QKANLayer):
        return _layer_to_qkan(model, solver, c_dtype, p_dim)
    if isinstance(model, QKAN):
        first = model.layers[0]
        is_map = isinstance(model, QKANMap)
        ref = first.theta
        want = c_dtype if c_dtype is not None else (torch.complex128 if ref.dtype == torch.float64 else torch.complex64)
        theirs = qkan.QKAN(
            list(model.width), reps=first.reps, group=first.group, device=ref.device, solver=solver,
            ansatz=_QKAN_NAME[first.ansatz], norm_out=model.norm_out, preact_trainable=first.preact_trainable,
            postact_weight_trainable=first.postact_weight_trainable,
            postact_bias_trainable=first.postact_bias_trainable,
            base_activation=_activation_to_qkan(first.base_activation_spec), ba_trainable=first.ba_trainable,
            is_batchnorm=first.is_batchnorm, fast_measure=first.fast_measure, c_dtype=want, p_dtype=ref.dtype,
            p_dim=p_dim, theta_init=first.theta_init, is_map=is_map, hidden=model.hidden if is_map else 0,
        )
        for k, layer in enumerate(model.layers):
            if isinstance(layer, QKANLayer):
                theirs.layers[k] = _layer_to_qkan(layer, solver, c_dtype, p_dim)
            else:  # the map head
                theirs.layers[k] = copy.deepcopy(layer)
        theirs.seed = model.seed
        theirs.train(model.training)
        return theirs
    raise TypeError(f"to_qkan expects a qkan_fast.QKANLayer or qkan_fast.QKAN, got {type(model).__name__}")
