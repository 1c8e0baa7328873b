"""qkan_fast: fused C++/CUDA kernels for quantum-inspired Kolmogorov-Arnold networks (QKAN).

Quick start::

    import torch, qkan_fast
    layer = qkan_fast.QKANLayer(16, 8, reps=3)      # qkan-compatible parameters and state_dict
    y = layer(torch.randn(32, 16))                   # fused CPU/CUDA kernels, autograd-aware
"""

import torch  # noqa: F401  (first: the extension then shares torch's OpenMP runtime)

from . import _C
from .ops import ENGINES, daruan_postacts, qkan_layer
from .reference import ANSATZE, canonical_ansatz
from .modules import QKAN, QKANLayer
from .networks import DARUAN, HQKAN, HQKANLSTM, QKANLSTM
from .integrations.qkan import from_qkan, to_qkan
from .plotting import plot

from ._version import __version__


def build_info() -> dict:
    """What the compiled core was built with: OpenMP, CPU instruction sets (and the one in use),
    CUDA and its architectures, compiler."""
    return dict(_C.build_info())


__all__ = [
    "ANSATZE",
    "DARUAN",
    "ENGINES",
    "HQKAN",
    "HQKANLSTM",
    "QKAN",
    "QKANLSTM",
    "QKANLayer",
    "from_qkan",
    "plot",
    "to_qkan",
    "build_info",
    "canonical_ansatz",
    "daruan_postacts",
    "qkan_layer",
]
