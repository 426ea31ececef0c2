"""The demo (``python -m ignite_speed.demo``), run in-process: its report, --compare, and its command line."""

from __future__ import annotations

import json
import re

import pytest
import torch

pytest.importorskip("sklearn")

from ignite_speed import SpeedConfig, demo  # noqa: E402


def run_main(capsys, *args: str) -> tuple[int, str, str]:
    code = demo.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def report_value(out: str, label: str) -> str:
    match = re.search(rf"^  {label}\s*: (.*)$", out, re.MULTILINE)
    assert match, f"no {label!r} line in:\n{out}"
    return match.group(1)


# ---------------------------------------------------------------------------------------------- the run report
def test_default_run_stops_early_and_reports_it(capsys):
    code, out, _ = run_main(capsys, "--no_progress")
    assert code == 0
    assert out.startswith("Run report")
    assert report_value(out, "stopped because").startswith(
        "early_stopping - Monitored metric val_acc did not improve in the last 6 records. Best score: "
    )
    assert report_value(out, "epochs") == "10 of max_epochs=40; 34 batches per epoch"
    assert (
        report_value(out, "batches / steps")
        == "340 batches, 340 optimizer steps of max_steps=no limit; max_time=0:02:00"
    )
    assert report_value(out, "validation runs") == "20"
    assert report_value(out, "best monitored") == "val_acc = 0.9667"
    assert report_value(out, "test accuracy") == "95.28 %"
    seconds = [float(s) for s in re.findall(r"([0-9.]+) s", report_value(out, "time"))]
    total, train, val, sanity = seconds
    assert total == pytest.approx(train + val + sanity, abs=0.02)
    assert 0 < val < total


def test_default_run_is_deterministic():
    cfg = SpeedConfig.from_any(demo.DEMO_DEFAULTS)
    first, _ = demo.train_with_speedups(cfg, seed=3, progress=False)
    second, _ = demo.train_with_speedups(cfg, seed=3, progress=False)
    assert (first.epochs, first.batches, first.val_runs, first.test_acc, first.best) == (
        second.epochs,
        second.batches,
        second.val_runs,
        second.test_acc,
        second.best,
    )


def test_limits_show_in_the_report(capsys):
    code, out, _ = run_main(
        capsys,
        "--no_progress",
        "--max_epochs",
        "3",
        "--limit_train_batches",
        "10",
        "--val_check_interval",
        "5",
        "--early_stopping",
        "None",
        "--limit_test_batches",
        "2",
    )
    assert code == 0
    assert report_value(out, "stopped because") == "max_epochs - max_epochs=3 reached"
    assert report_value(out, "epochs") == "3 of max_epochs=3; 10 batches per epoch (of 34 in the loader)"
    assert report_value(out, "batches / steps").startswith("30 batches, 30 optimizer steps")
    assert report_value(out, "validation runs") == "6"
    assert report_value(out, "best monitored") == "n/a (early stopping is off)"
    assert report_value(out, "test accuracy").endswith(" %")


def test_stopping_threshold_ends_the_run(capsys):
    es = {"monitor": "val_acc", "mode": "max", "stopping_threshold": 0.9}
    cfg = SpeedConfig.from_any({**demo.DEMO_DEFAULTS, "early_stopping": es})
    result, speedups = demo.train_with_speedups(cfg, progress=False)
    assert result.stop_reason == "early_stopping"
    assert speedups.early_stopping.stopping_reason.name == "STOPPING_THRESHOLD"
    assert result.best is not None and result.best <= 0.9  # the best is not updated by the threshold check
    assert result.epochs <= 3
    code, out, _ = run_main(capsys, "--no_progress", "--early_stopping", json.dumps(es))
    assert code == 0
    assert "threshold" in report_value(out, "stopped because")


def test_max_steps_and_accumulation(capsys):
    code, out, _ = run_main(
        capsys, "--no_progress", "--early_stopping", "none", "--max_steps", "20", "--accumulate_grad_batches", "2"
    )
    assert code == 0
    assert report_value(out, "stopped because") == "max_steps - max_steps=20 reached"
    assert report_value(out, "batches / steps").startswith("40 batches, 20 optimizer steps of max_steps=20")
    assert report_value(out, "epochs").startswith("2 of max_epochs=40")  # an epoch cut short still counts


