"""`qkan-fast bench`: qkan_fast's engines side by side with the pure-torch reference and qkan==0.2.3.

Every engine of a workload holds the same parameters (one state_dict) and gets the same input, in
one process. Timing is torch.utils.benchmark's: one `Timer` per engine and measurement, timed in
`rounds` interleaved blocks (block k of every engine, then block k+1, so a change in machine load
hits all engines alike; each block is a `blocked_autorange`, whose block-size estimate is its
warm-up), merged with `Measurement.merge`, printed by `Compare`. One probed
forward+backward per engine (which is also its warm-up) gives what timing cannot: bytes saved for
backward, the CUDA peak, and the max abs difference of y and of every gradient against the
reference engine.

Shared machines are noisy: quote the ratios of one run, not lone times (docs/benchmarks.md).
"""

from __future__ import annotations

import dataclasses
import datetime
import gc
import json
import re
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import torch
from torch import Tensor, nn
from torch.utils import benchmark as tb

from . import _machine

SCHEMA = "qkan_fast.bench/2"
PEERS = ("qkan-exact", "qkan-cutn", "qkan-flash")
# The reference and qkan materialise [B, O, I] complex tensors per repetition: skip them above this
# many circuit repetitions per forward (B*O*I*R). W4 = 3.4e7 runs on the CPU, W6 = 8.1e8 only on CUDA.
DEFAULT_MAX_WORK = {"cpu": 5e7, "cuda": 2e9}


@dataclasses.dataclass(frozen=True)
class Workload:
    name: str
    batch: int
    in_dim: int
    out_dim: int
    reps: int
    ansatz: str = "pz"
    fast_measure: bool = True
    preact_trainable: bool = False

    @property
    def edge_samples(self) -> int:
        return self.batch * self.in_dim * self.out_dim

    @property
    def work(self) -> int:  # circuit repetitions per forward, what the size guard counts
        return self.edge_samples * self.reps

    def describe(self) -> str:
        flags = [self.ansatz, "fast" if self.fast_measure else "born"] + (["preact"] if self.preact_trainable else [])
        return f"B={self.batch} I={self.in_dim} O={self.out_dim} R={self.reps} {' '.join(flags)}"


WORKLOADS = {w.name: w for w in (  # docs/benchmarks.md
    Workload("W1", 1024, 16, 16, 3), Workload("W2", 1024, 64, 64, 3), Workload("W3", 256, 128, 128, 4),
    Workload("W4", 4096, 32, 32, 8), Workload("W5", 8192, 10, 10, 1), Workload("W6", 4096, 256, 256, 3),
)}
GROUPS = {"all": list(WORKLOADS), "W2-variants": ["W2:born", "W2:preact", "W2:rpz", "W2:px:preact", "W2:real", "W2:mix"]}
ANSATZE = ("pz", "rpz", "px", "real", "mix")
_ALIASES = {"pz_encoding": "pz", "rpz_encoding": "rpz", "px_encoding": "px"}
_SHAPE = re.compile(r"^(\d+)x(\d+)x(\d+)x(\d+)$")


