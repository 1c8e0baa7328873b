"""torch modules on the fused engines: QKANLayer and QKAN.

Parameter names, shapes and initial values follow `qkan.QKANLayer` / `qkan.QKAN` (docs/math.md)
so that state_dicts load both ways.
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
    """One QKAN layer: every edge (o, i) applies its own DARUAN activation to x_i.

    y[b,o] = sum_i mask[o,i] * (pw[o,i] * (phi_oi(x[b,i]) + pb[o,i]) + bw[o,i] * silu(x[b,i]))

    Args mirror `qkan.QKANLayer`: `reps` repetitions, `group` (-1: one parameter set per edge; g > 0:
    edge (o, i) uses set i mod g), `ansatz` in pz | rpz | px | real | mix (aliases pz_encoding, ...),
    `fast_measure` (|alpha| - |beta|, else the Born <Z>), the trainable flags, `base_activation`
    (a name or a callable; None drops the base term), `is_batchnorm`, `seed`. `engine` is "auto",
    "circuit" (fused kernels) or "reference" (pure torch). `px` expects inputs in [-1, 1].
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
        """Initialise theta as qkan does (xavier_normal_ over the whole tensor, or N(0, 1/reps)),
        drawing from `generator` (torch's global RNG when None)."""
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
        x = self._normalise(x)
        return engines.qkan_layer(
            x, self.theta, self.preacts_weight, self.preacts_bias, self.base_weight, self.postact_weights,
            self.postact_bias, self.mask, ansatz=self.ansatz, reps=self.reps, fast_measure=self.fast_measure,
            preact_trainable=self.preact_trainable, base_activation=self.base_activation, engine=self.engine,
        )

    def postacts(self, x: Tensor) -> Tensor:  # [B, I] -> [B, O, I]
        """The raw DARUAN value phi_oi(x[b,i]) of every edge (before pw, pb, mask)."""
        return self._phi(self._normalise(x))

    def _phi(self, x: Tensor) -> Tensor:  # normalised [B, I] -> [B, O, I]
        return engines.daruan_postacts(
            x, self.theta, self.preacts_weight, self.preacts_bias, ansatz=self.ansatz, reps=self.reps,
            fast_measure=self.fast_measure, preact_trainable=self.preact_trainable, out_dim=self.out_dim,
            engine=self.engine,
        )

    def forward_no_sum(self, x: Tensor) -> Tensor:  # [B, I] -> [B, O, I]
        """Each edge's contribution to y, as `qkan.QKANLayer.forward_no_sum`: y = forward_no_sum(x).sum(-1)."""
        x = self._normalise(x)  # once: in training mode batchnorm updates its statistics per call
        phi = self._phi(x)
        out = (phi + self.postact_bias) * self.postact_weights
        if self.base_activation is not None:
            out = out + self.base_weight * self.base_activation(x)[:, None, :]
        return out * self.mask

    @torch.no_grad()
    def prune_edges(self, threshold: float, x: Tensor) -> int:
        """Zero the mask of edges whose contribution's std over the batch x is below threshold.
        Returns the number of edges pruned by this call."""
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
        """Layer extension: a new layer with `new_reps` > reps repetitions, initialised from this one.

        Theta rows 0..R-1 and the first R encodings are copied, the old final theta row goes to row
        R, new rows are 0 and new encodings w = 1, b = 0; pw, pb, bw, mask (and batchnorm) are copied.
        For pz and rpz only RZ gates and identities follow the old final gates, so the new layer
        computes the same function. For px, real and mix the new data gates (RX, RY) act on the
        amplitudes, so the function changes: refine is then a warm start, not an identity.
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
    """A stack of QKANLayers, width = [n0, n1, ..., nL], like `qkan.QKAN`.

    Input (B, n0) or (B, C, n0) (flattened to (B*C, n0) and reshaped back). Keywords are those of
    QKANLayer; note that `qkan.QKAN` defaults `ba_trainable=False` (QKANLayer defaults True), and so
    do we. `norm_out=p` L_p-normalises the output rows.
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
        return self.layers[0].engine

    @engine.setter
    def engine(self, value: str) -> None:
        check_engine(value)
        for layer in self.layers:
            layer.engine = value

    def forward(self, x: Tensor) -> Tensor:
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
        """A QKAN with more repetitions that starts from this one (see QKANLayer.refine)."""
        new = QKAN.__new__(QKAN)
        nn.Module.__init__(new)
        new.width, new.reps, new.norm_out, new.seed = list(self.width), new_reps, self.norm_out, self.seed
        new.layers = nn.ModuleList(layer.refine(new_reps) for layer in self.layers)
        return new

    @torch.no_grad()
    def prune_edges(self, threshold: float, x: Tensor) -> int:
        """Mask edges whose contribution varies less than threshold over x; returns the count."""
        pruned = 0
        h = x.reshape(-1, x.shape[-1])
        for layer in self.layers:
            pruned += layer.prune_edges(threshold, h)
            h = layer(h)
        return pruned
