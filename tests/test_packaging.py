"""Packaging facts the wheel relies on: one version everywhere, and a CUDA check that either
describes a usable GPU or says clearly why not (never a broken import)."""

import importlib.metadata
import pathlib
import re

import pytest
import torch

import qkan_fast
from qkan_fast import _C


def test_version_lives_in_version_py():
    source = pathlib.Path(qkan_fast.__file__).with_name("_version.py").read_text()
    declared = re.search(r'__version__\s*=\s*"([^"]+)"', source).group(1)
    assert qkan_fast.__version__ == declared
    compiled = qkan_fast.build_info()["version"]
    # "dev" only when _C was built by plain CMake, outside scikit-build-core.
    assert compiled in (declared, "dev"), f"build_info version {compiled!r}, expected {declared!r}"
    try:
        installed = importlib.metadata.version("qkan_fast")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("qkan_fast is not installed (run from the source tree)")
    assert installed == declared


def test_cuda_check_reports_or_explains():
    if torch.cuda.is_available() and qkan_fast.build_info()["cuda"]:
        info = _C.cuda_check(0)
        assert info["compiled_archs"] == qkan_fast.build_info()["cuda_archs"]
        assert info["runs_as"].startswith(("sass", "ptx-jit", "unchecked"))
        return
    with pytest.raises(RuntimeError) as err:
        _C.cuda_check(0)
    message = str(err.value)
    if qkan_fast.build_info()["cuda"]:
        assert qkan_fast.build_info()["cuda_archs"] in message, f"the compiled archs missing from {message!r}"
    else:
        assert "without CUDA" in message, message