def parse_workloads(spec: str, *, ansatz: str = "pz", fast_measure: bool = True,
                    preact_trainable: bool = False) -> List[Workload]:
    """Comma-separated names (W1..W6), groups (all, W2-variants) or shapes BxIxOxR, each optionally
    followed by ':'-separated modifiers: an ansatz, born, fast, preact (e.g. W2:px:preact)."""
    ansatz = _ALIASES.get(ansatz, ansatz)
    if ansatz not in ANSATZE:
        raise ValueError(f"unknown ansatz {ansatz!r}; choose one of {', '.join(ANSATZE)}")
    items = [i for raw in spec.split(",") if raw.strip() for i in GROUPS.get(raw.strip(), [raw.strip()])]
    if not items:
        raise ValueError("--workloads is empty")
    out = []
    for item in items:
        head, *mods = item.split(":")
        shape = _SHAPE.match(head)
        if head in WORKLOADS:
            w = WORKLOADS[head]
        elif shape and min(int(v) for v in shape.groups()) >= 1:
            w = Workload(head, *(int(v) for v in shape.groups()))
        else:
            raise ValueError(f"unknown workload {head!r}; use {', '.join(WORKLOADS)}, a group ({', '.join(GROUPS)}) "
                             "or a shape BxIxOxR with sizes >= 1, such as 64x4x3x2")
        w = dataclasses.replace(w, name=item, ansatz=ansatz, fast_measure=fast_measure, preact_trainable=preact_trainable)
        for mod in mods:
            mod = _ALIASES.get(mod, mod)
            if mod in ANSATZE:
                w = dataclasses.replace(w, ansatz=mod)
            elif mod in ("born", "fast", "preact"):
                w = dataclasses.replace(w, **({"preact_trainable": True} if mod == "preact" else {"fast_measure": mod == "fast"}))
            else:
                raise ValueError(f"unknown modifier {mod!r} in workload {item!r}; use an ansatz ({', '.join(ANSATZE)}), "
                                 "born, fast or preact")
        out.append(w)
    return out



def our_engines() -> List[str]:
    import qkan_fast

    return [e for e in qkan_fast.ENGINES if e != "auto"]


def qkan_version() -> Optional[str]:
    try:
        import qkan
    except Exception:  # noqa: BLE001 - any import failure means "not available"
        return None
    return getattr(qkan, "__version__", "unknown")


def engine_availability(engine: str, w: Workload, device: torch.device, max_work: Dict[str, float]) -> Optional[str]:
    """None if `engine` can run `w` here, else why it is skipped."""
    if engine.startswith("qkan-"):
        if qkan_version() is None:
            return "qkan not installed (QKAN_SKIP_CUDA_BUILD=TRUE pip install --no-build-isolation qkan==0.2.3, see docs/interop.md)"
        if engine == "qkan-flash" and device.type != "cuda":
            return "qkan's flash solver needs CUDA (Triton)"
    elif engine not in our_engines():
        return f"unknown engine {engine!r}"
    limit = max_work.get(device.type)
    if (engine == "reference" or engine.startswith("qkan-")) and limit is not None and w.work > limit:
        return f"too large for this engine on {device.type}: B*O*I*R = {w.work:.3g} > {limit:.3g} (--max-work)"
    return None


def make_state(w: Workload, device: torch.device, dtype: torch.dtype, seed: int = 0) -> Dict[str, Tensor]:
    """The parameters every engine of a workload loads: a fresh qkan_fast layer's, seeded."""
    import qkan_fast

    torch.manual_seed(seed)
    layer = qkan_fast.QKANLayer(w.in_dim, w.out_dim, reps=w.reps, ansatz=w.ansatz, fast_measure=w.fast_measure,
                                preact_trainable=w.preact_trainable, engine="reference", device=device, dtype=dtype)
    return {k: v.detach().clone() for k, v in layer.state_dict().items()}


def build_module(engine: str, w: Workload, state: Dict[str, Tensor], device: torch.device, dtype: torch.dtype) -> nn.Module:
    """qkan_fast.QKANLayer(engine=...) or, for "qkan-<solver>", qkan.QKANLayer(solver=...), holding `state`
    (both libraries use the same parameter names)."""
    kw = dict(reps=w.reps, fast_measure=w.fast_measure, preact_trainable=w.preact_trainable)
    if engine.startswith("qkan-"):
        import qkan

        ansatz = {"pz": "pz_encoding", "rpz": "rpz_encoding", "px": "px_encoding"}.get(w.ansatz, w.ansatz)
        complex_dtype = torch.complex128 if dtype == torch.float64 else torch.complex64
        module = qkan.QKANLayer(w.in_dim, w.out_dim, solver=engine[5:], device=str(device), ansatz=ansatz,
                                p_dtype=dtype, c_dtype=complex_dtype, **kw)
    else:
        import qkan_fast

        module = qkan_fast.QKANLayer(w.in_dim, w.out_dim, ansatz=w.ansatz, engine=engine, device=device, dtype=dtype, **kw)
    module = module.to(device=device, dtype=dtype)
    module.load_state_dict(state)
    return module.train()


