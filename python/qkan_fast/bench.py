"""Side-by-side benchmark of the qkan_fast engines and the `qkan==0.2.3` solvers (docs/benchmarks.md).

For every workload (B, I, O, R) and every engine the same layer parameters (one state_dict, loaded
into each module) and the same input are measured in one process:

- forward time (under ``torch.no_grad()``) and forward+backward time (``loss = y.sum()``, gradients
  of x and of every trainable parameter via ``torch.autograd.grad``), median of the timed runs after
  one warm-up (``time.perf_counter``; ``torch.cuda.synchronize`` around each run on the GPU);
- throughput in edge-samples per second, B*I*O / time;
- speed-up against every other engine of the workload, t_other / t_this (> 1: this one is faster);
- bytes saved for backward (``torch.autograd.graph.saved_tensors_hooks``, unique storages), in all
  and without the input and parameter storages (what the engine adds), and the CUDA peak memory;
- max abs difference of y and of every gradient against the pure-torch reference.

Runs of the engines are interleaved (run k of every engine, then run k+1, ...) so that a load change
on a shared machine hits every engine alike: quote the ratios, not lone absolute times.

Used by ``qkan-fast bench`` (see `cli.py`) and by ``bench/test_bench_layers.py``.
"""

from __future__ import annotations

import dataclasses
import datetime
import gc
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import torch
from torch import Tensor, nn

SCHEMA = "qkan_fast.bench/1"

# ------------------------------------------------------------------------------------------------
# workloads


@dataclass(frozen=True)
class Workload:
    """One layer shape and configuration (docs/benchmarks.md)."""

    name: str
    batch: int
    in_dim: int
    out_dim: int
    reps: int
    ansatz: str = "pz"
    fast_measure: bool = True
    preact_trainable: bool = False
    note: str = ""

    @property
    def edge_samples(self) -> int:
        return self.batch * self.in_dim * self.out_dim

    @property
    def work(self) -> int:
        """B*O*I*R: circuit repetitions evaluated per forward (what the size guards count)."""
        return self.edge_samples * self.reps

    def describe(self) -> str:
        flags = [self.ansatz, "fast_measure" if self.fast_measure else "born"]
        if self.preact_trainable:
            flags.append("preact_trainable")
        return (
            f"B={self.batch} I={self.in_dim} O={self.out_dim} R={self.reps} {' '.join(flags)}"
            + (f"  ({self.note})" if self.note else "")
        )


WORKLOADS: Dict[str, Workload] = {
    w.name: w
    for w in (
        Workload("W1", 1024, 16, 16, 3, note="small layer"),
        Workload("W2", 1024, 64, 64, 3, note="medium layer, the headline CPU row"),
        Workload("W3", 256, 128, 128, 4, note="wide layer"),
        Workload("W4", 4096, 32, 32, 8, note="many repetitions"),
        Workload("W5", 8192, 10, 10, 1, note="HQKAN latent of a GPT-2 block"),
        Workload("W6", 4096, 256, 256, 3, note="large layer"),
    )
}
# L1 (QKAN-LSTM training step) joins this table once the QKAN-LSTM module exists.

# Named groups accepted by --workloads.
WORKLOAD_GROUPS: Dict[str, List[str]] = {
    "all": list(WORKLOADS),
    "W2-variants": ["W2:born", "W2:preact", "W2:rpz", "W2:px:preact", "W2:real", "W2:mix"],
}

_ANSATZ_ALIASES = {"pz_encoding": "pz", "rpz_encoding": "rpz", "px_encoding": "px"}
_ANSATZE = ("pz", "rpz", "px", "real", "mix")
_CUSTOM = re.compile(r"^(\d+)x(\d+)x(\d+)x(\d+)$")


