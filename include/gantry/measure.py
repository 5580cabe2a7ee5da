"""Running an analysis: every metric measured at given instants, judged, compared and scored.

Plain Python over a function that asks the metrics store for one value at one instant
(``PrometheusHook.value``), so the same code measures a soak after the fact and tests feed it
numbers. The decisions themselves are ``gantry.analysis``'s.

A batch of a rollout is measured the same way: the batch gate of the next batch's leader waits in
the triggerer (no process) until the batch's intervals have ended, and the leader task then asks
Prometheus for the intervals that ended ``interval_seconds``, ``2 x interval_seconds``, ... after
the batch was back in rotation (``batch_ends``).

A soak is measured after the fact: when the next environment's gate asks, the environment has
served the version for at least its soak time, and its measurements are the last ``count``
intervals of that time, asked of Prometheus at the instants they ended. Nothing waits for them,
and the same soak gives the same evidence however often a gate asks (as long as the store keeps
the samples).
"""
from __future__ import annotations

from typing import Callable, Sequence

from gantry.analysis import (
    Action, AnalysisConfig, AnalysisHosts, AnalysisOutcome, HostRow, MetricResult, MetricSpec, Score, Verdict,
    compare_samples, decide, judge_measurement, judge_metric, render_query, score,
)

# (PromQL, Unix time) -> the query's single value then, or None for no data. Raises the metrics
# store's "unavailable" error when it cannot answer.
ValueAt = Callable[[str, float], "float | None"]


def soak_ends(spec: MetricSpec, since: float, soak_seconds: float) -> list[float]:
    """The instants at which a soak's measurements of ``spec`` end: the last ``count`` intervals
    of the soak, or, for a soak shorter than them, the first ``count`` intervals after ``since``.

    :param spec: the metric.
    :param since: when the environment began serving the version (Unix seconds).
    :param soak_seconds: the soak time the next environment asks for.
    """
    end = since + max(soak_seconds, spec.count * spec.interval_seconds)
    return [end - (spec.count - 1 - i) * spec.interval_seconds for i in range(spec.count)]


def soak_measured_at(config: AnalysisConfig, since: float, soak_seconds: float) -> float:
    """When the last measurement of a soak ends: a gate asked earlier waits or refuses."""
    return max(soak_ends(spec, since, soak_seconds)[-1] for spec in config.metrics)


def measure_metric(value_at: ValueAt, spec: MetricSpec, ends: Sequence[float], *, app: str, env: str,
                   version: str, hosts: AnalysisHosts, significance: float = 0.05) -> MetricResult:
    """One metric over the intervals ending at ``ends``, for the canary and (when there is one)
    the baseline, each measurement judged, then the rank test and the metric's verdict.

    :param value_at: asks the store (see ``ValueAt``).
    :param spec: the metric.
    :param ends: the instants its measurements end, in order.
    :param app: the app, for ``{app}``.
    :param env: the environment, for ``{env}``.
    :param version: the version, for ``{version}``.
    :param hosts: the canary's and the baseline's host names (an empty baseline: thresholds only).
    :param significance: the rank test's p-value threshold.
    """
    def ask(template: str | None, names: Sequence[str], at: float) -> float | None:
        if template is None or not names:
            return None
        return value_at(render_query(template, app=app, env=env, hosts=names, version=version,
                                     interval_seconds=spec.interval_seconds), at)

    measurements = []
    for index, at in enumerate(ends, start=1):
        canary, canary_requests = ask(spec.query, hosts.canary, at), ask(spec.requests_query, hosts.canary, at)
        baseline, baseline_requests = (ask(spec.query, hosts.baseline, at),
                                       ask(spec.requests_query, hosts.baseline, at))
        measurements.append(judge_measurement(spec, index, canary, baseline, canary_requests, baseline_requests,
                                              has_baseline=bool(hosts.baseline)))
    comparison = None
    if hosts.baseline:
        comparison = compare_samples(spec, [m.canary for m in measurements], [m.baseline for m in measurements],
                                     significance)
    return judge_metric(spec, measurements, comparison)


def outcome_of(results: Sequence[MetricResult], config: AnalysisConfig, hosts: AnalysisHosts,
               alerts: Sequence[dict] = ()) -> AnalysisOutcome:
    """The analysis' score and what the rollout does about it."""
    total = score(results, config.pass_score, config.marginal_score)
    action = decide(total.verdict, on_marginal=config.on_marginal, on_inconclusive=config.on_inconclusive,
                    on_unreachable=config.on_unreachable, firing_alerts=alerts)
    return AnalysisOutcome(tuple(results), total, action, hosts, tuple(alerts), config.pass_score,
                           config.marginal_score)


def unreachable(config: AnalysisConfig, hosts: AnalysisHosts, why: str) -> AnalysisOutcome:
    """The outcome when the store could not be asked: ``on_unreachable``, never a pass."""
    return AnalysisOutcome((), Score(0.0, Verdict.INCONCLUSIVE, f"the metrics store could not be asked: {why}"),
                           decide(None, on_marginal=config.on_marginal, on_inconclusive=config.on_inconclusive,
                                  on_unreachable=config.on_unreachable),
                           hosts, (), config.pass_score, config.marginal_score)


