"""The demo (`qkan-fast demo`): its series against their defining equations, the windows, a quick
run end to end (its command-line options are in test_cli.py)."""

from __future__ import annotations

import json
import math
import statistics
import time

import numpy as np
import pytest
import torch

from qkan_fast import demo

_trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy < 2 has only trapz


def test_pendulum_solves_its_equation():
    t, theta, omega = demo.damped_pendulum()
    assert t.shape == theta.shape == omega.shape == (240,)
    assert float(t[0]) == 0.0 and float(t[-1]) == 20.0
    assert float(theta[0]) == 0.0 and float(omega[0]) == 3.0
    dt = float(t[1] - t[0])
    # central differences of the samples against the ODE (O(dt^2) ~ 1e-2 of the scales here)
    dtheta = (theta[2:] - theta[:-2]) / (2 * dt)
    domega = (omega[2:] - omega[:-2]) / (2 * dt)
    accel = -0.15 * omega[1:-1] - 9.81 * torch.sin(theta[1:-1])
    assert float((dtheta - omega[1:-1]).abs().max()) < 0.05 * float(omega.abs().max())
    assert float((domega - accel).abs().max()) < 0.05 * float(accel.abs().max())
    # damped: the swing decays
    assert float(omega[-60:].abs().max()) < 0.5 * float(omega[:60].abs().max())


def test_bessel_j2_against_its_integral():
    xs = [2.0, 5.5, 17.3, 60.0, 99.0]
    tau = np.linspace(0.0, math.pi, 20001)
    for x in xs:
        # J_n(x) = (1/pi) int_0^pi cos(n tau - x sin tau) dtau
        expected = _trapezoid(np.cos(2 * tau - x * np.sin(tau)), tau) / math.pi
        got = float(demo.bessel_j2(torch.tensor(x, dtype=torch.float64)))
        assert abs(got - expected) < 1e-6, (x, got, expected)


def test_series_are_scaled_and_windowed():
    for series, n in ((demo.pendulum_series(), 240), (demo.bessel_series(), 256)):
        assert series.shape == (n,)
        assert float(series.min()) == -1.0 and float(series.max()) == 1.0
        x, y = demo.make_windows(series)
        assert x.shape == (n - 4, 4, 1) and y.shape == (n - 4, 1)
        k = 37
        torch.testing.assert_close(x[k, :, 0], series[k:k + 4], rtol=0, atol=0)
        assert float(y[k, 0]) == float(series[k + 4])
    assert demo.lstm_params(16) == sum(p.numel() for p in torch.nn.LSTM(1, 16).parameters()) + 17
    assert demo.lstm_params(demo.matched_lstm_hidden(600)) in {demo.lstm_params(h) for h in (10, 11)}


