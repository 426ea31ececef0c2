"""Demo: train a small MLP on scikit-learn's bundled digits with ignite-speed, then print a run report.

Run it with::

    python -m ignite_speed.demo                                  # the default recipe (about a second of training)
    python -m ignite_speed.demo --max_epochs 30 --val_check_interval 0.25
    python -m ignite_speed.demo --early_stopping '{"monitor": "val_loss", "patience": 2}'
    python -m ignite_speed.demo --config my_flags.yaml --limit_train_batches 0.5
    python -m ignite_speed.demo --compare                        # fixed 40 epochs vs. the speed-up run
    python -m ignite_speed.demo --compare --plot compare.png     # ... and a picture of both runs (matplotlib)
    python -m ignite_speed.demo --max_time 00:00:00:01 --max_time_mode fit --plot run.png

Every ignite-speed flag is a command-line option of the same name (``--help`` lists them). Values are
read as Python would see them in a config file: ``3`` is an int, ``0.5`` a float, ``None``/``true``/``false``
what they say, ``{...}``/``[...]`` JSON, anything else a string. ``--config`` reads a YAML file of flags;
options given on the command line override it.

The code below is deliberately plain: it is the usual Ignite set-up (model, optimizer, trainer, evaluator)
plus one ``attach_speedups`` call. Everything after that call is bookkeeping for the report.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from ignite.engine import Engine, Events, create_supervised_evaluator, create_supervised_trainer
from ignite.metrics import Accuracy, Loss
from torch.utils.data import DataLoader, TensorDataset

from ignite_speed import SpeedConfig, attach_speedups, create_trainer
from ignite_speed._compat import ProgressBar
from ignite_speed.config.checks import closest
from ignite_speed.step import precision_of

__all__ = [
    "DEMO_DEFAULTS",
    "RunResult",
    "format_time_split",
    "load_digits_splits",
    "main",
    "parse_value",
    "train_baseline",
    "train_with_speedups",
]

# The demo's recipe. These override SpeedConfig's own defaults; a --config file and the command line
# override these in turn.
DEMO_DEFAULTS: dict[str, Any] = {
    "max_epochs": 40,  # a generous budget: early stopping is expected to end the run much sooner
    "max_time": "00:00:02:00",  # and a wall-clock guard, just in case
    "val_check_interval": 0.5,  # validate twice per epoch
    "early_stopping": {
        "monitor": "val_acc",
        "mode": "max",
        "stopping_threshold": 0.99,  # stop at once when validation accuracy goes above 99 %
        "patience": 6,  # ... or after 6 validation runs (3 epochs) without a new best
    },
}

BATCH_SIZE = 32
EVAL_BATCH_SIZE = 120
HIDDEN = 128
LEARNING_RATE = 1e-2
LR_DECAY = 0.6  # per epoch: the model settles within about ten epochs
BASELINE_EPOCHS = 40
PLOT_MONITOR = "val_acc"  # what --plot draws when early stopping (and its monitor) is off
SPLIT_SEED = 0  # the train/val/test split never changes; --seed sets the weights and the shuffling


# ---------------------------------------------------------------------------------------------- data and model
def load_digits_splits() -> tuple[TensorDataset, TensorDataset, TensorDataset]:
    """The 1797 8x8 digit images bundled with scikit-learn (no download), split 1077 / 360 / 360."""
    from sklearn.datasets import load_digits

    images, labels = load_digits(return_X_y=True)
    x = torch.tensor(images / 16.0, dtype=torch.float32)
    y = torch.tensor(labels, dtype=torch.long)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(SPLIT_SEED))
    x, y = x[order], y[order]
    n_train, n_val = 1077, 360
    return (
        TensorDataset(x[:n_train], y[:n_train]),
        TensorDataset(x[n_train : n_train + n_val], y[n_train : n_train + n_val]),
        TensorDataset(x[n_train + n_val :], y[n_train + n_val :]),
    )


def make_loaders(seed: int) -> tuple[DataLoader, DataLoader, DataLoader]:
    train, val, test = load_digits_splits()
    shuffle_order = torch.Generator().manual_seed(seed)  # same seed, same batches: the two runs of --compare match
    return (
        DataLoader(train, batch_size=BATCH_SIZE, shuffle=True, generator=shuffle_order),
        DataLoader(val, batch_size=EVAL_BATCH_SIZE),
        DataLoader(test, batch_size=EVAL_BATCH_SIZE),
    )


def make_model(seed: int) -> tuple[torch.nn.Module, torch.optim.Optimizer, Any]:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(64, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=LR_DECAY)
    return model, optimizer, scheduler


# ---------------------------------------------------------------------------------------------- results
@dataclass
class RunResult:
    """What one training run did (the numbers of the run report)."""

    name: str
    seconds: float  # wall time of trainer.run(): sanity check + training + validation
    val_seconds: float  # time spent in the evaluator during training
    sanity_seconds: float  # time before the trainer started (ignite-speed's sanity check)
    test_acc: float | None  # percent; None when no test batch ran
    epochs: int
    batches: int
    steps: int
    val_runs: int
    batches_per_epoch: int
    loader_batches: int
    stop_reason: str = "max_epochs"
    stop_message: str | None = None
    monitor: str | None = None
    best: float | None = None
    # (wall seconds since trainer.run() was called, the monitored metric) of every validation run
    curve: list[tuple[float, float]] = field(default_factory=list)

    @property
    def train_seconds(self) -> float:
        return max(0.0, self.seconds - self.val_seconds - self.sanity_seconds)


class _Stopwatch:
    """Adds up the time an engine spends between STARTED and COMPLETED (or TERMINATE)."""

    def __init__(self, engine: Engine) -> None:
        self.total = 0.0
        self.runs = 0
        self._start: float | None = None
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.COMPLETED, self._stopped)

    def _started(self, _: Engine) -> None:
        self._start = time.perf_counter()

    def _stopped(self, _: Engine) -> None:
        if self._start is not None:
            self.total += time.perf_counter() - self._start
            self.runs += 1
            self._start = None


def _accuracy(tester: Engine) -> float | None:
    value = tester.state.metrics.get("acc") if tester.state is not None else None
    return None if value is None else 100.0 * float(value)


def _attach_progress_bar(trainer: Engine) -> None:
    bar = ProgressBar(persist=False)
    bar.attach(trainer, output_transform=lambda loss: {"loss": loss})
    # An epoch cut short by a stop never reaches EPOCH_COMPLETED, where the bar closes itself.
    trainer.add_event_handler(Events.COMPLETED, lambda _: bar.close())


# ---------------------------------------------------------------------------------------------- the two runs
def train_with_speedups(cfg: SpeedConfig, seed: int = 0, progress: bool = True) -> tuple[RunResult, Any]:
    """Train with ``attach_speedups`` under ``cfg``; returns the result and the ``Speedups`` object."""
    train_loader, val_loader, test_loader = make_loaders(seed)
    model, optimizer, scheduler = make_model(seed)
    loss_fn = torch.nn.CrossEntropyLoss()

    # The trainer: Ignite's supervised trainer plus the precision / accumulation / clipping flags.
    trainer = create_trainer(model, optimizer, loss_fn, cfg)
    precision = precision_of(trainer)

    def prepare_batch(batch: Any, device: Any = None, non_blocking: bool = False) -> Any:
        return precision.convert_input(tuple(batch))  # the dtype of the model for the "*-true" precisions

    evaluator = create_supervised_evaluator(
        model, metrics={"val_acc": Accuracy(), "val_loss": Loss(loss_fn)}, prepare_batch=prepare_batch
    )
    tester = create_supervised_evaluator(model, metrics={"acc": Accuracy()}, prepare_batch=prepare_batch)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda _: scheduler.step())

    # The one ignite-speed call: validation scheduling, early stopping, limits, the sanity check.
    speedups = attach_speedups(trainer, evaluator, cfg, val_data=val_loader, model=model)

    if progress:
        _attach_progress_bar(trainer)  # its totals are the limited epoch length and max_epochs
    val_watch = _Stopwatch(evaluator)
    started_at: list[float] = []
    trainer.add_event_handler(Events.STARTED, lambda _: started_at.append(time.perf_counter()))

    t0 = time.perf_counter()
    trainer.run(train_loader)
    seconds = time.perf_counter() - t0
    speedups.test(tester, test_loader)  # honours limit_test_batches (and fast_dev_run)

    p = speedups.progress
    es = speedups.early_stopping
    best = None
    if es is not None and math.isfinite(es.best_score):
        best = float(es.best_score)
    sanity = (started_at[0] - t0) if started_at else seconds
    record = speedups.report(PLOT_MONITOR) if es is None else speedups.report()
    curve = [(sanity + v.time, v.value) for v in record.validations if v.value is not None]
    result = RunResult(
        name="with speedups",
        seconds=seconds,
        val_seconds=val_watch.total,
        sanity_seconds=sanity,
        test_acc=_accuracy(tester),
        epochs=p.epochs_done,
        batches=p.total_batches,
        steps=p.global_step,
        val_runs=p.val_runs,
        batches_per_epoch=int(trainer.state.epoch_length or 0),
        loader_batches=len(train_loader),
        stop_reason=speedups.stop_reason.value,
        stop_message=speedups.stop_message,
        monitor=es.monitor if es is not None else None,
        best=best,
        curve=curve,
    )
    return result, speedups


def train_baseline(
    epochs: int = BASELINE_EPOCHS, seed: int = 0, progress: bool = True, monitor: str = PLOT_MONITOR
) -> RunResult:
    """The same model and recipe in plain Ignite: a fixed number of epochs, validation after each one
    (``monitor`` is the validation metric recorded for the picture of ``--compare --plot``)."""
    train_loader, val_loader, test_loader = make_loaders(seed)
    model, optimizer, scheduler = make_model(seed)
    loss_fn = torch.nn.CrossEntropyLoss()
    trainer = create_supervised_trainer(model, optimizer, loss_fn)
    evaluator = create_supervised_evaluator(model, metrics={"val_acc": Accuracy(), "val_loss": Loss(loss_fn)})
    tester = create_supervised_evaluator(model, metrics={"acc": Accuracy()})
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda _: scheduler.step())
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda _: evaluator.run(val_loader))
    if progress:
        _attach_progress_bar(trainer)
    val_watch = _Stopwatch(evaluator)
    curve: list[tuple[float, float]] = []
    evaluator.add_event_handler(
        Events.COMPLETED,
        lambda e: (
            curve.append((time.perf_counter() - t0, float(e.state.metrics[monitor])))
            if monitor in e.state.metrics
            else None
        ),
    )

    t0 = time.perf_counter()
    trainer.run(train_loader, max_epochs=epochs)
    seconds = time.perf_counter() - t0
    tester.run(test_loader)
    return RunResult(
        name=f"baseline ({epochs} epochs)",
        seconds=seconds,
        val_seconds=val_watch.total,
        sanity_seconds=0.0,
        test_acc=_accuracy(tester),
        epochs=trainer.state.epoch,
        batches=trainer.state.iteration,
        steps=trainer.state.iteration,
        val_runs=val_watch.runs,
        batches_per_epoch=len(train_loader),
        loader_batches=len(train_loader),
        stop_message=f"ran its {epochs} epochs",
        curve=curve,
    )


# ---------------------------------------------------------------------------------------------- reports
def _limit(value: int) -> str:
    return "no limit" if value == -1 else str(value)


def format_report(result: RunResult, cfg: SpeedConfig) -> str:
    """The run report: why training stopped, what ran against the budget, where the time went."""
    lim = cfg.effective()
    max_time = "no limit" if lim.max_time is None else str(lim.max_time)
    if lim.max_time is not None and (cfg.max_time_mode != "step" or cfg.max_time_reserve):
        reserve = f", reserve {cfg.max_time_reserve}" if cfg.max_time_reserve else ""
        max_time += f" ({cfg.max_time_mode}{reserve})"
    test = "not run (0 test batches)" if result.test_acc is None else f"{result.test_acc:.2f} %"
    if result.monitor is None:
        best = "n/a (early stopping is off)"
    elif result.best is None:
        best = f"{result.monitor}: n/a (no check ran)"
    else:
        best = f"{result.monitor} = {result.best:.4f}"
    per_epoch = f"{result.batches_per_epoch} batches per epoch"
    if result.batches_per_epoch != result.loader_batches:
        per_epoch += f" (of {result.loader_batches} in the loader)"
    lines = [
        "Run report",
        f"  stopped because : {result.stop_reason} - {result.stop_message}",
        f"  epochs          : {result.epochs} of max_epochs={_limit(lim.max_epochs)}; {per_epoch}",
        f"  batches / steps : {result.batches} batches, {result.steps} optimizer steps of "
        f"max_steps={_limit(lim.max_steps)}; max_time={max_time}",
        f"  validation runs : {result.val_runs}",
        f"  time            : {result.seconds:.2f} s = {result.train_seconds:.2f} s training + "
        f"{result.val_seconds:.2f} s validation + {result.sanity_seconds:.2f} s sanity check",
        f"  best monitored  : {best}",
        f"  test accuracy   : {test}",
    ]
    return "\n".join(lines)


def format_time_split(speedups: Any) -> str:
    """Where the time of the run went (``speedups.report().profile``), the advice (``speedups.advise()``;
    nothing when nothing is worth changing) and, after a ``fast_dev_run``, the projection of the full run."""
    report = speedups.report()
    parts = [str(report.profile)]
    advice = str(speedups.advise())
    if advice:
        parts.append(advice)
    if report.projection is not None:
        parts.append(str(report.projection))
    return "\n\n".join(parts)


def format_comparison(baseline: RunResult, fast: RunResult) -> str:
    ratio = fast.seconds / baseline.seconds if baseline.seconds > 0 else math.inf
    gap = (fast.test_acc or 0.0) - (baseline.test_acc or 0.0)
    width = max(len(baseline.name), len(fast.name))

    def row(r: RunResult) -> str:
        acc = "n/a" if r.test_acc is None else f"{r.test_acc:6.2f} %"
        return f"  {r.name:<{width}}  {r.seconds:7.2f} s  {r.epochs:4d} epochs  {r.batches:6d} batches  test {acc}"

    met = ratio <= 0.5 and gap >= -0.5
    return "\n".join(
        [
            "Comparison (same model, same seed)",
            row(baseline),
            row(fast),
            f"  time ratio {ratio:.2f} (goal <= 0.50); test accuracy {gap:+.2f} points (goal >= -0.50): "
            + ("goal met" if met else "goal NOT met"),
        ]
    )


def warm_up(seed: int = 0) -> None:
    """A few batches through both set-ups before a timed comparison: the first run in a process pays for
    loading and first calls (data set, torch kernels, Ignite), which would otherwise count against it."""
    train_baseline(1, seed=seed, progress=False)
    train_with_speedups(
        SpeedConfig(max_epochs=1, limit_train_batches=4, num_sanity_val_steps=0), seed=seed, progress=False
    )


def write_plot(path: str, fast: RunResult, speedups: Any, baseline: RunResult | None = None) -> str:
    """``--plot``: the speed-up run's monitored metric against training time (``Speedups.plot``) or, with
    a ``--compare`` baseline, both runs against wall time, with the time saved to the same accuracy."""
    monitor = fast.monitor or PLOT_MONITOR
    if baseline is None:
        return speedups.plot(path, x="time", monitor=monitor, mode=None if fast.monitor else "max")
    from ignite_speed.report.plot import Curve, plot_comparison

    es = speedups.early_stopping
    mode = es.mode if es is not None else "max"

    def curve(r: RunResult, label: str, stop: str) -> Curve:
        return Curve(label, [t for t, _ in r.curve], [v for _, v in r.curve], r.seconds, stop)

    return plot_comparison(
        [
            curve(fast, "ignite-speed", fast.stop_reason),
            curve(baseline, f"plain Ignite, {baseline.epochs} epochs", "fixed epochs"),
        ],
        path,
        monitor=monitor,
        mode=mode,
        title=f"Demo: {monitor} against wall time (test accuracy {fast.test_acc:.2f} % vs {baseline.test_acc:.2f} %)"
        if fast.test_acc is not None and baseline.test_acc is not None
        else None,
    )


# ---------------------------------------------------------------------------------------------- command line
class CliError(Exception):
    """A mistake on the command line or in the config: printed as ``error: ...``, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse would print usage and sys.exit(2)
        raise CliError(message)


