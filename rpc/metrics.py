"""Prometheus metrics in the text exposition format 0.0.4, without a dependency.

The daemon needs a handful of counters, gauges and histograms on `/metrics`;
prometheus_client would be a whole dependency (and a global registry) for
that. This registry is explicit: the daemon makes one, hands it to whoever
records, and the HTTP shell renders it.

Rules it keeps:
- Metric and label names are validated when declared (`[a-zA-Z_:][a-zA-Z0-9_:]*`,
  labels `[a-zA-Z_][a-zA-Z0-9_]*`, no `__` prefix, no `le` on histograms).
- Each metric has a fixed set of label names; every sample gives exactly
  those. Values come from our code, never straight from a caller, and each
  metric holds at most `series_max` label combinations, so a bug cannot turn
  /metrics into a memory leak; exceeding it is an assertion (our bug).
- Declaring the same name again with the same shape returns the existing
  metric (so two shells can share a registry); a different shape is an error.
- Counters and gauges may be backed by a callback read at render time, for
  values another component owns (height, view, a replica's running counts)
  so nothing has to push them; a count is still typed `counter`, so
  Prometheus's `rate()` handles a restart's reset.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import structlog

__all__ = ["DEFAULT_BUCKETS", "Counter", "Gauge", "Histogram", "Registry"]

log = structlog.get_logger("pbftd.rpc.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DEFAULT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SERIES_MAX = 1000

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")

LabelKey = tuple[str, ...]


def _format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _label_text(names: Sequence[str], values: Sequence[str]) -> str:
    if not names:
        return ""
    pairs = ",".join(f'{n}="{_escape_label(v)}"' for n, v in zip(names, values, strict=True))
    return "{" + pairs + "}"


class _Metric:
    kind = ""

    def __init__(self, name: str, help_text: str, labelnames: Iterable[str] = (),
                 series_max: int = SERIES_MAX) -> None:
        if not _METRIC_NAME.fullmatch(name):
            raise ValueError(f"invalid metric name {name!r}")
        self.labelnames: tuple[str, ...] = tuple(labelnames)
        for label in self.labelnames:
            if not _LABEL_NAME.fullmatch(label) or label.startswith("__"):
                raise ValueError(f"{name}: invalid label name {label!r}")
        if len(set(self.labelnames)) != len(self.labelnames):
            raise ValueError(f"{name}: duplicate label names")
        self.name = name
        self.help = help_text
        self.series_max = series_max

    def shape(self) -> tuple[Any, ...]:
        return (self.kind, self.help, self.labelnames)

    def sample_names(self) -> tuple[str, ...]:
        return (self.name,)

    def _key(self, labels: Mapping[str, str]) -> LabelKey:
        if set(labels) != set(self.labelnames):
            raise ValueError(f"{self.name}: labels must be exactly {list(self.labelnames)}")
        key = tuple(labels[n] for n in self.labelnames)
        assert all(type(v) is str for v in key), f"{self.name}: label values are strings"
        return key

    def _admit(self, store: dict[LabelKey, Any], key: LabelKey) -> None:
        if key not in store:
            assert len(store) < self.series_max, f"{self.name}: more than {self.series_max} series"

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {_escape_help(self.help)}", f"# TYPE {self.name} {self.kind}"]

    def samples(self) -> list[str]:
        raise NotImplementedError


Callback = Callable[[], float | Mapping[LabelKey, float]]


class _Valued(_Metric):
    """One number per label combination: kept here, or read from ``callback``
    at render for values another component owns (a replica's counts, the
    chain's height), so nothing has to push them."""

    def __init__(self, *args: Any, callback: Callback | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.callback = callback
        self._values: dict[LabelKey, float] = {} if self.labelnames else {(): 0.0}

    def _store(self, key: LabelKey, value: float) -> None:
        assert self.callback is None, f"{self.name} is read from its callback"
        self._admit(self._values, key)
        self._values[key] = value

    def value(self, **labels: str) -> float:
        return self._current().get(self._key(labels), 0.0)

    def _current(self) -> Mapping[LabelKey, float]:
        if self.callback is None:
            return self._values
        try:
            got = self.callback()
        except Exception:
            # A scrape must not fail because one reading did: skip the series.
            log.exception("metrics.callback_failed", metric=self.name)
            return {}
        values = got if isinstance(got, Mapping) else {(): got}
        assert all(len(k) == len(self.labelnames) for k in values), f"{self.name}: label arity"
        return dict(list(values.items())[: self.series_max])

    def samples(self) -> list[str]:
        return [f"{self.name}{_label_text(self.labelnames, k)} {_format_value(float(v))}"
                for k, v in sorted(self._current().items())]


class Counter(_Valued):
    """Monotonic total; name it `..._total` by convention.  A callback must
    return a count that only goes up (a component's running total)."""

    kind = "counter"

    def inc(self, amount: float = 1.0, /, **labels: str) -> None:
        assert amount >= 0, "counters only go up"
        key = self._key(labels)
        self._store(key, self._values.get(key, 0.0) + amount)


class Gauge(_Valued):
    """A value that goes up and down: set directly, or read from `callback` at render."""

    kind = "gauge"

    def set(self, value: float, /, **labels: str) -> None:
        self._store(self._key(labels), float(value))

    def inc(self, amount: float = 1.0, /, **labels: str) -> None:
        self.set(self._values.get(self._key(labels), 0.0) + amount, **labels)

    def dec(self, amount: float = 1.0, /, **labels: str) -> None:
        self.inc(-amount, **labels)


class Histogram(_Metric):
    """Counts of observations in fixed buckets, plus their sum and count."""

    kind = "histogram"

    def __init__(self, *args: Any, buckets: Sequence[float] = DEFAULT_BUCKETS,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "le" in self.labelnames:
            raise ValueError(f"{self.name}: 'le' is reserved for buckets")
        bounds = [float(b) for b in buckets]
        if not bounds or any(not math.isfinite(b) for b in bounds) or bounds != sorted(set(bounds)):
            raise ValueError(f"{self.name}: buckets must be finite and strictly increasing")
        self.buckets = (*bounds, math.inf)
        self._series: dict[LabelKey, list[float]] = {}  # per-bucket counts, then sum

    def shape(self) -> tuple[Any, ...]:
        return (*super().shape(), self.buckets)

    def sample_names(self) -> tuple[str, ...]:
        return (f"{self.name}_bucket", f"{self.name}_sum", f"{self.name}_count", self.name)

    def observe(self, value: float, /, **labels: str) -> None:
        key = self._key(labels)
        self._admit(self._series, key)
        series = self._series.setdefault(key, [0.0] * (len(self.buckets) + 1))
        for index, bound in enumerate(self.buckets):
            if value <= bound:
                series[index] += 1
                break
        series[-1] += value

    def samples(self) -> list[str]:
        lines = []
        for key, series in sorted(self._series.items()):
            cumulative = 0.0
            for bound, count in zip(self.buckets, series, strict=False):
                cumulative += count
                labels = _label_text((*self.labelnames, "le"), (*key, _format_value(bound)))
                lines.append(f"{self.name}_bucket{labels} {_format_value(cumulative)}")
            plain = _label_text(self.labelnames, key)
            lines.append(f"{self.name}_sum{plain} {_format_value(series[-1])}")
            lines.append(f"{self.name}_count{plain} {_format_value(cumulative)}")
        return lines


_M = TypeVar("_M", bound=_Metric)
_V = TypeVar("_V", bound=_Valued)


class Registry:
    """Named metrics, rendered together for one scrape."""

    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}
        self._sample_names: set[str] = set()

    def counter(self, name: str, help_text: str, labelnames: Iterable[str] = (), *,
                callback: Callback | None = None) -> Counter:
        return self._add_valued(Counter(name, help_text, labelnames, callback=callback))

    def gauge(self, name: str, help_text: str, labelnames: Iterable[str] = (), *,
              callback: Callback | None = None) -> Gauge:
        return self._add_valued(Gauge(name, help_text, labelnames, callback=callback))

    def _add_valued(self, metric: _V) -> _V:
        added = self._add(metric)
        if added.callback is not metric.callback:
            raise ValueError(f"{metric.name}: already registered with another callback")
        return added

    def histogram(self, name: str, help_text: str, labelnames: Iterable[str] = (), *,
                  buckets: Sequence[float] = DEFAULT_BUCKETS) -> Histogram:
        return self._add(Histogram(name, help_text, labelnames, buckets=buckets))

    def _add(self, metric: _M) -> _M:
        existing = self._metrics.get(metric.name)
        if existing is not None:
            if existing.shape() != metric.shape():
                raise ValueError(f"{metric.name}: already registered with another shape")
            return existing  # type: ignore[return-value]
        clash = self._sample_names.intersection(metric.sample_names())
        if clash:
            raise ValueError(f"{metric.name}: sample names {sorted(clash)} already in use")
        self._metrics[metric.name] = metric
        self._sample_names.update(metric.sample_names())
        return metric

    def render(self) -> str:
        lines: list[str] = []
        for metric in self._metrics.values():
            lines += metric.header() + metric.samples()
        return "\n".join(lines) + "\n" if lines else ""
