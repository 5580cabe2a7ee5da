"""The decisions of release analysis (gantry.analysis), with no Airflow and no Prometheus."""
import json
import math
import re

import pytest

from gantry import analysis
from gantry.analysis import (
    Action, AnalysisError, AnalysisHosts, AnalysisOutcome, HostRow, MetricSpec, Verdict, blocking_alerts,
    compare_samples, decide, judge_measurement, judge_metric, mann_whitney_u, render_query, score, select_hosts)

# ---------------------------------------------------------------- Mann-Whitney U
# The diagnosis ages of the example in scipy.stats.mannwhitneyu's documentation (U_M = 17, U_F = 3
# as its reference reports): the asymptotic two-sided p-value the documentation prints is
# 0.11134688653314041. The one-sided values and the tied sample below were computed with
# scipy 1.17.1, scipy.stats.mannwhitneyu(x, y, method="asymptotic", alternative=...).
MALES, FEMALES = [19, 22, 16, 29, 24], [20, 11, 17, 12]
TIED_CANARY = [0.012, 0.015, 0.015, 0.020, 0.031, 0.031, 0.040]
TIED_BASELINE = [0.010, 0.012, 0.012, 0.015, 0.011, 0.009, 0.010, 0.012]


@pytest.mark.parametrize("x, y, alternative, u, p", [
    (MALES, FEMALES, "two-sided", 17.0, 0.11134688653314041),
    (MALES, FEMALES, "greater", 17.0, 0.055673443266570206),
    (MALES, FEMALES, "less", 17.0, 0.9669037101389033),
    (TIED_CANARY, TIED_BASELINE, "two-sided", 52.5, 0.004832240868896149),
    (TIED_CANARY, TIED_BASELINE, "greater", 52.5, 0.0024161204344480746),
    (TIED_CANARY, TIED_BASELINE, "less", 52.5, 0.9983345517113763),
])
def test_mann_whitney_matches_scipy(x, y, alternative, u, p):
    result = mann_whitney_u(x, y, alternative)
    assert result.u_canary == u and result.u_baseline == len(x) * len(y) - u
    assert result.p_value == pytest.approx(p, rel=1e-12)


def test_mann_whitney_is_symmetric_and_sees_no_difference_in_equal_samples():
    assert mann_whitney_u(MALES, FEMALES, "greater").p_value == pytest.approx(
        mann_whitney_u(FEMALES, MALES, "less").p_value)
    same = mann_whitney_u([1, 1, 1], [1, 1, 1, 1])
    assert same.p_value == 1.0 and same.z == 0.0 and same.u_canary == 6.0


def test_mann_whitney_refuses_what_it_cannot_test():
    with pytest.raises(AnalysisError, match="values on both sides"):
        mann_whitney_u([], [1, 2])
    with pytest.raises(AnalysisError, match="two-sided, greater or less"):
        mann_whitney_u([1], [2], "bigger")


# ---------------------------------------------------------------- specs and queries
ERRORS = MetricSpec(name="error_ratio", query='sum(rate(x{host=~"{hosts}",code=~"5.."}[{interval}]))',
                    requests_query='sum(increase(x{host=~"{hosts}"}[{interval}]))',
                    max=0.05, max_increase=0.01, min_requests=20, failure_limit=1, count=5)


def test_hosts_are_an_escaped_alternation_that_matches_only_those_names():
    rendered = analysis.hosts_regex(["web-1.a", "web_2"])
    assert rendered == r"web\\-1\\.a|web_2"
    regex = rendered.replace("\\\\", "\\")  # what PromQL hands RE2 after reading the string
    assert re.fullmatch(regex, "web-1.a") and re.fullmatch(regex, "web_2")
    assert not re.fullmatch(regex, "web-1xa") and not re.fullmatch(regex, "web-1.ab")
    with pytest.raises(AnalysisError, match="no hosts"):
        analysis.hosts_regex([])


def test_a_query_gets_its_placeholders_and_keeps_promql_braces():
    query = render_query('sum(rate(m{app="{app}",env="{env}",host=~"{hosts}",version="{version}"}[{interval}]))',
                         app="demo", env="beta", hosts=["beta-demo-01"], version="1.3.0", interval_seconds=30)
    assert query == r'sum(rate(m{app="demo",env="beta",host=~"beta\\-demo\\-01",version="1.3.0"}[30s]))'
    # A query without {hosts} needs none (an environment-wide query).
    assert render_query('up{env="{env}"}', app="demo", env="x", hosts=[]) == 'up{env="x"}'


