"""qkan_fast: fused C++/CUDA kernels for quantum-inspired Kolmogorov-Arnold networks (QKAN).

Quick start::

    import torch, qkan_fast
    layer = qkan_fast.QKANLayer(16, 8, reps=3)      # qkan-compatible parameters and state_dict
    y = layer(torch.randn(32, 16))                   # fused CPU/CUDA kernels, autograd-aware
"""

import torch  # noqa: F401  (first: a source build then shares torch's OpenMP runtime; see docs/install.md)

from . import _C
from .common import ANSATZE, ENGINES, canonical_ansatz
from .engines import daruan_postacts, qkan_layer
from .modules import QKAN, QKANLayer
from .networks import DARUAN, HQKAN, HQKANLSTM, QKANLSTM
from .integrations.qkan import from_qkan, to_qkan
from .plotting import plot

from ._version import __version__


def build_info() -> dict:
    """What the compiled core was built with.

    Returns:
        dict: ``version``; ``openmp`` (bool); ``cpu_isa_compiled`` (the instruction-set copies of
        the CPU kernels in this build) and ``cpu_isa`` (the one in use, ``QKAN_FAST_ISA`` can lower
        it); ``cuda`` (bool), ``cuda_archs`` and ``cuda_version``; ``compiler``.

    Example:
        >>> info = build_info()
        >>> info["cpu_isa"] in info["cpu_isa_compiled"]
        True
    """
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
