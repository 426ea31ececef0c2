"""Early stopping with Lightning 2.6 semantics, a few Keras-style extras, and one decision for all ranks.

The module has three layers:

* :func:`validate_early_stopping_kwargs` checks and normalizes the keyword arguments (used by
  :class:`~ignite_speed.config.SpeedConfig` for its ``early_stopping`` flag and by the class itself);
* :func:`decide` is the pure, per-check decision (no engine, no collective): it takes the monitored
  value and the running tally and returns what to do;
* :class:`EarlyStopping` reads the monitor from the engines, calls :func:`decide`, sends stop requests
  through the :class:`~ignite_speed.stop.StopController` (one collective per check) and keeps the
  Lightning-style attributes (``wait_count``, ``best_score``, ``stopped_epoch``, ``stopping_reason``...).

It is driven either by ``attach_speedups`` (through :meth:`EarlyStopping.bind`, :meth:`~EarlyStopping.setup`
and the ``on_*`` hooks) or standalone in a plain Ignite app through :meth:`EarlyStopping.attach`.
"""

from __future__ import annotations

import datetime
import difflib
import enum
import math
import numbers
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from ignite.engine import Engine

from ._dist import gather_message, get_rank, get_world_size
from .durations import BatchLimit, format_value
from .progress import Progress
from .stop import StopController, StopReason

__all__ = [
    "EarlyStopping",
    "EarlyStoppingReason",
    "Criteria",
    "Decision",
    "decide",
    "resolve_check_on_train_epoch_end",
    "validate_early_stopping_kwargs",
]

from ._logging import logger


class EarlyStoppingReason(enum.Enum):
    """Why early stopping asked to stop (Lightning's names and numbers; ``BASELINE_NOT_MET`` is ours)."""

    NOT_STOPPED = 0
    STOPPING_THRESHOLD = 1
    DIVERGENCE_THRESHOLD = 2
    PATIENCE_EXHAUSTED = 3
    NON_FINITE_METRIC = 4
    BASELINE_NOT_MET = 5


# The reasons a check can stop for, in the order the checks are tried. When ranks stop for different
# reasons at the same check, every rank records the reason (and message) of the lowest stopping rank.
_STOP_REASONS = (
    EarlyStoppingReason.NON_FINITE_METRIC,
    EarlyStoppingReason.STOPPING_THRESHOLD,
    EarlyStoppingReason.DIVERGENCE_THRESHOLD,
    EarlyStoppingReason.BASELINE_NOT_MET,
    EarlyStoppingReason.PATIENCE_EXHAUSTED,
)

PATIENCE_UNITS = ("checks", "epochs", "steps")
MIN_DELTA_MODES = ("abs", "rel")
MODES = ("min", "max")

# ---------------------------------------------------------------------------------------------- kwargs

_DEFAULTS: dict[str, Any] = {
    "monitor": None,
    "min_delta": 0.0,
    "patience": 3,
    "verbose": False,
    "mode": "min",
    "strict": True,
    "check_finite": True,
    "stopping_threshold": None,
    "divergence_threshold": None,
    "check_on_train_epoch_end": None,
    "log_rank_zero_only": False,
    "baseline": None,
    "restore_best_weights": False,
    "start_from_epoch": 0,
    "patience_unit": "checks",
    "min_delta_mode": "abs",
}
_BOOL_KEYS = ("verbose", "strict", "check_finite", "log_rank_zero_only", "restore_best_weights")
_OPTIONAL_NUMBER_KEYS = ("stopping_threshold", "divergence_threshold", "baseline")


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def validate_early_stopping_kwargs(kwargs: Mapping[str, Any], flag: str = "early_stopping") -> dict[str, Any]:
    """Check the keyword arguments of :class:`EarlyStopping` and return them normalized.

    Only the given keys are returned (numbers as ``float``/``int``, strings lower-cased); ``monitor``
    is required. Errors are ``TypeError``/``ValueError`` naming the key as ``{flag}['key']``, the
    value, and what is accepted; unknown keys get a did-you-mean suggestion.
    """
    if not isinstance(kwargs, Mapping):
        raise TypeError(f"{flag}={format_value(kwargs)} has type {type(kwargs).__name__}; accepted: a dict of "
                        f"EarlyStopping keyword arguments")
    known = list(_DEFAULTS)
    out: dict[str, Any] = {}
    for key, value in kwargs.items():
        name = f"{flag}[{key!r}]" if flag != "EarlyStopping" else f"EarlyStopping: {key}"
        if key not in _DEFAULTS:
            close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"{name} is not an EarlyStopping argument{hint} (accepted keys: {', '.join(known)})")
        out[key] = _validate_one(key, value, name)
    if "monitor" not in out:
        raise ValueError(f"{flag}['monitor'] is required: the name of the metric to watch, e.g. 'val_loss'")
    return out


