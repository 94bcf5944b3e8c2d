"""Reading recorded metrics back: quantiles from histogram buckets, a summary table, and
a JSON-ready snapshot of final counts.

The series come from a metrics reader (:func:`collect`) or from a Prometheus text
exposition, such as a service's ``/metrics`` (:func:`parse_exposition`).

:func:`bucket_quantile` estimates a quantile the way Prometheus' ``histogram_quantile``
does: find the bucket holding the rank, interpolate linearly inside it (the first
bucket starts at 0; a rank in the ``+Inf`` bucket answers the highest finite bound).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.sdk.metrics.export import (
    HistogramDataPoint,
    MetricReader,
    NumberDataPoint,
)

__all__ = (
    "Series",
    "bucket_quantile",
    "collect",
    "format_table",
    "parse_exposition",
    "snapshot",
)


def bucket_quantile(q: float, bounds: Sequence[float], counts: Sequence[int]) -> float:
    """The *q*-quantile of a histogram with upper *bounds* and per-bucket *counts*
    (``len(counts) == len(bounds) + 1``, the last being ``+Inf``); NaN when empty.

    >>> bucket_quantile(0.5, [1.0, 2.0], [0, 10, 0])
    1.5
    >>> bucket_quantile(0.99, [1.0, 2.0], [0, 0, 5])
    2.0
    """
    total = sum(counts)
    if total == 0 or not 0 <= q <= 1:
        return math.nan
    rank = q * total
    cumulative = 0
    for i, count in enumerate(counts):
        previous = cumulative
        cumulative += count
        if cumulative >= rank and count > 0:
            if i >= len(bounds):  # the +Inf bucket
                return float(bounds[-1]) if bounds else math.nan
            upper = float(bounds[i])
            lower = float(bounds[i - 1]) if i > 0 else 0.0
            if i == 0 and upper <= 0:
                return upper
            return lower + (upper - lower) * (rank - previous) / count
    return float(bounds[-1]) if bounds else math.nan


@dataclass(frozen=True)
class Series:
    """One metric and label set."""

    scope: str
    metric: str
    labels: dict[str, Any]
    kind: str  # "counter" | "histogram"
    value: float = 0.0  # counters: the total; histograms: the count
    sum: float = 0.0
    bounds: tuple[float, ...] = ()
    bucket_counts: tuple[int, ...] = field(default=())

    def quantile(self, q: float) -> float:
        return bucket_quantile(q, self.bounds, self.bucket_counts)

    def label_text(self) -> str:
        return ",".join(f"{k}={v}" for k, v in sorted(self.labels.items()))


def collect(reader: MetricReader) -> list[Series]:
    """Every series *reader* holds (cumulative), sorted by scope, metric and labels."""
    data = reader.get_metrics_data()  # type: ignore[attr-defined]
    out: list[Series] = []
    if data is None:
        return out
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for point in metric.data.data_points:
                    labels = dict(point.attributes or {})
                    if isinstance(point, HistogramDataPoint):
                        out.append(
                            Series(
                                sm.scope.name,
                                metric.name,
                                labels,
                                "histogram",
                                float(point.count),
                                float(point.sum),
                                tuple(point.explicit_bounds),
                                tuple(point.bucket_counts),
                            )
                        )
                    elif isinstance(point, NumberDataPoint):
                        out.append(
                            Series(sm.scope.name, metric.name, labels, "counter", point.value)
                        )
    out.sort(key=lambda s: (s.scope, s.metric, s.label_text()))
    return out


_SCOPE_LABELS = frozenset({"otel_scope_name", "otel_scope_version", "otel_scope_schema_url"})


def parse_exposition(text: str, service: str) -> list[Series]:
    """The counters and histograms of a Prometheus text exposition of *service*.

    A series' scope is its ``otel_scope_name`` label -- the service's own meter for its
    domain and HTTP metrics -- shown as ``service (scope)`` when it is another one;
    counters keep their sample name (``..._total``).  Empty label values (a label the
    series does not have) and the HTTP labels that never vary here (``url_scheme``,
    ``network_protocol_version``) are left out.
    """
    from prometheus_client.parser import text_string_to_metric_families

    out: list[Series] = []
    for family in text_string_to_metric_families(text):
        if family.type == "counter":
            for sample in family.samples:
                if not sample.name.endswith("_total"):
                    continue  # the _created samples of OpenMetrics
                scope, labels = _split(sample.labels, service)
                out.append(Series(scope, sample.name, labels, "counter", float(sample.value)))
        elif family.type == "histogram":
            out.extend(_histograms(family, service))
    out.sort(key=lambda s: (s.scope, s.metric, s.label_text()))
    return out


#: Left out of the table: the same on every request of the demo (plain HTTP/1.1).
_QUIET_LABELS = frozenset({"url_scheme", "network_protocol_version"})


def _split(labels: dict[str, str], service: str) -> tuple[str, dict[str, str]]:
    scope = labels.get("otel_scope_name") or service
    mine = {
        k: v
        for k, v in labels.items()
        # An empty value is how the exposition writes a label a series does not have.
        if v and k not in _SCOPE_LABELS and k not in _QUIET_LABELS and k != "le"
    }
    return (service if scope == service else f"{service} ({scope})"), mine


def _histograms(family: Any, service: str) -> list[Series]:
    buckets: dict[tuple[str, tuple[tuple[str, str], ...]], list[tuple[float, float]]] = {}
    sums: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for sample in family.samples:
        scope, labels = _split(sample.labels, service)
        k = (scope, tuple(sorted(labels.items())))
        if sample.name.endswith("_bucket"):
            buckets.setdefault(k, []).append((float(sample.labels["le"]), float(sample.value)))
        elif sample.name.endswith("_sum"):
            sums[k] = float(sample.value)
    out = []
    for (scope, pairs), cumulative in buckets.items():
        cumulative.sort()
        bounds = tuple(le for le, _ in cumulative if le != math.inf)
        counts, previous = [], 0.0
        for _le, running in cumulative:
            counts.append(int(running - previous))
            previous = running
        total = cumulative[-1][1] if cumulative else 0.0
        out.append(
            Series(
                scope,
                family.name,
                dict(pairs),
                "histogram",
                total,
                sums.get((scope, pairs), 0.0),
                bounds,
                tuple(counts),
            )
        )
    return out


def snapshot(series: Sequence[Series]) -> list[dict[str, Any]]:
    """A JSON-ready list of the series (for the e2e test and ``--json``)."""
    return [
        {
            "scope": s.scope,
            "metric": s.metric,
            "kind": s.kind,
            "labels": s.labels,
            "value": s.value,
            **(
                {"sum": s.sum, "bounds": list(s.bounds), "bucket_counts": list(s.bucket_counts)}
                if s.kind == "histogram"
                else {}
            ),
        }
        for s in series
    ]


def _ms(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1000:.1f}"


def format_table(series: Sequence[Series]) -> str:
    """A readable table: counters with their totals, histograms with count and
    p50/p95/p99 in milliseconds (estimated from the buckets)."""
    lines: list[str] = []
    histograms = [s for s in series if s.kind == "histogram"]
    counters = [s for s in series if s.kind == "counter"]
    if histograms:
        width = max(len(f"{s.metric}{{{s.label_text()}}}") for s in histograms)
        header = f"{'duration histogram {labels}':<{width}}  {'count':>7}  "
        header += f"{'p50 ms':>8}  {'p95 ms':>8}  {'p99 ms':>8}"
        lines += [header, "-" * len(header)]
        scope = None
        for s in histograms:
            if s.scope != scope:
                scope = s.scope
                lines.append(f"[{scope}]")
            name = f"{s.metric}{{{s.label_text()}}}"
            lines.append(
                f"{name:<{width}}  {int(s.value):>7}  {_ms(s.quantile(0.5)):>8}  "
                f"{_ms(s.quantile(0.95)):>8}  {_ms(s.quantile(0.99)):>8}"
            )
        lines.append("")
    if counters:
        width = max(len(f"{s.metric}{{{s.label_text()}}}") for s in counters)
        header = f"{'counter {labels}':<{width}}  {'total':>7}"
        lines += [header, "-" * len(header)]
        scope = None
        for s in counters:
            if s.scope != scope:
                scope = s.scope
                lines.append(f"[{scope}]")
            name = f"{s.metric}{{{s.label_text()}}}"
            lines.append(f"{name:<{width}}  {int(s.value):>7}")
    return "\n".join(lines)
