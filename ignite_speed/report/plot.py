"""A picture of a run (``Speedups.plot(path)``) and of runs side by side (the demo's ``--compare --plot``).

matplotlib is an optional dependency (``pip install matplotlib``, or the ``plot`` extra): it is imported
inside these functions only, so ``import ignite_speed`` stays cheap. The figures are drawn with
matplotlib's object API (no ``pyplot``): no window opens and no global figure state is touched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .profile import PART_LABELS, RunProfile
from .record import RunReport, format_seconds

__all__ = ["Curve", "plot_report", "plot_comparison", "draw_profile"]

_WIDTH, _HEIGHT, _DPI = 8.0, 4.6, 100


def _figure() -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError(
            "plotting needs matplotlib, which is not installed: pip install matplotlib "
            "(or pip install 'ignite-speed[plot]')"
        ) from None
    return Figure(figsize=(_WIDTH, _HEIGHT), dpi=_DPI)


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def _shade_budget(ax: Any, start: float, end: float, x_max: float, label: str, **style: Any) -> None:
    """Shade ``[start, end]`` on the x axis, clipped to what the chart shows (the label says so)."""
    if start >= x_max:
        return
    shown = min(end, x_max)
    ax.axvspan(start, shown, label=label + ("" if end <= x_max else ", ends off the chart"), zorder=0, **style)


def _threshold(ax: Any, ys: list[Any], value: float, label: str, color: str) -> None:
    """A dashed line at ``value``, or only a legend entry when it lies far outside the data (a line there
    would squash the curve)."""
    lo, hi = (min(ys), max(ys)) if ys else (value, value)
    span = max(hi - lo, abs(hi) * 0.05, 1e-12)
    if lo - span <= value <= hi + span:
        ax.axhline(value, color=color, linestyle="--", linewidth=1.2, label=label)
    else:
        ax.plot([], [], color=color, linestyle="--", linewidth=1.2, label=f"{label} (off the chart)")


_PART_COLORS = {
    "data": "tab:red",
    "step": "tab:blue",
    "training": "tab:blue",
    "app_handlers": "tab:purple",
    "ignite_speed_handlers": "tab:pink",
    "validation": "tab:green",
    "sanity_check": "tab:olive",
    "checkpoint": "tab:orange",
    "other": "tab:gray",
}


def draw_profile(ax: Any, profile: RunProfile) -> None:
    """``profile`` as one horizontal stacked bar of the wall time, a segment per part (labelled when wide)."""
    left = 0.0
    for name, seconds in profile.parts.items():
        share = profile.share(name)
        if share < 0.005:
            continue
        ax.barh(
            [0],
            [seconds],
            left=left,
            color=_PART_COLORS.get(name, "tab:cyan"),
            edgecolor="white",
            label=f"{PART_LABELS.get(name, name)} {100 * share:.0f}%",
        )
        if share >= 0.08:
            ax.text(
                left + seconds / 2, 0, f"{100 * share:.0f}%", ha="center", va="center", fontsize="small", color="white"
            )
        left += seconds
    ax.set_xlim(0.0, max(profile.wall, 1e-9))
    ax.set_yticks([])
    ax.set_title(
        f"where the wall time of trainer.run went ({format_seconds(profile.wall)})"
        + ("" if profile.fine else "; profile=True splits training"),
        fontsize="small",
    )
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.7), ncol=4, fontsize="x-small", frameon=False)


def _draw_max_time_budget(ax: Any, report: RunReport, max_time: float, x: str, x_max: float) -> float:
    """Shade ``max_time``'s budget (and hatch its reserve) on the metric panel; against steps the budget
    ends where the run's measured pace would reach it. Returns the x limit, widened to show the budget's
    end when it lies near the data."""
    limit = max_time - report.max_time_reserve
    scale = 1.0
    if x == "step":  # where the measured pace would reach the budget
        scale = report.steps / report.seconds if report.seconds > 0 else 0.0
    if scale <= 0:
        return x_max
    if limit * scale <= 1.5 * x_max:
        x_max = max(x_max, max_time * scale * 1.02)
    budget = f"max_time budget {format_seconds(limit)}" + (" (at the run's pace)" if x == "step" else "")
    _shade_budget(ax, 0.0, limit * scale, x_max, budget, color="tab:blue", alpha=0.08)
    if limit * scale <= x_max:
        ax.axvline(limit * scale, color="tab:blue", linewidth=1.0, alpha=0.6)
    if report.max_time_reserve:
        _shade_budget(
            ax,
            limit * scale,
            max_time * scale,
            x_max,
            f"max_time_reserve {format_seconds(report.max_time_reserve)}",
            facecolor="none",
            edgecolor="tab:gray",
            hatch="//",
            alpha=0.5,
        )
    return x_max


def _draw_metric_panel(ax: Any, report: RunReport, monitor: str, x: str, title: str | None) -> None:
    """The monitored metric per validation run against ``x``, with the best value, the thresholds, the
    stop and the ``max_time`` budget marked (see :func:`plot_report`)."""
    points = [p for p in report.validations if p.value is not None]
    key = (lambda p: p.step) if x == "step" else (lambda p: p.time)
    xs, ys = [key(p) for p in points], [p.value for p in points]
    ax.plot(
        xs,
        ys,
        marker="o",
        markersize=3.5,
        linewidth=1.6,
        color="tab:blue",
        label=f"{monitor} ({len(points)} validation runs)",
    )
    if report.best is not None and report.best_at is not None:
        where = f"step {report.best_at.step}" if x == "step" else f"{format_seconds(report.best_at.time)}"
        ax.scatter(
            [key(report.best_at)],
            [report.best],
            marker="*",
            s=220,
            color="gold",
            edgecolors="black",
            zorder=5,
            label=f"best {monitor} = {_fmt(report.best)} ({where})",
        )
    for name, value, color in (
        ("stopping_threshold", report.stopping_threshold, "tab:green"),
        ("divergence_threshold", report.divergence_threshold, "tab:red"),
    ):
        if value is not None:
            _threshold(ax, ys, value, f"{name} = {_fmt(value)}", color)
    stop_x = float(report.steps if x == "step" else report.seconds)
    if report.stop_reason != "not_stopped":
        ax.axvline(stop_x, color="black", linestyle=":", linewidth=1.4, label=f"stopped: {report.stop_reason}")
    x_max = max([stop_x, *xs, 1e-9]) * 1.06
    if report.max_time is not None:
        x_max = _draw_max_time_budget(ax, report, report.max_time, x, x_max)
    ax.set_xlim(0.0, x_max)
    ax.set_xlabel("optimizer steps" if x == "step" else "training time (s; sanity check excluded)")
    ax.set_ylabel(monitor)
    ax.grid(True, alpha=0.3)
    ax.set_title(
        title
        or f"{monitor} per validation run: {report.epochs} epochs, {report.steps} steps, "
        f"{format_seconds(report.seconds)}"
    )
    if not points:
        ax.text(0.5, 0.5, f"no validation run logged {monitor!r}", transform=ax.transAxes, ha="center")
    ax.legend(loc="best", fontsize="small", framealpha=0.85)


def plot_report(report: RunReport, path: Any, *, x: str = "step", title: str | None = None) -> Any:
    """Draw ``report``'s monitored metric per validation run against ``x`` (``"step"``: optimizer steps;
    ``"time"``: training-clock seconds) and save it to ``path``; returns ``path``.

    Marked: the best value (a star), early stopping's ``stopping_threshold`` / ``divergence_threshold``
    (dashed lines), the stop with its reason (a dotted line; the message below the chart) and, when
    ``max_time`` is set, its budget (shaded; the reserve hatched). Against steps the budget's end is where
    the run's measured pace would reach it. Below the chart, where the wall time went (the run profile, a
    stacked bar: :func:`draw_profile`).
    """
    if x not in ("step", "time"):
        raise ValueError(f"plot(x={x!r}): accepted: 'step' or 'time'")
    if report.monitor is None:
        raise ValueError(
            "plot() needs a monitored metric and early stopping is off: pass monitor='val_loss' "
            "(a metric of the evaluator)"
        )
    fig = _figure()
    profile = report.profile
    if profile is not None and profile.wall > 0:
        fig.set_size_inches(_WIDTH, _HEIGHT + 1.8)
        grid = fig.add_gridspec(2, 1, height_ratios=(4.6, 0.45))
        ax = fig.add_subplot(grid[0])
        draw_profile(fig.add_subplot(grid[1]), profile)
    else:
        ax = fig.add_subplot(1, 1, 1)
    _draw_metric_panel(ax, report, report.monitor, x, title)
    if report.stop_message:
        message = report.stop_message if len(report.stop_message) <= 140 else report.stop_message[:137] + "..."
        fig.text(0.01, 0.01, f"stop: {message}", fontsize="x-small", color="dimgray")
    if profile is not None and profile.wall > 0:  # (tight_layout cannot place the profile's legend)
        fig.subplots_adjust(left=0.09, right=0.97, top=0.94, bottom=0.14, hspace=0.45)
    else:
        fig.tight_layout(rect=(0.0, 0.03, 1.0, 1.0))
    fig.savefig(path)
    return path


@dataclass
class Curve:
    """One run of a comparison: its monitored metric against wall time."""

    label: str
    times: list[float]  # seconds since the run started
    values: list[float]
    end: float  # seconds the run took
    stop: str = ""  # why it ended, for the legend
    color: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _first_reaching(curve: Curve, target: float, mode: str) -> float | None:
    for t, v in zip(curve.times, curve.values):
        if (v >= target) if mode == "max" else (v <= target):
            return t
    return None


def plot_comparison(
    curves: Sequence[Curve], path: Any, *, monitor: str, mode: str = "max", title: str | None = None
) -> Any:
    """Draw several runs' ``monitor`` against wall time and save it to ``path``; returns ``path``.

    The first curve sets the target: its best value (a dashed line); each run's first validation that
    reached it is marked, each run's end is a dotted line, and the time the first run saved against the
    second is spelled out.
    """
    if mode not in ("min", "max"):
        raise ValueError(f"plot_comparison(mode={mode!r}): accepted: 'min' or 'max'")
    if not curves:
        raise ValueError("plot_comparison() needs at least one curve")
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:purple"]
    first = curves[0]
    target = (max if mode == "max" else min)(first.values) if first.values else None
    for i, curve in enumerate(curves):
        color = curve.color or colors[i % len(colors)]
        ax.plot(curve.times, curve.values, marker="o", markersize=3, linewidth=1.6, color=color, label=curve.label)
        ax.axvline(
            curve.end,
            color=color,
            linestyle=":",
            linewidth=1.4,
            label=f"{curve.label} ended: {curve.end:.2f} s" + (f" ({curve.stop})" if curve.stop else ""),
        )
        reached = None if target is None else _first_reaching(curve, target, mode)
        if reached is not None:
            ax.scatter([reached], [target], marker="*", s=200, color=color, edgecolors="black", zorder=5)
    if target is not None:
        ax.axhline(
            target,
            color="gray",
            linestyle="--",
            linewidth=1.0,
            label=f"{monitor} = {_fmt(target)} (best of {first.label}; stars: first reached)",
        )
    if len(curves) >= 2 and curves[1].end > 0:
        a, b = first.end, curves[1].end
        y0, y1 = ax.get_ylim()
        y = y0 + 0.5 * (y1 - y0)  # above the legend (lower right)
        ax.annotate("", xy=(a, y), xytext=(b, y), arrowprops={"arrowstyle": "<->", "color": "black"})
        ax.text(
            (a + b) / 2,
            y + 0.02 * (y1 - y0),
            f"{b - a:.2f} s saved ({a / b:.2f}x the time)",
            ha="center",
            va="bottom",
            fontsize="small",
        )
    ax.set_xlim(0.0, max(c.end for c in curves) * 1.04)
    ax.set_xlabel("wall time since trainer.run() (s)")
    ax.set_ylabel(monitor)
    ax.grid(True, alpha=0.3)
    ax.set_title(title or f"{monitor} per validation run against wall time")
    ax.legend(loc="lower right", fontsize="small", framealpha=0.85)
    fig.tight_layout()
    fig.savefig(path)
    return path