def parse_workloads(
    spec: str, *, ansatz: str = "pz", fast_measure: bool = True, preact_trainable: bool = False
) -> List[Workload]:
    """Parse a --workloads value: comma-separated items, each a name (W1..W6), a custom shape
    BxIxOxR (e.g. 64x4x3x2), or a group (all, W2-variants), optionally followed by modifiers
    separated by ':' — an ansatz name, `born`, `fast` or `preact` (e.g. W2:born, W2:px:preact).
    ansatz / fast_measure / preact_trainable are the defaults the modifiers override."""
    base_ansatz = _ANSATZ_ALIASES.get(ansatz, ansatz)
    if base_ansatz not in _ANSATZE:
        raise ValueError(f"unknown ansatz {ansatz!r}; choose one of {', '.join(_ANSATZE)}")
    items: List[str] = []
    for raw in spec.split(","):
        item = raw.strip()
        if not item:
            continue
        items.extend(WORKLOAD_GROUPS.get(item, [item]))
    if not items:
        raise ValueError("--workloads is empty")
    out: List[Workload] = []
    for item in items:
        head, *mods = item.split(":")
        m = _CUSTOM.match(head)
        if head in WORKLOADS:
            w = WORKLOADS[head]
        elif m:
            B, I, O, R = (int(v) for v in m.groups())
            if min(B, I, O, R) < 1:
                raise ValueError(f"workload {head!r}: every size must be >= 1")
            w = Workload(head, B, I, O, R, note="custom")
        else:
            raise ValueError(
                f"unknown workload {head!r}; use one of {', '.join(WORKLOADS)}, a group "
                f"({', '.join(WORKLOAD_GROUPS)}) or a custom shape BxIxOxR such as 64x4x3x2"
            )
        w = dataclasses.replace(w, ansatz=base_ansatz, fast_measure=fast_measure, preact_trainable=preact_trainable)
        for mod in mods:
            key = _ANSATZ_ALIASES.get(mod, mod)
            if key in _ANSATZE:
                w = dataclasses.replace(w, ansatz=key)
            elif key == "born":
                w = dataclasses.replace(w, fast_measure=False)
            elif key == "fast":
                w = dataclasses.replace(w, fast_measure=True)
            elif key == "preact":
                w = dataclasses.replace(w, preact_trainable=True)
            else:
                raise ValueError(
                    f"unknown modifier {mod!r} in workload {item!r}; use an ansatz "
                    f"({', '.join(_ANSATZE)}), born, fast or preact"
                )
        w = dataclasses.replace(w, name=item if mods else w.name)
        out.append(w)
    return out


# ------------------------------------------------------------------------------------------------
# engines


PEERS = ("qkan-exact", "qkan-cutn", "qkan-flash")

# Engines that materialise (B, O, I)-sized complex tensors per repetition: skip them above this
# many circuit repetitions per forward (B*O*I*R). W4 = 3.4e7 runs on CPU, W6 = 8.1e8 only on CUDA.
DEFAULT_MAX_WORK = {"cpu": 5e7, "cuda": 2e9}


def our_engines() -> List[str]:
    """The engines qkan_fast offers for a layer (qkan_fast.ENGINES without "auto")."""
    import qkan_fast

    return [e for e in qkan_fast.ENGINES if e != "auto"]


def qkan_version() -> Optional[str]:
    try:
        import qkan
    except Exception:  # noqa: BLE001 - any import failure means "not available"
        return None
    return getattr(qkan, "__version__", "unknown")


def is_guarded(engine: str) -> bool:
    """Engines whose memory and time grow with B*O*I*R tensors (the size guard applies)."""
    return engine == "reference" or engine.startswith("qkan-")


def _complex_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.complex128 if dtype == torch.float64 else torch.complex64


def build_module(
    engine: str, w: Workload, state: Dict[str, Tensor], device: torch.device, dtype: torch.dtype
) -> nn.Module:
    """A layer of `engine` for workload w holding exactly the parameters in `state`.

    Ours: qkan_fast.QKANLayer(engine=...). Peers "qkan-<solver>": qkan.QKANLayer(solver=<solver>)
    with the same state_dict (the parameter names are shared)."""
    if engine.startswith("qkan-"):
        import qkan

        solver = engine[len("qkan-") :]
        qkan_ansatz = {"pz": "pz_encoding", "rpz": "rpz_encoding", "px": "px_encoding"}.get(w.ansatz, w.ansatz)
        module = qkan.QKANLayer(
            w.in_dim, w.out_dim, reps=w.reps, solver=solver, device=str(device), ansatz=qkan_ansatz,
            fast_measure=w.fast_measure, preact_trainable=w.preact_trainable,
            p_dtype=dtype, c_dtype=_complex_dtype(dtype),
        )
    else:
        import qkan_fast

        module = qkan_fast.QKANLayer(
            w.in_dim, w.out_dim, reps=w.reps, ansatz=w.ansatz, fast_measure=w.fast_measure,
            preact_trainable=w.preact_trainable, engine=engine, device=device, dtype=dtype,
        )
    module = module.to(device=device, dtype=dtype)
    module.load_state_dict(state)
    module.train()
    return module


