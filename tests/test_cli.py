"""The `qkan-fast` command (python/qkan_fast/cli.py), the benchmark behind `qkan-fast bench`, and
the progress helper shared with the demo.

Every bench run here uses tiny custom workloads and short timing, so the file takes seconds.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest
import torch

pytest.importorskip("qkan_fast._C")
import qkan_fast  # noqa: E402
from qkan_fast import bench, cli  # noqa: E402
from qkan_fast._progress import Progress  # noqa: E402

TINY = "16x3x2x2"
FAST = ["--rounds", "2", "--min-run-time", "0.02"]


def _strict_json(path):
    def no_constants(name):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(path.read_text(), parse_constant=no_constants)


def _run_bench(tmp_path, capsys, *extra):
    out = tmp_path / "sub" / "result.json"  # a missing folder is created
    rc = cli.main(["bench", "--quick", "--workloads", TINY, *FAST, "--json", str(out), *extra])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    return _strict_json(out), captured.out, captured.err


def test_info_prints_build_torch_threads_and_gpu(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    build = qkan_fast.build_info()
    assert f"qkan_fast {qkan_fast.__version__}" in out
    assert f"OpenMP: {'yes' if build['openmp'] else 'no'}" in out
    assert f"in use: {build['cpu_isa']}" in out
    assert all(isa in out for isa in build["cpu_isa_compiled"])
    assert f"torch {torch.__version__}" in out and f"threads {torch.get_num_threads()}" in out
    gpu_line = next(line for line in out.splitlines() if line.startswith("GPU:"))
    if torch.cuda.is_available():
        assert torch.cuda.get_device_name(0) in gpu_line
    else:
        assert gpu_line == "GPU: none"


def test_one_parser_runs_every_subcommand(capsys):
    parser = cli.build_parser()
    for name in ("info", "bench", "demo"):
        assert callable(parser.parse_args([name]).run), name
    assert cli.main([]) == 2
    out = capsys.readouterr().out
    assert all(name in out for name in ("info", "bench", "demo"))


def test_demo_options_reach_run_demo(monkeypatch):
    from qkan_fast import demo

    seen = {}
    monkeypatch.setattr(demo, "run_demo", lambda **kw: seen.update(kw) or {})
    assert cli.main(["demo", "--epochs", "3", "--hidden", "8", "--seeds", "4", "--seed", "2", "--out", "d", "--quick",
                     "--no-progress", "--threads", "1", "--workers", "2"]) == 0
    assert seen == dict(epochs=3, hidden=8, seeds=4, seed=2, out="d", quick=True, progress=False, threads=1, workers=2)
    assert cli.main(["demo"]) == 0
    # the defaults are the QKAN-LSTM authors' settings (demo.py), not the parser's own copies
    assert (seen["epochs"], seen["hidden"], seen["seed"], seen["seeds"]) == (demo.EPOCHS, demo.HIDDEN,
                                                                           demo.FIRST_SEED, demo.SEEDS)
    assert seen["progress"] is True and seen["quick"] is False and seen["workers"] is None


def test_bench_quick_tiny_writes_well_formed_json(tmp_path, capsys):
    data, report, _ = _run_bench(tmp_path, capsys, "--peers", "none")
    assert data["schema"] == bench.SCHEMA
    machine = data["machine"]
    assert machine["torch"] == torch.__version__ and machine["torch_threads"] == torch.get_num_threads()
    assert machine["cpu_count"] >= 1 and machine["build_info"]["cpu_isa"] == qkan_fast.build_info()["cpu_isa"]
    for key in ("git_commit", "git_dirty", "cpu_model"):
        assert key in machine
    assert len(data["loadavg_before"]) == len(data["loadavg_after"]) == 3
    assert data["settings"]["rounds"] == 2 and data["settings"]["min_run_time"] == 0.02
    records = data["records"]
    assert [(r["workload"], r["engine"]) for r in records] == [(TINY, "circuit"), (TINY, "reference")]
    for r in records:
        assert r["status"] == "ok", r
        assert (r["batch"], r["in_dim"], r["out_dim"], r["reps"]) == (16, 3, 2, 2)
        for kind in ("forward", "forward_backward"):
            m = r[kind]
            assert m["samples"] >= 2 and len(m["times_s"]) == m["samples"]  # at least one block per round
            assert min(m["times_s"]) <= m["median_s"] <= max(m["times_s"])
            assert m["edge_samples_per_s"] == pytest.approx(16 * 3 * 2 / m["median_s"])
        assert r["saved_bytes"] >= r["saved_bytes_activations"] >= 0
        assert {"y", "grad_x", "grad_theta", "grad_base_weight"} <= set(r["max_abs_diff"])
        assert max(r["max_abs_diff"].values()) < 1e-4
    circuit, reference = records
    assert circuit["speedup_vs"]["reference"]["forward"] == pytest.approx(
        reference["forward"]["median_s"] / circuit["forward"]["median_s"])
    assert reference["max_abs_diff"]["y"] == 0.0
    assert "forward+backward" in report and "f+b vs reference" in report


def test_bench_progress_is_plain_lines_when_stderr_is_not_a_terminal(tmp_path, capsys):
    _, _, err = _run_bench(tmp_path, capsys, "--peers", "none")
    assert "\r" not in err
    assert f"{TINY} circuit: probed" in err and f"{TINY} forward_backward" in err


def test_bench_threads_float64_and_variants(tmp_path, capsys):
    threads = torch.get_num_threads()
    try:
        data, _, _ = _run_bench(tmp_path, capsys, "--peers", "none", "--threads", "1", "--dtype", "float64",
                                "--workloads", f"{TINY}:born,{TINY}:rpz:preact")
    finally:
        torch.set_num_threads(threads)
    assert data["machine"]["torch_threads"] == 1
    records = data["records"]
    assert [r["workload"] for r in records] == [f"{TINY}:born"] * 2 + [f"{TINY}:rpz:preact"] * 2
    assert records[0]["fast_measure"] is False
    assert records[2]["ansatz"] == "rpz" and records[2]["preact_trainable"] is True
    for r in records:
        assert r["status"] == "ok" and r["dtype"] == "float64" and r["threads"] == 1, r
        assert max(r["max_abs_diff"].values()) < 1e-10
    assert "grad_preacts_weight" in records[2]["max_abs_diff"]


def test_bench_with_qkan_peer(tmp_path, capsys):
    pytest.importorskip("qkan")
    data, report, _ = _run_bench(tmp_path, capsys, "--peers", "qkan-exact,qkan-flash")
    by_engine = {r["engine"]: r for r in data["records"]}
    assert data["machine"]["qkan"]
    exact = by_engine["qkan-exact"]
    assert exact["status"] == "ok", exact
    assert max(exact["max_abs_diff"].values()) < 1e-4
    assert by_engine["circuit"]["speedup_vs"]["qkan-exact"]["forward_backward"] > 0
    assert by_engine["qkan-flash"]["status"] == "skipped"  # CPU: flash needs CUDA
    assert "qkan-exact" in report


def test_bench_size_guard_skips_reference(tmp_path, capsys):
    data, report, _ = _run_bench(tmp_path, capsys, "--peers", "none", "--max-work", "10")
    by_engine = {r["engine"]: r for r in data["records"]}
    assert by_engine["reference"]["status"] == "skipped"
    assert "B*O*I*R" in by_engine["reference"]["reason"]
    assert by_engine["circuit"]["status"] == "ok"
    assert by_engine["circuit"]["max_abs_diff"] is None  # no reference to compare with
    assert "skipped" in report


def test_quick_runs_the_reference_only_on_small_layers(tmp_path, capsys):
    data, _, _ = _run_bench(tmp_path, capsys, "--peers", "none", "--workloads", f"{TINY},1024x16x16x8")
    status = {(r["workload"], r["engine"]): r["status"] for r in data["records"]}
    assert status == {(TINY, "circuit"): "ok", (TINY, "reference"): "ok",
                      ("1024x16x16x8", "circuit"): "ok", ("1024x16x16x8", "reference"): "skipped"}
    assert data["settings"]["max_work"] == 2e6


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--workloads", "W9"], "unknown workload"),
        (["--workloads", "W1:bogus"], "unknown modifier"),
        (["--workloads", "0x4x3x2"], "unknown workload"),
        (["--engines", "warp"], "unknown engine"),
        (["--peers", "exact"], "unknown peer"),
        (["--ansatz", "zz"], "unknown ansatz"),
        (["--rounds", "-1"], "--rounds must be positive"),
        (["--workloads", "L1,W1"], "L1 and LD run without other workloads"),
    ],
)
def test_bench_bad_arguments(capsys, argv, message):
    assert cli.main(["bench", *argv]) == 2
    assert message in capsys.readouterr().err


def test_bench_lstm_recurrence_fused_loop_and_nn_lstm(tmp_path, capsys):
    out = tmp_path / "lstm.json"
    threads = torch.get_num_threads()
    try:
        rc = cli.main(["bench", "--workloads", "LD", *FAST, "--threads", "1", "--json", str(out)])
    finally:
        torch.set_num_threads(threads)
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    data = _strict_json(out)
    assert data["schema"] == "qkan_fast.bench.lstm/1" and data["threads"] == 1
    r = data["workloads"]["LD"]
    assert r["shape"]["batch"] == 2 and r["shape"]["hidden"] == 5
    t = {k: v["median"] for k, v in r["forward_backward_seconds"].items()}
    assert set(t) == {"qkan_fast fused", "qkan_fast loop", "nn.LSTM"}
    assert 0 < r["fused_forward_seconds"]["median"]
    assert r["fused_over_nn_lstm"] == pytest.approx(t["qkan_fast fused"] / t["nn.LSTM"])
    assert r["loop_over_fused"] == pytest.approx(t["qkan_fast loop"] / t["qkan_fast fused"])
    assert r["max_rel_diff_fused_vs_loop"] < 1e-5  # float32
    assert "LD: QKAN-LSTM recurrence" in captured.out


def test_parse_workloads():
    w1, custom, variant = bench.parse_workloads("W1, 8x4x3x2 ,W2:px:preact:born")
    assert (w1.batch, w1.in_dim, w1.out_dim, w1.reps) == (1024, 16, 16, 3)
    assert (custom.batch, custom.in_dim, custom.out_dim, custom.reps) == (8, 4, 3, 2)
    assert (variant.ansatz, variant.preact_trainable, variant.fast_measure) == ("px", True, False)
    assert [w.name for w in bench.parse_workloads("all")] == ["W1", "W2", "W3", "W4", "W5", "W6"]
    variants = bench.parse_workloads("W2-variants")
    assert {w.ansatz for w in variants} == set(bench.ANSATZE) and not variants[0].fast_measure
    assert bench.parse_workloads("W3", ansatz="mix")[0].ansatz == "mix"


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_on_a_terminal_plain_lines_in_a_log(monkeypatch):
    pytest.importorskip("tqdm")
    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    bar = Progress(10, "train", lines=2)
    for k in range(10):
        bar.step(f"loss {k}")
    bar.close()
    assert "\r" not in log.getvalue()
    assert log.getvalue().splitlines() == ["train: 5/10 loss 4", "train: 10/10 loss 9"]

    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    bar = Progress(10, "train")
    for k in range(10):
        bar.step()
    bar.close()
    assert "\r" in terminal.getvalue() and "train:" in terminal.getvalue()  # tqdm's bar, redrawn in place


def test_console_entry_point_runs_as_module():
    proc = subprocess.run([sys.executable, "-m", "qkan_fast.cli", "info"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"qkan_fast {qkan_fast.__version__}")
