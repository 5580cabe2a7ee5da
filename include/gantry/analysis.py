"""Verifying a release from metrics, as plain Python: what a measurement says, what a metric
says over its measurements, whether the canary differs from the baseline (Mann-Whitney U), the
overall score, what to do about it, which hosts are canary and baseline, and which Alertmanager
alerts stop a rollout. No Airflow, no network: the callers query Prometheus and Alertmanager.

The model follows the tools users compare Gantry with: Argo Rollouts' measurements (interval,
count, failure limit, inconclusive), Kayenta's canary-versus-baseline judgment (Mann-Whitney U per
metric in the harmful direction, a weighted score with pass and marginal thresholds) and
CodeDeploy's alarms. No traffic is never a pass: a measurement below ``min_requests`` is
inconclusive, and so is a metric that no measurement passed.
"""
from __future__ import annotations

import enum
import math
import re
import statistics
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence


class Verdict(str, enum.Enum):
    PASS = "PASS"
    MARGINAL = "MARGINAL"
    FAIL = "FAIL"
    INCONCLUSIVE = "INCONCLUSIVE"


class Action(str, enum.Enum):
    PROCEED = "proceed"      # the next batch (or environment) may go
    ASK = "ask"              # a human decides (the environment's approvers)
    HALT = "halt"            # the rollout stops; hosts stay as they are
    ROLL_BACK = "roll_back"  # the rollout stops and the analysed hosts go back to the previous release


# The direction in which a metric's change hurts: error ratios and latency hurt when they go up
# ("increase"), a success rate or throughput when it goes down ("decrease"); "either" for a
# metric where any change is suspicious.
DIRECTIONS = ("increase", "decrease", "either")
# What a marginal or inconclusive analysis, or an unreachable metrics store, does.
UNDECIDED_ACTIONS = ("ask", "halt")
# The placeholders a query template may use. ``{interval}`` is the measurement interval as a
# PromQL duration ("30s"), for range vectors that cover exactly one measurement.
PLACEHOLDERS = ("app", "env", "hosts", "version", "interval")
_PLACEHOLDER_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
# Fewer samples per side than this and the rank test cannot say anything worth a decision: with 3
# against 3 all on one side, the one-sided p-value is 0.04 (normal approximation).
MIN_SAMPLES = 3


class AnalysisError(ValueError):
    """A metric spec or a request that analysis cannot work with."""


# ---------------------------------------------------------------- Mann-Whitney U
@dataclass(frozen=True)
class MannWhitneyResult:
    """``u_canary``: pairs (canary value, baseline value) where the canary's is larger, ties
    counting one half (scipy's ``statistic`` for ``x`` = canary); ``p_value`` for ``alternative``."""
    u_canary: float
    u_baseline: float
    z: float
    p_value: float
    alternative: str


