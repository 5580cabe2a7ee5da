"""Running an analysis over a metrics store (gantry.measure): which instants a soak is measured
at, and what the measurements add up to, with the store's answers given as numbers."""
import re

import pytest

from gantry.analysis import DEFAULT_METRICS, Action, AnalysisConfig, AnalysisHosts, MetricSpec, Verdict
from gantry.measure import measure_metric, soak_analysis, soak_ends, soak_measured_at

ERRORS, LATENCY = DEFAULT_METRICS


class Store:
    """Answers the default queries per host: each host's error ratio, p99 and requests per
    interval; records every (query, instant) it was asked."""

    def __init__(self, hosts: dict[str, dict[str, float]]):
        self.hosts, self.asked = hosts, []

    def value_at(self, promql: str, at: float) -> float | None:
        self.asked.append((promql, at))
        selected = re.search(r'host=~"([^"]*)"', promql).group(1).replace("\\\\", "").split("|")
        rows = [self.hosts[h] for h in selected if h in self.hosts]
        if not rows:
            return None
        requests = sum(r["requests"] for r in rows)
        if promql.startswith("sum(increase("):
            return requests
        if "histogram_quantile" in promql:
            return max(r["p99"] for r in rows)
        return sum(r["errors"] * r["requests"] for r in rows) / requests if requests else float("nan")


GOOD = {"errors": 0.0, "p99": 0.02, "requests": 200}
FAILING = {"errors": 0.05, "p99": 0.02, "requests": 200}


def test_a_soak_is_measured_over_its_last_intervals_or_the_first_ones_after_a_short_soak():
    spec = MetricSpec(name="m", query="q", interval_seconds=10, count=3)
    assert soak_ends(spec, since=1000, soak_seconds=60) == [1040, 1050, 1060]
    assert soak_ends(spec, since=1000, soak_seconds=15) == [1010, 1020, 1030]
    config = AnalysisConfig(metrics=(spec, MetricSpec(name="n", query="q", interval_seconds=5, count=2)))
    assert soak_measured_at(config, since=1000, soak_seconds=15) == 1030


def test_each_measurement_asks_canary_and_baseline_at_the_same_instant():
    store = Store({"a-1": FAILING, "a-2": GOOD, "a-3": GOOD})
    result = measure_metric(store.value_at, ERRORS, [100, 110, 120], app="demo", env="beta", version="2.0",
                            hosts=AnalysisHosts(("a-1",), ("a-2", "a-3")))
    assert [m.canary for m in result.measurements] == [0.05] * 3
    assert [m.baseline for m in result.measurements] == [0.0] * 3
    assert [m.verdict for m in result.measurements] == [Verdict.FAIL] * 3
    assert result.verdict is Verdict.FAIL and result.comparison is not None
    assert sorted({at for _, at in store.asked}) == [100, 110, 120]
    assert len(store.asked) == 3 * 4, "value and requests, for the canary and the baseline, per instant"


def test_a_soak_with_every_host_on_the_new_version_is_judged_by_thresholds_alone():
    store = Store({"b-1": GOOD, "b-2": GOOD})
    config = AnalysisConfig(metrics=(ERRORS, LATENCY))
    outcome = soak_analysis(store.value_at, config, app="demo", env="beta", version="2.0", hosts=["b-1", "b-2"],
                            since=1000, soak_seconds=300)
    assert outcome.action is Action.PROCEED and outcome.score.verdict is Verdict.PASS
    assert all(r.comparison is None for r in outcome.metrics)
    assert outcome.evidence()["canary"] == ["b-1", "b-2"] and outcome.evidence()["baseline"] == []
    # The last five 30 s intervals of the five-minute soak.
    assert sorted({at for _, at in store.asked}) == [1180, 1210, 1240, 1270, 1300]


def test_a_failing_soak_rolls_back_and_its_evidence_holds_the_numbers():
    store = Store({"b-1": FAILING, "b-2": GOOD})
    outcome = soak_analysis(store.value_at, AnalysisConfig(metrics=(ERRORS,)), app="demo", env="beta",
                            version="2.0", hosts=["b-1", "b-2"], since=0, soak_seconds=0)
    assert outcome.score.verdict is Verdict.FAIL and outcome.action is Action.ROLL_BACK
    (metric,) = outcome.evidence()["metrics"]
    assert [m["canary"] for m in metric["measurements"]] == [pytest.approx(0.025)] * ERRORS.count
    assert "0.025 > max 0.01" in outcome.table()


def test_a_soak_without_traffic_is_never_a_pass():
    store = Store({"b-1": {**GOOD, "requests": 3}})
    outcome = soak_analysis(store.value_at, AnalysisConfig(metrics=(ERRORS,), on_inconclusive="halt"),
                            app="demo", env="beta", version="2.0", hosts=["b-1"], since=0, soak_seconds=0)
    assert outcome.score.verdict is Verdict.INCONCLUSIVE and outcome.action is Action.HALT


class Down(Exception):
    pass


def test_a_store_that_cannot_answer_gives_on_unreachable_never_a_pass():
    def value_at(promql, at):
        raise Down("connection refused")

    for choice in ("halt", "ask"):
        outcome = soak_analysis(value_at, AnalysisConfig(on_unreachable=choice), app="demo", env="beta",
                                version="2.0", hosts=["b-1"], since=0, soak_seconds=0, unavailable=(Down,))
        assert outcome.action is Action(choice) and outcome.score.verdict is Verdict.INCONCLUSIVE
        assert "could not be asked: connection refused" in outcome.score.reason
    with pytest.raises(Down):  # an error that does not mean "unavailable" is not swallowed
        soak_analysis(value_at, AnalysisConfig(), app="demo", env="beta", version="2.0", hosts=["b-1"],
                      since=0, soak_seconds=0)
