"""An environment's `analysis` in config/gantry.yaml: read into gantry.analysis' settings, every
mistake refused when the file loads with one sentence naming the key."""
from pathlib import Path

import pytest
import yaml

from gantry.analysis import DEFAULT_METRICS, AnalysisConfig
from gantry.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[2]
APP = {"package": "demo-{version}.tar.gz", "install_root": "/srv/demo", "port": 9000,
       "start_command": "bin/start.sh", "stop_command": "bin/stop.sh", "pid_file": "/srv/demo/app.pid"}


def load(tmp_path, analysis):
    env = {"batches": "1"} if analysis is None else {"batches": "1", "analysis": analysis}
    path = tmp_path / "gantry.yaml"
    path.write_text(yaml.safe_dump({"apps": {"demo": APP}, "environments": {"beta": env}}))
    return load_config(path).environment("beta").analysis


def test_no_analysis_unless_configured_and_an_empty_one_is_the_defaults(tmp_path):
    assert load(tmp_path, None) is None
    config = load(tmp_path, {})
    assert config == AnalysisConfig() and config.metrics == DEFAULT_METRICS
    assert (config.on_marginal, config.on_inconclusive, config.on_unreachable) == ("ask", "ask", "halt")
    assert [m.name for m in config.metrics] == ["error_ratio", "latency_p99"]


def test_a_metric_named_like_a_default_keeps_what_it_does_not_set(tmp_path):
    config = load(tmp_path, {"pass_score": 90, "marginal_score": 60, "on_unreachable": "ask", "metrics": [
        {"name": "error_ratio", "max": 0.02, "count": 3},
        {"name": "cpu", "query": 'avg(rate(process_cpu_seconds_total{host=~"{hosts}"}[{interval}]))',
         "direction": "either", "max_increase": 0.2, "min_requests": 0, "weight": 0.5}]})
    errors, cpu = config.metrics
    default = DEFAULT_METRICS[0]
    assert (errors.max, errors.count) == (0.02, 3)
    assert (errors.query, errors.max_increase, errors.critical) == (default.query, default.max_increase, True)
    assert cpu.direction == "either" and cpu.weight == 0.5 and cpu.requests_query is None
    assert (config.pass_score, config.marginal_score, config.on_unreachable) == (90, 60, "ask")


def test_the_repository_config_carries_disabled_analyses_for_beta_and_test_and_none_elsewhere():
    config = load_config(REPO / "config" / "gantry.yaml")
    beta = config.environment("beta").analysis
    assert beta is not None and beta.enabled is False
    assert [(m.name, m.interval_seconds, m.count) for m in beta.metrics] == [("error_ratio", 10, 3),
                                                                          ("latency_p99", 10, 3)]
    test = config.environment("test").analysis
    assert test is not None and test.enabled is False, "a run asks for it (analysis: true), as the e2e test does"
    assert [(m.name, m.interval_seconds, m.count) for m in test.metrics] == [("error_ratio", 4, 3),
                                                                          ("latency_p99", 4, 3)]
    assert [e.name for e in config.environments.values() if e.analysis is not None] == ["test", "beta"]


@pytest.mark.parametrize("analysis, message", [
    ("yes", "environments.beta.analysis: expected a mapping of keys, got str 'yes'"),
    ({"on_fail": "halt"}, "environments.beta.analysis: unknown key 'on_fail'"),
    ({"pass_score": 120}, "environments.beta.analysis.pass_score: 120 is not a score from 0 to 100"),
    ({"pass_score": 70}, "environments.beta.analysis.marginal_score 75 is above pass_score 70"),
    ({"significance": 1}, "environments.beta.analysis.significance: 1 is not a p-value between 0 and 1"),
    ({"on_inconclusive": "pass"}, "environments.beta.analysis.on_inconclusive must be ask or halt, not 'pass'"),
    ({"on_unreachable": "proceed"}, "environments.beta.analysis.on_unreachable must be ask or halt"),
    ({"enabled": "no"}, "environments.beta.analysis.enabled: 'no' is not true or false"),
    ({"metrics": []}, r"environments.beta.analysis.metrics: expected a list of metrics, got \[\]"),
    ({"metrics": [{"name": "error_ratio", "treshold": 1}]},
     r"environments.beta.analysis.metrics\[0\]: unknown key 'treshold'"),
    ({"metrics": [{"name": "cpu"}]},
     r"metrics\[0\] \(cpu\): query is missing: the PromQL template .* \(defaults exist for error_ratio, latency_p99\)"),
    ({"metrics": [{"name": "cpu", "query": "up{host=~\"{host}\"}", "min_requests": 0}]},
     r"metrics\[0\] \(cpu\): metric cpu: unknown placeholder \{host\}"),
    ({"metrics": [{"name": "cpu", "query": "up"}]},
     r"metrics\[0\] \(cpu\): min_requests needs requests_query"),
    ({"metrics": [{"name": "error_ratio", "direction": "up"}]},
     r"metrics\[0\] \(error_ratio\).direction must be one of increase, decrease, either, not 'up'"),
    ({"metrics": [{"name": "error_ratio", "min": 0.5, "max": 0.1}]}, "min 0.5 is above max 0.1"),
    ({"metrics": [{"name": "error_ratio", "count": 0}]}, r"metrics\[0\].count: 0 must be above 0"),
    ({"metrics": [{"name": "error_ratio", "interval_seconds": "30s"}]},
     r"metrics\[0\].interval_seconds: '30s' is not a number"),
    ({"metrics": [{"name": "error_ratio", "failure_limit": -1}]}, r"metrics\[0\].failure_limit: -1 must be at least 0"),
    ({"metrics": [{"name": "error_ratio", "max_increase": -0.1}]}, r"max_increase: -0.1 must be at least 0"),
    ({"metrics": [{"name": "error ratio", "query": "up"}]}, r"metrics\[0\]: name 'error ratio' must be"),
    ({"metrics": [{"name": "error_ratio"}, {"name": "error_ratio"}]}, "'error_ratio' is named twice"),
])
def test_a_bad_analysis_is_refused_naming_the_key(tmp_path, analysis, message):
    with pytest.raises(ConfigError, match=message) as err:
        load(tmp_path, analysis)
    assert str(err.value).startswith(f"{tmp_path / 'gantry.yaml'}: environments.beta.analysis")
    assert "\n" not in str(err.value)