def make_input(w: Workload, device: torch.device, dtype: torch.dtype, seed: int = 0) -> Tensor:  # [B, I]
    """x uniform in [-1, 1] (inside px's domain), the same for every engine."""
    g = torch.Generator().manual_seed(seed + 1)
    return (torch.rand(w.batch, w.in_dim, generator=g, dtype=dtype) * 2 - 1).to(device)


def forward_fn(module: nn.Module, x: Tensor) -> Callable[[], Tensor]:
    def run():
        with torch.no_grad():
            return module(x)
    return run


def forward_backward_fn(module: nn.Module, x: Tensor) -> Callable[[], tuple]:
    """loss = y.sum(); gradients of x and of every trainable parameter (nothing accumulates)."""
    xr = x.detach().clone().requires_grad_(True)
    params = [p for p in module.parameters() if p.requires_grad]

    def run():
        y = module(xr)
        return y, torch.autograd.grad(y.sum(), [xr, *params], allow_unused=True)
    return run


def probe(module: nn.Module, x: Tensor, device: torch.device) -> dict:
    """One forward+backward: y, gradients by name, bytes saved for backward, CUDA peak."""
    xr = x.detach().clone().requires_grad_(True)
    params = {n: p for n, p in module.named_parameters() if p.requires_grad}
    own = {t.untyped_storage().data_ptr() for t in [xr, *module.parameters(), *module.buffers()]}
    saved: Dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = module(xr)
    grads = torch.autograd.grad(y.sum(), [xr, *params.values()], allow_unused=True)
    peak = torch.cuda.max_memory_allocated(device) - base if device.type == "cuda" else None
    return {
        "y": y.detach(), "grads": {n: g for n, g in zip(["x", *params], grads) if g is not None},
        "saved_bytes": sum(saved.values()),
        "saved_bytes_activations": sum(b for p, b in saved.items() if p not in own),  # beyond x and parameters
        "peak_memory_extra_bytes": peak,
    }



def _error(e: BaseException) -> str:
    return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:200]}"


def _parity(got: dict, ref: dict) -> dict:
    """Max abs difference of y and of each gradient against the reference, and each relative to the
    reference tensor's largest value."""
    pairs = {"y": (got["y"], ref["y"]), **{f"grad_{n}": (g, ref["grads"][n]) for n, g in got["grads"].items() if n in ref["grads"]}}
    diff = {k: float((a.double() - b.double()).abs().max()) if a.numel() else 0.0 for k, (a, b) in pairs.items()}
    scale = {k: float(b.abs().max()) if b.numel() else 0.0 for k, (_, b) in pairs.items()}
    return {"max_abs_diff": diff, "max_rel_diff": max((diff[k] / scale[k] for k in diff if scale[k] > 0), default=0.0)}


def _summary(m: "tb.Measurement", w: Workload) -> dict:
    return {"median_s": m.median, "mean_s": m.mean, "iqr_s": m.iqr, "times_s": list(m.times), "samples": len(m.times),
            "edge_samples_per_s": w.edge_samples / m.median if m.median > 0 else None}