def _validate_one(key: str, value: Any, name: str) -> Any:
    shown = f"{name}={format_value(value)}"
    if key == "monitor":
        if not isinstance(value, str) or not value:
            raise TypeError(f"{shown} is not a metric name; accepted: a non-empty str such as 'val_loss'")
        return value
    if key in _BOOL_KEYS:
        if not isinstance(value, bool):
            raise TypeError(f"{shown} has type {type(value).__name__}; accepted: True or False")
        return value
    if key == "check_on_train_epoch_end":
        if value is not None and not isinstance(value, bool):
            raise TypeError(f"{shown} has type {type(value).__name__}; accepted: None (decide from the "
                            f"validation schedule), True or False")
        return value
    if key in ("mode", "patience_unit", "min_delta_mode"):
        accepted = {"mode": MODES, "patience_unit": PATIENCE_UNITS, "min_delta_mode": MIN_DELTA_MODES}[key]
        if not isinstance(value, str) or value.lower() not in accepted:
            raise ValueError(f"{shown} is not known; accepted: {', '.join(repr(a) for a in accepted)}")
        return value.lower()
    if key in ("patience", "start_from_epoch"):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"{shown} has type {type(value).__name__}; accepted: an int >= 0")
        if value < 0:
            extra = (" (Lightning treats a negative patience like 0; write 0)" if key == "patience" else "")
            raise ValueError(f"{shown} is negative; accepted: an int >= 0{extra}")
        return int(value)
    if key == "min_delta":
        if not _is_number(value):
            raise TypeError(f"{shown} has type {type(value).__name__}; accepted: a finite number >= 0")
        if not math.isfinite(value):
            raise ValueError(f"{shown} is not finite; accepted: a finite number >= 0")
        if value < 0:
            raise ValueError(f"{shown} is negative; accepted: a finite number >= 0 (the sign follows mode; a "
                             f"negative min_delta would count a worse value as an improvement, so training "
                             f"would never stop)")
        return float(value)
    if key in _OPTIONAL_NUMBER_KEYS:
        if value is None:
            return None
        if not _is_number(value):
            raise TypeError(f"{shown} has type {type(value).__name__}; accepted: None or a finite number")
        if not math.isfinite(value):
            raise ValueError(f"{shown} is not finite; accepted: None or a finite number")
        return float(value)
    raise AssertionError(key)  # pragma: no cover - every key of _DEFAULTS is handled above


# ---------------------------------------------------------------------------------------------- decision


@dataclass(frozen=True)
class Criteria:
    """The rules of one :class:`EarlyStopping` (validated values)."""

    monitor: str
    mode: str = "min"
    min_delta: float = 0.0
    min_delta_mode: str = "abs"
    patience: int = 3
    patience_unit: str = "checks"
    check_finite: bool = True
    stopping_threshold: float | None = None
    divergence_threshold: float | None = None
    baseline: float | None = None

    def better(self, value: float, reference: float) -> bool:
        """``value`` improves on ``reference`` by more than ``min_delta`` (strict; NaN never improves)."""
        margin = self.min_delta
        if self.min_delta_mode == "rel":
            margin = self.min_delta * abs(reference) if math.isfinite(reference) else 0.0
        if self.mode == "min":
            return value < reference - margin
        return value > reference + margin

    def beyond(self, value: float, threshold: float, *, worse: bool) -> bool:
        """``value`` is strictly better (or, with ``worse``, strictly worse) than ``threshold``."""
        below = value < threshold
        above = value > threshold
        if self.mode == "min":
            return above if worse else below
        return below if worse else above