def make_state(w: Workload, device: torch.device, dtype: torch.dtype, seed: int = 0) -> Dict[str, Tensor]:
    """The parameters every engine of a workload loads: a fresh qkan_fast layer's, seeded."""
    import qkan_fast

    torch.manual_seed(seed)
    layer = qkan_fast.QKANLayer(
        w.in_dim, w.out_dim, reps=w.reps, ansatz=w.ansatz, fast_measure=w.fast_measure,
        preact_trainable=w.preact_trainable, engine="reference", device=device, dtype=dtype,
    )
    return {k: v.detach().clone() for k, v in layer.state_dict().items()}


def make_input(w: Workload, device: torch.device, dtype: torch.dtype, seed: int = 0) -> Tensor:
    """x uniform in [-1, 1] (inside px's domain), the same for every engine."""
    g = torch.Generator().manual_seed(seed + 1)
    return (torch.rand(w.batch, w.in_dim, generator=g, dtype=dtype) * 2 - 1).to(device)


def trainable(module: nn.Module) -> Dict[str, nn.Parameter]:
    return {n: p for n, p in module.named_parameters() if p.requires_grad}


def forward_fn(module: nn.Module, x: Tensor) -> Callable[[], Tensor]:
    def run():
        with torch.no_grad():
            return module(x)

    return run


def forward_backward_fn(module: nn.Module, x: Tensor) -> Callable[[], tuple]:
    """loss = y.sum(); gradients of x and of every trainable parameter (nothing accumulates)."""
    xr = x.detach().clone().requires_grad_(True)
    params = list(trainable(module).values())

    def run():
        y = module(xr)
        grads = torch.autograd.grad(y.sum(), [xr, *params], allow_unused=True)
        return y, grads

    return run


# ------------------------------------------------------------------------------------------------
# measurement


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable, device: torch.device):
    _sync(device)
    t0 = time.perf_counter()
    out = fn()
    _sync(device)
    return time.perf_counter() - t0, out


@dataclass
class _Probe:
    """What the warm-up forward+backward run records besides its time."""

    seconds: float
    y: Tensor
    grads: Dict[str, Tensor]
    saved_bytes: int
    saved_bytes_activations: int
    saved_tensors: int
    peak_bytes: Optional[int]
    peak_extra_bytes: Optional[int]


def probe_forward_backward(module: nn.Module, x: Tensor, device: torch.device) -> _Probe:
    """One forward+backward under saved_tensors_hooks: output, gradients, saved bytes, CUDA peak."""
    xr = x.detach().clone().requires_grad_(True)
    params = trainable(module)
    own = {xr.untyped_storage().data_ptr()}
    own.update(t.untyped_storage().data_ptr() for t in module.parameters())
    own.update(t.untyped_storage().data_ptr() for t in module.buffers())
    storages: Dict[int, int] = {}
    count = [0]

    def pack(t: Tensor) -> Tensor:
        s = t.untyped_storage()
        storages[s.data_ptr()] = s.nbytes()
        count[0] += 1
        return t

    peak = extra = None
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    _sync(device)
    t0 = time.perf_counter()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = module(xr)
    grads = torch.autograd.grad(y.sum(), [xr, *params.values()], allow_unused=True)
    _sync(device)
    seconds = time.perf_counter() - t0
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
        extra = peak - base
    total = sum(storages.values())
    activations = sum(n for p, n in storages.items() if p not in own)
    names = ["x", *params]
    return _Probe(
        seconds=seconds,
        y=y.detach(),
        grads={n: g.detach() for n, g in zip(names, grads) if g is not None},
        saved_bytes=total,
        saved_bytes_activations=activations,
        saved_tensors=count[0],
        peak_bytes=peak,
        peak_extra_bytes=extra,
    )


def _max_abs_diff(a: Tensor, b: Tensor) -> Optional[float]:
    if a.shape != b.shape:
        return None
    return float((a.double() - b.double()).abs().max()) if a.numel() else 0.0