def soak_analysis(value_at: ValueAt, config: AnalysisConfig, *, app: str, env: str, version: str,
                  hosts: Sequence[str], since: float, soak_seconds: float,
                  unavailable: tuple[type[Exception], ...] = ()) -> AnalysisOutcome:
    """An environment's soak: every host on ``version`` is the canary, with no baseline (nothing
    runs the previous version any more), so each metric's absolute thresholds judge.

    :param value_at: asks the store.
    :param config: the soaked environment's analysis.
    :param app: the app.
    :param env: the soaked environment.
    :param version: the version it runs.
    :param hosts: its hosts.
    :param since: when it began serving the version (Unix seconds).
    :param soak_seconds: the soak time the next environment asks for.
    :param unavailable: the errors that mean the store could not answer (``on_unreachable``).
    """
    group = AnalysisHosts(tuple(hosts), ())
    try:
        results = [measure_metric(value_at, spec, soak_ends(spec, since, soak_seconds), app=app, env=env,
                                  version=version, hosts=group, significance=config.significance)
                   for spec in config.metrics]
    except unavailable as exc:
        return unreachable(config, group, str(exc))
    return outcome_of(results, config, group)


# A sample scraped at the end of an interval reaches the store within a scrape interval (1 s on the
# local fleet): the gate waits this long past the last interval before the leader asks. A store
# scraping less often (Prometheus' default is 15 s) needs a larger margin.
SCRAPE_MARGIN_SECONDS = 2.0


def batch_ends(spec: MetricSpec, since: float) -> list[float]:
    """The instants at which a batch's measurements of ``spec`` end: ``count`` consecutive
    intervals from ``since``, when the batch was back in rotation.

    :param spec: the metric.
    :param since: when the analysed batch was back in rotation (Unix seconds).
    """
    return [since + (i + 1) * spec.interval_seconds for i in range(spec.count)]


def batch_wait_seconds(config: AnalysisConfig) -> float:
    """How long after a batch is back in rotation its analysis can be asked: the longest metric's
    intervals, plus a scrape's margin. It replaces the fixed bake time where an analysis runs."""
    return max(spec.count * spec.interval_seconds for spec in config.metrics) + SCRAPE_MARGIN_SECONDS


def host_rows(records: Sequence[dict], released: dict[int, dict], staged: dict[int, dict]) -> list[HostRow]:
    """Every planned host as the analysis sees it, from what the rollout recorded.

    :param records: the plan's host records (``index``, ``name``, ``batch``).
    :param released: outcome records of the release task by map index (``outcome``, ``serving``);
        a host without one has not been released yet.
    :param staged: what staging returned by map index (``current``: the version it runs); a host
        without one was not staged (unhealthy, or staging failed) and is neither canary nor baseline.
    """
    rows = []
    for r in records:
        outcome, stage = released.get(r["index"]), staged.get(r["index"])
        if outcome is not None:
            # Only a released host is usable: a rolled back, restored or left-out one is failed.
            out = outcome.get("outcome") in ("left_out_of_rotation", "unreachable")
            rows.append(HostRow(r["name"], r["batch"], outcome.get("serving"), not out,
                                failed=outcome.get("outcome") != "released"))
        elif stage is not None:
            rows.append(HostRow(r["name"], r["batch"], stage.get("current"), True, False))
        else:
            rows.append(HostRow(r["name"], r["batch"], None, False, True))
    return rows


def batch_analysis(value_at: ValueAt, config: AnalysisConfig, *, app: str, env: str, version: str,
                   hosts: AnalysisHosts, since: float, alerts: Sequence[dict] = (),
                   unavailable: tuple[type[Exception], ...] = ()) -> AnalysisOutcome:
    """A batch of a rollout: its released hosts (the canary) against the hosts still on the
    previous version (the baseline), over ``count`` intervals from ``since``.

    :param value_at: asks the store.
    :param config: the environment's analysis.
    :param app: the app.
    :param env: the environment.
    :param version: the version released.
    :param hosts: canary and baseline (``analysis.select_hosts``).
    :param since: when the batch was back in rotation (Unix seconds).
    :param alerts: the firing alerts that stop the rollout (``analysis.blocking_alerts``).
    :param unavailable: the errors that mean the store could not answer (``on_unreachable``).
    """
    if not hosts.canary:
        # Nothing released to measure: undecided, never a pass.
        return AnalysisOutcome((), Score(0.0, Verdict.INCONCLUSIVE, "no released host of the batch to measure"),
                               decide(Verdict.INCONCLUSIVE, on_marginal=config.on_marginal,
                                      on_inconclusive=config.on_inconclusive, on_unreachable=config.on_unreachable,
                                      firing_alerts=alerts),
                               hosts, tuple(alerts), config.pass_score, config.marginal_score)
    try:
        results = [measure_metric(value_at, spec, batch_ends(spec, since), app=app, env=env, version=version,
                                  hosts=hosts, significance=config.significance) for spec in config.metrics]
    except unavailable as exc:
        outcome = unreachable(config, hosts, str(exc))
        if alerts:
            return AnalysisOutcome(outcome.metrics, outcome.score, decide(None, on_unreachable=config.on_unreachable,
                                   firing_alerts=alerts), hosts, tuple(alerts), config.pass_score,
                                   config.marginal_score)
        return outcome
    return outcome_of(results, config, hosts, alerts)


__all__ = ["batch_analysis", "batch_ends", "batch_wait_seconds", "host_rows", "Action", "ValueAt", "measure_metric", "outcome_of", "soak_analysis", "soak_ends",
           "soak_measured_at", "unreachable"]
