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


# ---------------------------------------------------------------- a batch of a rollout
from gantry.analysis import HostRow, select_hosts  # noqa: E402
from gantry.measure import batch_analysis, batch_ends, batch_wait_seconds, host_rows  # noqa: E402


def test_a_batch_is_measured_over_consecutive_intervals_from_when_it_was_back():
    spec = MetricSpec(name="m", query="q", interval_seconds=4, count=3)
    assert batch_ends(spec, since=1000) == [1004, 1008, 1012]
    config = AnalysisConfig(metrics=(spec, MetricSpec(name="n", query="q", interval_seconds=5, count=2)))
    assert batch_wait_seconds(config) == 12 + 2, "the longest metric, plus a scrape's margin"


RECORDS = [{"index": i, "name": f"t-{i}", "batch": 0 if i == 0 else 1} for i in range(4)]


def test_host_rows_from_what_the_rollout_recorded():
    released = {0: {"outcome": "released", "serving": "2.0"}}
    staged = {0: {"current": "1.0"}, 1: {"current": "1.0"}, 3: {"current": "1.0"}}  # t-2 was not staged
    rows = host_rows(RECORDS, released, staged)
    assert rows[0] == HostRow("t-0", 0, "2.0", True, False)
    assert rows[1] == HostRow("t-1", 1, "1.0", True, False)
    assert rows[2].failed and not rows[2].in_rotation
    hosts = select_hosts(rows, batch=0, version="2.0", previous_version="1.0")
    assert hosts == AnalysisHosts(("t-0",), ("t-1", "t-3"))
    # A canary rolled back by its own task is neither canary nor baseline.
    rolled = host_rows(RECORDS, {0: {"outcome": "rolled_back", "serving": "1.0"}}, staged)
    assert select_hosts(rolled, batch=0, version="2.0", previous_version="1.0").canary == ()
    left_out = host_rows(RECORDS, {0: {"outcome": "left_out_of_rotation", "serving": "1.0"}}, staged)
    assert not left_out[0].in_rotation


def test_a_failing_canary_against_a_good_baseline_is_rolled_back_with_its_numbers():
    store = Store({"t-0": FAILING, "t-1": GOOD, "t-3": GOOD})
    spec = MetricSpec(**{**ERRORS.__dict__, "interval_seconds": 4, "count": 3})
    outcome = batch_analysis(store.value_at, AnalysisConfig(metrics=(spec,)), app="demo", env="test", version="2.0",
                             hosts=AnalysisHosts(("t-0",), ("t-1", "t-3")), since=1000)
    assert outcome.score.verdict is Verdict.FAIL and outcome.action is Action.ROLL_BACK
    assert sorted({at for _, at in store.asked}) == [1004, 1008, 1012]
    (metric,) = outcome.evidence()["metrics"]
    assert [m["canary"] for m in metric["measurements"]] == [0.05] * 3
    assert [m["baseline"] for m in metric["measurements"]] == [0.0] * 3


def test_a_good_canary_passes_and_firing_alerts_halt_it():
    store = Store({"t-0": GOOD, "t-1": GOOD})
    hosts = AnalysisHosts(("t-0",), ("t-1",))
    config = AnalysisConfig(metrics=(ERRORS, LATENCY))
    assert batch_analysis(store.value_at, config, app="demo", env="test", version="2.0", hosts=hosts,
                          since=0).action is Action.PROCEED
    firing = [{"labels": {"alertname": "DemoHighErrorRate", "app": "demo", "env": "test", "host": "t-1"}}]
    halted = batch_analysis(store.value_at, config, app="demo", env="test", version="2.0", hosts=hosts, since=0,
                            alerts=firing)
    assert halted.action is Action.HALT and halted.evidence()["alerts"][0]["alertname"] == "DemoHighErrorRate"
    assert "alert firing: DemoHighErrorRate" in halted.table()


def test_a_batch_with_nothing_released_or_an_unreachable_store_is_never_a_pass():
    store = Store({})
    none = batch_analysis(store.value_at, AnalysisConfig(on_inconclusive="halt"), app="demo", env="test",
                          version="2.0", hosts=AnalysisHosts((), ("t-1",)), since=0)
    assert none.action is Action.HALT and store.asked == []

    def down(promql, at):
        raise Down("connection refused")

    for choice in ("halt", "ask"):
        outcome = batch_analysis(down, AnalysisConfig(on_unreachable=choice), app="demo", env="test",
                                 version="2.0", hosts=AnalysisHosts(("t-0",), ("t-1",)), since=0, unavailable=(Down,))
        assert outcome.action is Action(choice) and "connection refused" in outcome.score.reason
