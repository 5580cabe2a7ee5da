"""The real Prometheus (Debian's package) scraping the real demo app, asked through Gantry's hook
with the default analysis queries. Everything here is the test's own: two demo apps as processes
(a good build and one failing 20 % of its requests), and a Prometheus on a free port, configured
and started as the fleet does it (fleetctl.prometheus_config / prometheus_command), in a temp dir.
The shared fleet is not touched."""
import json
import shutil
import subprocess
import threading
import time
import urllib.request
from dataclasses import replace

import pytest
from demo_process import demo_app, free_port, get
from support import wait_for

import fleetctl
from gantry.analysis import DEFAULT_METRICS, render_query
from gantry.hooks.prometheus import MetricsQueryRejected, MetricsUnavailable, PrometheusHook

CANARY, BASELINE = "beta-demo-01", "beta-demo-02"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """The canary (1.3.1-errors, 20 % failures), the baseline (1.3.1) under steady traffic, and a
    Prometheus scraping both every second; yields (Prometheus' port, {host: base URL})."""
    assert shutil.which("prometheus"), "prometheus is missing: ./gantry test installs Debian's prometheus"
    directory = tmp_path_factory.mktemp("prometheus")
    with demo_app(directory, "1.3.1-errors", host=CANARY, env="beta", error_ratio=0.2) as canary, \
            demo_app(directory, "1.3.1", host=BASELINE, env="beta") as baseline:
        apps = {CANARY: canary, BASELINE: baseline}
        targets = [{"address": "127.0.0.1", "port": int(url.rsplit(":", 1)[1]), "env": "beta", "app": "demo",
                    "name": host} for host, url in apps.items()]
        fleetctl.write_prometheus_files(directory / "prom", targets, alertmanager=None)
        port = free_port()
        log = open(directory / "prometheus.log", "wb")
        proc = subprocess.Popen(fleetctl.prometheus_command(directory / "prom", port), stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        stop = threading.Event()

        def traffic():  # about 40 requests a second to each app
            while not stop.is_set():
                for url in apps.values():
                    get(f"{url}/")
                stop.wait(0.025)

        load = threading.Thread(target=traffic, daemon=True)
        load.start()
        try:
            started = time.monotonic()

            def ready() -> bool:
                if proc.poll() is not None:
                    pytest.fail(f"prometheus exited: {(directory / 'prometheus.log').read_text()}")
                try:
                    return get(f"http://127.0.0.1:{port}/-/ready", timeout=1)[0] == 200
                except OSError:  # not listening yet
                    return False

            wait_for(ready, "Prometheus ready", timeout=30)
            ready_after = time.monotonic() - started
            yield port, apps, ready_after
        finally:
            stop.set()
            load.join(5)
            proc.terminate()
            proc.wait(15)
            log.close()


@pytest.fixture
def hook(stack, monkeypatch):
    port = stack[0]
    monkeypatch.setenv("AIRFLOW_CONN_GANTRY_PROMETHEUS", json.dumps(
        {"conn_type": "http", "host": "127.0.0.1", "port": port, "schema": "http"}))
    return PrometheusHook(timeout=5)


def measure(hook, metric, hosts, interval=5):
    """One measurement as the analysis makes it: the metric and the request count of ``hosts``."""
    args = dict(app="demo", env="beta", hosts=hosts, interval_seconds=interval)
    return hook.value(render_query(metric.query, **args)), hook.value(render_query(metric.requests_query, **args))


def test_prometheus_starts_quickly_and_scrapes_every_target_with_its_labels(stack, hook):
    assert stack[2] < 10, f"Prometheus took {stack[2]:.1f} s to be ready"
    up = wait_for(lambda: len(hook.query('up{job="apps"} == 1')) == 2 and hook.query('up{job="apps"}'),
                    "both apps scraped")
    assert sorted(labels["host"] for labels, _ in up) == [CANARY, BASELINE]
    assert {(labels["env"], labels["app"]) for labels, _ in up} == {("beta", "demo")}


def test_the_default_queries_tell_the_failing_canary_from_the_baseline(hook):
    errors, latency = DEFAULT_METRICS
    # rate() needs two samples in the window: wait until both groups have some traffic in it.
    wait_for(lambda: all((measure(hook, errors, [h])[1] or 0) > 20 for h in (CANARY, BASELINE)),
               "20 requests per host in a 5 s window")
    canary_ratio, canary_requests = measure(hook, errors, [CANARY])
    baseline_ratio, baseline_requests = measure(hook, errors, [BASELINE])
    assert canary_ratio == pytest.approx(0.2, abs=0.05), "the hosts regex selected the canary's series"
    assert baseline_ratio == 0.0, "a healthy host's error ratio is 0, not 'no data'"
    assert canary_requests > 20 and baseline_requests > 20
    both, both_requests = measure(hook, errors, [CANARY, BASELINE])
    assert baseline_ratio < both < canary_ratio and both_requests > canary_requests
    p99, _ = measure(hook, latency, [BASELINE])
    assert 0 < p99 < 0.05
    assert measure(hook, errors, ["beta-demo-03"]) == (None, None), "a host with no series is no data"


def test_a_soak_measured_after_the_fact_fails_the_failing_host_and_passes_the_good_one(stack, hook):
    """A soak's measurements are asked of Prometheus at the instants they ended (gantry.measure):
    the last two 5 s intervals before now, each host on its own as an environment would be."""
    from gantry.analysis import Action, AnalysisConfig, Verdict
    from gantry.measure import soak_analysis

    errors, latency = DEFAULT_METRICS
    config = AnalysisConfig(metrics=tuple(replace(m, interval_seconds=5, count=2) for m in (errors, latency)))
    # Both intervals must hold traffic: wait until the window that starts 10 s ago has some.
    wait_for(lambda: all((hook.value(render_query(errors.requests_query, app="demo", env="beta", hosts=[h],
                                                   interval_seconds=5), time.time() - 5) or 0) > 20
                         for h in (CANARY, BASELINE)), "20 requests per host in the 5 s window before the last")
    now = time.time()

    def soak(host):
        return soak_analysis(hook.value, config, app="demo", env="beta", version="1.3.1", hosts=[host],
                             since=now - 10, soak_seconds=10, unavailable=(MetricsUnavailable,))

    failing, good = soak(CANARY), soak(BASELINE)
    assert (failing.score.verdict, failing.action) == (Verdict.FAIL, Action.ROLL_BACK), failing.table()
    ratios = [m["canary"] for m in failing.evidence()["metrics"][0]["measurements"]]
    assert ratios == [pytest.approx(0.2, abs=0.07)] * 2, failing.table()
    assert (good.score.verdict, good.action) == (Verdict.PASS, Action.PROCEED), good.table()


def test_the_next_environments_gate_refuses_a_failed_soak_with_its_numbers(stack, hook):
    """CheckGatesOperator's soak analysis on this Prometheus (Connection gantry_prometheus): the
    environment whose only host fails 20 % of its requests is refused by the next one's gate, with
    the measurements; the good one passes with its evidence; a gate asked before the soak's
    measurements have ended says when to come back."""
    import datetime as dt

    from airflow.sdk.exceptions import AirflowFailException
    from gantry.analysis import AnalysisConfig
    from gantry.config import EnvironmentConfig
    from gantry.operators.chain import CheckGatesOperator

    class Ledger:  # the hosts the ledger lists for the soaked environment
        def __init__(self, host):
            self.host = host

        def hosts(self, app, environment):
            return [{"host": self.host}]

    errors, _ = DEFAULT_METRICS
    config = AnalysisConfig(metrics=(replace(errors, interval_seconds=5, count=2),))
    gate = CheckGatesOperator(task_id="check_gates", app="demo", version="1.3.1", environment="prod")
    prod = EnvironmentConfig(name="prod")
    wait_for(lambda: all((hook.value(render_query(errors.requests_query, app="demo", env="beta", hosts=[h],
                                                   interval_seconds=5), time.time() - 5) or 0) > 20
                         for h in (CANARY, BASELINE)), "20 requests per host in the 5 s window before the last")
    since = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=10)
    soak = dt.timedelta(seconds=10)
    with pytest.raises(AirflowFailException) as refused:
        gate.soak_analysis({}, Ledger(CANARY), config, prod, "beta", since, soak)
    assert "demo 1.3.1 failed its soak analysis in beta: critical metric failed: error_ratio; prod refuses it" \
        in str(refused.value)
    assert "canary 0.2" in str(refused.value) or "canary 0.1" in str(refused.value), str(refused.value)
    evidence = gate.soak_analysis({}, Ledger(BASELINE), config, prod, "beta", since, soak)
    assert evidence["verdict"] == "PASS" and evidence["canary"] == [BASELINE]
    with pytest.raises(AirflowFailException, match="the soak analysis of demo 1.3.1 in beta measures until"):
        gate.soak_analysis({}, Ledger(BASELINE), config, prod, "beta", since, dt.timedelta(minutes=5))


