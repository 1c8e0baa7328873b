"""A physics-informed QKAN: the 2-D Poisson problem u_xx + u_yy = f on the unit square,
u = 0 on the boundary, with the known solution u*(x, y) = sin(pi x) sin(pi y).

The loss holds the network's second derivatives in its input (u_xx, u_yy at collocation points),
so every training step differentiates through a gradient: forward, input derivatives with
create_graph=True, then the parameter gradient of that loss (third-order terms). qkan_fast runs it
on its kernels (docs/engines.md, "Higher-order derivatives"); with `qkan` installed the same model
also trains on qkan's `exact` solver, from the same parameters, so both loss curves print side by
side, with the time of a step.

    python examples/poisson_pinn.py [--steps 20] [--points 1024] [--width 2,16,16,1] [--no-qkan]

`qkan` is optional (the outside reference):
QKAN_SKIP_CUDA_BUILD=TRUE pip install --no-build-isolation qkan==0.2.3
"""

from __future__ import annotations

import argparse
import math
import time

import torch

import qkan_fast
from qkan_fast import pinn


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--points", type=int, default=1024, help="interior collocation points")
    p.add_argument("--width", default="2,16,16,1")
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--no-qkan", action="store_true", help="do not train qkan's exact solver beside ours")
    args = p.parse_args(argv)
    width = [int(w) for w in args.width.split(",")]
    problem = pinn.PoissonProblem(points=args.points, seed=0)
    models = {"qkan_fast": qkan_fast.QKAN(width, reps=3, seed=0)}
    if not args.no_qkan:
        try:
            models["qkan exact"] = pinn.qkan_exact_twin(models["qkan_fast"])
        except ImportError as err:
            print(f"(qkan not installed, training ours only: {err})")
    curves = {name: pinn.train(m, problem, steps=args.steps, lr=args.lr) for name, m in models.items()}
    names = list(curves)
    print("step  " + "  ".join(f"{n + ' loss':>16}" for n in names))
    for k in range(args.steps):
        print(f"{k:4d}  " + "  ".join(f"{curves[n]['loss'][k]:16.8e}" for n in names))
    for n in names:
        t = curves[n]["step_seconds"]
        print(f"{n}: median step {sorted(t)[len(t) // 2] * 1e3:.1f} ms; relative L2 error of u "
              f"{pinn.relative_error(models[n], problem):.3e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
