"""What every results file records about where it ran: machine, build, commit, load.

Used by `qkan-fast bench` and `qkan-fast demo`; on a shared machine a figure without its load
average and commit cannot be checked.
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import List, Optional

import torch


def cpu_model() -> Optional[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _git(*args: str) -> Optional[str]:
    try:
        return subprocess.run(["git", "-C", str(Path(__file__).resolve().parent), *args], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def git_state() -> dict:
    """The commit of the checkout this package runs from (None when installed from a wheel), and
    whether tracked files differ from it."""
    commit = _git("rev-parse", "HEAD")
    return {"git_commit": commit,
            "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")) if commit else None}


def load_average() -> Optional[List[float]]:
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def record(device: torch.device, load_before: Optional[List[float]], qkan: Optional[str] = None) -> dict:
    """describe() with the load average before a run (taken by the caller) and now, after it: the
    `machine` entry of a results file."""
    return {**describe(device, qkan), "loadavg_before": load_before, "loadavg_after": load_average()}


def describe(device: torch.device, qkan: Optional[str] = None) -> dict:
    """Platform, CPU model and count, torch and its threads, qkan_fast and its build, the device,
    the commit, and the thread-pool variables (OMP_WAIT_POLICY and co. move CPU results a lot)."""
    import qkan_fast

    return {
        "platform": platform.platform(), "python": platform.python_version(), "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "qkan_fast": qkan_fast.__version__, "build_info": qkan_fast.build_info(), "qkan": qkan,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model(),
        **git_state(),
        "env": {k: v for k, v in sorted(os.environ.items()) if k.startswith(("OMP_", "GOMP_", "KMP_", "MKL_", "QKAN"))},
    }