def test_quick_demo_runs_and_writes_results(tmp_path):
    start = time.perf_counter()
    # in this process on one thread (workers=1): batches of 2 windows are too small to split, and
    # spawning workers would cost more than the smoke run
    res = demo.run_demo(quick=True, seeds=2, seed=7, out=str(tmp_path), progress=False, verbose=False, threads=1,
                        workers=1)
    elapsed = time.perf_counter() - start
    assert elapsed < 60, f"quick demo took {elapsed:.1f} s"
    cfg = res["config"]
    assert cfg["epochs"] == 1 and cfg["quick"] is True and cfg["threads"] == 1 and cfg["workers"] == 1
    assert (cfg["batch"], cfg["window"], cfg["lr"], cfg["train_fraction"]) == (2, 4, 1e-3, 0.8)
    assert cfg["seeds"] == 2 and cfg["seed_list"] == [7, 8]
    assert res["machine"]["torch_threads"] == 1 and len(res["machine"]["loadavg_after"]) == 3
    assert 0 < res["cpu_seconds"] and 0 < res["seconds"] < elapsed
    assert set(res["datasets"]) == {"pendulum", "bessel_j2"}
    for name, d in res["datasets"].items():
        n_windows = (240 if name == "pendulum" else 256) - 4
        assert d["n_train"] + d["n_test"] == n_windows and d["n_train"] == round(0.8 * n_windows)
        assert [m["name"] for m in d["models"]] == list(demo.MODEL_NAMES)
        by = {m["name"]: m for m in d["models"]}
        for m in d["models"]:
            assert isinstance(m["params"], int) and m["params"] > 0
            assert m["seeds"] == [7, 8] and len(m["test_mse_per_seed"]) == len(m["train_mse_per_seed"]) == 2
            assert all(math.isfinite(v) and 0 < v < 10 for v in m["test_mse_per_seed"])
            # the reported figure is the median over the seeds, and the plotted run is one of them
            assert m["test_mse_median"] == statistics.median(m["test_mse_per_seed"])
            assert m["train_mse_median"] == statistics.median(m["train_mse_per_seed"])
            assert m["median_seed"] in m["seeds"] and m["sec_per_epoch_median"] > 0
            assert len(m["loss_curve"]) == cfg["epochs"] and len(m["predictions"]) == n_windows
        # equal hidden size: ours and one LSTM; equal parameter count: the other LSTM
        assert by["QKAN-LSTM"]["hidden"] == by["HQKAN-LSTM"]["hidden"] == by["LSTM (equal hidden)"]["hidden"] \
            == cfg["hidden"]
        assert by["LSTM (equal hidden)"]["params"] == demo.lstm_params(cfg["hidden"])
        matched = by["LSTM (equal params)"]
        assert matched["hidden"] == cfg["matched_lstm_hidden"] == demo.matched_lstm_hidden(by["QKAN-LSTM"]["params"])
        assert matched["params"] == demo.lstm_params(matched["hidden"])
        # four comparisons (each of ours against each LSTM) and the one nearest the paper's claim
        assert len(d["comparisons"]) == 4
        best = d["closest_to_claim"]
        assert res["closest_to_claim"][name] == best
        assert {k: best[k] for k in d["comparisons"][0]} in d["comparisons"]
        assert isinstance(best["meets_claim"], bool)
        assert any(line.startswith(f"{name}: closest to the paper's claim: {best['model']} vs {best['baseline']}")
                   for line in res["summary"])
        # the summary quotes this run's parameter counts (not only the paper's headline)
        for c in d["comparisons"]:
            assert any(line.startswith(f"{name}: {c['model']} vs {c['baseline']}: ")
                       and f"({c['params']} vs {c['baseline_params']})" in line for line in res["summary"])
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["datasets"]["pendulum"]["models"][0]["test_mse_per_seed"] == \
        res["datasets"]["pendulum"]["models"][0]["test_mse_per_seed"]
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert res["files"]["png"] is None
    else:
        assert (tmp_path / "predictions.png").read_bytes()[:4] == b"\x89PNG"


def test_closest_to_claim_prefers_lower_mse_then_larger_saving():
    def cmp(model, saving, ratio):
        return dict(model=model, baseline="b", params=1, baseline_params=1, param_saving=saving, mse_ratio=ratio)

    # a lower MSE beats any saving; among lower MSEs the larger saving wins
    got = demo._closest_to_claim([cmp("a", 0.9, 1.5), cmp("b", 0.1, 0.9), cmp("c", 0.5, 0.95)])
    assert got["model"] == "c" and got["meets_claim"] is False
    # nothing more accurate: fewer parameters first, then the smaller MSE ratio
    got = demo._closest_to_claim([cmp("a", -1.0, 1.01), cmp("b", 0.3, 1.4), cmp("c", 0.2, 1.2)])
    assert got["model"] == "c"
    assert demo._closest_to_claim([cmp("a", 0.8, 0.5)])["meets_claim"] is True


def test_bad_sizes_are_rejected():
    with pytest.raises(ValueError, match="epochs"):
        demo.run_demo(epochs=0, out=None, progress=False, verbose=False)
    with pytest.raises(ValueError, match="seeds"):
        demo.run_demo(seeds=0, out=None, progress=False, verbose=False)
    with pytest.raises(ValueError, match="workers"):
        demo.run_demo(workers=0, out=None, progress=False, verbose=False)
