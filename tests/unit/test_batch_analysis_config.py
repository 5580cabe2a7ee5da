"""Which analysis a rollout runs after each batch: the environment's, or the trigger's override."""
from gantry.analysis import AnalysisConfig, MetricSpec
from gantry.config import EnvironmentConfig
from gantry.operators.hosts import batch_analysis_config, describe_analysis
from gantry.operators.report import batch_verdicts

SHORT = AnalysisConfig(enabled=False, metrics=(MetricSpec(name="m", query="q", interval_seconds=4, count=3,
                                                          min_requests=0),))


def env(analysis):
    return EnvironmentConfig(name="test", analysis=analysis)


def test_the_environment_decides_unless_the_trigger_says():
    assert batch_analysis_config(env(None)) is None
    assert batch_analysis_config(env(SHORT)) is None, "configured but not enabled"
    on = batch_analysis_config(env(SHORT), True)
    assert on.enabled and on.metrics == SHORT.metrics
    assert batch_analysis_config(env(None), True) == AnalysisConfig(), "true without a configuration: the defaults"
    enabled = AnalysisConfig(metrics=SHORT.metrics)
    assert batch_analysis_config(env(enabled)) == enabled
    assert batch_analysis_config(env(enabled), False) is None
    assert "m 3 x 4s" in describe_analysis(on) and "FAIL rolls the batch back" in describe_analysis(on)


def test_the_report_prints_each_analysed_batch_verdict():
    text = batch_verdicts([{"host": "a"}, {"host": "b", "analysis": {
        "batch": 1, "verdict": "FAIL", "score": 0, "action": "roll_back", "reason": "error_ratio failed",
        "alerts": ["DemoHighErrorRate"]}}])
    assert text.startswith("batch 1") and "FAIL" in text and "DemoHighErrorRate" in text