class Decision(NamedTuple):
    """What one check decided (locally, before the ranks agree)."""

    should_stop: bool
    reason: EarlyStoppingReason
    message: str
    best_score: float
    wait_count: int
    since: int  # position (in patience units) of the last check that reset the patience
    improved: bool  # best_score changed


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def decide(current: float, *, best: float, wait: int, since: int, position: int, criteria: Criteria,
           warmup: bool = False) -> Decision:
    """The decision of one early-stopping check, as a pure function.

    Args:
        current: the monitored value.
        best: best value so far (``+inf`` / ``-inf`` before the first one).
        wait: checks (or epochs, steps: see ``criteria.patience_unit``) without improvement so far.
        since: position of the check that last reset the patience (0 at the start).
        position: where this check happens, in patience units (the check number, ``epoch + 1`` or
            ``global_step``); only used when ``patience_unit`` is not ``"checks"``.
        criteria: the rules.
        warmup: inside ``start_from_epoch``: the best value is tracked, nothing else happens.

    The branches, first match wins: warm-up; non-finite value (``check_finite``); stopping threshold;
    divergence threshold; improvement (by more than ``min_delta``, which also has to beat ``baseline``
    to reset the patience); otherwise the patience grows and stops at ``wait >= patience``.
    """
    c = criteria
    name = c.monitor
    # Each message starts with Lightning 2.6's phrase for the same outcome (EarlyStopping.
    # _evaluate_stopping_criteria / _improvement_message); what follows the phrase is ignite-speed's detail.
    better_op, worse_op = ("<", ">") if c.mode == "min" else (">", "<")
    # Lightning counts patience in "records" (checks); patience_unit="epochs"/"steps" counts those instead
    records = "records" if c.patience_unit == "checks" else c.patience_unit
    if warmup:
        improved = math.isfinite(current) and c.better(current, best)
        new_best = current if improved else best
        return Decision(False, EarlyStoppingReason.NOT_STOPPED,
                        f"Metric {name} = {_fmt(current)} during warm-up (start_from_epoch). Best score so far: "
                        f"{_fmt(new_best)}", new_best, 0, position, improved)
    if c.check_finite and not math.isfinite(current):
        return Decision(True, EarlyStoppingReason.NON_FINITE_METRIC,
                        f"Monitored metric {name} = {_fmt(current)} is not finite. Previous best value was "
                        f"{_fmt(best)}; stopping", best, wait, since, False)
    if c.stopping_threshold is not None and c.beyond(current, c.stopping_threshold, worse=False):
        return Decision(True, EarlyStoppingReason.STOPPING_THRESHOLD,
                        f"Stopping threshold reached: {name} = {_fmt(current)} {better_op} "
                        f"stopping_threshold={_fmt(c.stopping_threshold)}; stopping", best, wait, since, False)
    if c.divergence_threshold is not None and c.beyond(current, c.divergence_threshold, worse=True):
        return Decision(True, EarlyStoppingReason.DIVERGENCE_THRESHOLD,
                        f"Divergence threshold reached: {name} = {_fmt(current)} {worse_op} "
                        f"divergence_threshold={_fmt(c.divergence_threshold)}; stopping", best, wait, since, False)
    improved = c.better(current, best)
    if improved:
        previous, best = best, current
        if c.baseline is None or c.better(current, c.baseline):
            if math.isfinite(previous):
                relative = " x |best|" if c.min_delta_mode == "rel" else ""
                message = (f"Metric {name} improved by {_fmt(abs(previous - current))} > min_delta = "
                           f"{_fmt(c.min_delta)}{relative}. New best score: {_fmt(current)}")
            else:
                message = f"Metric {name} improved. New best score: {_fmt(current)}"
            return Decision(False, EarlyStoppingReason.NOT_STOPPED, message, best, 0, position, True)
    wait = wait + 1 if c.patience_unit == "checks" else position - since
    if wait < c.patience:
        return Decision(False, EarlyStoppingReason.NOT_STOPPED,
                        f"Metric {name} = {_fmt(current)} did not improve: {wait} of patience {c.patience} "
                        f"{records} without improvement. Best score: {_fmt(best)}", best, wait, since, improved)
    if c.baseline is not None and not c.better(best, c.baseline):
        return Decision(True, EarlyStoppingReason.BASELINE_NOT_MET,
                        f"Monitored metric {name} did not beat baseline={_fmt(c.baseline)} in the last {wait} "
                        f"{records}. Best score: {_fmt(best)}; stopping", best, wait, since, improved)
    return Decision(True, EarlyStoppingReason.PATIENCE_EXHAUSTED,
                    f"Monitored metric {name} did not improve in the last {wait} {records}. Best score: "
                    f"{_fmt(best)} (patience {c.patience}); stopping", best, wait, since, improved)