def parse_value(text: str) -> Any:
    """Turn a command-line string into the value a config file would hold.

    ``"3"`` -> 3, ``"0.5"`` -> 0.5, ``"None"``/``"none"`` -> None, ``"true"``/``"false"`` -> bools,
    ``"{...}"``/``"[...]"`` -> JSON, anything else stays a string (e.g. ``"00:00:05:00"``, ``"16-mixed"``).
    """
    stripped = text.strip()
    lowered = stripped.lower()
    if lowered in ("none", "null"):
        return None
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    for kind in (int, float):
        try:
            return kind(stripped)
        except ValueError:
            pass
    if stripped[:1] in ("{", "["):
        try:
            return json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise argparse.ArgumentTypeError(f"{text!r} is not valid JSON ({exc})") from None
    return text


def _describe(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (dict, list)) else repr(value)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m ignite_speed.demo",
        allow_abbrev=False,
        description="Train a small MLP on scikit-learn's digits with ignite-speed and print a run report.",
        epilog="Values: 3 is an int, 0.5 a float, None/true/false what they say, {...} and [...] JSON, "
        "anything else a string. Command-line flags override --config.",
    )
    demo = parser.add_argument_group("demo options")
    demo.add_argument("--config", metavar="FILE.yaml", help="a YAML file of ignite-speed flags")
    demo.add_argument(
        "--compare", action="store_true", help="also train a plain-Ignite baseline for --baseline_epochs and compare"
    )
    demo.add_argument(
        "--baseline_epochs",
        type=int,
        default=BASELINE_EPOCHS,
        metavar="N",
        help=f"epochs of the --compare baseline (default: {BASELINE_EPOCHS})",
    )
    demo.add_argument("--seed", type=int, default=0, help="seed of the weights and the shuffling (default: 0)")
    demo.add_argument("--no_progress", action="store_true", help="no progress bar")
    demo.add_argument(
        "--plot",
        metavar="PATH.png",
        help="draw the monitored metric per validation run against time to PATH (needs matplotlib); "
        "with --compare, both runs against wall time",
    )
    flags = parser.add_argument_group("ignite-speed flags (SpeedConfig)")
    defaults = {f: getattr(SpeedConfig(), f) for f in SpeedConfig.flag_names()}
    for name in SpeedConfig.flag_names():
        shown = DEMO_DEFAULTS[name] if name in DEMO_DEFAULTS else defaults[name]
        note = " (demo)" if name in DEMO_DEFAULTS else ""
        flags.add_argument(
            f"--{name}",
            type=parse_value,
            default=argparse.SUPPRESS,
            metavar="VALUE",
            help=f"default{note}: {_describe(shown)}".replace("%", "%%"),
        )
    return parser