def run_workload(w: Workload, engines: Sequence[str], *, device: torch.device, dtype: torch.dtype, rounds: int,
                 min_run_time: float, max_work: Dict[str, float], seed: int = 0,
                 step: Callable[[str], None] = lambda s: None) -> tuple:
    """Probe and time every engine on w. Returns (records in the order of `engines`, Measurements)."""
    state, x = make_state(w, device, dtype, seed), make_input(w, device, dtype, seed)
    common = {**dataclasses.asdict(w), "workload": w.name, "edge_samples": w.edge_samples, "work": w.work,
              "dtype": str(dtype)[6:], "device": str(device), "threads": torch.get_num_threads()}
    records, timers, ref = {}, {}, None
    for eng in sorted(engines, key=lambda e: e != "reference"):  # the reference first: the others compare with it
        rec = records[eng] = {**common, "engine": eng, "status": "ok"}
        reason = engine_availability(eng, w, device, max_work)
        if reason:
            rec.update(status="skipped", reason=reason)
            step(f"{w.name} {eng}: skipped")
            continue
        try:
            module = build_module(eng, w, state, device, dtype)
            p = probe(module, x, device)
        except Exception as e:  # noqa: BLE001 - an engine that cannot run is reported, not fatal
            rec.update(status="failed", reason=_error(e))
            step(f"{w.name} {eng}: failed")
            continue
        rec.update({k: v for k, v in p.items() if k not in ("y", "grads")})
        if eng == "reference":
            ref = p
        rec.update(_parity(p, ref) if ref is not None else {"max_abs_diff": None, "max_rel_diff": None})
        sub_label = f"{w.name}  {w.describe()}"
        timers[eng] = {kind: tb.Timer("fn()", globals={"fn": make(module, x)}, label=label, sub_label=sub_label,
                                      description=eng, num_threads=torch.get_num_threads())
                       for kind, make, label in (("forward", forward_fn, "forward"),
                                                 ("forward_backward", forward_backward_fn, "forward+backward"))}
        del p
        step(f"{w.name} {eng}: probed")
    measurements = []
    for kind in ("forward", "forward_backward"):
        blocks: Dict[str, list] = {e: [] for e in timers}
        for _ in range(rounds):
            for eng, by_kind in timers.items():
                if records[eng]["status"] != "ok":
                    continue
                try:  # its block-size estimate is also this round's warm-up
                    blocks[eng].append(by_kind[kind].blocked_autorange(min_run_time=min_run_time / rounds))
                except Exception as e:  # noqa: BLE001
                    records[eng].update(status="failed", reason=_error(e))
        for eng in (e for e in engines if blocks.get(e)):  # Compare's columns in the order asked for
            ms = blocks[eng]
            if records[eng]["status"] == "ok":
                merged = tb.Measurement.merge(ms)[0]
                measurements.append(merged)
                records[eng][kind] = _summary(merged, w)
        step(f"{w.name} {kind}: {rounds} rounds")
    ok = [e for e in records if all(k in records[e] for k in ("forward", "forward_backward"))]
    for eng in ok:  # t_other / t_this: > 1 means this engine is faster
        records[eng]["speedup_vs"] = {o: {k: records[o][k]["median_s"] / records[eng][k]["median_s"]
                                          for k in ("forward", "forward_backward")} for o in ok if o != eng}
    del timers, ref
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return [records[e] for e in engines], measurements



@dataclasses.dataclass
class BenchConfig:
    workloads: List[Workload]
    engines: List[str]
    device: str = "cpu"
    dtype: str = "float32"
    rounds: int = 5
    min_run_time: float = 1.0  # seconds per engine and measurement, spread over the rounds
    max_work: Optional[float] = None
    threads: Optional[int] = None
    seed: int = 0