def resolve_check_on_train_epoch_end(val_check_interval: Any, check_val_every_n_epoch: int | None) -> bool:
    """Lightning's default for ``check_on_train_epoch_end=None``: check at the end of the training epoch
    when validation runs exactly once per epoch, every epoch (``val_check_interval == 1.0`` and
    ``check_val_every_n_epoch == 1``; an int ``val_check_interval=1`` also equals 1.0, as in Lightning).

    A time-based ``val_check_interval`` (a :class:`datetime.timedelta`) checks at validation end
    (Lightning 2.6 raises ``AttributeError`` there).
    """
    if check_val_every_n_epoch != 1 or isinstance(val_check_interval, datetime.timedelta):
        return False
    if val_check_interval is None:
        return True
    if isinstance(val_check_interval, BatchLimit):
        return val_check_interval.value == 1
    return _is_number(val_check_interval) and val_check_interval == 1


# ---------------------------------------------------------------------------------------------- helpers


def _to_float(value: Any, monitor: str) -> float:
    """A scalar monitored value as a Python float (a 1-element tensor or array is squeezed)."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"EarlyStopping(monitor={monitor!r}) needs a scalar, but the metric is a tensor of "
                             f"shape {tuple(value.shape)}; reduce it to one number (e.g. with .mean())")
        return float(value.detach().reshape(()).item())
    if isinstance(value, bool):
        raise TypeError(f"EarlyStopping(monitor={monitor!r}) needs a number, got the bool {value!r}")
    if isinstance(value, numbers.Real):
        return float(value)
    size = getattr(value, "size", None)
    if isinstance(size, int) and hasattr(value, "item"):  # numpy scalars and arrays
        if size != 1:
            raise ValueError(f"EarlyStopping(monitor={monitor!r}) needs a scalar, but the metric has {size} "
                             f"elements; reduce it to one number")
        return float(value.item())
    raise TypeError(f"EarlyStopping(monitor={monitor!r}) needs a number or a 1-element tensor, got "
                    f"{type(value).__name__}: {format_value(value)}")


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside DDP / DataParallel wrappers (their state dict keys carry a ``module.`` prefix)."""
    wrappers = (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)
    while isinstance(model, wrappers):
        model = model.module
    return model


def _is_trainer_metric(trainer: Any, name: str) -> bool:
    """``name`` is a metric computed on the trainer (attached Ignite ``Metric`` or already in its state)."""
    state = getattr(trainer, "state", None)
    if state is not None and name in (getattr(state, "metrics", None) or {}):
        return True
    try:
        from ignite.metrics import Metric

        handlers = getattr(trainer, "_event_handlers", {})
        for entries in handlers.values():
            for entry in entries:
                func, args = entry[0], entry[1]
                owner = getattr(func, "__self__", None)
                if isinstance(owner, Metric) and getattr(func, "__name__", "") == "completed" and name in args:
                    return True
    except Exception:  # pragma: no cover - private layout changed: be permissive
        return True
    return False


# ---------------------------------------------------------------------------------------------- the class