def _plan_runs(warm_s: float, requested: int, budget_s: Optional[float]) -> tuple:
    """(timed runs to do, use the warm-up as the only sample). With a time budget per measurement,
    fewer runs; when the warm-up alone exceeds it, that cold run is the sample."""
    if budget_s is None or requested <= 0:
        return max(requested, 1), False
    if warm_s >= budget_s:
        return 0, True
    return max(1, min(requested, int(budget_s // max(warm_s, 1e-9)))), False


def _error_text(e: BaseException) -> str:
    first = (str(e).strip().splitlines() or [""])[0]
    return f"{type(e).__name__}: {first[:200]}"


def _finite(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _summary(samples: List[float], requested: int, cold: bool, w: Workload) -> dict:
    med = statistics.median(samples)
    return {
        "median_s": med,
        "min_s": min(samples),
        "times_s": samples,
        "repeats": len(samples),
        "repeats_requested": requested,
        "cold": cold,
        "edge_samples_per_s": _finite(w.edge_samples / med) if med > 0 else None,
        "edge_sample_reps_per_s": _finite(w.work / med) if med > 0 else None,
    }


def engine_availability(
    engine: str, w: Workload, device: torch.device, max_work: Dict[str, float], peer_max_work: Optional[float] = None
) -> Optional[str]:
    """None if the engine can run this workload here, else the reason it is skipped. max_work: the
    B*O*I*R limit per device type of the guarded engines; peer_max_work: a lower one for qkan."""
    if engine.startswith("qkan-"):
        if qkan_version() is None:
            return "qkan not installed (QKAN_SKIP_CUDA_BUILD=TRUE pip install --no-build-isolation qkan==0.2.3, see docs/interop.md)"
        solver = engine[len("qkan-") :]
        if solver == "flash" and device.type != "cuda":
            return "qkan flash solver needs CUDA (Triton)"
        if solver == "flash":
            try:
                import triton  # noqa: F401
            except Exception:  # noqa: BLE001
                return "qkan flash solver needs Triton, which is not installed"
    else:
        if engine not in our_engines():
            return f"unknown engine {engine!r}"
    if engine.startswith("qkan-") and peer_max_work is not None and w.work > peer_max_work:
        return f"qkan is slow at this size: B*O*I*R = {w.work:.3g} > {peer_max_work:.3g} (--peer-max-work)"
    limit = max_work.get(device.type)
    if is_guarded(engine) and limit is not None and w.work > limit:
        return (
            f"too large for this engine on {device.type}: B*O*I*R = {w.work:.3g} > {limit:.3g} "
            "(raise with --max-work)"
        )
    return None


def run_workload(
    w: Workload,
    engines: Sequence[str],
    *,
    device: torch.device,
    dtype: torch.dtype,
    repeats: int = 5,
    peer_repeats: int = 3,
    budget_s: Optional[float] = None,
    max_work: Optional[Dict[str, float]] = None,
    peer_max_work: Optional[float] = None,
    seed: int = 0,
    log: Callable[[str], None] = lambda s: None,
) -> List[dict]:
    """Measure every engine on workload w; one record per engine, in the order given."""
    max_work = DEFAULT_MAX_WORK if max_work is None else max_work
    state = make_state(w, device, dtype, seed)
    x = make_input(w, device, dtype, seed)
    common = {
        "workload": w.name,
        "batch": w.batch,
        "in_dim": w.in_dim,
        "out_dim": w.out_dim,
        "reps": w.reps,
        "ansatz": w.ansatz,
        "fast_measure": w.fast_measure,
        "preact_trainable": w.preact_trainable,
        "edge_samples": w.edge_samples,
        "work": w.work,
        "dtype": str(dtype).replace("torch.", ""),
        "device": str(device),
        "threads": torch.get_num_threads(),
    }
    records: Dict[str, dict] = {}
    modules: Dict[str, nn.Module] = {}
    plans: Dict[str, dict] = {}
    ref_probe: Optional[_Probe] = None
    # the reference first: the others are compared with its output and gradients
    order = sorted(engines, key=lambda e: e != "reference")
    for eng in order:
        rec = dict(common, engine=eng, source="qkan" if eng.startswith("qkan-") else "qkan_fast", status="ok")
        records[eng] = rec
        reason = engine_availability(eng, w, device, max_work, peer_max_work)
        if reason:
            rec.update(status="skipped", reason=reason)
            log(f"  {w.name} {eng}: skipped ({reason})")
            continue
        try:
            module = build_module(eng, w, state, device, dtype)
            log(f"  {w.name} {eng}: warm-up")
            probe = probe_forward_backward(module, x, device)
            fwd_warm, _ = _timed(forward_fn(module, x), device)
        except Exception as e:  # noqa: BLE001 - an engine that cannot run is reported, not fatal
            rec.update(status="failed", reason=_error_text(e))
            log(f"  {w.name} {eng}: failed ({rec['reason']})")
            module = None
            if device.type == "cuda":
                torch.cuda.empty_cache()
            continue
        modules[eng] = module
        rec.update(
            saved_bytes=probe.saved_bytes,
            saved_bytes_activations=probe.saved_bytes_activations,
            saved_tensors=probe.saved_tensors,
            peak_memory_bytes=probe.peak_bytes,
            peak_memory_extra_bytes=probe.peak_extra_bytes,
        )
        if eng == "reference":
            ref_probe = probe
        if ref_probe is not None:
            diffs = {"y": _max_abs_diff(probe.y, ref_probe.y)}
            scale = {"y": float(ref_probe.y.abs().max())}
            for name, g in probe.grads.items():
                if name in ref_probe.grads:
                    diffs[f"grad_{name}"] = _max_abs_diff(g, ref_probe.grads[name])
                    scale[f"grad_{name}"] = float(ref_probe.grads[name].abs().max())
            missing = sorted(set(ref_probe.grads) ^ set(probe.grads))
            rec.update(max_abs_diff=diffs, reference_max_abs=scale, grads_not_compared=missing)
        else:
            rec.update(max_abs_diff=None)
        want = peer_repeats if eng.startswith("qkan-") else repeats
        n_f, cold_f = _plan_runs(fwd_warm, want, budget_s)
        n_b, cold_b = _plan_runs(probe.seconds, want, budget_s)
        plans[eng] = {
            "forward": {"n": n_f, "samples": [fwd_warm] if cold_f else [], "cold": cold_f, "want": want},
            "forward_backward": {"n": n_b, "samples": [probe.seconds] if cold_b else [], "cold": cold_b, "want": want},
        }
        del probe
    # interleaved timed runs: run k of every engine, then run k+1
    for kind, make in (("forward", forward_fn), ("forward_backward", forward_backward_fn)):
        fns = {eng: make(m, x) for eng, m in modules.items()}
        rounds = max((plans[e][kind]["n"] for e in fns), default=0)
        if rounds:
            log(f"  {w.name} {kind}: {rounds} interleaved rounds over {', '.join(fns)}")
        for k in range(rounds):
            for eng, fn in fns.items():
                plan = plans[eng][kind]
                if k >= plan["n"] or records[eng]["status"] != "ok":
                    continue
                try:
                    seconds, out = _timed(fn, device)
                    del out
                    plan["samples"].append(seconds)
                except Exception as e:  # noqa: BLE001
                    records[eng].update(status="failed", reason=_error_text(e))
        for eng in fns:
            plan = plans[eng][kind]
            if records[eng]["status"] == "ok" and plan["samples"]:
                records[eng][kind] = _summary(plan["samples"], plan["want"], plan["cold"], w)
        del fns
    # speed-ups: t_other / t_this for every pair of measured engines
    ok = [e for e in order if records[e]["status"] == "ok"]
    for eng in ok:
        rec = records[eng]
        for field, stat in (("speedup_vs", "median_s"), ("speedup_vs_min", "min_s")):
            rec[field] = {}
            for other in ok:
                if other == eng:
                    continue
                rec[field][other] = {
                    kind: _finite(records[other][kind][stat] / rec[kind][stat])
                    for kind in ("forward", "forward_backward")
                    if kind in rec and kind in records[other] and rec[kind][stat] > 0
                }
    del modules, ref_probe
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return [records[e] for e in engines]


# ------------------------------------------------------------------------------------------------
# machine description


def _cpu_model() -> Optional[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _git(args: List[str]) -> Optional[str]:
    for where in (os.getcwd(), str(Path(__file__).resolve().parent)):
        try:
            out = subprocess.run(
                ["git", "-C", where, *args], capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
            return out
        except (OSError, subprocess.SubprocessError):
            continue
    return None


def load_warning(device_type: str = "cpu") -> Optional[str]:
    """A warning when CPU timings will be unreliable because the machine is busy.

    With OpenMP's default active wait, a thread whose partner has been descheduled spins at every
    barrier; on a loaded 2-core machine this made single calls 10-50x slower at random (torch ops
    and qkan as much as our kernels). OMP_WAIT_POLICY=passive removes those outliers but slows
    engines made of many small torch ops (the reference, qkan) 2-4x: see bench/README.md."""
    if device_type != "cpu" or not hasattr(os, "getloadavg"):
        return None
    load = os.getloadavg()[0]
    cpus = os.cpu_count() or 1
    if load < cpus:
        return None
    hint = (
        "" if os.environ.get("OMP_WAIT_POLICY", "").lower() == "passive"
        else "; OpenMP threads spinning at barriers make it worse (OMP_WAIT_POLICY=passive helps, at a cost: "
        "see bench/README.md)"
    )
    return f"load average {load:.1f} on {cpus} CPUs: timings will be noisy, quote only ratios{hint}"


def machine_info(device: torch.device) -> dict:
    import qkan_fast

    try:
        build = qkan_fast.build_info()
    except Exception as e:  # noqa: BLE001
        build = {"error": _error_text(e)}
    commit = _git(["rev-parse", "HEAD"])
    dirty = _git(["status", "--porcelain", "--untracked-files=no"]) if commit else None
    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "qkan_fast": getattr(qkan_fast, "__version__", None),
        "build_info": build,
        "qkan": qkan_version(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_model(),
        "cuda": torch.version.cuda if device.type == "cuda" else None,
        "git_commit": commit,
        "git_dirty": bool(dirty) if dirty is not None else None,
        # thread-pool settings change CPU results a lot on a loaded machine (OMP_WAIT_POLICY, ...)
        "env": {k: v for k, v in sorted(os.environ.items()) if k.startswith(("OMP_", "GOMP_", "KMP_", "MKL_", "QKAN"))},
    }
    if hasattr(os, "getloadavg"):
        info["loadavg_start"] = list(os.getloadavg())
    return info


# ------------------------------------------------------------------------------------------------
# the whole run


def warm_up_process(engines: Sequence[str], workloads: Sequence[Workload], device: torch.device, dtype: torch.dtype) -> None:
    """Run every engine once on a tiny layer of each configuration (ansatz, measure, preact) in the
    run, so that one-time costs (imports, op registration, thread pools, the CUDA context) do not
    land in the first workload's warm-up, which sizes the timed runs under a budget."""
    configs = {(w.ansatz, w.fast_measure, w.preact_trainable) for w in workloads}
    for ansatz, fast, preact in sorted(configs):
        tiny = Workload("process-warm-up", 8, 2, 2, 1, ansatz, fast, preact)
        for eng in engines:
            if engine_availability(eng, tiny, device, {}) is not None:
                continue
            try:
                module = build_module(eng, tiny, make_state(tiny, device, dtype), device, dtype)
                x = make_input(tiny, device, dtype)
                forward_fn(module, x)()
                forward_backward_fn(module, x)()
            except Exception:  # noqa: BLE001 - the real run reports the failure
                pass


@dataclass
class BenchConfig:
    workloads: List[Workload]
    engines: List[str]
    device: str = "cpu"
    dtype: str = "float32"
    repeats: int = 5
    peer_repeats: int = 3
    budget_s: Optional[float] = None
    max_work: Optional[float] = None
    peer_max_work: Optional[float] = None
    threads: Optional[int] = None
    seed: int = 0


def run_bench(cfg: BenchConfig, log: Callable[[str], None] = lambda s: None) -> dict:
    """Run every workload on every engine; returns the JSON-ready result (header + records)."""
    device = torch.device(cfg.device)
    dtype = {"float32": torch.float32, "float64": torch.float64}[cfg.dtype]
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    max_work = dict(DEFAULT_MAX_WORK)
    if cfg.max_work is not None:
        max_work[device.type] = cfg.max_work
    started = time.perf_counter()
    result = {
        "schema": SCHEMA,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": sys.argv,
        "settings": {
            "workloads": [dataclasses.asdict(w) for w in cfg.workloads],
            "engines": list(cfg.engines),
            "device": cfg.device,
            "dtype": cfg.dtype,
            "repeats": cfg.repeats,
            "peer_repeats": cfg.peer_repeats,
            "budget_s": cfg.budget_s,
            "max_work": max_work[device.type],
            "peer_max_work": cfg.peer_max_work,
            "seed": cfg.seed,
            "warmup": 1,
            "forward": "torch.no_grad()",
            "forward_backward": "loss = y.sum(); torch.autograd.grad w.r.t. x and every trainable parameter",
            "speedup": "speedup_vs: t_other / t_this of the medians (> 1: this engine is faster); "
            "speedup_vs_min: the same of the fastest runs (less sensitive to machine load)",
            "saved_bytes": "unique storages seen by saved_tensors_hooks; _activations excludes x and parameters",
        },
        "machine": machine_info(device),
        "records": [],
    }
    warm_up_process(cfg.engines, cfg.workloads, device, dtype)
    for w in cfg.workloads:
        log(f"{w.name}: {w.describe()}")
        result["records"].extend(
            run_workload(
                w, cfg.engines, device=device, dtype=dtype, repeats=cfg.repeats, peer_repeats=cfg.peer_repeats,
                budget_s=cfg.budget_s, max_work=max_work, peer_max_work=cfg.peer_max_work, seed=cfg.seed,
                log=log,
            )
        )
    if hasattr(os, "getloadavg"):
        result["machine"]["loadavg_end"] = list(os.getloadavg())
    result["elapsed_s"] = time.perf_counter() - started
    return result


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    return str(obj)


def write_json(result: dict, path: str) -> None:
    p = Path(path)
    if p.parent and not p.parent.exists():
        p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(_jsonable(result), indent=1, allow_nan=False) + "\n")


# ------------------------------------------------------------------------------------------------
# table and plot


def _fmt_time(s: Optional[float]) -> str:
    if s is None:
        return "-"
    ms = s * 1e3
    return f"{ms:.3g}" if ms < 1000 else f"{ms:.0f}"


def _fmt_ratio(r: Optional[float]) -> str:
    if r is None:
        return "-"
    return f"{r:.3g}x" if r < 1000 else f"{r:.0f}x"


def _fmt_num(v: Optional[float]) -> str:
    return "-" if v is None else f"{v:.1e}"


def _fmt_mib(b: Optional[int]) -> str:
    return "-" if b is None else f"{b / 2**20:.3g}"


def format_table(result: dict) -> str:
    """A plain-text table: one block per workload, one row per engine."""
    records = result["records"]
    peers = []
    for r in records:
        if r["engine"].startswith("qkan-") and r["status"] == "ok" and r["engine"] not in peers:
            peers.append(r["engine"])
    has_ref = any(r["engine"] == "reference" and r["status"] == "ok" for r in records)
    has_peak = any(r.get("peak_memory_bytes") is not None for r in records)
    heads = ["engine", "fwd ms", "f+b ms", "runs", "fwd Me/s", "f+b Me/s"]
    if has_ref:
        heads += ["fwd/ref", "f+b/ref"]
    for p in peers:
        heads += [f"fwd/{p}", f"f+b/{p}"]
    heads += ["saved MiB"]
    if has_peak:
        heads += ["peak MiB"]
    heads += ["max|dy|", "max|dgrad|", "rel"]

    def row(r: dict) -> List[str]:
        if r["status"] != "ok":
            return [r["engine"], f"{r['status']}: {r.get('reason', '')}"]
        f, b = r.get("forward"), r.get("forward_backward")

        def runs(m):
            if not m:
                return "-"
            return f"{m['repeats']}c" if m["cold"] else str(m["repeats"])

        cells = [
            r["engine"],
            _fmt_time(f and f["median_s"]),
            _fmt_time(b and b["median_s"]),
            f"{runs(f)}/{runs(b)}",
            "-" if not f else f"{f['edge_samples_per_s'] / 1e6:.3g}",
            "-" if not b else f"{b['edge_samples_per_s'] / 1e6:.3g}",
        ]
        sp = r.get("speedup_vs", {})
        for other in (["reference"] if has_ref else []) + peers:
            if other == r["engine"]:
                cells += ["1x", "1x"]
            else:
                s = sp.get(other, {})
                cells += [_fmt_ratio(s.get("forward")), _fmt_ratio(s.get("forward_backward"))]
        cells.append(_fmt_mib(r.get("saved_bytes_activations")))
        if has_peak:
            cells.append(_fmt_mib(r.get("peak_memory_extra_bytes")))
        d = r.get("max_abs_diff") or {}
        scale = r.get("reference_max_abs") or {}
        gd = [v for k, v in d.items() if k.startswith("grad_") and v is not None]
        rel = [v / scale[k] for k, v in d.items() if v is not None and scale.get(k)]
        cells += [_fmt_num(d.get("y")), _fmt_num(max(gd) if gd else None), _fmt_num(max(rel) if rel else None)]
        return cells

    m = result.get("machine", {})
    lines = [
        f"qkan-fast bench  device={m.get('device')} ({m.get('device_name')})  dtype={result['settings']['dtype']}  "
        f"threads={m.get('torch_threads')}  torch {m.get('torch')}  qkan_fast {m.get('qkan_fast')}  "
        f"qkan {m.get('qkan') or 'not installed'}  commit {(m.get('git_commit') or '?')[:10]}"
        + ("+dirty" if m.get("git_dirty") else "")
    ]
    by_workload: Dict[str, List[dict]] = {}
    for r in records:
        by_workload.setdefault(r["workload"], []).append(r)
    for name, rs in by_workload.items():
        r0 = rs[0]
        w = Workload(name, r0["batch"], r0["in_dim"], r0["out_dim"], r0["reps"], r0["ansatz"], r0["fast_measure"], r0["preact_trainable"])
        body = [row(r) for r in rs]
        full = [b for b in body if len(b) == len(heads)]
        widths = [max([len(h)] + [len(b[i]) for b in full]) for i, h in enumerate(heads)]
        lines.append("")
        lines.append(f"{name}: {w.describe()}")
        lines.append("  " + "  ".join(h.rjust(widths[i]) if i else h.ljust(widths[i]) for i, h in enumerate(heads)))
        for b in body:
            if len(b) == len(heads):
                lines.append("  " + "  ".join(c.rjust(widths[i]) if i else c.ljust(widths[i]) for i, c in enumerate(b)))
            else:
                lines.append("  " + b[0].ljust(widths[0]) + "  " + b[1])
    lines += [
        "",
        "ms: median wall time; runs: timed runs fwd/f+b after 1 warm-up ('c': the single cold warm-up run, over "
        "the time budget); Me/s: million edge-samples (B*I*O) per second;",
        "x/ref, x/qkan-*: speed-up t_other / t_this (> 1: this row is faster); saved MiB: tensors saved for "
        "backward beyond x and the parameters;",
        "max|dy|, max|dgrad|: max abs difference of y and of any gradient (x and trainable parameters) against "
        "the reference engine; rel: the largest of those differences, each divided by the max abs value of the "
        "reference's tensor.",
    ]
    return "\n".join(lines)


def plot(result: dict, path: str) -> Optional[str]:
    """Bar chart (log scale) of time per workload per engine, forward and forward+backward.
    Returns None when written, else the reason it was not (matplotlib missing)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:  # noqa: BLE001 - any import problem: plotting is optional
        return "matplotlib is not installed (pip install 'qkan_fast[plot]'); no plot written"
    records = [r for r in result["records"] if r["status"] == "ok"]
    workloads = list(dict.fromkeys(r["workload"] for r in records))
    engines = list(dict.fromkeys(r["engine"] for r in records))
    fig, axes = plt.subplots(1, 2, figsize=(min(20, max(8, 3 * len(workloads))), 4.5), squeeze=False)
    width = 0.8 / max(len(engines), 1)
    for ax, kind, title in zip(axes[0], ("forward", "forward_backward"), ("forward", "forward + backward")):
        for j, eng in enumerate(engines):
            xs, hs = [], []
            for i, wname in enumerate(workloads):
                for r in records:
                    if r["workload"] == wname and r["engine"] == eng and kind in r:
                        xs.append(i + (j - (len(engines) - 1) / 2) * width)
                        hs.append(r[kind]["median_s"] * 1e3)
            ax.bar(xs, hs, width=width, label=eng)
        ax.set_yscale("log")
        ax.set_xticks(range(len(workloads)))
        ax.set_xticklabels(workloads, rotation=30 if len(workloads) > 6 else 0)
        ax.set_ylabel("median time per call (ms, log scale)")
        ax.set_title(title)
        ax.grid(axis="y", which="both", alpha=0.3)
    axes[0][0].legend(fontsize="small")
    m = result.get("machine", {})
    fig.suptitle(
        f"qkan-fast bench: {m.get('device_name')}, {result['settings']['dtype']}, "
        f"{m.get('torch_threads')} threads, commit {(m.get('git_commit') or '?')[:10]}",
        fontsize="medium",
    )
    fig.tight_layout()
    p = Path(path)
    if p.parent and not p.parent.exists():
        p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, dpi=120)
    plt.close(fig)
    return None
