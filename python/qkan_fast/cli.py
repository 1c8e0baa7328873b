"""The `qkan-fast` command.

    qkan-fast info                 what the compiled core was built with, torch, threads, CUDA
    qkan-fast bench [options]      side-by-side benchmark (docs/benchmarks.md), see `qkan-fast bench -h`

Subcommands live in a registry: to add one, write a function that fills its argparse parser and a
function that runs it, and register them::

    @command("name", help="one line for `qkan-fast -h`")
    def _name_args(parser): parser.add_argument(...)

    @_name_args.runner
    def _name_run(args) -> int: ...

`main(argv)` builds one subparser per registered command, in registration order.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

# ------------------------------------------------------------------------------------------------
# registry


@dataclass
class Command:
    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Optional[Callable[[argparse.Namespace], int]] = None
    description: Optional[str] = None

    def runner(self, fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        self.run = fn
        return fn


COMMANDS: Dict[str, Command] = {}


def command(name: str, help: str, description: Optional[str] = None):
    """Decorator: register `fn(parser)` as the argument set-up of subcommand `name`; returns the
    Command, whose `.runner` decorator registers the function that runs it."""

    def wrap(configure: Callable[[argparse.ArgumentParser], None]) -> Command:
        if name in COMMANDS:
            raise ValueError(f"qkan-fast subcommand {name!r} is already registered")
        cmd = Command(name, help, configure, description=description)
        COMMANDS[name] = cmd
        return cmd

    return wrap


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qkan-fast",
        description="qkan_fast: fused C++/CUDA kernels for quantum-inspired Kolmogorov-Arnold networks.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for cmd in COMMANDS.values():
        p = sub.add_parser(
            cmd.name, help=cmd.help, description=cmd.description or cmd.help,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        cmd.configure(p)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of `qkan-fast` (pyproject: qkan-fast = "qkan_fast.cli:main")."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    cmd = COMMANDS[args.command]
    if cmd.run is None:
        parser.error(f"subcommand {args.command!r} has no runner")
    try:
        return int(cmd.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


# ------------------------------------------------------------------------------------------------
# info


@command("info", help="print the build configuration, torch version, threads and CUDA availability")
def _info_args(parser: argparse.ArgumentParser) -> None:
    pass


@_info_args.runner
def _info_run(args: argparse.Namespace) -> int:
    import platform

    import torch

    import qkan_fast
    from . import bench

    print(f"qkan_fast {qkan_fast.__version__}")
    print("build_info:")
    for key, value in qkan_fast.build_info().items():
        print(f"  {key}: {value}")
    print(f"torch {torch.__version__}  (python {platform.python_version()}, {platform.platform()})")
    print(f"cpu: {bench._cpu_model()}  ({os.cpu_count()} logical cpus)")
    print(f"torch threads: {torch.get_num_threads()}  (interop {torch.get_num_interop_threads()})")
    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        print(f"cuda: available, torch CUDA {torch.version.cuda}, {torch.cuda.device_count()} device(s): {names}")
    else:
        why = "torch built without CUDA" if torch.version.cuda is None else "no CUDA device visible"
        print(f"cuda: not available ({why})")
    print(f"engines: {', '.join(qkan_fast.ENGINES)}")
    qv = bench.qkan_version()
    print(f"qkan (peer): {qv if qv else 'not installed'}")
    return 0


# ------------------------------------------------------------------------------------------------
# bench

_BENCH_DESCRIPTION = """\
Measure qkan_fast's engines against the pure-torch reference and qkan==0.2.3's solvers on the
workloads of docs/benchmarks.md, in one process, same parameters and inputs, after a warm-up; runs of the
engines are interleaved. Prints a table; --json writes every measurement with the machine header.

workloads (--workloads, comma-separated):
  W1 1024x16x16 R3   W2 1024x64x64 R3   W3 256x128x128 R4   W4 4096x32x32 R8
  W5 8192x10x10 R1   W6 4096x256x256 R3 (B x I x O, R repetitions; fp32, pz, fast_measure)
  BxIxOxR            a custom shape, e.g. 64x4x3x2
  NAME:mod[:mod]     modifiers: an ansatz (pz rpz px real mix), born, fast, preact; e.g. W2:born
  all, W2-variants   groups: W1..W6; W2 with born, preact and each ansatz

examples:
  qkan-fast bench --quick
  qkan-fast bench --workloads W1,W2,W3,W4 --threads 2 --json bench/results/cpu_2threads.json
  qkan-fast bench --device cuda --workloads all --peers qkan-exact,qkan-flash --plot gpu.png
