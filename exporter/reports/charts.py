"""The charts of the HTML trend report, drawn by matplotlib as inline SVG.

matplotlib is an optional dependency (the ``html`` extra): :func:`require_matplotlib` turns its
absence into one error line. Charts are drawn on :class:`matplotlib.figure.Figure` objects
directly, never through ``pyplot``, so no global state or GUI backend is involved. The SVG keeps
text as text (``svg.fonttype: none``: smaller, searchable, rendered with the reader's local
sans-serif font) and carries no date, so the same archive gives the same page byte for byte.
Each chart gets its own id prefix (``svg.hashsalt``), since many SVGs share one HTML document.

Time series plot one point per period of :mod:`exporter.reports.timeline`; a period without
runs breaks the line instead of bridging it.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

from exporter.reports.timeline import ModelPoint, OperationPoint
from exporter.util.errors import CommandError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "Charts",
    "require_matplotlib",
]

MISSING_MESSAGE: Final = (
    "the HTML report needs matplotlib: pip install 'batch-metrics[html]' "
    "(or use --format markdown or json)"
)

_WIDTH: Final = 6.4  # inches; at 96 px per inch about 610 px, two charts side by side
_HEIGHT: Final = 2.5
_RC: Final[Any] = {  # Any: matplotlib types the keys as a Literal of every rc name
    "svg.fonttype": "none",
    "font.family": "sans-serif",
    "font.size": 8.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.titlesize": 9.5,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
    "legend.fontsize": 7.5,
    "legend.frameon": False,
    "path.simplify": True,
}
OUTCOME_COLORS: Final = {"success": "#2e7d32", "partial": "#f9a825", "failure": "#c62828"}
_THRESHOLD_COLOR: Final = "#c62828"


def require_matplotlib() -> None:
    """CommandError with one line naming the extra to install when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401, PLC0415
    except ImportError as exc:
        raise CommandError(MISSING_MESSAGE) from exc


def _day(epoch_seconds: float) -> float:
    """matplotlib's date number (days since its default epoch, 1970-01-01 UTC)."""
    return epoch_seconds / 86_400


def _dense(
    points: Sequence[Any], period: int, value: Callable[[Any], float | None]
) -> tuple[list[float], list[float]]:
    """Every period from the first point to the last (x: its middle as a date number), NaN
    where no run started (a gap)."""
    if not points:
        return [], []
    by_start = {int(p.start): value(p) for p in points}
    first, last = int(points[0].start), int(points[-1].start)
    xs: list[float] = []
    ys: list[float] = []
    for start in range(first, last + period, period):
        v = by_start.get(start)
        xs.append(_day(start + period / 2))
        ys.append(math.nan if v is None else float(v))
    return xs, ys


