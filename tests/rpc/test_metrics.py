"""The registry's output parses as Prometheus text format 0.0.4, line by line."""

from __future__ import annotations

import re

import pytest
from structlog.testing import capture_logs

from rpc.metrics import Registry

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\\\|\\"|\\n)*"'
VALUE = r"(?:[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]Inf|NaN)"
HELP_LINE = re.compile(rf"# HELP ({NAME}) (?:[^\\\n]|\\\\|\\n)*")
TYPE_LINE = re.compile(rf"# TYPE ({NAME}) (counter|gauge|histogram|summary|untyped)")
SAMPLE_LINE = re.compile(rf"({NAME})(\{{(?:{LABEL}(?:,{LABEL})*)?\}})? ({VALUE})(?: -?[0-9]+)?")


def parse(text: str) -> dict[str, list[tuple[str, str, float]]]:
    """Check every line; return samples by family: (sample name, labels, value)."""
    assert text.endswith("\n")
    families: dict[str, list[tuple[str, str, float]]] = {}
    types: dict[str, str] = {}
    for line in text.splitlines():
        if m := HELP_LINE.fullmatch(line):
            continue
        if m := TYPE_LINE.fullmatch(line):
            assert m.group(1) not in types, "one TYPE line per family"
            # a running count is a counter (rate() then sees a restart's
            # reset); Prometheus and OpenMetrics name counters ..._total
            assert not m.group(1).endswith("_total") or m.group(2) == "counter", line
            types[m.group(1)] = m.group(2)
            families[m.group(1)] = []
            continue
        m = SAMPLE_LINE.fullmatch(line)
        assert m, f"not a valid exposition line: {line!r}"
        sample = m.group(1)
        family = next(f for f in families if sample == f or (
            types[f] == "histogram" and sample in (f"{f}_bucket", f"{f}_sum", f"{f}_count")))
        families[family].append((sample, m.group(2) or "", float(m.group(3))))
    return families


def test_counter_gauge_histogram_render_and_parse() -> None:
    r = Registry()
    c = r.counter("pbftd_calls_total", "Calls\nby \\method", ("method",))
    c.inc(method="node.status")
    c.inc(2, method='we"ird\\name\n')
    g = r.gauge("pbftd_height", "Committed height")
    g.set(42)
    r.gauge("pbftd_view", "Current view", callback=lambda: 7)
    h = r.histogram("pbftd_call_seconds", "Call time", ("method",), buckets=(0.1, 1.0))
    for value in (0.05, 0.5, 5.0):
        h.observe(value, method="m")
    text = r.render()
    families = parse(text)
    assert "# HELP pbftd_calls_total Calls\\nby \\\\method" in text
    assert "# TYPE pbftd_call_seconds histogram" in text
    assert ("pbftd_calls_total", '{method="we\\"ird\\\\name\\n"}', 2.0) in families[
        "pbftd_calls_total"]
    assert families["pbftd_height"] == [("pbftd_height", "", 42.0)]
    assert families["pbftd_view"] == [("pbftd_view", "", 7.0)]
    assert families["pbftd_call_seconds"] == [
        ("pbftd_call_seconds_bucket", '{method="m",le="0.1"}', 1.0),
        ("pbftd_call_seconds_bucket", '{method="m",le="1"}', 2.0),
        ("pbftd_call_seconds_bucket", '{method="m",le="+Inf"}', 3.0),
        ("pbftd_call_seconds_sum", '{method="m"}', 5.55),
        ("pbftd_call_seconds_count", '{method="m"}', 3.0),
    ]


def test_a_counter_read_from_a_callback_is_typed_counter_and_refuses_inc() -> None:
    r = Registry()
    seen = {"n": 3}
    c = r.counter("pbftd_things_total", "things", callback=lambda: seen["n"])
    r.counter("pbftd_by_peer_total", "by peer", ("peer",),
              callback=lambda: {("a",): 1, ("b",): 2})
    seen["n"] = 5
    text = r.render()
    assert "# TYPE pbftd_things_total counter" in text
    assert parse(text)["pbftd_things_total"] == [("pbftd_things_total", "", 5.0)]
    assert [v for _, _, v in parse(text)["pbftd_by_peer_total"]] == [1.0, 2.0]
    assert c.value() == 5
    with pytest.raises(AssertionError, match="read from its callback"):
        c.inc()
    with pytest.raises(ValueError, match="another callback"):
        r.counter("pbftd_things_total", "things", callback=lambda: 0)


def test_a_total_typed_gauge_does_not_parse() -> None:
    r = Registry()
    r.gauge("pbftd_wrong_total", "a count exported as a gauge", callback=lambda: 1)
    with pytest.raises(AssertionError, match="pbftd_wrong_total gauge"):
        parse(r.render())


def test_unlabelled_counter_starts_at_zero_and_labelled_one_has_no_samples() -> None:
    r = Registry()
    r.counter("a_total", "a")
    r.counter("b_total", "b", ("x",))
    assert parse(r.render()) == {"a_total": [("a_total", "", 0.0)], "b_total": []}
    assert Registry().render() == ""


@pytest.mark.parametrize("bad", ["1abc", "a-b", "", "a b"])
def test_metric_names_are_validated(bad: str) -> None:
    with pytest.raises(ValueError):
        Registry().counter(bad, "x")


def test_label_rules() -> None:
    r = Registry()
    for labels in (("__reserved",), ("a-b",), ("x", "x")):
        with pytest.raises(ValueError):
            r.counter("c_total", "c", labels)
    with pytest.raises(ValueError, match="le"):
        r.histogram("h", "h", ("le",))
    c = r.counter("d_total", "d", ("x",))
    with pytest.raises(ValueError):
        c.inc(x="1", y="2")
    with pytest.raises(ValueError):
        c.inc()


def test_same_shape_is_shared_and_a_different_shape_or_sample_clash_is_refused() -> None:
    r = Registry()
    assert r.counter("c_total", "c", ("x",)) is r.counter("c_total", "c", ("x",))
    with pytest.raises(ValueError, match="shape"):
        r.gauge("c_total", "c", ("x",))
    r.histogram("lat", "latency")
    with pytest.raises(ValueError, match="in use"):
        r.counter("lat_count", "clash")


def test_series_are_capped() -> None:
    c = Registry().counter("c_total", "c", ("x",))
    c.series_max = 3
    for i in range(3):
        c.inc(x=str(i))
    with pytest.raises(AssertionError):
        c.inc(x="overflow")


def test_a_failing_gauge_callback_drops_its_series_not_the_scrape() -> None:
    r = Registry()
    r.gauge("broken", "b", callback=lambda: 1 / 0)
    r.gauge("fine", "f", callback=lambda: 1)
    with capture_logs() as logs:
        families = parse(r.render())
    assert families == {"broken": [], "fine": [("fine", "", 1.0)]}
    assert logs[0]["event"] == "metrics.callback_failed"


def test_special_values_render_as_prometheus_spells_them() -> None:
    r = Registry()
    g = r.gauge("g", "g", ("k",))
    for k, v in (("inf", float("inf")), ("ninf", float("-inf")), ("nan", float("nan")),
                 ("small", 1e-9), ("big", 1e20)):
        g.set(v, k=k)
    text = r.render()
    parse(text)
    for expected in ('g{k="inf"} +Inf', 'g{k="ninf"} -Inf', 'g{k="nan"} NaN',
                     'g{k="small"} 1e-09', 'g{k="big"} 1e+20'):
        assert expected in text