"""


def _csv(value: str) -> List[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


@command("bench", help="benchmark the engines against the reference and qkan (docs/benchmarks.md)",
         description=_BENCH_DESCRIPTION)
def _bench_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true",
                   help="a first look in well under a minute: W1,W2, 3 runs, circuit vs reference and "
                        "qkan-exact (if installed), 2 s time budget per measurement")
    p.add_argument("--workloads", help="comma-separated workloads (default: all; --quick: W1,W2)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="default: cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"], help="default: float32")
    p.add_argument("--engines", type=_csv, help="qkan_fast engines (default: circuit,reference)")
    p.add_argument("--peers", help="qkan solvers: qkan-exact,qkan-cutn,qkan-flash or none "
                                   "(default: qkan-exact on cpu; qkan-exact,qkan-flash on cuda)")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's default)")
    p.add_argument("--repeats", type=int, help="timed runs per engine after 1 warm-up (default 5; --quick 3)")
    p.add_argument("--peer-repeats", type=int, help="timed runs for the qkan solvers (default min(repeats, 3))")
    p.add_argument("--budget", type=float, metavar="SECONDS",
                   help="time budget per engine and measurement: fewer runs when the warm-up shows they "
                        "would exceed it, the cold warm-up alone when it does (default none; --quick 2)")
    p.add_argument("--max-work", type=float, metavar="N",
                   help="skip the reference and qkan above B*O*I*R = N (default 5e7 on cpu, 2e9 on cuda)")
    p.add_argument("--peer-max-work", type=float, metavar="N",
                   help="skip qkan above B*O*I*R = N (default: as --max-work); e.g. 2e6 keeps qkan on W1 "
                        "and skips it on W2-W4, where qkan exact takes seconds per forward+backward")
    p.add_argument("--ansatz", default="pz", help="ansatz for every workload (pz rpz px real mix; default pz)")
    p.add_argument("--born", action="store_true", help="fast_measure=False (Born rule <Z>) for every workload")
    p.add_argument("--preact-trainable", action="store_true", help="preact_trainable=True for every workload")
    p.add_argument("--seed", type=int, default=0, help="seed of the parameters and inputs (default 0)")
    p.add_argument("--json", metavar="PATH", help="write the results as JSON")
    p.add_argument("--plot", metavar="PATH", help="write a PNG bar chart (needs matplotlib)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")


@_bench_args.runner
def _bench_run(args: argparse.Namespace) -> int:
    import torch

    from . import bench

    def fail(msg: str) -> int:
        print(f"qkan-fast bench: error: {msg}", file=sys.stderr)
        return 2

    if args.device == "cuda" and not torch.cuda.is_available():
        return fail("--device cuda but CUDA is not available (see `qkan-fast info`)")
    try:
        workloads = bench.parse_workloads(
            args.workloads or ("W1,W2" if args.quick else "all"),
            ansatz=args.ansatz, fast_measure=not args.born, preact_trainable=args.preact_trainable,
        )
    except ValueError as e:
        return fail(str(e))
    ours = args.engines or ["circuit", "reference"]
    known = bench.our_engines()
    bad = [e for e in ours if e not in known]
    if bad:
        return fail(f"unknown engine(s) {', '.join(bad)}; qkan_fast offers {', '.join(known)} "
                    "(qkan solvers go in --peers)")
    if args.peers is None:
        peers = ["qkan-exact"] if args.device == "cpu" else ["qkan-exact", "qkan-flash"]
        if args.quick and bench.qkan_version() is None:
            peers = []
    elif args.peers.strip().lower() in ("", "none"):
        peers = []
    else:
        peers = _csv(args.peers)
        bad = [p for p in peers if not p.startswith("qkan-") or len(p) <= len("qkan-")]
        if bad:
            return fail(f"unknown peer(s) {', '.join(bad)}; use {', '.join(bench.PEERS)} or none")
    repeats = args.repeats if args.repeats is not None else (3 if args.quick else 5)
    if repeats < 1:
        return fail("--repeats must be >= 1")
    peer_repeats = args.peer_repeats if args.peer_repeats is not None else min(repeats, 3)
    if peer_repeats < 1:
        return fail("--peer-repeats must be >= 1")
    if args.threads is not None and args.threads < 1:
        return fail("--threads must be >= 1")
    budget = args.budget if args.budget is not None else (2.0 if args.quick else None)
    peer_max_work = args.peer_max_work
    cfg = bench.BenchConfig(
        workloads=workloads, engines=list(dict.fromkeys(ours + peers)), device=args.device, dtype=args.dtype,
        repeats=repeats, peer_repeats=peer_repeats, budget_s=budget, max_work=args.max_work, peer_max_work=peer_max_work,
        threads=args.threads, seed=args.seed,
    )
    log = (lambda s: None) if args.quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    warning = bench.load_warning(args.device)
    if warning:
        print(f"qkan-fast bench: warning: {warning}", file=sys.stderr, flush=True)
    result = bench.run_bench(cfg, log=log)
    print(bench.format_table(result))
    print(f"\n({result['elapsed_s']:.1f} s; shared machines are noisy: quote ratios from one run, not lone times)")
    if args.json:
        bench.write_json(result, args.json)
        print(f"wrote {args.json}")
    if args.plot:
        why = bench.plot(result, args.plot)
        print(f"skipped the plot: {why}" if why else f"wrote {args.plot}")
    return 0



# ------------------------------------------------------------------------------------------------
# demo (the project's main job; lives in demo.py)


@command("demo", help="train QKAN-LSTM, HQKAN-LSTM and LSTMs on the pendulum and Bessel-J2 series")
def _demo_args(parser: argparse.ArgumentParser) -> None:
    from . import demo

    demo.configure_parser(parser)


@_demo_args.runner
def _demo_run(args: argparse.Namespace) -> int:
    from . import demo

    return demo.main(args)


if __name__ == "__main__":
    sys.exit(main())