class Charts:
    """Draws the report's charts; each call returns one ``<svg>`` element as text."""

    def __init__(self, period_seconds: int, period_name: str) -> None:
        require_matplotlib()
        self.period = period_seconds
        self.period_name = period_name
        self._count = 0

    # -- plumbing --------------------------------------------------------------------------

    def _figure(self, height: float, *, fixed: bool) -> Figure:
        from matplotlib.figure import Figure  # noqa: PLC0415 (optional dependency)

        if not fixed:  # labels of unknown width: let matplotlib find the margins (slower)
            return Figure(figsize=(_WIDTH, height), layout="constrained")
        fig = Figure(figsize=(_WIDTH, height))
        fig.subplots_adjust(left=0.09, right=0.985, top=0.9, bottom=0.16)
        return fig

    def _svg(self, fig: Figure) -> str:
        import matplotlib as mpl  # noqa: PLC0415

        self._count += 1
        out = io.StringIO()
        with mpl.rc_context({"svg.hashsalt": f"bm-chart-{self._count}"}):
            fig.savefig(out, format="svg", metadata={"Date": None})
        text = out.getvalue()
        return text[text.index("<svg") :]  # drop the XML declaration and DOCTYPE

    def _time_axis(self, ax: Axes) -> None:
        from matplotlib.dates import AutoDateLocator, ConciseDateFormatter  # noqa: PLC0415

        ax.xaxis_date("UTC")
        low, high = ax.dataLim.intervalx
        span = self.period / 86_400  # one period in date units (days)
        if math.isfinite(high - low) and high - low < 2 * span:  # one period: show its sides
            middle = (low + high) / 2
            ax.set_xlim(middle - span, middle + span)
        locator = AutoDateLocator(maxticks=8)  # type: ignore[no-untyped-call]
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]

    def _draw(
        self, build: Callable[[Figure], None], height: float = _HEIGHT, *, fixed: bool = True
    ) -> str:
        import matplotlib as mpl  # noqa: PLC0415

        with mpl.rc_context(_RC):
            fig = self._figure(height, fixed=fixed)
            build(fig)
            return self._svg(fig)

    # -- charts ----------------------------------------------------------------------------

    def durations(self, points: Sequence[OperationPoint], threshold: float | None) -> str:
        """Mean and longest run per period, with the long-duration threshold as a line."""

        def build(fig: Figure) -> None:
            ax = fig.add_subplot()
            xs, mean = _dense(points, self.period, lambda p: p.mean_duration)
            _, longest = _dense(points, self.period, lambda p: p.duration_max)
            ax.plot(xs, longest, color="#90a4ae", lw=0.8, marker=".", ms=2, label="longest run")
            ax.plot(xs, mean, color="#1565c0", lw=1.4, marker="o", ms=2, label="mean")
            if threshold is not None:
                ax.axhline(threshold, color=_THRESHOLD_COLOR, ls="--", lw=1)
                ax.annotate(
                    f"{threshold:g} s",
                    (1, threshold),
                    xycoords=("axes fraction", "data"),
                    ha="right",
                    va="bottom",
                    color=_THRESHOLD_COLOR,
                    fontsize=7.5,
                )
            ax.set_title(f"Duration per {self.period_name} (seconds)")
            _headroom(ax)
            ax.legend(loc="upper left", ncols=2)
            self._time_axis(ax)

        return self._draw(build)

    def success_rate(self, points: Sequence[OperationPoint], threshold: float | None) -> str:
        """Item success rate per period (Σ success / Σ items), with the threshold line."""
        from matplotlib.ticker import PercentFormatter  # noqa: PLC0415

        def build(fig: Figure) -> None:
            ax = fig.add_subplot()
            xs, rate = _dense(points, self.period, lambda p: p.success_rate)
            ax.plot(xs, rate, color="#2e7d32", lw=1.4, marker="o", ms=2)
            if threshold is not None:
                ax.axhline(threshold, color=_THRESHOLD_COLOR, ls="--", lw=1)
                ax.annotate(
                    f"{threshold:.0%}",
                    (1, threshold),
                    xycoords=("axes fraction", "data"),
                    ha="right",
                    va="top",
                    color=_THRESHOLD_COLOR,
                    fontsize=7.5,
                )
            ax.set_ylim(0, 1.02)
            ax.yaxis.set_major_formatter(PercentFormatter(1.0))
            ax.set_title(f"Item success rate per {self.period_name}")
            self._time_axis(ax)

        return self._draw(build)

    def outcomes(self, points: Sequence[OperationPoint]) -> str:
        """Runs per period, stacked by outcome (one filled step line per outcome)."""
        from matplotlib.ticker import MaxNLocator  # noqa: PLC0415

        def build(fig: Figure) -> None:
            ax = fig.add_subplot()
            if not points:
                return
            first, last = int(points[0].start), int(points[-1].start)
            starts = range(first, last + self.period, self.period)
            edges = [_day(t) for t in (*starts, last + self.period)]
            by_start = {int(p.start): p for p in points}
            bottom = [0.0] * len(starts)
            for outcome, attr in (
                ("success", "success_runs"),
                ("partial", "partial_runs"),
                ("failure", "failure_runs"),
            ):
                heights = [getattr(by_start[t], attr) if t in by_start else 0 for t in starts]
                top = [b + h for b, h in zip(bottom, heights, strict=True)]
                ax.stairs(
                    top,
                    edges,
                    baseline=bottom,
                    fill=True,
                    color=OUTCOME_COLORS[outcome],
                    label=outcome,
                )
                bottom = top
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylim(0, max(bottom, default=1) * 1.3 or 1)  # room for the legend
            ax.set_title(f"Runs per {self.period_name} by outcome")
            ax.legend(loc="upper left", ncols=3)
            self._time_axis(ax)

        return self._draw(build)

    def by_model(self, models: dict[str, list[ModelPoint]], what: str) -> str:
        """Tokens (input + output) or cost (priced runs) per period, one line per model."""
        from matplotlib.ticker import FuncFormatter  # noqa: PLC0415

        def build(fig: Figure) -> None:
            ax = fig.add_subplot()
            for model, points in models.items():
                if what == "tokens":
                    xs, ys = _dense(points, self.period, lambda p: p.tokens)
                else:
                    xs, ys = _dense(points, self.period, lambda p: p.cost_usd)
                    if all(math.isnan(y) for y in ys):
                        continue  # unpriced model: no line, never $0
                ax.plot(xs, ys, lw=1.2, marker="o", ms=2, label=model)
            if what == "tokens":
                ax.set_title(f"Tokens per {self.period_name} by model (input + output)")
                ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: _si(v)))
            else:
                ax.set_title(f"Cost per {self.period_name} by model (USD, priced runs)")
                ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"${v:,.2f}"))
            _headroom(ax)
            if ax.lines:
                ax.legend(loc="upper left", ncols=2)
                self._time_axis(ax)
            else:  # every model unpriced: say so rather than draw $0
                ax.text(0.5, 0.5, "no priced runs", transform=ax.transAxes, ha="center")
                ax.set_xticks([])

        return self._draw(build)

    def bars(self, title: str, labels: Sequence[str], values: Sequence[float], color: str) -> str:
        """Horizontal bars, the first label on top."""

        def build(fig: Figure) -> None:
            ax = fig.add_subplot()
            positions = list(range(len(labels)))[::-1]
            ax.barh(positions, values, color=color, height=0.6)
            ax.set_yticks(positions, labels)
            ax.grid(axis="y", visible=False)
            ax.set_title(title)

        return self._draw(build, height=max(1.4, 0.6 + 0.28 * len(labels)), fixed=False)


def _headroom(ax: Axes) -> None:
    """From 0, with room above the data for the legend in the upper left corner."""
    ax.set_ylim(0, max(ax.get_ylim()[1], 1e-9) * 1.2)


def _si(value: float) -> str:
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:g}{suffix}"
    return f"{value:g}"