def _average_ranks(values: Sequence[float]) -> tuple[list[float], list[int]]:
    """Ranks 1..n of ``values`` (ties get their average rank) and the size of each tie group."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    ties = []
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        ties.append(j - i + 1)
        i = j + 1
    return ranks, ties


def mann_whitney_u(canary: Sequence[float], baseline: Sequence[float],
                   alternative: str = "two-sided") -> MannWhitneyResult:
    """Mann-Whitney U test of two independent samples, normal approximation with tie correction
    and continuity correction (as ``scipy.stats.mannwhitneyu(..., method="asymptotic")``).

    :param canary: the canary's values (one per measurement, or per host and measurement).
    :param baseline: the baseline's values over the same intervals.
    :param alternative: ``two-sided``; ``greater``: the canary's values tend to be larger;
        ``less``: they tend to be smaller.
    :return: the U statistics, z and the p-value. When every value is equal the samples cannot be
        told apart: z is 0 and p is 1.
    """
    if alternative not in ("two-sided", "greater", "less"):
        raise AnalysisError(f"alternative must be two-sided, greater or less, not {alternative!r}")
    n1, n2 = len(canary), len(baseline)
    if not n1 or not n2:
        raise AnalysisError(f"Mann-Whitney U needs values on both sides (canary {n1}, baseline {n2})")
    ranks, ties = _average_ranks([*canary, *baseline])
    u1 = sum(ranks[:n1]) - n1 * (n1 + 1) / 2
    u2 = n1 * n2 - u1
    n = n1 + n2
    tie_term = sum(t ** 3 - t for t in ties)
    sigma = math.sqrt(n1 * n2 / 12 * ((n + 1) - tie_term / (n * (n - 1)))) if n > 1 else 0.0
    if sigma == 0:
        return MannWhitneyResult(u1, u2, 0.0, 1.0, alternative)
    mean = n1 * n2 / 2
    u = {"greater": u1, "less": u2}.get(alternative, max(u1, u2))
    z = (u - mean - 0.5) / sigma
    p = 0.5 * math.erfc(z / math.sqrt(2))  # upper tail of the standard normal
    if alternative == "two-sided":
        p *= 2
    return MannWhitneyResult(u1, u2, z, min(max(p, 0.0), 1.0), alternative)


# ---------------------------------------------------------------- metric specs and queries
@dataclass(frozen=True)
class MetricSpec:
    """One metric of an analysis.

    :param name: how logs, the ledger and the board name it.
    :param query: PromQL template giving one value for a group of hosts over one interval, with
        ``{app}``, ``{env}``, ``{hosts}``, ``{version}`` and ``{interval}`` (see ``render_query``).
    :param requests_query: PromQL template giving how many requests the same hosts served in the
        interval; a measurement with fewer than ``min_requests`` is inconclusive. None: no count
        (only sensible with ``min_requests`` 0).
    :param direction: where a change hurts: ``increase``, ``decrease`` or ``either``.
    :param max: fail a measurement whose canary value is above this.
    :param min: fail a measurement whose canary value is below this.
    :param max_increase: fail a measurement whose canary value is worse than the baseline's by more
        than this, **in the metric's own unit** (an absolute delta, not a ratio: a good fleet's error
        ratio is 0, and any ratio of 0 would fail the first error); for ``decrease`` the largest
        allowed drop, for ``either`` the largest change either way. It is also the smallest median
        difference the rank test counts as a failure (a significant but smaller change passes).
    :param interval_seconds: the length of one measurement, and the wait between two.
    :param count: how many measurements.
    :param min_requests: fewer requests than this in a measurement (canary or baseline) and it is
        inconclusive: no traffic is never a pass.
    :param failure_limit: failed measurements tolerated; one more fails the metric.
    :param inconclusive_limit: inconclusive measurements tolerated; one more makes the metric
        inconclusive.
    :param weight: the metric's share of the score.
    :param critical: a failure fails the whole analysis, whatever the score.
    """
    name: str
    query: str
    requests_query: str | None = None
    direction: str = "increase"
    max: float | None = None
    min: float | None = None
    max_increase: float | None = None
    interval_seconds: float = 30
    count: int = 5
    min_requests: float = 20
    failure_limit: int = 0
    inconclusive_limit: int = 1
    weight: float = 1
    critical: bool = False

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise AnalysisError(f"metric {self.name}: direction must be one of {', '.join(DIRECTIONS)}, "
                                f"not {self.direction!r}")
        for template in (self.query, self.requests_query):
            if template is not None:
                unknown = sorted(set(_PLACEHOLDER_RE.findall(template)) - set(PLACEHOLDERS))
                if unknown:
                    raise AnalysisError(f"metric {self.name}: unknown placeholder {{{unknown[0]}}}; "
                                        f"a query may use {', '.join('{%s}' % p for p in PLACEHOLDERS)}")


# The demo app's series (fleet/demo_app/app.py) for the canary's or the baseline's hosts.
_DEMO = 'app="{app}",env="{env}",host=~"{hosts}"'
_DEMO_REQUESTS = f"sum(increase(demo_http_requests_total{{{_DEMO}}}[{{interval}}]))"
# What an environment's analysis measures unless it names its metrics: the share of failed
# requests and the 99th percentile latency. The 5xx rate falls back to 0 ("or vector(0)") for an
# app that exports no series for a code it never answered; no requests at all stay no data.
DEFAULT_METRICS = (
    MetricSpec(name="error_ratio",
               query=(f'(sum(rate(demo_http_requests_total{{{_DEMO},code=~"5.."}}[{{interval}}])) or vector(0))'
                      f" / sum(rate(demo_http_requests_total{{{_DEMO}}}[{{interval}}]))"),
               requests_query=_DEMO_REQUESTS, max=0.01, max_increase=0.005, failure_limit=1, critical=True),
    MetricSpec(name="latency_p99",
               query=("histogram_quantile(0.99, sum by (le) "
                      f"(rate(demo_http_request_duration_seconds_bucket{{{_DEMO}}}[{{interval}}])))"),
               requests_query=_DEMO_REQUESTS, max=0.25, max_increase=0.1, failure_limit=1),
)


@dataclass(frozen=True)
class AnalysisConfig:
    """An environment's analysis (``environments.<env>.analysis`` in config/gantry.yaml).

    :param enabled: false keeps the configuration without running it.
    :param metrics: what is measured; default ``DEFAULT_METRICS``.
    :param pass_score: the lowest passing score, 0-100.
    :param marginal_score: the lowest marginal score, 0-100, at most ``pass_score``.
    :param significance: the Mann-Whitney p-value below which a difference counts.
    :param on_marginal: ``ask`` (the environment's approvers decide) or ``halt``.
    :param on_inconclusive: ``ask`` or ``halt``.
    :param on_unreachable: what happens when the metrics store cannot be asked: ``ask`` or ``halt``.
    """
    enabled: bool = True
    metrics: tuple[MetricSpec, ...] = DEFAULT_METRICS
    pass_score: float = 95
    marginal_score: float = 75
    significance: float = 0.05
    on_marginal: str = "ask"
    on_inconclusive: str = "ask"
    on_unreachable: str = "halt"


def _promql_string(text: str) -> str:
    """``text`` made safe inside a double-quoted PromQL string (which reads Go escapes)."""
    return text.replace("\\", "\\\\").replace('"', '\\"')


def hosts_regex(hosts: Iterable[str]) -> str:
    """An RE2 alternation matching exactly these host names (Prometheus anchors ``=~``), each
    metacharacter escaped, ready to sit inside a double-quoted PromQL string: ``web-1.a`` and
    ``web-2`` give ``web\\\\-1\\\\.a|web\\\\-2`` (``web\\-1\\.a|web\\-2`` once PromQL reads the string)."""
    names = list(hosts)
    if not names:
        raise AnalysisError("no hosts to select: an empty alternation would match no series")
    escaped = ("".join(c if c.isalnum() or c == "_" else "\\" + c for c in name) for name in names)
    return _promql_string("|".join(escaped))


def render_query(template: str, *, app: str, env: str, hosts: Sequence[str], version: str = "",
                 interval_seconds: float = 30) -> str:
    """A query template with its placeholders filled in. Only the known ``{name}`` placeholders are
    replaced, so PromQL's own braces (``metric{label="x"}``) need no escaping.

    :param template: the PromQL template (``MetricSpec.query`` or ``requests_query``).
    :param app: the app's name, for ``{app}``.
    :param env: the environment's name, for ``{env}``.
    :param hosts: the host names ``{hosts}`` selects (see ``hosts_regex``).
    :param version: the version, for ``{version}``.
    :param interval_seconds: the measurement interval, for ``{interval}`` as ``<n>s``.
    """
    values = {"app": _promql_string(app), "env": _promql_string(env), "version": _promql_string(version),
              "interval": f"{max(1, round(interval_seconds))}s"}
    if "{hosts}" in template:
        values["hosts"] = hosts_regex(hosts)

    def fill(match: re.Match) -> str:
        if match.group(1) not in values:
            raise AnalysisError(f"unknown placeholder {match.group(0)} in {template!r}")
        return values[match.group(1)]

    return _PLACEHOLDER_RE.sub(fill, template)


# ---------------------------------------------------------------- measurements
@dataclass(frozen=True)
class Measurement:
    """One interval of one metric: the canary's and the baseline's value and request counts."""
    metric: str
    index: int
    canary: float | None
    baseline: float | None
    canary_requests: float | None
    baseline_requests: float | None
    verdict: Verdict
    reason: str


def _missing(value: float | None) -> bool:
    return value is None or math.isnan(value)


def worsening(direction: str, canary: float, baseline: float) -> float:
    """How much worse the canary is than the baseline in ``direction`` (negative: better)."""
    if direction == "increase":
        return canary - baseline
    if direction == "decrease":
        return baseline - canary
    return abs(canary - baseline)


def judge_measurement(spec: MetricSpec, index: int, canary: float | None, baseline: float | None,
                      canary_requests: float | None, baseline_requests: float | None,
                      has_baseline: bool = True) -> Measurement:
    """The verdict of one measurement.

    - INCONCLUSIVE when the canary has no value (no series, or NaN as 0/0 gives with no traffic)
      or served fewer than ``min_requests``;
    - FAIL when the canary breaks ``max`` or ``min``;
    - with ``max_increase`` and a baseline: INCONCLUSIVE when the baseline is not usable (no value,
      or fewer than ``min_requests``), FAIL when the canary is worse than it by more than
      ``max_increase``; with no baseline hosts at all (every host runs the new version) only the
      absolute thresholds judge;
    - PASS otherwise.

    :param spec: the metric.
    :param index: the measurement's number, 1 for the first.
    :param canary: the metric over the canary hosts in the interval (None: no data).
    :param baseline: the metric over the baseline hosts in the same interval (None: no data or no
        baseline).
    :param canary_requests: requests the canary hosts served in the interval.
    :param baseline_requests: requests the baseline hosts served in the interval.
    :param has_baseline: False when there are no baseline hosts to compare with.
    """
    def result(verdict: Verdict, reason: str) -> Measurement:
        return Measurement(spec.name, index, None if _missing(canary) else canary,
                           None if _missing(baseline) else baseline, canary_requests, baseline_requests,
                           verdict, reason)

    def too_few(requests: float | None) -> bool:
        return spec.min_requests > 0 and (_missing(requests) or requests < spec.min_requests)

    if too_few(canary_requests):
        return result(Verdict.INCONCLUSIVE, f"canary served {_num(canary_requests)} requests, "
                                            f"fewer than min_requests {_num(spec.min_requests)}")
    if _missing(canary):
        return result(Verdict.INCONCLUSIVE, "no data for the canary")
    if spec.max is not None and canary > spec.max:
        return result(Verdict.FAIL, f"canary {_num(canary)} > max {_num(spec.max)}")
    if spec.min is not None and canary < spec.min:
        return result(Verdict.FAIL, f"canary {_num(canary)} < min {_num(spec.min)}")
    if spec.max_increase is not None and has_baseline:
        if too_few(baseline_requests):
            return result(Verdict.INCONCLUSIVE, f"baseline served {_num(baseline_requests)} requests, "
                                                f"fewer than min_requests {_num(spec.min_requests)}")
        if _missing(baseline):
            return result(Verdict.INCONCLUSIVE, "no data for the baseline to compare with")
        worse = worsening(spec.direction, canary, baseline)
        if worse > spec.max_increase:
            return result(Verdict.FAIL, f"canary {_num(canary)} vs baseline {_num(baseline)}: "
                                        f"{_num(worse)} worse, more than max_increase {_num(spec.max_increase)}")
    return result(Verdict.PASS, "within limits")


# ---------------------------------------------------------------- canary vs baseline
@dataclass(frozen=True)
class Comparison:
    """The rank test of the canary's values against the baseline's, in the harmful direction."""
    verdict: Verdict
    reason: str
    p_value: float | None = None
    u_canary: float | None = None
    canary_median: float | None = None
    baseline_median: float | None = None
    canary_samples: int = 0
    baseline_samples: int = 0


def _alternative(direction: str) -> str:
    return {"increase": "greater", "decrease": "less"}.get(direction, "two-sided")


def compare_samples(spec: MetricSpec, canary: Sequence[float | None], baseline: Sequence[float | None],
                    significance: float = 0.05) -> Comparison:
    """Whether the canary is significantly worse than the baseline (Kayenta's judgment of one
    metric): a Mann-Whitney U test, one-sided in the metric's harmful direction (two-sided for
    ``either``), and an effect size: with ``max_increase`` set, the canary's median must also be
    worse than the baseline's by more than it, so a significant but negligible change passes.

    Missing values (None, NaN) are dropped first. Fewer than ``MIN_SAMPLES`` on either side is
    INCONCLUSIVE.

    :param spec: the metric.
    :param canary: the canary's values (per measurement, or per host and measurement).
    :param baseline: the baseline's values over the same intervals.
    :param significance: the p-value below which the difference counts (0.05: 95 % confidence).
    """
    xs = [v for v in canary if not _missing(v)]
    ys = [v for v in baseline if not _missing(v)]
    if len(xs) < MIN_SAMPLES or len(ys) < MIN_SAMPLES:
        return Comparison(Verdict.INCONCLUSIVE, f"too few values to compare (canary {len(xs)}, baseline "
                          f"{len(ys)}; at least {MIN_SAMPLES} each)", canary_samples=len(xs),
                          baseline_samples=len(ys))
    test = mann_whitney_u(xs, ys, _alternative(spec.direction))
    cm, bm = statistics.median(xs), statistics.median(ys)
    common = dict(p_value=test.p_value, u_canary=test.u_canary, canary_median=cm, baseline_median=bm,
                  canary_samples=len(xs), baseline_samples=len(ys))
    where = f"Mann-Whitney p={test.p_value:.4f} ({spec.direction}), median canary {_num(cm)} vs baseline {_num(bm)}"
    if test.p_value >= significance:
        return Comparison(Verdict.PASS, f"{where}: no significant change", **common)
    if spec.max_increase is not None and worsening(spec.direction, cm, bm) <= spec.max_increase:
        return Comparison(Verdict.PASS, f"{where}: significant, but within max_increase "
                                        f"{_num(spec.max_increase)}", **common)
    return Comparison(Verdict.FAIL, f"{where}: significantly worse", **common)


# ---------------------------------------------------------------- a metric, the score
@dataclass(frozen=True)
class MetricResult:
    spec: MetricSpec
    measurements: tuple[Measurement, ...]
    comparison: Comparison | None
    verdict: Verdict
    reason: str


def judge_metric(spec: MetricSpec, measurements: Sequence[Measurement],
                 comparison: Comparison | None = None) -> MetricResult:
    """A metric's verdict over its measurements (Argo Rollouts' rules) and the rank test.

    FAIL when more measurements failed than ``failure_limit`` or the comparison failed;
    otherwise INCONCLUSIVE when more were inconclusive than ``inconclusive_limit``, when none passed
    (no measurement, or no traffic, is never a pass) or when the comparison was inconclusive;
    otherwise PASS.

    :param spec: the metric.
    :param measurements: its measurements, in order.
    :param comparison: the rank test (``compare_samples``); None when there is no baseline to
        compare with (every host is on the new version), which leaves the thresholds alone.
    """
    failed = sum(m.verdict is Verdict.FAIL for m in measurements)
    unknown = sum(m.verdict is Verdict.INCONCLUSIVE for m in measurements)
    passed = sum(m.verdict is Verdict.PASS for m in measurements)
    tally = f"{failed} failed, {unknown} inconclusive, {passed} passed of {len(measurements)}"

    def result(verdict: Verdict, reason: str) -> MetricResult:
        return MetricResult(spec, tuple(measurements), comparison, verdict, reason)

    if failed > spec.failure_limit:
        return result(Verdict.FAIL, f"{tally} (failure_limit {spec.failure_limit})")
    if comparison is not None and comparison.verdict is Verdict.FAIL:
        return result(Verdict.FAIL, comparison.reason)
    if unknown > spec.inconclusive_limit:
        return result(Verdict.INCONCLUSIVE, f"{tally} (inconclusive_limit {spec.inconclusive_limit})")
    if not passed:
        return result(Verdict.INCONCLUSIVE, f"{tally}: no measurement passed")
    if comparison is not None and comparison.verdict is Verdict.INCONCLUSIVE:
        return result(Verdict.INCONCLUSIVE, comparison.reason)
    return result(Verdict.PASS, tally)


@dataclass(frozen=True)
class Score:
    value: float
    verdict: Verdict
    reason: str


def score(results: Sequence[MetricResult], pass_score: float = 95, marginal_score: float = 75) -> Score:
    """The analysis' score, Kayenta-style: 100 x the weight of passing metrics / all weight.

    - any ``critical`` metric failed: FAIL, whatever the score;
    - score >= ``pass_score``: PASS;
    - below ``marginal_score`` even if every inconclusive metric had passed: FAIL (the missing data
      could not save it);
    - any metric inconclusive: INCONCLUSIVE (the missing data could change the outcome);
    - score >= ``marginal_score``: MARGINAL; else FAIL.

    :param results: every metric's result.
    :param pass_score: the lowest passing score (0-100).
    :param marginal_score: the lowest marginal score (0-100), at most ``pass_score``.
    """
    if not results:
        return Score(0.0, Verdict.INCONCLUSIVE, "no metric was analysed")
    total = sum(r.spec.weight for r in results)
    passing = sum(r.spec.weight for r in results if r.verdict is Verdict.PASS)
    unknown = sum(r.spec.weight for r in results if r.verdict is Verdict.INCONCLUSIVE)
    value = 100 * passing / total if total else 0.0
    best = 100 * (passing + unknown) / total if total else 0.0
    names = lambda v: ", ".join(r.spec.name for r in results if r.verdict is v)  # noqa: E731
    critical = [r.spec.name for r in results if r.spec.critical and r.verdict is Verdict.FAIL]
    if critical:
        return Score(value, Verdict.FAIL, f"critical metric failed: {', '.join(critical)}")
    if value >= pass_score:
        return Score(value, Verdict.PASS, f"score {value:.1f} >= pass {pass_score:g}")
    if best < marginal_score:
        return Score(value, Verdict.FAIL, f"score {value:.1f} < marginal {marginal_score:g} (failed: {names(Verdict.FAIL)})")
    if unknown:
        return Score(value, Verdict.INCONCLUSIVE, f"score {value:.1f} without the inconclusive metrics "
                                                  f"({names(Verdict.INCONCLUSIVE)}), up to {best:.1f} with them")
    if value >= marginal_score:
        return Score(value, Verdict.MARGINAL, f"score {value:.1f} between marginal {marginal_score:g} and "
                                              f"pass {pass_score:g} (failed: {names(Verdict.FAIL)})")
    return Score(value, Verdict.FAIL, f"score {value:.1f} < marginal {marginal_score:g} (failed: {names(Verdict.FAIL)})")


def decide(verdict: Verdict | None, *, on_marginal: str = "ask", on_inconclusive: str = "ask",
           on_unreachable: str = "halt", firing_alerts: Sequence[Mapping] = ()) -> Action:
    """What the rollout does after an analysis.

    - an alert firing for the app and environment (``blocking_alerts``): HALT, whatever else the
      metrics say, as CodeDeploy's alarms stop a deployment - except a FAIL, which still rolls
      back: a bad canary that also fires an alert must not be left serving;
    - PASS: PROCEED; FAIL: ROLL_BACK the analysed hosts;
    - MARGINAL, INCONCLUSIVE: the configured ``ask`` or ``halt``;
    - ``verdict`` None, the metrics store could not be reached: ``on_unreachable`` (never a
      silent pass).

    HALT stops without rolling back: the evidence does not say the build is bad, only that it was
    not shown to be good.

    :param verdict: the score's verdict, or None when Prometheus could not be asked.
    :param on_marginal: ``ask`` or ``halt``.
    :param on_inconclusive: ``ask`` or ``halt``.
    :param on_unreachable: ``ask`` or ``halt``.
    :param firing_alerts: the alerts that stop the rollout.
    """
    for key, choice in (("on_marginal", on_marginal), ("on_inconclusive", on_inconclusive),
                        ("on_unreachable", on_unreachable)):
        if choice not in UNDECIDED_ACTIONS:
            raise AnalysisError(f"{key} must be ask or halt, not {choice!r}")
    if verdict is not None and Verdict(verdict) is Verdict.FAIL:
        return Action.ROLL_BACK
    if firing_alerts:
        return Action.HALT
    if verdict is None:
        return Action(on_unreachable)
    return {Verdict.PASS: Action.PROCEED, Verdict.FAIL: Action.ROLL_BACK,
            Verdict.MARGINAL: Action(on_marginal), Verdict.INCONCLUSIVE: Action(on_inconclusive)}[Verdict(verdict)]


# ---------------------------------------------------------------- canary and baseline hosts
@dataclass(frozen=True)
class HostRow:
    """A host of the environment as the rollout sees it.

    :param name: the host's name.
    :param batch: its batch number in this rollout (None: not in the plan, e.g. skipped).
    :param version: the version it serves now (None: unknown).
    :param in_rotation: whether it takes traffic.
    :param failed: whether its release (or health) failed in this rollout.
    """
    name: str
    batch: int | None
    version: str | None
    in_rotation: bool = True
    failed: bool = False


@dataclass(frozen=True)
class AnalysisHosts:
    canary: tuple[str, ...]
    baseline: tuple[str, ...]


def select_hosts(rows: Sequence[HostRow], *, batch: int, version: str,
                 previous_version: str | None) -> AnalysisHosts:
    """The canary and the baseline of an analysis of ``batch``.

    The canary is the batch's released hosts: on ``version``, in rotation, not failed. The baseline
    is the hosts of the same environment still on ``previous_version``, serving the same traffic at
    the same time (Kayenta's advice: not the whole fleet, not another time), in rotation and not
    failed; it shrinks batch by batch, and is empty once every host runs ``version`` (then only the
    absolute thresholds judge) or when there is no previous version.

    :param rows: every host of the app in the environment.
    :param batch: the analysed batch.
    :param version: the version being released.
    :param previous_version: the version the release replaces (None: a first install).
    """
    usable = [r for r in rows if r.in_rotation and not r.failed]
    canary = tuple(r.name for r in usable if r.batch == batch and r.version == version)
    baseline = tuple(r.name for r in usable if previous_version is not None and r.batch != batch
                     and r.version == previous_version)
    return AnalysisHosts(canary, baseline)


# ---------------------------------------------------------------- alerts
def blocking_alerts(alerts: Iterable[Mapping], *, app: str, environment: str,
                    gantry_silence_ids: Iterable[str], offline_hosts: Iterable[str] = ()) -> list[Mapping]:
    """The Alertmanager alerts (API v2 ``GET /api/v2/alerts`` objects: ``labels``,
    ``status.state``, ``status.silencedBy``, ``status.inhibitedBy``) that stop the rollout of
    ``app`` in ``environment``.

    - Only alerts labelled ``app=<app>`` and ``env=<environment>`` concern the rollout.
    - Silenced only by Gantry's own silences (``gantry_silence_ids``) on a host Gantry has out of
      rotation (``offline_hosts``): excluded; the host is down on purpose.
    - Silenced only by Gantry's silences but on a host back in rotation (or without a ``host``
      label): **counts**. A silence Gantry failed to expire must not hide what its own release
      does to the traffic.
    - Silenced by any other silence: excluded; an operator muted it on purpose.
    - Inhibited (and not silenced): excluded; the inhibiting alert is judged on its own.
    - Otherwise (``active``, or ``unprocessed``, which Alertmanager has not yet matched against
      silences): counts.

    :param alerts: the alerts Alertmanager returned.
    :param app: the app being released.
    :param environment: its environment.
    :param gantry_silence_ids: ids of the silences Gantry set for hosts it took offline.
    :param offline_hosts: the hosts Gantry has out of rotation now.
    """
    ours, offline = set(gantry_silence_ids), set(offline_hosts)
    stopping = []
    for alert in alerts:
        labels = alert.get("labels") or {}
        if labels.get("app") != app or labels.get("env") != environment:
            continue
        status = alert.get("status") or {}
        silenced_by = set(status.get("silencedBy") or ())
        if silenced_by:
            if not silenced_by <= ours:
                continue
            if labels.get("host") in offline:
                continue
            stopping.append(alert)
            continue
        if status.get("inhibitedBy"):
            continue
        if status.get("state", "active") in ("active", "unprocessed"):
            stopping.append(alert)
    return stopping


def describe_alert(alert: Mapping) -> dict:
    """What the run and the ledger say about an alert: its name, labels, state and start."""
    labels = dict(alert.get("labels") or {})
    return {"alertname": labels.get("alertname", "?"), "labels": labels,
            "state": (alert.get("status") or {}).get("state"), "startsAt": alert.get("startsAt"),
            "summary": (alert.get("annotations") or {}).get("summary")}


# ---------------------------------------------------------------- evidence
@dataclass(frozen=True)
class AnalysisOutcome:
    """An analysis as the ledger keeps it and the task log shows it."""
    metrics: tuple[MetricResult, ...]
    score: Score
    action: Action
    hosts: AnalysisHosts | None = None
    alerts: tuple[Mapping, ...] = field(default=())
    pass_score: float = 95
    marginal_score: float = 75

    def evidence(self) -> dict[str, Any]:
        """A JSON-serialisable dict: every measurement, the rank tests, the score, the decision."""
        return {
            "verdict": self.score.verdict.value, "score": round(self.score.value, 2), "reason": self.score.reason,
            "action": self.action.value, "pass_score": self.pass_score, "marginal_score": self.marginal_score,
            "canary": list(self.hosts.canary) if self.hosts else [],
            "baseline": list(self.hosts.baseline) if self.hosts else [],
            "alerts": [describe_alert(a) for a in self.alerts],
            "metrics": [{
                "name": r.spec.name, "verdict": r.verdict.value, "reason": r.reason, "weight": r.spec.weight,
                "critical": r.spec.critical, "direction": r.spec.direction,
                "thresholds": {"max": r.spec.max, "min": r.spec.min, "max_increase": r.spec.max_increase,
                               "min_requests": r.spec.min_requests, "failure_limit": r.spec.failure_limit},
                "measurements": [{"index": m.index, "canary": m.canary, "baseline": m.baseline,
                                  "canary_requests": m.canary_requests, "baseline_requests": m.baseline_requests,
                                  "verdict": m.verdict.value, "reason": m.reason} for m in r.measurements],
                "comparison": None if r.comparison is None else {
                    "verdict": r.comparison.verdict.value, "reason": r.comparison.reason,
                    "p_value": r.comparison.p_value, "u_canary": r.comparison.u_canary,
                    "canary_median": r.comparison.canary_median, "baseline_median": r.comparison.baseline_median,
                    "canary_samples": r.comparison.canary_samples,
                    "baseline_samples": r.comparison.baseline_samples},
            } for r in self.metrics],
        }

    def table(self) -> str:
        """The analysis as lines of text for a task log: a headline, the hosts, one row per
        measurement (canary, baseline, requests, verdict, why), each metric's rank test and verdict."""
        lines = [f"analysis {self.score.verdict.value} -> {self.action.value}: {self.score.reason} "
                 f"(pass >= {self.pass_score:g}, marginal >= {self.marginal_score:g})"]
        if self.hosts is not None:
            lines.append(f"canary: {', '.join(self.hosts.canary) or '-'}; "
                         f"baseline: {', '.join(self.hosts.baseline) or '- (thresholds only)'}")
        for alert in self.alerts:
            d = describe_alert(alert)
            lines.append(f"alert firing: {d['alertname']} {d['labels']}")
        rows = [("metric", "#", "canary", "baseline", "requests c/b", "verdict", "why")]
        for r in self.metrics:
            for m in r.measurements:
                rows.append((r.spec.name, str(m.index), _num(m.canary), _num(m.baseline),
                             f"{_num(m.canary_requests)}/{_num(m.baseline_requests)}", m.verdict.value, m.reason))
            if r.comparison is not None:
                rows.append((r.spec.name, "MW", _num(r.comparison.canary_median), _num(r.comparison.baseline_median),
                             f"{r.comparison.canary_samples}/{r.comparison.baseline_samples} values",
                             r.comparison.verdict.value, r.comparison.reason))
            rows.append((r.spec.name, "=", "", "", "", r.verdict.value, r.reason))
        widths = [max(len(row[i]) for row in rows) for i in range(6)]
        for row in rows:
            lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[6])
        return "\n".join(line.rstrip() for line in lines)


def _num(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.4g}"