def load_yaml_flags(path: str) -> dict[str, Any]:
    try:
        import yaml  # imported only when --config is used
    except ImportError:
        raise CliError("--config needs PyYAML: python -m pip install pyyaml") from None
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except OSError as exc:
        raise CliError(f"--config {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise CliError(f"--config {path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise CliError(f"--config {path} must hold a mapping of flag names to values, not a {type(data).__name__}")
    return data


def _unknown_option_message(message: str, parser: argparse.ArgumentParser) -> str:
    if not message.startswith("unrecognized arguments"):
        return message
    known = [opt for action in parser._actions for opt in action.option_strings]
    hints = []
    for word in message.split(":", 1)[1].split():
        if word.startswith("--"):
            close = closest(word.split("=")[0], known)
            if close is not None:
                hints.append(f"{word}: did you mean {close}?")
    return message + ("; " + "; ".join(hints) if hints else "") + " (see --help)"


def resolve_config(args: argparse.Namespace) -> SpeedConfig:
    """DEMO_DEFAULTS, then the --config file, then the command line."""
    flags = dict(DEMO_DEFAULTS)
    if args.config:
        flags.update(load_yaml_flags(args.config))
    flags.update({name: getattr(args, name) for name in SpeedConfig.flag_names() if hasattr(args, name)})
    return SpeedConfig.from_any(flags)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m ignite_speed.demo``; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except CliError as exc:
        print(f"error: {_unknown_option_message(str(exc), parser)}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help
        return int(exc.code or 0)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: one thread is the fastest, and timings stay steady on busy machines
    try:
        try:
            cfg = resolve_config(args)
            if args.compare:
                warm_up(args.seed)
            fast, speedups = train_with_speedups(cfg, seed=args.seed, progress=not args.no_progress)
        except CliError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except (ValueError, TypeError) as exc:  # SpeedConfig / attach_speedups refusing a flag value
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(format_report(fast, cfg))
        print()
        print(format_time_split(speedups))
        baseline = None
        if args.compare:
            baseline = train_baseline(
                args.baseline_epochs,
                seed=args.seed,
                progress=not args.no_progress,
                monitor=fast.monitor or PLOT_MONITOR,
            )
            print()
            print(format_comparison(baseline, fast))
        if args.plot:
            try:
                write_plot(args.plot, fast, speedups, baseline)
            except ImportError as exc:
                print(f"error: --plot: {exc}", file=sys.stderr)
                return 1
            print(f"\nplot written to {args.plot}")
    finally:
        torch.set_num_threads(threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