class EarlyStopping:
    """Stop training when a monitored metric stops improving (Lightning 2.6 semantics, plus extras).

    Args:
        monitor: metric name, read from ``evaluator.state.metrics`` (else ``trainer.state.metrics``).
        min_delta: smallest change that counts as an improvement (>= 0; the direction follows ``mode``).
        patience: how many checks (``patience_unit``) without improvement before stopping.
        verbose: log each check's outcome (and warn about a missing metric when ``strict=False``).
        mode: ``"min"`` (lower is better) or ``"max"``.
        strict: a missing monitor raises ``RuntimeError`` (``False``: the check is skipped).
        check_finite: stop when the monitor is NaN or infinite.
        stopping_threshold: stop as soon as the monitor is strictly better than this.
        divergence_threshold: stop as soon as the monitor is strictly worse than this.
        check_on_train_epoch_end: check at the end of the training epoch (``True``), after each validation
            run (``False``), or ``None``: Lightning's rule, resolved in :meth:`setup`.
        log_rank_zero_only: only rank 0 logs.
        baseline: stop when the monitor has not beaten this value within ``patience``.
        restore_best_weights: keep a CPU copy of the weights of the best check and load it back when
            training ends for any reason (needs the model).
        start_from_epoch: warm-up: in epochs ``< start_from_epoch`` (0-based) the best value is tracked
            but no stop is ever requested.
        patience_unit: ``"checks"`` (Lightning), ``"epochs"`` or ``"steps"`` (optimizer steps).
        min_delta_mode: ``"abs"`` or ``"rel"`` (``min_delta`` is a fraction of ``|best|``).
    """

    def __init__(
        self,
        monitor: str,
        min_delta: float = 0.0,
        patience: int = 3,
        verbose: bool = False,
        mode: str = "min",
        strict: bool = True,
        check_finite: bool = True,
        stopping_threshold: float | None = None,
        divergence_threshold: float | None = None,
        check_on_train_epoch_end: bool | None = None,
        log_rank_zero_only: bool = False,
        baseline: float | None = None,
        restore_best_weights: bool = False,
        start_from_epoch: int = 0,
        patience_unit: str = "checks",
        min_delta_mode: str = "abs",
    ) -> None:
        given = {k: v for k, v in locals().items() if k in _DEFAULTS}
        opts = {**_DEFAULTS, **validate_early_stopping_kwargs(given, flag="EarlyStopping")}
        self.monitor: str = opts["monitor"]
        self.min_delta: float = opts["min_delta"]
        self.patience: int = opts["patience"]
        self.verbose: bool = opts["verbose"]
        self.mode: str = opts["mode"]
        self.strict: bool = opts["strict"]
        self.check_finite: bool = opts["check_finite"]
        self.stopping_threshold: float | None = opts["stopping_threshold"]
        self.divergence_threshold: float | None = opts["divergence_threshold"]
        self.check_on_train_epoch_end: bool | None = opts["check_on_train_epoch_end"]
        self.log_rank_zero_only: bool = opts["log_rank_zero_only"]
        self.baseline: float | None = opts["baseline"]
        self.restore_best_weights: bool = opts["restore_best_weights"]
        self.start_from_epoch: int = opts["start_from_epoch"]
        self.patience_unit: str = opts["patience_unit"]
        self.min_delta_mode: str = opts["min_delta_mode"]

        self.wait_count: int = 0
        self.best_score: float = math.inf if self.mode == "min" else -math.inf
        self.stopped_epoch: int = 0
        self.stopping_reason: EarlyStoppingReason = EarlyStoppingReason.NOT_STOPPED
        self.stopping_reason_message: str | None = None
        self.checks: int = 0  # checks evaluated (skipped ones excluded), over all runs
        self._since: int = 0
        self._best_weights: dict[str, torch.Tensor] | None = None

        self._controller: StopController | None = None
        self._model: torch.nn.Module | None = None
        self._on_epoch_end: bool = bool(self.check_on_train_epoch_end)
        self._val_runs = 0  # validation runs seen in the current run (sanity check excluded)
        self._restored = False
        self._loop: Any = None  # the trainer's TrainingLoop once attached
        self._evaluator: Any = None  # the evaluator whose runs are judged when no ValidationSchedule governs
        self._scheduled = False  # a ValidationSchedule governs this run: judge its validation runs only
        self._last_metrics: dict[str, Any] | None = None  # metrics of the last judged validation run
        self._replayed_value: float | None = None

    # ------------------------------------------------------------------ description
    @property
    def criteria(self) -> Criteria:
        return Criteria(self.monitor, self.mode, self.min_delta, self.min_delta_mode, self.patience,
                        self.patience_unit, self.check_finite, self.stopping_threshold,
                        self.divergence_threshold, self.baseline)

    @property
    def state_key(self) -> str:
        """Key under which a checkpoint stores this callback (as Lightning: monitor and mode)."""
        return f"EarlyStopping{{'monitor': {self.monitor!r}, 'mode': {self.mode!r}}}"

    @property
    def checks_at_epoch_end(self) -> bool:
        """Where checks happen (resolved by :meth:`setup` or :meth:`attach`)."""
        return self._on_epoch_end

    def __repr__(self) -> str:
        return (f"EarlyStopping(monitor={self.monitor!r}, mode={self.mode!r}, patience={self.patience}, "
                f"patience_unit={self.patience_unit!r}, min_delta={self.min_delta})")

    # ------------------------------------------------------------------ integration contract
    def bind(self, controller: StopController, *, model: torch.nn.Module | None = None) -> None:
        """Send stop requests to ``controller``; ``model`` is needed for ``restore_best_weights``."""
        if self.restore_best_weights and model is None and self._model is None:
            raise ValueError("EarlyStopping(restore_best_weights=True) needs the model: pass model=... "
                             "(attach_speedups(..., model=model) or EarlyStopping.attach(..., model=model))")
        self._controller = controller
        if model is not None:
            self._model = model

    def setup(self, *, val_check_interval: Any, check_val_every_n_epoch: int | None, validation_enabled: bool,
              trainer: Any, evaluator: Any) -> None:
        """Resolve where checks happen for this run and refuse a run that can never see the monitor.

        ``check_on_train_epoch_end=None`` follows :func:`resolve_check_on_train_epoch_end`. When
        validation is disabled, the monitor must be a metric of the trainer.
        """
        if self.check_on_train_epoch_end is None:
            self._on_epoch_end = resolve_check_on_train_epoch_end(val_check_interval, check_val_every_n_epoch)
        else:
            self._on_epoch_end = self.check_on_train_epoch_end
        if not validation_enabled and not _is_trainer_metric(trainer, self.monitor):
            raise ValueError(
                f"early_stopping monitors {self.monitor!r}, which is not a metric of the trainer, but validation "
                f"is disabled (limit_val_batches=0 or no val_data), so it would never be computed; accepted: "
                f"enable validation, or monitor a metric attached to the trainer (Metric.attach(trainer, name)); "
                f"a metric attached to the trainer after attach_speedups is not there yet: attach it first"
            )
        self._val_runs = 0
        self._restored = False

    def prepare_run(self, trainer: Any, schedule: Any) -> None:
        """A run starts: with a :class:`~ignite_speed.handlers.ValidationSchedule`, judge its runs on
        Lightning's rule (:meth:`setup`); without one, judge the attached evaluator's runs."""
        self._scheduled = schedule is not None
        if schedule is not None:
            self.setup(val_check_interval=schedule.val_check_interval,
                       check_val_every_n_epoch=schedule.check_val_every_n_epoch,
                       validation_enabled=schedule.enabled, trainer=trainer, evaluator=schedule.evaluator)
            return
        if self.check_on_train_epoch_end is None:
            self._on_epoch_end = self._evaluator is None
        else:
            self._on_epoch_end = self.check_on_train_epoch_end
        if self._evaluator is None and not self._on_epoch_end:
            raise ValueError("EarlyStopping.attach(evaluator=None) with check_on_train_epoch_end=False: without an "
                             "evaluator or a ValidationSchedule there is no validation end to check at; pass the "
                             "evaluator or use check_on_train_epoch_end=True with a trainer metric")
        self._val_runs = 0
        self._restored = False

    def on_validation_end(self, trainer: Any, evaluator: Any, progress: Progress,
                          metrics: Mapping[str, Any] | None = None) -> None:
        """Called after each validation run during training (never for the sanity check) with that run's
        ``metrics`` (default: the evaluator's now)."""
        if metrics is None:
            metrics = getattr(getattr(evaluator, "state", None), "metrics", None) or {}
        self._last_metrics = dict(metrics)
        self._replayed_value = None
        self._val_runs += 1
        if not self._on_epoch_end:
            self._check(trainer, progress)

    def on_train_epoch_end(self, trainer: Any, progress: Progress) -> None:
        """Called at the end of every training epoch, after that epoch's validation. Syncs the stop
        controller once either way (the epoch end is a decision point for every stop source)."""
        if self._on_epoch_end:
            self._check(trainer, progress)
        elif self._controller is not None:
            self._controller.sync()

    def monitor_value_now(self, trainer: Any) -> float | None:
        """The monitor a check would read now (the last judged validation run's, else the trainer's): saved
        with the loop, since a resumed run may replay the check and metrics are in no checkpoint."""
        try:
            return self._read_monitor(trainer)
        except (TypeError, ValueError, RuntimeError):
            return None

    def restore_monitor_value(self, value: float) -> None:
        """The monitor for a check the resumed run replays (see :meth:`monitor_value_now`): it stands in for
        the last validation run's metrics, or for a trainer metric, until :meth:`end_replay`."""
        self._last_metrics = {self.monitor: float(value)}
        self._replayed_value = float(value)

    def end_replay(self) -> None:
        """The resumed run made its pending decision: metrics are live again."""
        self._replayed_value = None

    def reset(self) -> None:
        """Forget everything learnt (best score, patience, reason, best weights): for a fresh run."""
        self.wait_count = 0
        self.best_score = math.inf if self.mode == "min" else -math.inf
        self.stopped_epoch = 0
        self.stopping_reason = EarlyStoppingReason.NOT_STOPPED
        self.stopping_reason_message = None
        self.checks = 0
        self._since = 0
        self._best_weights = None
        self._val_runs = 0
        self._restored = False
        self._last_metrics = None

    def rearm(self) -> None:
        """Let a continued run (``Speedups.extend`` after an early stop) stop again: a fresh patience and
        reason; the best score and best weights are kept."""
        self.wait_count = 0
        self.stopped_epoch = 0
        self._since = 0
        self.stopping_reason = EarlyStoppingReason.NOT_STOPPED
        self.stopping_reason_message = None

    def count_earlier_validations(self, val_runs: int) -> None:
        """A resumed run: ``val_runs`` validations already ran, so the evaluator metrics restored from the
        checkpoint are real ones, not a sanity check's."""
        self._val_runs = int(val_runs)

    def on_train_end(self, trainer: Any) -> None:
        """Training ended (for any reason): load the best weights back when asked to."""
        if self._restored:
            return
        self._restored = True
        if not self.restore_best_weights or self._model is None:
            return
        if self._best_weights is None:
            self._log("restore_best_weights: no best weights were recorded in this run; weights left as they are")
            return
        _unwrap(self._model).load_state_dict(self._best_weights)
        self._log(f"restored the weights of the best check ({self.monitor}={_fmt(self.best_score)})")

    # ------------------------------------------------------------------ the check
    def _read_monitor(self, trainer: Any) -> float | None:
        # the judged validation run's metrics (a sanity check's or another handler's evaluator run never count)
        if self._last_metrics is not None and self._val_runs > 0 and self.monitor in self._last_metrics:
            return _to_float(self._last_metrics[self.monitor], self.monitor)
        metrics = getattr(getattr(trainer, "state", None), "metrics", None) or {}
        if self.monitor in metrics:
            return _to_float(metrics[self.monitor], self.monitor)
        return self._replayed_value  # a resumed run's replayed check of a trainer metric (not checkpointed)

    def _available(self, trainer: Any) -> list[str]:
        keys: list[str] = list(self._last_metrics or {})
        keys += list(getattr(getattr(trainer, "state", None), "metrics", None) or {})
        return sorted(set(keys))

    def _check(self, trainer: Any, progress: Progress) -> None:
        controller = self._controller
        if controller is None:
            raise RuntimeError("EarlyStopping is not bound to a StopController; call attach() or bind() first")
        world, rank = get_world_size(), get_rank()
        flags = [0] * len(_STOP_REASONS)
        improved_on_rank0 = 0
        missing = 0
        decision: Decision | None = None

        value = self._read_monitor(trainer)
        if value is None:
            if self.strict:
                missing = 1
            elif self.verbose:
                warnings.warn(f"EarlyStopping: the monitor {self.monitor!r} is missing; check skipped (available: "
                              f"{self._available(trainer)})", RuntimeWarning, stacklevel=2)
        else:
            self.checks += 1
            position = {"checks": self.checks, "epochs": progress.epoch + 1,
                        "steps": progress.global_step}[self.patience_unit]
            decision = decide(value, best=self.best_score, wait=self.wait_count, since=self._since,
                              position=position, criteria=self.criteria,
                              warmup=progress.epoch < self.start_from_epoch)
            self.best_score, self.wait_count, self._since = decision.best_score, decision.wait_count, decision.since
            if decision.should_stop:
                flags[_STOP_REASONS.index(decision.reason)] = world - rank  # MAX picks the lowest rank
                controller.request(StopReason.EARLY_STOPPING, decision.message, "early_stopping")
            if decision.improved and rank == 0:
                improved_on_rank0 = 1
            self._log(decision.message)

        controller.sync(extra=[*flags, improved_on_rank0, missing])
        agreed = list(controller.last_extra)
        if agreed[-1]:
            where = "" if missing else " on another rank"
            raise RuntimeError(f"EarlyStopping could not find the monitor {self.monitor!r}{where} (strict=True); "
                               f"available metrics: {self._available(trainer)}. Log it in validation "
                               f"(evaluator.state.metrics) or on the trainer, or pass strict=False")
        if agreed[-2] and self.restore_best_weights and self._model is not None:
            self._best_weights = {k: v.detach().to("cpu", copy=True)
                                  for k, v in _unwrap(self._model).state_dict().items()}
        codes = agreed[:len(_STOP_REASONS)]
        if any(codes):
            reason = _STOP_REASONS[codes.index(max(codes))]
            self.stopped_epoch = progress.epoch
            self.stopping_reason = reason
            self.stopping_reason_message = self._agreed_message(controller, decision)

    def _agreed_message(self, controller: StopController, decision: Decision | None) -> str:
        local = decision.message if decision is not None and decision.should_stop else None
        last = controller.history[-1] if controller.history else None
        if last is not None and last["reason"] == StopReason.EARLY_STOPPING.value:
            return last["message"]
        # another stop source won this decision point: agree on early stopping's own message
        return gather_message(local, "early_stopping")[0]

    def _log(self, message: str) -> None:
        if not self.verbose:
            return
        if self.log_rank_zero_only and get_world_size() > 1 and get_rank() != 0:
            return
        logger.info("EarlyStopping: %s", message)  # the package logger adds "[rank: N]" when distributed

    # ------------------------------------------------------------------ standalone use
    def attach(self, trainer: Engine, evaluator: Engine | None = None, model: torch.nn.Module | None = None,
               min_epochs: int = 0, min_steps: int = 0) -> EarlyStopping:
        """Use early stopping in a plain Ignite app (without ``attach_speedups``).

        With a :class:`~ignite_speed.handlers.ValidationSchedule` on the trainer (attached before or after),
        checks follow its validation runs with Lightning's rule for ``check_on_train_epoch_end=None``.
        Without one, checks run when ``evaluator`` completes a run while ``trainer`` trains (or at the
        trainer's ``EPOCH_COMPLETED`` with ``check_on_train_epoch_end=True``; ``None`` means at validation end
        here, or at epoch end without an evaluator). A stop is synced across ranks and deferred until
        ``min_epochs`` / ``min_steps`` (optimizer steps) are met; the trainer's loop then ends the run on
        every rank (after the batch, or at the end of the epoch, of the check).
        """
        from ignite.engine import Events

        from .loop import TrainingLoop

        for flag, value in (("min_epochs", min_epochs), ("min_steps", min_steps)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"EarlyStopping.attach({flag}={format_value(value)}): accepted: an int >= 0")
        if evaluator is not None and not hasattr(evaluator, "add_event_handler"):
            raise TypeError(f"EarlyStopping.attach(evaluator={type(evaluator).__name__}) is not an ignite Engine")
        loop = TrainingLoop.of_or_attach(trainer)
        if self._loop is not None and self._loop is not loop:
            raise ValueError("EarlyStopping is already attached to another trainer; make one per trainer")
        loop.controller.set_minimums(min_epochs, min_steps, caller="EarlyStopping.attach")
        loop.add("early_stopping", self)
        self.bind(loop.controller, model=model)
        self._loop = loop
        if evaluator is not None and evaluator is not self._evaluator:
            evaluator.add_event_handler(Events.COMPLETED, self._on_evaluator_completed)
        self._evaluator = evaluator
        return self

    def detach(self) -> None:
        """Stop judging the evaluator's runs (a replaced early-stopping handler)."""
        from ignite.engine import Events

        if self._evaluator is not None and self._evaluator.has_event_handler(self._on_evaluator_completed,
                                                                             Events.COMPLETED):
            self._evaluator.remove_event_handler(self._on_evaluator_completed, Events.COMPLETED)
        self._evaluator = None

    def _on_evaluator_completed(self, evaluator: Any) -> None:
        loop = self._loop
        if loop is None or self._scheduled or not loop.clock.running:
            return  # the schedule's runs are judged instead; or a run outside training (a final test)
        self.on_validation_end(loop.trainer, evaluator, loop.progress)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Plain data (loadable with ``torch.load(weights_only=True)``); the best weights (CPU tensors) are
        included when ``restore_best_weights`` recorded some."""
        state: dict[str, Any] = {
            "wait_count": self.wait_count,
            "stopped_epoch": self.stopped_epoch,
            "best_score": float(self.best_score),
            "patience": self.patience,
            "stopping_reason": self.stopping_reason.value,
            "stopping_reason_message": self.stopping_reason_message,
            "checks": self.checks,
            "since": self._since,
            "monitor": self.monitor,
            "mode": self.mode,
        }
        if self.restore_best_weights and self._best_weights is not None:
            state["best_weights"] = dict(self._best_weights)
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output (also a Lightning ``EarlyStopping`` state; as in Lightning,
        the saved ``patience`` replaces the constructor's)."""
        missing = [k for k in ("wait_count", "stopped_epoch", "best_score", "patience") if k not in state]
        if missing:
            raise ValueError(f"EarlyStopping.load_state_dict: the state lacks {missing}; got keys {sorted(state)}")
        self.wait_count = int(state["wait_count"])
        self.stopped_epoch = int(state["stopped_epoch"])
        self.best_score = _to_float(state["best_score"], self.monitor)
        self.patience = int(state["patience"])
        reason = state.get("stopping_reason", 0)
        if isinstance(reason, str):
            self.stopping_reason = EarlyStoppingReason[reason.upper()]
        else:
            self.stopping_reason = EarlyStoppingReason(int(getattr(reason, "value", reason)))
        message = state.get("stopping_reason_message")
        self.stopping_reason_message = None if message is None else str(message)
        self.checks = int(state.get("checks", 0))
        self._since = int(state.get("since", 0))
        weights = state.get("best_weights")
        self._best_weights = {k: v.detach().to("cpu", copy=True) for k, v in weights.items()} if weights else None