def test_fast_dev_run(capsys):
    code, out, _ = run_main(capsys, "--no_progress", "--fast_dev_run", "true")
    assert code == 0
    assert report_value(out, "batches / steps").startswith("1 batches, 1 optimizer steps of max_steps=1")
    assert report_value(out, "validation runs") == "1"
    assert report_value(out, "best monitored") == "n/a (early stopping is off)"  # fast_dev_run turns it off


def test_progress_bar_total_reflects_the_limit(capsys):
    code, _, err = run_main(capsys, "--max_epochs", "1", "--limit_train_batches", "7", "--early_stopping", "None")
    assert code == 0
    assert "/7]" in err and "/34]" not in err
    assert "Iteration: [7/7]" in err or "[6/7]" in err


def test_threads_are_restored():
    before = torch.get_num_threads()
    assert demo.main(["--no_progress", "--fast_dev_run", "1"]) == 0
    assert torch.get_num_threads() == before


# ---------------------------------------------------------------------------------------------- --compare
def test_compare_meets_its_goal(capsys):
    code, out, _ = run_main(capsys, "--no_progress", "--compare")
    assert code == 0
    assert "Comparison (same model, same seed)" in out
    assert "goal met" in out

    # Measured again here: the best of two runs of each, so that a busy machine does not decide the outcome.
    cfg = SpeedConfig.from_any(demo.DEMO_DEFAULTS)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as main() does
    try:
        baselines = [demo.train_baseline(40, seed=0, progress=False) for _ in range(2)]
        fast_runs = [demo.train_with_speedups(cfg, seed=0, progress=False)[0] for _ in range(2)]
    finally:
        torch.set_num_threads(threads)
    baseline = min(baselines, key=lambda r: r.seconds)
    fast = min(fast_runs, key=lambda r: r.seconds)
    assert baseline.epochs == 40 and fast.epochs < 20
    assert fast.test_acc >= baseline.test_acc - 0.5
    assert abs(fast.test_acc - baseline.test_acc) <= 0.5
    assert fast.seconds / baseline.seconds <= 0.5


# ---------------------------------------------------------------------------------------------- --plot
PNG = b"\x89PNG\r\n\x1a\n"