def run_bench(cfg: BenchConfig, progress: bool = True) -> dict:
    """Every workload on every engine; the JSON-ready result (header, records) and the Measurements
    under the key "measurements" (not JSON; `write_json` drops it)."""
    from ._progress import Progress

    device, dtype = torch.device(cfg.device), getattr(torch, cfg.dtype)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    max_work = {**DEFAULT_MAX_WORK, **({device.type: cfg.max_work} if cfg.max_work is not None else {})}
    settings = {**dataclasses.asdict(cfg), "max_work": max_work[device.type],
                "timing": "torch.utils.benchmark: per round and engine one Timer.blocked_autorange(min_run_time / rounds), "
                          "rounds interleaved over engines, merged; times_s are per call; "
                          "forward under no_grad, forward+backward = grad of y.sum() w.r.t. x and trainable parameters"}
    result = {"schema": SCHEMA, "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "command": sys.argv, "settings": settings, "machine": _machine.describe(device, qkan=qkan_version()),
              "loadavg_before": _machine.load_average(), "records": [], "measurements": []}
    bar = Progress(len(cfg.workloads) * (len(cfg.engines) + 2), "qkan-fast bench", progress, lines=10**9)
    for w in cfg.workloads:
        records, ms = run_workload(w, cfg.engines, device=device, dtype=dtype, rounds=cfg.rounds,
                                   min_run_time=cfg.min_run_time, max_work=max_work, seed=cfg.seed, step=bar.step)
        result["records"] += records
        result["measurements"] += ms
    bar.close()
    result["loadavg_after"] = _machine.load_average()
    return result


def write_json(result: dict, path: str) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    body = {k: v for k, v in result.items() if k != "measurements"}
    p.write_text(json.dumps(body, indent=1, allow_nan=False, default=str) + "\n")


def _loads(values: Optional[List[float]]) -> str:
    return "?" if values is None else "/".join(f"{v:.1f}" for v in values)


def format_report(result: dict) -> str:
    """torch's Compare table of the times, then ratios, parity and memory per workload and engine."""
    m = result["machine"]
    lines = [f"qkan-fast bench: {m['device_name']}, {result['settings']['dtype']}, {m['torch_threads']} threads, "
             f"torch {m['torch']}, qkan {m['qkan'] or 'not installed'}, commit {(m['git_commit'] or '?')[:10]}"
             f"{'+dirty' if m['git_dirty'] else ''}, load average {_loads(result['loadavg_before'])} -> "
             f"{_loads(result['loadavg_after'])} on {m['cpu_count']} CPUs"]
    if result["measurements"]:
        lines.append(str(tb.Compare(result["measurements"])).rstrip())
    ok = [r for r in result["records"] if "speedup_vs" in r]
    others = list(dict.fromkeys(o for r in ok for o in r["speedup_vs"]))
    heads = ["workload", "engine", *[f"f+b vs {o}" for o in others], "saved MiB", "peak MiB", "max rel diff"]
    rows = []
    for r in result["records"]:
        if r["status"] != "ok" or r not in ok:
            rows.append([r["workload"], r["engine"], f"{r['status']}: {r.get('reason', 'no time')}"])
            continue
        sp = r["speedup_vs"]
        rows.append([r["workload"], r["engine"],
                     *[f"{sp[o]['forward_backward']:.3g}x" if o in sp else "" for o in others],
                     f"{r['saved_bytes_activations'] / 2**20:.3g}",
                     "-" if r["peak_memory_extra_bytes"] is None else f"{r['peak_memory_extra_bytes'] / 2**20:.3g}",
                     "-" if r["max_rel_diff"] is None else f"{r['max_rel_diff']:.1e}"])
    widths = [max([len(h)] + [len(row[i]) for row in rows if len(row) == len(heads)]) for i, h in enumerate(heads)]
    lines.append("")
    for row in [heads, *rows]:
        cells = row if len(row) == len(heads) else row[:2]
        text = "  ".join(c.ljust(widths[i]) if i < 2 else c.rjust(widths[i]) for i, c in enumerate(cells))
        lines.append(text + ("" if len(row) == len(heads) else "  " + row[2]))
    lines.append("f+b vs E: E's forward+backward median / this row's (> 1: this row is faster); saved MiB: tensors "
                 "saved for backward beyond x and the parameters; peak MiB: CUDA only; max rel diff: of y and every "
                 "gradient against the reference engine, over the reference's largest value.")
    return "\n".join(lines)