def test_a_spec_with_an_unknown_placeholder_or_direction_is_refused():
    with pytest.raises(AnalysisError, match=r"unknown placeholder \{host\}"):
        MetricSpec(name="m", query='up{host="{host}"}')
    with pytest.raises(AnalysisError, match="direction must be one of increase, decrease, either"):
        MetricSpec(name="m", query="up", direction="up")


# ---------------------------------------------------------------- measurements
@pytest.mark.parametrize("canary, baseline, c_req, b_req, verdict, reason", [
    (0.0, 0.0, 100, 400, Verdict.PASS, "within limits"),
    (0.009, 0.0, 100, 400, Verdict.PASS, "within limits"),
    (0.06, 0.055, 100, 400, Verdict.FAIL, "canary 0.06 > max 0.05"),
    (0.03, 0.0, 100, 400, Verdict.FAIL, "0.03 worse, more than max_increase 0.01"),
    (0.0, 0.0, 5, 400, Verdict.INCONCLUSIVE, "canary served 5 requests, fewer than min_requests 20"),
    (None, None, 0, 400, Verdict.INCONCLUSIVE, "canary served 0 requests"),
    (math.nan, 0.0, None, 400, Verdict.INCONCLUSIVE, "canary served - requests"),
    (None, 0.0, 100, 400, Verdict.INCONCLUSIVE, "no data for the canary"),
    (0.0, None, 100, 400, Verdict.INCONCLUSIVE, "no data for the baseline"),
    (0.0, 0.0, 100, 3, Verdict.INCONCLUSIVE, "baseline served 3 requests"),
])
def test_a_measurement_passes_fails_or_cannot_say(canary, baseline, c_req, b_req, verdict, reason):
    m = judge_measurement(ERRORS, 1, canary, baseline, c_req, b_req)
    assert m.verdict is verdict and reason in m.reason


def test_the_harmful_direction_decides_what_worse_means():
    success = MetricSpec(name="success_ratio", query="q", direction="decrease", min=0.9, max_increase=0.01,
                         min_requests=0)
    assert judge_measurement(success, 1, 0.999, 0.95, None, None).verdict is Verdict.PASS  # better
    assert judge_measurement(success, 1, 0.95, 0.99, None, None).verdict is Verdict.FAIL   # 0.04 lower
    assert judge_measurement(success, 1, 0.85, 0.85, None, None).reason == "canary 0.85 < min 0.9"
    either = MetricSpec(name="cpu", query="q", direction="either", max_increase=0.1, min_requests=0)
    assert judge_measurement(either, 1, 0.5, 0.7, None, None).verdict is Verdict.FAIL


def test_without_max_increase_the_baseline_is_not_needed():
    latency = MetricSpec(name="p99", query="q", max=0.5, min_requests=10)
    assert judge_measurement(latency, 1, 0.2, None, 50, None).verdict is Verdict.PASS


def measurements(spec, verdicts):
    values = {Verdict.PASS: (0.0, 100), Verdict.FAIL: (0.5, 100), Verdict.INCONCLUSIVE: (0.0, 1)}
    out = [judge_measurement(spec, i, values[v][0], 0.0, values[v][1], 400) for i, v in enumerate(verdicts, 1)]
    assert [m.verdict for m in out] == list(verdicts)
    return out


P, F, I = Verdict.PASS, Verdict.FAIL, Verdict.INCONCLUSIVE


@pytest.mark.parametrize("verdicts, expected, reason", [
    ((P, P, P, P, P), P, "0 failed, 0 inconclusive, 5 passed of 5"),
    ((P, F, P, P, P), P, "1 failed"),                       # failure_limit 1 tolerates one
    ((F, P, F, P, P), F, "2 failed, 0 inconclusive, 3 passed of 5 (failure_limit 1)"),
    ((P, I, P, P, P), P, "1 inconclusive"),                 # inconclusive_limit 1
    ((P, I, I, P, P), I, "(inconclusive_limit 1)"),
    ((F, I, I, I, I), I, "inconclusive_limit"),             # failures within the limit, no traffic after
    ((I,), I, "no measurement passed"),
    ((), I, "no measurement passed"),
])
def test_a_metric_over_its_measurements(verdicts, expected, reason):
    result = judge_metric(ERRORS, measurements(ERRORS, verdicts))
    assert result.verdict is expected and reason in result.reason


