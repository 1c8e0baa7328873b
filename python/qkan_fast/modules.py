"""torch modules on the fused engines: QKANLayer and QKAN.

Parameter names, shapes and initial values follow `qkan.QKANLayer` / `qkan.QKAN` (docs/math.md,
"One layer") so that state_dicts load both ways.
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import engines
from .common import canonical_ansatz, check_engine, seeded_generator, theta_shape


def _identity(x: Tensor) -> Tensor:
    return x


# module-level functions only (no lambdas), so that modules pickle and torch.save
_ACTIVATIONS = {
    "silu": F.silu,
    "swish": F.silu,
    "gelu": F.gelu,
    "relu": F.relu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "identity": _identity,
    "linear": _identity,
}

# qkan keywords that choose qkan's own engine or storage: accepted for drop-in use, no effect here.
_QKAN_ENGINE_KWARGS = ("solver", "qml_device", "c_dtype", "solver_kwargs", "p_dim", "checkpoint_reps", "theta_size")


def _base_activation(spec: Union[str, Callable, None]) -> Optional[Callable[[Tensor], Tensor]]:
    if spec is None:
        return None
    if isinstance(spec, str):
        key = spec.lower()
        if key not in _ACTIVATIONS:
            raise ValueError(f"base_activation must be one of {sorted(_ACTIVATIONS)} or a callable, got {spec!r}")
        return _ACTIVATIONS[key]
    if callable(spec):
        return spec
    raise TypeError(f"base_activation must be a string, a callable or None, got {type(spec).__name__}")


def _check_positive(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


class QKANLayer(nn.Module):
    """One QKAN layer: every edge (o, i) applies its own DARUAN activation to input i.

    For ``x`` of shape ``(B, I)`` the layer returns ``y`` of shape ``(B, O)``::

        y[b, o] = sum_i mask[o, i] * (postact_weights[o, i] * (phi_oi(x[b, i]) + postact_bias[o, i])
                                      + base_weight[o, i] * base_activation(x[b, i]))

    where ``phi_oi`` is the edge's single-qubit circuit read out by the chosen measure (see
    docs/math.md). Parameter names, shapes, initial values and keywords are those of
    ``qkan.QKANLayer``, so state dicts load both ways:

    - ``theta``: ``(O, I, R+1, P)`` (``P`` = 2 for pz and mix, else 1; ``real``: ``(O, I, R, 1)``),
      Xavier-normal (or ``N(0, 1/R)`` with ``theta_init="small_gaussian"``);
    - ``preacts_weight``, ``preacts_bias``: ``(O, I, R)``, 1 and 0, the encoding ``w * x + b``;
    - ``base_weight``: ``(O, I)``, 0.5 if ``ba_trainable`` else 0;
    - ``postact_weights``, ``postact_bias``: ``(O, I)``, 1 and 0;
    - ``mask``: ``(O, I)``, 1, never trainable (``prune_edges`` writes zeros).

    With ``group=g`` the circuit parameters have a leading dimension ``g`` instead of ``(O, I)``.
    All parameters have the layer's dtype (float32 unless ``dtype`` says otherwise).

    Args:
        in_dim (int): number of inputs ``I``.
        out_dim (int): number of outputs ``O``.
        reps (int): repetitions ``R`` of the data gate in every circuit.
        group (int): -1 for one parameter set per edge; ``g > 0`` for ``g`` shared sets, edge
            ``(o, i)`` using set ``i % g``.
        ansatz (str): ``"pz"`` (default), ``"rpz"``, ``"px"``, ``"real"`` or ``"mix"``; aliases
            ``"pz_encoding"``, ``"rpz_encoding"``, ``"px_encoding"``. ``px`` needs encoded inputs
            in ``[-1, 1]``.
        fast_measure (bool): True reads ``|alpha| - |beta|`` (qkan's default), False the Born value
            ``|alpha|^2 - |beta|^2``.
        preact_trainable (bool): train the encodings ``w`` and ``b`` (every repetition then
            encodes ``w * x + b``; ``rpz`` always does and trains ``b`` regardless).
        postact_weight_trainable (bool): train ``postact_weights``.
        postact_bias_trainable (bool): train ``postact_bias``.
        ba_trainable (bool): train ``base_weight`` (default True, as in ``qkan.QKANLayer``).
        base_activation (str | callable | None): the base branch: ``"silu"`` (default),
            ``"gelu"``, ``"relu"``, ``"tanh"``, ``"sigmoid"``, ``"identity"``, any callable on a
            tensor, or None to drop the branch.
        is_batchnorm (bool): apply ``BatchNorm1d(I)`` to the input first.
        seed (int | None): if given, initial values are drawn from a local
            ``torch.Generator`` seeded with it (the values ``torch.manual_seed(seed)`` would give;
            the global RNG is not touched).
        generator (torch.Generator | None): draw initial values from this generator instead of
            torch's global RNG (ignored when ``seed`` is given).
        engine (str): ``"auto"`` (default), ``"circuit"``, ``"spectral"`` or ``"reference"``; see
            docs/engines.md.
        preact_init (bool): Xavier-normal initialisation of the encodings instead of 1 and 0.
        theta_init (str): ``"xavier"`` (default) or ``"small_gaussian"``.
        device (torch.device | str | None): device of the parameters.
        dtype (torch.dtype | None): dtype of the parameters (default: torch's default dtype).
        p_dtype (torch.dtype | None): qkan's name for ``dtype``, used when ``dtype`` is None.
        **qkan_kwargs: qkan's engine keywords (``solver``, ``qml_device``, ``c_dtype``,
            ``solver_kwargs``, ``p_dim``, ``checkpoint_reps``, ``theta_size``), accepted so that
            qkan code runs unchanged, and ignored.

    Raises:
        ValueError: a size, ``reps`` or ``group`` that is not a positive int (or -1 for
            ``group``), an unknown ansatz, engine, ``theta_init`` or base activation name.
        TypeError: an unexpected keyword argument, or a ``base_activation`` of another type.

    Example:
        >>> import torch, qkan_fast
        >>> layer = qkan_fast.QKANLayer(16, 8, reps=3)
        >>> layer.theta.shape
        torch.Size([8, 16, 4, 2])
        >>> layer(torch.randn(32, 16)).shape
        torch.Size([32, 8])
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        reps: int = 3,
        group: int = -1,
        ansatz: str = "pz",
        fast_measure: bool = True,
        preact_trainable: bool = False,
        postact_weight_trainable: bool = False,
        postact_bias_trainable: bool = False,
        ba_trainable: bool = True,
        base_activation: Union[str, Callable, None] = "silu",
        is_batchnorm: bool = False,
        seed: Optional[int] = None,
        engine: str = "auto",
        preact_init: bool = False,
        theta_init: str = "xavier",
        device=None,
        dtype: Optional[torch.dtype] = None,
        p_dtype: Optional[torch.dtype] = None,
        generator: Optional[torch.Generator] = None,
        **qkan_kwargs,
    ):
        super().__init__()
        unknown = sorted(set(qkan_kwargs) - set(_QKAN_ENGINE_KWARGS))
        if unknown:
            raise TypeError(f"QKANLayer got unexpected keyword arguments {unknown}")
        self.in_dim = _check_positive("in_dim", in_dim)
        self.out_dim = _check_positive("out_dim", out_dim)
        self.reps = _check_positive("reps", reps)
        if isinstance(group, bool) or not isinstance(group, int) or (group != -1 and group < 1):
            raise ValueError(f"group must be -1 (one set per edge) or a positive int, got {group!r}")
        self.group = group
        self.ansatz = canonical_ansatz(ansatz)
        self.fast_measure = bool(fast_measure)
        self.preact_trainable = bool(preact_trainable)
        self.postact_weight_trainable = bool(postact_weight_trainable)
        self.postact_bias_trainable = bool(postact_bias_trainable)
        self.ba_trainable = bool(ba_trainable)
        # kept outside nn.Module registration: a module passed here must not add state_dict keys
        object.__setattr__(self, "base_activation_spec", base_activation)
        self.base_activation = _base_activation(base_activation)
        self.is_batchnorm = bool(is_batchnorm)
        self.seed = seed
        self.engine = check_engine(engine)
        if theta_init not in ("xavier", "small_gaussian"):
            raise ValueError(f"theta_init must be 'xavier' or 'small_gaussian', got {theta_init!r}")
        self.theta_init = theta_init
        self.preact_init = bool(preact_init)
        factory = {"device": device, "dtype": dtype or p_dtype or torch.get_default_dtype()}

        per_edge = theta_shape(self.ansatz, out_dim, in_dim, reps)
        sets = (out_dim, in_dim) if group == -1 else (group,)
        encode_bias = self.preact_trainable or self.ansatz == "rpz"
        self.theta = nn.Parameter(torch.empty(*sets, *per_edge[2:], **factory))
        self.preacts_weight = nn.Parameter(torch.ones(*sets, reps, **factory), requires_grad=self.preact_trainable)
        self.preacts_bias = nn.Parameter(torch.zeros(*sets, reps, **factory), requires_grad=encode_bias)
        self.base_weight = nn.Parameter(
            torch.full((out_dim, in_dim), 0.5 if self.ba_trainable else 0.0, **factory), requires_grad=self.ba_trainable
        )
        self.postact_weights = nn.Parameter(
            torch.ones(out_dim, in_dim, **factory), requires_grad=self.postact_weight_trainable
        )
        self.postact_bias = nn.Parameter(torch.zeros(out_dim, in_dim, **factory), requires_grad=self.postact_bias_trainable)
        self.mask = nn.Parameter(torch.ones(out_dim, in_dim, **factory), requires_grad=False)
        if self.is_batchnorm:
            self.bn = nn.BatchNorm1d(in_dim, **factory)
        self.reset_theta(generator if seed is None else seeded_generator(seed, self.theta.device))

    @torch.no_grad()
    def reset_theta(self, generator: Optional[torch.Generator] = None) -> None:
        """Initialise ``theta`` again, as qkan does.

        ``theta_init="xavier"``: ``torch.nn.init.xavier_normal_`` over the whole tensor;
        ``"small_gaussian"``: ``N(0, 1/reps)``. With ``preact_init`` the encodings are redrawn
        Xavier-normal too. Other parameters are left as they are. Draws from ``generator``
        (torch's global RNG when None).
        """
        if self.theta_init == "xavier":
            nn.init.xavier_normal_(self.theta, generator=generator)
        else:
            nn.init.normal_(self.theta, 0.0, 1.0 / math.sqrt(self.reps), generator=generator)
        if self.preact_init:
            nn.init.xavier_normal_(self.preacts_weight, generator=generator)
            nn.init.xavier_normal_(self.preacts_bias, generator=generator)

    def extra_repr(self) -> str:
        return (
            f"in_dim={self.in_dim}, out_dim={self.out_dim}, reps={self.reps}, ansatz={self.ansatz!r}, "
            f"group={self.group}, fast_measure={self.fast_measure}, engine={self.engine!r}"
        )

    def _normalise(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor):
            raise TypeError(f"QKANLayer expects a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"QKANLayer expects x of shape (batch, {self.in_dim}), got {tuple(x.shape)}")
        return self.bn(x) if self.is_batchnorm else x

    def forward(self, x: Tensor) -> Tensor:  # [B, I] -> [B, O]
        """Evaluate the layer.

        The circuit and spectral engines sum over the inputs inside the kernel and save only
        ``x`` and the parameters for the backward.

        Args:
            x (torch.Tensor): ``(B, I)``, float32 or float64 (bfloat16 on CUDA), the dtype and
                device of the parameters. For ``px`` the encoded values must lie in ``[-1, 1]``.

        Returns:
            torch.Tensor: ``(B, O)``, dtype of ``x``.

        Raises:
            TypeError: ``x`` is not a tensor, or its dtype differs from the parameters'.
            ValueError: ``x`` is not ``(B, I)``, ``x`` is on another device,
                a ``px`` input lies outside ``[-1, 1]``, or ``engine="spectral"`` was asked for
                a layer it does not cover.

        Example:
            >>> layer = qkan_fast.QKANLayer(4, 2, reps=2)
            >>> y = layer(torch.randn(8, 4, requires_grad=True))
            >>> y.sum().backward()
        """
        x = self._normalise(x)
        return engines.qkan_layer(
            x, self.theta, self.preacts_weight, self.preacts_bias, self.base_weight, self.postact_weights,
            self.postact_bias, self.mask, ansatz=self.ansatz, reps=self.reps, fast_measure=self.fast_measure,
            preact_trainable=self.preact_trainable, base_activation=self.base_activation, engine=self.engine,
        )

    def postacts(self, x: Tensor) -> Tensor:  # [B, I] -> [B, O, I]
        """Every edge's raw DARUAN value ``phi_oi(x[b, i])``, before the post-activation terms.

        Always runs the circuit kernels (or the reference with ``engine="reference"``) and
        builds the full ``(B, O, I)`` tensor: for plots, pruning and inspection.

        Args:
            x (torch.Tensor): ``(B, I)``, as for :meth:`forward`.

        Returns:
            torch.Tensor: ``(B, O, I)``, values in ``[-1, 1]``, differentiable.

        Raises:
            TypeError, ValueError: as :meth:`forward`.

        Example:
            >>> layer = qkan_fast.QKANLayer(4, 2)
            >>> layer.postacts(torch.rand(8, 4)).shape
            torch.Size([8, 2, 4])
        """
        return self._phi(self._normalise(x))

    def _phi(self, x: Tensor) -> Tensor:  # normalised [B, I] -> [B, O, I]
        return engines.daruan_postacts(
            x, self.theta, self.preacts_weight, self.preacts_bias, ansatz=self.ansatz, reps=self.reps,
            fast_measure=self.fast_measure, preact_trainable=self.preact_trainable, out_dim=self.out_dim,
            engine=self.engine,
        )

    def forward_no_sum(self, x: Tensor) -> Tensor:  # [B, I] -> [B, O, I]
        """Each edge's contribution to the output, as ``qkan.QKANLayer.forward_no_sum``.

        ``layer(x)`` equals ``layer.forward_no_sum(x).sum(-1)`` up to rounding.

        Args:
            x (torch.Tensor): ``(B, I)``, as for :meth:`forward`.

        Returns:
            torch.Tensor: ``(B, O, I)``, ``mask * (pw * (phi + pb) + bw * base_activation(x))``.

        Raises:
            TypeError, ValueError: as :meth:`forward`.

        Example:
            >>> layer = qkan_fast.QKANLayer(4, 2)
            >>> x = torch.randn(8, 4)
            >>> torch.allclose(layer.forward_no_sum(x).sum(-1), layer(x), atol=1e-5)
            True
        """
        x = self._normalise(x)  # once: in training mode batchnorm updates its statistics per call
        phi = self._phi(x)
        out = (phi + self.postact_bias) * self.postact_weights
        if self.base_activation is not None:
            out = out + self.base_weight * self.base_activation(x)[:, None, :]
        return out * self.mask

    @torch.no_grad()
    def prune_edges(self, threshold: float, x: Tensor) -> int:
        """Prune the edges that barely vary over a batch: set their ``mask`` entries to 0.

        An edge is pruned when the standard deviation of its contribution
        (:meth:`forward_no_sum`) over the samples of ``x`` is below ``threshold``. Pruned edges
        stay pruned; the parameters keep their values.

        Args:
            threshold (float): the smallest standard deviation an edge keeps.
            x (torch.Tensor): ``(B, I)``, a representative batch (B >= 2).

        Returns:
            int: the number of edges this call pruned.

        Example:
            >>> layer = qkan_fast.QKANLayer(4, 2)
            >>> n = layer.prune_edges(1e-3, torch.randn(64, 4))
            >>> int((layer.mask == 0).sum()) == n
            True
        """
        scale = self.forward_no_sum(x).std(dim=0)  # [O, I]
        drop = (scale < threshold) & (self.mask != 0)
        self.mask[drop] = 0
        return int(drop.sum())

    def _kwargs(self) -> dict:
        return dict(
            in_dim=self.in_dim, out_dim=self.out_dim, reps=self.reps, group=self.group, ansatz=self.ansatz,
            fast_measure=self.fast_measure, preact_trainable=self.preact_trainable,
            postact_weight_trainable=self.postact_weight_trainable,
            postact_bias_trainable=self.postact_bias_trainable, ba_trainable=self.ba_trainable,
            base_activation=self.base_activation_spec, is_batchnorm=self.is_batchnorm, engine=self.engine,
            theta_init=self.theta_init,
        )

    @torch.no_grad()
    def refine(self, new_reps: int) -> "QKANLayer":
        """Layer extension: a new layer with more repetitions, initialised from this one.

        ``theta`` rows ``0..R-1`` and the first ``R`` encodings are copied, the old closing row
        ``theta[..., R, :]`` goes to row ``R``, the new rows are 0 and the new encodings ``w = 1``,
        ``b = 0``; ``postact_weights``, ``postact_bias``, ``base_weight``, ``mask`` (and the
        batch-norm state) are copied. For ``pz`` and ``rpz`` only RZ gates and identities follow
        the old closing gates, so the new layer computes the same function. For ``px``, ``real``
        and ``mix`` the new data gates (RX, RY) act on the amplitudes and the function changes:
        ``refine`` is then a warm start, not an identity.

        Args:
            new_reps (int): the new number of repetitions, greater than ``reps``.

        Returns:
            QKANLayer: a new layer on the same device and dtype; this one is unchanged.

        Raises:
            ValueError: ``new_reps`` is not an int greater than ``reps``.

        Example:
            >>> layer = qkan_fast.QKANLayer(4, 2, reps=2)
            >>> x = torch.randn(8, 4)
            >>> torch.allclose(layer.refine(5)(x), layer(x), atol=1e-5)
            True
        """
        if not isinstance(new_reps, int) or new_reps <= self.reps:
            raise ValueError(f"new_reps must be an int greater than reps={self.reps}, got {new_reps!r}")
        p = self.theta
        new = QKANLayer(**{**self._kwargs(), "reps": new_reps}, device=p.device, dtype=p.dtype)
        R = self.reps
        new.theta.zero_()
        new.theta[..., :R, :] = self.theta[..., :R, :]
        if self.ansatz != "real":  # real has no final row
            new.theta[..., R, :] = self.theta[..., R, :]
        new.preacts_weight.fill_(1.0)
        new.preacts_bias.zero_()
        new.preacts_weight[..., :R] = self.preacts_weight
        new.preacts_bias[..., :R] = self.preacts_bias
        for name in ("base_weight", "postact_weights", "postact_bias", "mask"):
            getattr(new, name).copy_(getattr(self, name))
        if self.is_batchnorm:
            new.bn.load_state_dict(self.bn.state_dict())
        return new


class QKAN(nn.Module):
    """A stack of QKAN layers ``n0 -> n1 -> ... -> nL``, like ``qkan.QKAN``.

    The layers are ``layers[0]``, ``layers[1]``, ... (:class:`QKANLayer`), named as in
    ``qkan.QKAN`` so that state dicts load both ways. Every keyword but ``width`` and
    ``norm_out`` is passed to each layer; see :class:`QKANLayer` for them.

    Args:
        width (Sequence[int]): layer sizes ``[n0, n1, ..., nL]``, at least two positive ints.
        reps (int): repetitions ``R`` per circuit.
        group (int): -1 or the number of shared parameter sets per layer.
        ansatz (str): ``"pz"``, ``"rpz"``, ``"px"``, ``"real"`` or ``"mix"`` (or an alias).
        fast_measure (bool): ``|alpha| - |beta|`` (True) or the Born value (False).
        preact_trainable (bool): train the encodings.
        postact_weight_trainable (bool): train ``postact_weights``.
        postact_bias_trainable (bool): train ``postact_bias``.
        ba_trainable (bool): train ``base_weight``. Default False, as in ``qkan.QKAN`` (whereas
            :class:`QKANLayer` defaults to True, as ``qkan.QKANLayer`` does).
        base_activation (str | callable | None): the base branch of every layer.
        is_batchnorm (bool): ``BatchNorm1d`` before every layer.
        norm_out (int): if ``p > 0``, L_p-normalise every output row.
        seed (int | None): if given, initial values are drawn from a local
            ``torch.Generator`` seeded with it (the values ``torch.manual_seed(seed)`` would give;
            the global RNG is not touched).
        generator (torch.Generator | None): draw initial values from this generator instead of
            torch's global RNG (ignored when ``seed`` is given).
        engine (str): ``"auto"``, ``"circuit"``, ``"spectral"`` or ``"reference"``.
        preact_init (bool): Xavier-normal initial encodings.
        theta_init (str): ``"xavier"`` or ``"small_gaussian"``.
        device (torch.device | str | None): device of the parameters.
        dtype (torch.dtype | None): dtype of the parameters.
        p_dtype (torch.dtype | None): qkan's name for ``dtype``.
        **qkan_kwargs: qkan's engine keywords, accepted and ignored (see :class:`QKANLayer`).

    Raises:
        ValueError: ``width`` has fewer than two entries or a non-positive one, or a layer
            argument is invalid (see :class:`QKANLayer`).
        TypeError: an unexpected keyword argument.

    Example:
        >>> model = qkan_fast.QKAN([4, 16, 1], reps=3, seed=0)
        >>> model(torch.randn(32, 4)).shape
        torch.Size([32, 1])
        >>> model(torch.randn(32, 5, 4)).shape
        torch.Size([32, 5, 1])
    """

    def __init__(
        self,
        width: Sequence[int],
        reps: int = 3,
        group: int = -1,
        ansatz: str = "pz",
        fast_measure: bool = True,
        preact_trainable: bool = False,
        postact_weight_trainable: bool = False,
        postact_bias_trainable: bool = False,
        ba_trainable: bool = False,
        base_activation: Union[str, Callable, None] = "silu",
        is_batchnorm: bool = False,
        norm_out: int = 0,
        seed: Optional[int] = None,
        engine: str = "auto",
        preact_init: bool = False,
        theta_init: str = "xavier",
        device=None,
        dtype: Optional[torch.dtype] = None,
        p_dtype: Optional[torch.dtype] = None,
        generator: Optional[torch.Generator] = None,
        **qkan_kwargs,
    ):
        super().__init__()
        width = list(width)
        if len(width) < 2:
            raise ValueError(f"width must list at least two sizes (in and out), got {width}")
        for n in width:
            _check_positive("every width entry", n)
        self.width = width
        self.reps = reps
        self.norm_out = norm_out
        self.seed = seed
        # one stream over all layers, drawn in order: the global RNG, or a local generator for seed
        generator = generator if seed is None else seeded_generator(seed, device)
        layer_kwargs = dict(
            reps=reps, group=group, ansatz=ansatz, fast_measure=fast_measure, preact_trainable=preact_trainable,
            postact_weight_trainable=postact_weight_trainable, postact_bias_trainable=postact_bias_trainable,
            ba_trainable=ba_trainable, base_activation=base_activation, is_batchnorm=is_batchnorm, engine=engine,
            preact_init=preact_init, theta_init=theta_init, device=device, dtype=dtype, p_dtype=p_dtype,
            generator=generator, **qkan_kwargs,
        )
        self.layers = nn.ModuleList(QKANLayer(a, b, **layer_kwargs) for a, b in zip(width[:-1], width[1:]))

    @property
    def engine(self) -> str:
        """The engine name of the layers; setting it switches every layer (ValueError if unknown)."""
        return self.layers[0].engine

    @engine.setter
    def engine(self, value: str) -> None:
        check_engine(value)
        for layer in self.layers:
            layer.engine = value

    def forward(self, x: Tensor) -> Tensor:
        """Run the layers in sequence.

        Args:
            x (torch.Tensor): ``(B, n0)`` or ``(B, C, n0)`` (flattened to ``(B*C, n0)`` and
                reshaped back), float32 or float64, dtype and device of the parameters.

        Returns:
            torch.Tensor: ``(B, nL)`` or ``(B, C, nL)``.

        Raises:
            ValueError: ``x`` is not a tensor of one of those shapes, or a layer rejects it
                (see :meth:`QKANLayer.forward`).

        Example:
            >>> model = qkan_fast.QKAN([2, 3, 1])
            >>> model(torch.rand(10, 2)).shape
            torch.Size([10, 1])
        """
        if not isinstance(x, Tensor) or x.dim() not in (2, 3) or x.shape[-1] != self.width[0]:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"QKAN expects x of shape (batch, {self.width[0]}) or (batch, C, {self.width[0]}), got {got}")
        lead = x.shape[:-1]
        h = x.reshape(-1, x.shape[-1])
        for layer in self.layers:
            h = layer(h)
        if self.norm_out:
            h = F.normalize(h, p=self.norm_out, dim=1)
        return h.reshape(*lead, h.shape[-1])

    @torch.no_grad()
    def refine(self, new_reps: int) -> "QKAN":
        """A new QKAN with ``new_reps`` repetitions in every layer, initialised from this one.

        See :meth:`QKANLayer.refine`: for ``pz`` and ``rpz`` the new model computes the same
        function; for ``px``, ``real`` and ``mix`` it is a warm start.

        Args:
            new_reps (int): greater than the current ``reps``.

        Returns:
            QKAN: the new model; this one is unchanged.

        Raises:
            ValueError: ``new_reps`` is not an int greater than ``reps``.

        Example:
            >>> bigger = qkan_fast.QKAN([2, 3, 1], reps=2).refine(4)
            >>> bigger.layers[0].reps
            4
        """
        new = QKAN.__new__(QKAN)
        nn.Module.__init__(new)
        new.width, new.reps, new.norm_out, new.seed = list(self.width), new_reps, self.norm_out, self.seed
        new.layers = nn.ModuleList(layer.refine(new_reps) for layer in self.layers)
        return new

    @torch.no_grad()
    def prune_edges(self, threshold: float, x: Tensor) -> int:
        """Prune, layer by layer, the edges whose contribution varies less than ``threshold``.

        Each layer sees the batch as the model propagates it (see
        :meth:`QKANLayer.prune_edges`).

        Args:
            threshold (float): the smallest standard deviation over the batch an edge keeps.
            x (torch.Tensor): ``(B, n0)`` or ``(B, C, n0)``, a representative batch.

        Returns:
            int: the number of edges pruned by this call, over all layers.

        Example:
            >>> model = qkan_fast.QKAN([2, 3, 1])
            >>> model.prune_edges(1e-3, torch.randn(64, 2)) >= 0
            True
        """
        pruned = 0
        h = x.reshape(-1, x.shape[-1])
        for layer in self.layers:
            pruned += layer.prune_edges(threshold, h)
            h = layer(h)
        return pruned