def test_the_fleets_alert_rule_fires_for_the_failing_host_only(stack, hook):
    def firing():
        alerts = urllib.request.urlopen(f"http://127.0.0.1:{stack[0]}/api/v1/alerts", timeout=5)
        return [a for a in json.load(alerts)["data"]["alerts"] if a["state"] == "firing"]

    alerts = wait_for(firing, "DemoHighErrorRate firing", timeout=45)
    assert [(a["labels"]["alertname"], a["labels"]["host"], a["labels"]["env"], a["labels"]["app"])
            for a in alerts] == [("DemoHighErrorRate", CANARY, "beta", "demo")]


def test_a_query_prometheus_refuses_and_a_prometheus_that_is_gone(hook, monkeypatch):
    with pytest.raises(MetricsQueryRejected, match="bad_data: .*parse error"):
        hook.query("sum(rate(demo_http_requests_total[5s])")
    with pytest.raises(MetricsQueryRejected, match="the query gives a matrix"):
        hook.query("demo_http_requests_total[5s]")
    monkeypatch.setenv("AIRFLOW_CONN_GANTRY_PROMETHEUS", json.dumps(
        {"conn_type": "http", "host": "127.0.0.1", "port": free_port(), "schema": "http"}))
    with pytest.raises(MetricsUnavailable, match="cannot be reached"):
        PrometheusHook(timeout=2).query("up")