def test_a_failed_comparison_fails_the_metric_and_an_inconclusive_one_makes_it_inconclusive():
    ok = measurements(ERRORS, (P, P, P, P, P))
    worse = compare_samples(ERRORS, [0.03, 0.04, 0.035, 0.05, 0.03], [0.0, 0.001, 0.0, 0.0, 0.002])
    assert worse.verdict is F
    assert judge_metric(ERRORS, ok, worse).verdict is F
    few = compare_samples(ERRORS, [0.0, 0.0], [0.0, 0.0, 0.0])
    assert few.verdict is I and "too few values" in few.reason
    assert judge_metric(ERRORS, ok, few).verdict is I


# ---------------------------------------------------------------- canary vs baseline
LATENCY = MetricSpec(name="latency_p99", query="q", max_increase=0.05)


def test_a_slower_canary_fails_the_rank_test_only_in_the_harmful_direction():
    slow = [0.30, 0.31, 0.29, 0.33, 0.30]
    fast = [0.05, 0.06, 0.05, 0.07, 0.05]
    result = compare_samples(LATENCY, slow, fast)
    assert result.verdict is F and result.p_value < 0.01
    assert result.canary_median == 0.30 and result.baseline_median == 0.05
    assert compare_samples(LATENCY, fast, slow).verdict is P  # faster is never a failure
    faster = MetricSpec(name="throughput", query="q", direction="decrease")
    assert compare_samples(faster, fast, slow).verdict is F


def test_a_significant_but_negligible_change_passes():
    a = [0.100, 0.101, 0.102, 0.101, 0.100]
    b = [0.090, 0.091, 0.090, 0.092, 0.091]
    result = compare_samples(LATENCY, a, b)
    assert result.p_value < 0.05 and result.verdict is P and "within max_increase 0.05" in result.reason
    assert compare_samples(MetricSpec(name="m", query="q"), a, b).verdict is F  # no effect size: it counts


def test_missing_values_are_dropped_before_the_rank_test():
    result = compare_samples(LATENCY, [0.1, None, math.nan, 0.1, 0.1], [0.1, 0.1, 0.1, None])
    assert (result.canary_samples, result.baseline_samples) == (3, 3) and result.verdict is P


# ---------------------------------------------------------------- score and decision
def metric(name, verdict, weight=1, critical=False):
    spec = MetricSpec(name=name, query="q", weight=weight, critical=critical)
    return analysis.MetricResult(spec, (), None, verdict, "")


@pytest.mark.parametrize("results, value, verdict", [
    ([metric("a", P), metric("b", P)], 100, P),
    ([metric("a", P, 3), metric("b", F, 1)], 75, Verdict.MARGINAL),
    ([metric("a", P, 9), metric("b", F, 1)], 90, Verdict.MARGINAL),
    ([metric("a", P), metric("b", F)], 50, F),
    ([metric("a", P, 19), metric("b", F, 1, critical=True)], 95, F),   # critical beats the score
    ([metric("a", P), metric("b", I)], 50, I),                          # the missing data could pass it
    ([metric("a", F), metric("b", I)], 0, F),                           # ... or not: 50 at best < 75
    ([metric("a", I)], 0, I),
    ([], 0, I),
])
def test_the_score_and_its_verdict(results, value, verdict):
    s = score(results, pass_score=95, marginal_score=75)
    assert s.value == pytest.approx(value) and s.verdict is verdict


@pytest.mark.parametrize("verdict, kwargs, action", [
    (P, {}, Action.PROCEED),
    (F, {}, Action.ROLL_BACK),
    (Verdict.MARGINAL, {"on_marginal": "ask"}, Action.ASK),
    (Verdict.MARGINAL, {"on_marginal": "halt"}, Action.HALT),
    (I, {"on_inconclusive": "halt"}, Action.HALT),
    (I, {"on_inconclusive": "ask"}, Action.ASK),
    (None, {"on_unreachable": "ask"}, Action.ASK),             # Prometheus down: never a pass
    (None, {"on_unreachable": "halt"}, Action.HALT),
    (P, {"firing_alerts": [{"labels": {"alertname": "X"}}]}, Action.HALT),
    (None, {"on_unreachable": "ask", "firing_alerts": [{"labels": {"alertname": "X"}}]}, Action.HALT),
    # A failed canary that also fires an alert is still rolled back, not left serving.
    (F, {"firing_alerts": [{"labels": {"alertname": "X"}}]}, Action.ROLL_BACK),
])
def test_what_the_rollout_does(verdict, kwargs, action):
    assert decide(verdict, **kwargs) is action


