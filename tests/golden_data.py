"""The golden vectors computed by qkan 0.2.3 (tests/data/qkan-0.2.3-golden.json, docs/math.md, "How the definitions are checked").

Shared by tests/test_reference.py and (through conftest) the engine tests. It imports neither the
package nor conftest, so the oracle's tests stay collectable without the compiled extension.
A missing or unreadable file is a test failure: golden_params() then yields one case that fails
with the reason (see golden_case), so the golden tests can never be skipped or vanish silently.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

GOLDEN_FILE = Path(__file__).resolve().parent / "data" / "qkan-0.2.3-golden.json"
N_CASES = 36  # docs/math.md, "How the definitions are checked": what the file was made with
CASE_KEYS = {"ansatz", "fast_measure", "preact_trainable", "in_dim", "out_dim", "reps", "x", "grad_y", "y", "grad_x",
             "state_dict", "grads"}


class GoldenFileError(RuntimeError):
    """The golden file is missing, unreadable or not shaped as docs/math.md, "How the definitions are checked" says."""


def load_cases(path: Path = GOLDEN_FILE) -> list:
    """The list of case dicts; GoldenFileError saying what is wrong otherwise."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise GoldenFileError(f"cannot read the golden file {path}: {e}") from e
    cases = data.get("cases") if isinstance(data, dict) else None
    if not isinstance(cases, list):
        raise GoldenFileError(f"{path} has no 'cases' list")
    for k, case in enumerate(cases):
        missing = CASE_KEYS - set(case) if isinstance(case, dict) else CASE_KEYS
        if missing:
            raise GoldenFileError(f"{path}: case {k} lacks {sorted(missing)}")
    return cases


def case_id(k: int, case: dict) -> str:
    measure = "fast" if case["fast_measure"] else "born"
    pre = "pre" if case["preact_trainable"] else "nopre"
    return f"{k:02d}-{case['ansatz']}-{measure}-{pre}-I{case['in_dim']}O{case['out_dim']}R{case['reps']}"


def golden_params() -> list:
    """One pytest.param per case, or a single param holding the GoldenFileError when the file
    cannot be used (the test then fails in golden_case)."""
    try:
        cases = load_cases()
    except GoldenFileError as e:
        return [pytest.param(e, id="golden-file-unusable")]
    return [pytest.param(c, id=case_id(k, c)) for k, c in enumerate(cases)]


def golden_case(param) -> dict:
    """The case dict of a golden_params() entry; fails the test when the file was unusable."""
    if isinstance(param, GoldenFileError):
        pytest.fail(str(param))
    return param