def test_plot_of_the_run_and_of_the_comparison(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    path = tmp_path / "run.png"
    code, out, _ = run_main(capsys, "--no_progress", "--max_epochs", "2", "--plot", str(path))
    assert code == 0 and out.endswith(f"plot written to {path}\n")
    assert path.read_bytes()[:8] == PNG
    path = tmp_path / "compare.png"
    code, out, _ = run_main(
        capsys, "--no_progress", "--max_epochs", "2", "--compare", "--baseline_epochs", "3", "--plot", str(path)
    )
    assert code == 0 and "Comparison (same model, same seed)" in out and path.read_bytes()[:8] == PNG


def test_the_run_records_its_curve_for_the_comparison():
    cfg = SpeedConfig.from_any({**demo.DEMO_DEFAULTS, "max_epochs": 2})
    fast, speedups = demo.train_with_speedups(cfg, progress=False)
    baseline = demo.train_baseline(2, progress=False)
    assert [v for _, v in fast.curve] == [v.value for v in speedups.report().validations]
    assert len(fast.curve) == 4 and len(baseline.curve) == 2  # validation every half epoch vs every epoch
    assert all(0 < t <= fast.seconds for t, _ in fast.curve) and all(
        0 < t <= baseline.seconds for t, _ in baseline.curve
    )


def test_plot_without_matplotlib_is_an_error_after_the_report(tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    code, out, err = run_main(capsys, "--no_progress", "--fast_dev_run", "1", "--plot", str(tmp_path / "x.png"))
    assert code == 1 and out.startswith("Run report")
    summary, error = err.split("error: ", 1)  # (the fast_dev_run's summary first, on standard error)
    assert summary.startswith("ignite-speed: fast_dev_run=1 done (1 training batch, every engine run limited to ")
    assert (
        error == "--plot: plotting needs matplotlib, which is not installed: pip install matplotlib (or pip "
        "install 'ignite-speed[plot]')\n"
    )


def test_max_time_mode_shows_in_the_report(capsys):
    code, out, _ = run_main(
        capsys, "--no_progress", "--max_epochs", "2", "--max_time_mode", "fit", "--max_time_reserve", "10"
    )
    assert code == 0
    assert report_value(out, "batches / steps").endswith("max_time=0:02:00 (fit, reserve 0:00:10)")


# ---------------------------------------------------------------------------------------------- command line
@pytest.mark.parametrize(
    "text, value",
    [
        ("3", 3),
        ("-1", -1),
        ("0.5", 0.5),
        ("1.0", 1.0),
        ("None", None),
        ("none", None),
        ("true", True),
        ("False", False),
        ('{"monitor": "val_acc"}', {"monitor": "val_acc"}),
        ("[0, 1]", [0, 1]),
        ("00:00:05:00", "00:00:05:00"),
        ("16-mixed", "16-mixed"),
        ("ddp", "ddp"),
    ],
)
def test_parse_value(text, value):
    parsed = demo.parse_value(text)
    assert parsed == value and type(parsed) is type(value)


def test_help_lists_every_flag(capsys):
    code, out, _ = run_main(capsys, "--help")
    assert code == 0
    for name in SpeedConfig.flag_names():
        assert f"--{name} VALUE" in out
    for option in ("--config", "--compare", "--seed", "--no_progress", "--baseline_epochs", "--plot"):
        assert option in out
    assert '"monitor": "val_acc"' in out  # the demo's defaults are shown


@pytest.mark.parametrize(
    "args, message",
    [
        (["--max_epochs", "-5"], "error: max_epochs=-5"),
        (["--limit_train_batches", "true"], "error: limit_train_batches=True has type bool"),
        (["--early_stopping", '{"monitor": "val_acc", "mode": "maximum"}'], "error: early_stopping['mode']"),
        (["--early_stopping", "{monitor}"], "is not valid JSON"),
        (["--max_epoch", "3"], "did you mean --max_epochs?"),
        (["--max_time", "1:2:3:4"], "error: max_time='1:2:3:4' is not in the form \"DD:HH:MM:SS\""),
        # refused when attaching: early stopping on val_acc with validation turned off
        (["--limit_val_batches", "0"], "error: early_stopping monitors 'val_acc'"),
    ],
)
def test_bad_values_exit_2_with_a_clear_message(capsys, args, message):
    code, out, err = run_main(capsys, "--no_progress", *args)
    assert code == 2
    assert message in err
    assert err.startswith("error: ")
    assert "Traceback" not in err and out == ""


def test_config_yaml_is_read_and_the_command_line_wins(tmp_path, capsys):
    pytest.importorskip("yaml")
    path = tmp_path / "flags.yaml"
    path.write_text(
        "max_epochs: 2\n"
        "early_stopping: null\n"
        "limit_train_batches: 5\n"
        "val_check_interval: 1.0\n"
        "max_time: '00:00:01:00'\n",
        encoding="utf-8",
    )
    code, out, _ = run_main(capsys, "--no_progress", "--config", str(path))
    assert code == 0
    assert report_value(out, "epochs") == "2 of max_epochs=2; 5 batches per epoch (of 34 in the loader)"
    assert report_value(out, "batches / steps").endswith("max_time=0:01:00")
    code, out, _ = run_main(capsys, "--no_progress", "--config", str(path), "--max_epochs", "3")
    assert code == 0
    assert report_value(out, "epochs").startswith("3 of max_epochs=3")
    assert report_value(out, "validation runs") == "3"


def test_config_yaml_errors(tmp_path, capsys):
    pytest.importorskip("yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("max_epocs: 3\n", encoding="utf-8")
    code, _, err = run_main(capsys, "--no_progress", "--config", str(bad))
    assert code == 2 and "did you mean 'max_epochs'" in err
    code, _, err = run_main(capsys, "--no_progress", "--config", str(tmp_path / "missing.yaml"))
    assert code == 2 and err.startswith("error: --config")
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n", encoding="utf-8")
    code, _, err = run_main(capsys, "--no_progress", "--config", str(listing))
    assert code == 2 and "mapping" in err


def test_the_demo_prints_where_the_time_went_and_the_advice(capsys):
    code, out, _ = run_main(
        capsys,
        "--no_progress",
        "--max_epochs",
        "2",
        "--early_stopping",
        "None",
        "--num_sanity_val_steps",
        "0",
        "--profile",
        "true",
    )
    assert code == 0
    assert "where the time went" in out and "waiting for data" in out and "wall time of trainer.run" in out
    code, out, _ = run_main(capsys, "--no_progress", "--fast_dev_run", "3")
    assert code == 0 and "fast_dev_run projection of the full run: about" in out