def test_a_decision_other_than_ask_or_halt_is_refused():
    with pytest.raises(AnalysisError, match="on_unreachable must be ask or halt, not 'pass'"):
        decide(None, on_unreachable="pass")


# ---------------------------------------------------------------- canary and baseline hosts
def test_the_baseline_is_the_hosts_still_on_the_previous_version_and_serving():
    rows = [HostRow("h1", 1, "1.1.0"), HostRow("h2", 2, "1.1.0"),            # earlier batch, canary batch
            HostRow("h3", 2, "1.0.0", failed=True),                           # canary batch, its release failed
            HostRow("h4", 3, "1.0.0"), HostRow("h5", 3, "1.0.0", in_rotation=False),
            HostRow("h6", 4, "1.0.0"), HostRow("h7", None, "0.9.0"), HostRow("h8", 4, "1.0.0", failed=True)]
    hosts = select_hosts(rows, batch=2, version="1.1.0", previous_version="1.0.0")
    assert hosts == AnalysisHosts(canary=("h2",), baseline=("h4", "h6"))
    assert select_hosts(rows, batch=2, version="1.1.0", previous_version=None).baseline == ()


# ---------------------------------------------------------------- alerts
def alert(name, state="active", silenced=(), inhibited=(), **labels):
    return {"labels": {"alertname": name, "app": "demo", "env": "beta", **labels},
            "status": {"state": state, "silencedBy": list(silenced), "inhibitedBy": list(inhibited)}}


def test_which_alerts_stop_the_rollout():
    alerts = [
        alert("Firing"),                                                         # counts
        alert("Fresh", state="unprocessed"),                                     # counts
        alert("OtherApp", app="billing"), alert("OtherEnv", env="prod"),         # not ours
        alert("NoLabels") | {"labels": {"alertname": "NoLabels"}},
        alert("HostDown", "suppressed", silenced=["g1"], host="beta-demo-01"),   # Gantry took it out
        alert("Leftover", "suppressed", silenced=["g2"], host="beta-demo-02"),   # back in rotation: counts
        alert("Muted", "suppressed", silenced=["op"], host="beta-demo-02"),      # an operator's silence
        alert("Both", "suppressed", silenced=["g1", "op"], host="beta-demo-01"),
        alert("Inhibited", "suppressed", inhibited=["fp1"]),
    ]
    stopping = blocking_alerts(alerts, app="demo", environment="beta", gantry_silence_ids=["g1", "g2"],
                               offline_hosts=["beta-demo-01"])
    assert [a["labels"]["alertname"] for a in stopping] == ["Firing", "Fresh", "Leftover"]


# ---------------------------------------------------------------- evidence
def test_the_evidence_is_json_and_the_table_shows_every_measurement():
    errors = measurements(ERRORS, (P, F, F, P, P))
    comparison = compare_samples(ERRORS, [m.canary for m in errors], [0.0] * 5)
    results = (judge_metric(ERRORS, errors, comparison),)
    s = score(results)
    outcome = AnalysisOutcome(results, s, decide(s.verdict), AnalysisHosts(("beta-demo-01",), ("beta-demo-02",)),
                              (alert("Firing"),))
    evidence = json.loads(json.dumps(outcome.evidence()))
    assert evidence["verdict"] == "FAIL" and evidence["action"] == "roll_back"
    assert evidence["canary"] == ["beta-demo-01"] and evidence["alerts"][0]["alertname"] == "Firing"
    (m,) = evidence["metrics"]
    assert [x["verdict"] for x in m["measurements"]] == ["PASS", "FAIL", "FAIL", "PASS", "PASS"]
    assert m["measurements"][1]["canary"] == 0.5 and m["measurements"][1]["canary_requests"] == 100
    assert m["comparison"]["baseline_samples"] == 5
    table = outcome.table()
    assert table.startswith("analysis FAIL -> roll_back: ")
    assert "canary: beta-demo-01; baseline: beta-demo-02" in table
    rows = [line.split() for line in table.splitlines() if line.startswith("error_ratio")]
    assert [r[1] for r in rows] == ["1", "2", "3", "4", "5", "MW", "="]
    assert rows[1][:6] == ["error_ratio", "2", "0.5", "0", "100/400", "FAIL"]
