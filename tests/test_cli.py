"""Fast tests of the `qkan-fast` command (python/qkan_fast/cli.py) and the benchmark logic behind it.

Every bench run here uses tiny custom workloads, so the whole file takes a few seconds.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("qkan_fast._C")
from qkan_fast import bench, cli  # noqa: E402

TINY = "16x3x2x2"


def _strict_json(path):
    def no_constants(name):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(path.read_text(), parse_constant=no_constants)


def _run_bench(tmp_path, capsys, *extra):
    out = tmp_path / "sub" / "result.json"  # a missing folder is created
    rc = cli.main(["bench", "--quick", "--quiet", "--workloads", TINY, "--json", str(out), *extra])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    return _strict_json(out), captured.out


def test_info(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    for needle in ("qkan_fast", "build_info", "torch", "threads", "cuda"):
        assert needle in out


def test_no_subcommand_prints_help(capsys):
    assert cli.main([]) == 2
    out = capsys.readouterr().out
    assert "bench" in out and "info" in out


def test_registry_builds_one_subparser_per_command():
    assert {"info", "bench"} <= set(cli.COMMANDS)
    for cmd in cli.COMMANDS.values():
        assert cmd.run is not None, cmd.name
    with pytest.raises(ValueError):
        cli.command("info", help="duplicate")(lambda parser: None)


def test_bench_quick_tiny_writes_well_formed_json(tmp_path, capsys):
    data, table = _run_bench(tmp_path, capsys, "--peers", "none")
    assert data["schema"] == bench.SCHEMA
    machine = data["machine"]
    for key in ("platform", "cpu_model", "torch", "qkan_fast", "build_info", "torch_threads", "git_commit"):
        assert key in machine
    records = data["records"]
    assert [(r["workload"], r["engine"]) for r in records] == [(TINY, "circuit"), (TINY, "reference")]
    for r in records:
        assert r["status"] == "ok", r
        assert (r["batch"], r["in_dim"], r["out_dim"], r["reps"]) == (16, 3, 2, 2)
        for kind in ("forward", "forward_backward"):
            m = r[kind]
            assert m["median_s"] > 0 and 1 <= m["repeats"] <= 3
            assert m["edge_samples_per_s"] == pytest.approx(16 * 3 * 2 / m["median_s"])
        assert r["saved_bytes"] >= r["saved_bytes_activations"] >= 0
        # parity against the reference (float32)
        diffs = r["max_abs_diff"]
        assert {"y", "grad_x", "grad_theta", "grad_base_weight"} <= set(diffs)
        assert max(diffs.values()) < 1e-4
    circuit, reference = records
    assert set(circuit["speedup_vs"]) == {"reference"}
    assert reference["max_abs_diff"]["y"] == 0.0
    assert TINY in table and "circuit" in table and "reference" in table


def test_bench_float64_parity_and_variants(tmp_path, capsys):
    data, _ = _run_bench(
        tmp_path, capsys, "--peers", "none", "--dtype", "float64", "--workloads", f"{TINY}:born,{TINY}:rpz:preact"
    )
    records = data["records"]
    assert [r["workload"] for r in records] == [f"{TINY}:born"] * 2 + [f"{TINY}:rpz:preact"] * 2
    assert records[0]["fast_measure"] is False
    assert records[2]["ansatz"] == "rpz" and records[2]["preact_trainable"] is True
    for r in records:
        assert r["status"] == "ok", r
        assert r["dtype"] == "float64"
        assert max(r["max_abs_diff"].values()) < 1e-10
    assert "grad_preacts_weight" in records[3]["max_abs_diff"]


def test_bench_with_qkan_peer(tmp_path, capsys):
    pytest.importorskip("qkan")
    data, table = _run_bench(tmp_path, capsys, "--peers", "qkan-exact,qkan-flash")
    by_engine = {r["engine"]: r for r in data["records"]}
    assert data["machine"]["qkan"]
    exact = by_engine["qkan-exact"]
    assert exact["status"] == "ok", exact
    assert max(exact["max_abs_diff"].values()) < 1e-4
    assert by_engine["circuit"]["speedup_vs"]["qkan-exact"]["forward"] > 0
    assert by_engine["qkan-flash"]["status"] == "skipped"  # CPU: flash needs CUDA
    assert "qkan-exact" in table


def test_bench_size_guard_skips_reference(tmp_path, capsys):
    data, table = _run_bench(tmp_path, capsys, "--peers", "none", "--max-work", "10")
    by_engine = {r["engine"]: r for r in data["records"]}
    assert by_engine["reference"]["status"] == "skipped"
    assert "B*O*I*R" in by_engine["reference"]["reason"]
    assert by_engine["circuit"]["status"] == "ok"
    assert by_engine["circuit"]["max_abs_diff"] is None  # no reference to compare with
    assert "skipped" in table


def test_bench_plot_optional(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails as if not installed
    png = tmp_path / "plot.png"
    _, out = _run_bench(tmp_path, capsys, "--peers", "none", "--plot", str(png))
    assert "skipped the plot" in out and "matplotlib" in out
    assert not png.exists()


def test_bench_plot_png(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    png = tmp_path / "plot.png"
    _run_bench(tmp_path, capsys, "--peers", "none", "--plot", str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--workloads", "W9"], "unknown workload"),
        (["--workloads", "W1:bogus"], "unknown modifier"),
        (["--engines", "warp"], "unknown engine"),
        (["--peers", "exact"], "unknown peer"),
        (["--ansatz", "zz"], "unknown ansatz"),
    ],
)
def test_bench_bad_arguments(capsys, argv, message):
    assert cli.main(["bench", *argv]) == 2
    assert message in capsys.readouterr().err


def test_parse_workloads():
    w1, custom, variant = bench.parse_workloads("W1, 8x4x3x2 ,W2:px:preact:born")
    assert (w1.batch, w1.in_dim, w1.out_dim, w1.reps) == (1024, 16, 16, 3)
    assert (custom.batch, custom.in_dim, custom.out_dim, custom.reps) == (8, 4, 3, 2)
    assert (variant.ansatz, variant.preact_trainable, variant.fast_measure) == ("px", True, False)
    assert [w.name for w in bench.parse_workloads("all")] == ["W1", "W2", "W3", "W4", "W5", "W6"]
    assert all(w.name.startswith("W2") for w in bench.parse_workloads("W2-variants"))
    assert bench.parse_workloads("W3", ansatz="mix")[0].ansatz == "mix"


def test_console_entry_point_runs_as_module():
    proc = subprocess.run(
        [sys.executable, "-m", "qkan_fast.cli", "info"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "build_info" in proc.stdout
