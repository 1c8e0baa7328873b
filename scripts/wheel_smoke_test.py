"""Smoke test of an installed qkan_fast wheel; scripts/smoke_wheel.sh runs it in fresh venvs.

Checks, each printed on one line: no compiler on PATH; qkan_fast imports from site-packages; the
three version sources agree; build_info(); forward and backward of every ansatz on the compiled
engines against qkan_fast.reference (float64: outputs and every gradient); the CPU instruction
set forced by QKAN_FAST_ISA is the one in use; the CUDA check gives a dict or a clear error.
Exits non-zero on the first failed check.
"""

import importlib.metadata
import os
import shutil
import sys

COMPILERS = ("gcc", "cc", "c++", "g++", "clang", "nvcc")
found = {c: shutil.which(c) for c in COMPILERS if shutil.which(c)}
assert not found, f"expected no compiler on PATH, found {found}"
print(f"no compiler on PATH ({', '.join(COMPILERS)}): ok")

import torch  # noqa: E402

import qkan_fast  # noqa: E402
from qkan_fast import _C  # noqa: E402

site = os.path.dirname(os.path.dirname(qkan_fast.__file__))
assert site.endswith("site-packages"), f"expected qkan_fast from a venv's site-packages, got {qkan_fast.__file__}"
print(f"import qkan_fast from {site}: ok")

info = qkan_fast.build_info()
versions = {
    "__version__": qkan_fast.__version__,
    "build_info": info["version"],
    "metadata (pip show)": importlib.metadata.version("qkan_fast"),
}
assert len(set(versions.values())) == 1, f"expected one version everywhere, got {versions}"
print(f"version {qkan_fast.__version__} (__version__ = build_info = pip metadata): ok")
meta = importlib.metadata.metadata("qkan_fast")
licence_files = [f for f in importlib.metadata.files("qkan_fast") if f.name == "LICENSE"]
assert meta["License-Expression"] and licence_files, "expected License-Expression and a LICENSE file in the dist-info"
print(f"licence {meta['License-Expression']} ({licence_files[0]}): ok")
print("build_info: " + ", ".join(f"{k}={v}" for k, v in info.items()))

forced_isa = os.environ.get("QKAN_FAST_ISA")
if forced_isa:
    assert info["cpu_isa"] == forced_isa, f"QKAN_FAST_ISA={forced_isa} but the kernels run {info['cpu_isa']}"
    print(f"QKAN_FAST_ISA={forced_isa} honoured: ok")

# Small layer, float64: the compiled engines must match the pure-torch reference to rounding.
TOLERANCE = 1e-9
torch.manual_seed(0)
x0 = torch.rand(6, 3, dtype=torch.float64) * 1.8 - 0.9  # [B, I], inside px's [-1, 1] domain


def run(layer, engine):
    """Forward and backward on one engine: output [B, O] and every gradient, by name."""
    layer.engine = engine
    layer.zero_grad(set_to_none=True)
    x = x0.clone().requires_grad_(True)
    y = layer(x)
    y.square().sum().backward()
    grads = {"x": x.grad.clone()}
    grads.update({n: p.grad.clone() for n, p in layer.named_parameters() if p.grad is not None})
    return y.detach(), grads


worst = 0.0
for ansatz in qkan_fast.ANSATZE:
    layer = qkan_fast.QKANLayer(3, 2, reps=2, ansatz=ansatz, seed=0, dtype=torch.float64)
    y_ref, g_ref = run(layer, "reference")
    line = []
    for engine in ("circuit", "spectral"):
        try:
            y, g = run(layer, engine)
        except ValueError as e:  # spectral applies to some layers only; says so by ValueError
            line.append(f"{engine} n/a ({str(e)[:40]}...)")
            continue
        assert g.keys() == g_ref.keys(), f"{ansatz}/{engine}: gradients of {sorted(g)}, expected {sorted(g_ref)}"
        err = max([(y - y_ref).abs().max().item()] + [(g[k] - g_ref[k]).abs().max().item() for k in g])
        assert err < TOLERANCE, f"{ansatz}/{engine}: max |diff| vs reference {err:.2e}, expected < {TOLERANCE}"
        worst = max(worst, err)
        line.append(f"{engine} {err:.1e}")
    print(f"forward+backward vs reference, {ansatz:>4}: " + ", ".join(line) + f" ({len(g_ref)} grads)")
print(f"parity: every ansatz within {TOLERANCE} (worst {worst:.1e}): ok")

# CUDA: with a usable GPU the check returns a dict; otherwise a RuntimeError that says why.
try:
    print(f"cuda_check(0): {_C.cuda_check(0)}")
except RuntimeError as e:
    message = str(e)
    if info["cuda"]:
        assert "archs" in message, f"expected the compiled archs in the CUDA error, got {message!r}"
    else:
        assert "without CUDA" in message, f"expected the built-without-CUDA error, got {message!r}"
    print(f"cuda_check(0) raised RuntimeError (torch.cuda.is_available()={torch.cuda.is_available()}): {message}")

print(f"SMOKE OK: python {sys.version.split()[0]}, torch {torch.__version__}, qkan_fast {qkan_fast.__version__}")
