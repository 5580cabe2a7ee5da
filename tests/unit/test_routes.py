"""Optional environments and versions' routes: which environments a version must pass, which
one its gate checks, where it auto-promotes, and the configurations refused at load."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gantry.config import ConfigError, load_config, parse_config
from gantry.plan import PlanError, version_is_special

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def config():
    return load_config(REPO / "config" / "gantry.yaml")


def test_the_demo_chain_has_project_and_beta_as_optional_environments(config):
    assert config.chain("test") == ("dev", "project", "test", "staging", "beta", "prod")
    assert [e for e in config.chain("dev") if config.environments[e].optional] == ["project", "beta"]
    assert config.chain("perf") == ("perf",), "an environment off the chain is a chain of its own"


def test_an_ordinary_version_skips_the_optional_environments_and_a_special_one_passes_them(config):
    assert config.route("prod", special=False) == ("dev", "test", "staging", "prod")
    assert config.route("prod", special=True) == ("dev", "project", "test", "staging", "beta", "prod")


@pytest.mark.parametrize("env, ordinary, special", [
    ("dev", None, None),
    ("project", None, None),          # takes what it is given (like test from CI)
    ("test", None, "project"),        # ordinary versions enter test directly; special ones from project
    ("staging", "test", "test"),
    ("beta", "staging", "staging"),   # an ordinary version released into beta by hand: gated on staging
    ("prod", "staging", "beta"),      # beta skipped: staging satisfies prod's gate
])
def test_the_gate_checks_the_nearest_environment_on_the_route(config, env, ordinary, special):
    assert config.gate_environment(env, special=False) == ordinary
    assert config.gate_environment(env, special=True) == special


@pytest.mark.parametrize("env, ordinary, special", [
    ("dev", "test", "project"), ("project", "test", "test"), ("test", "staging", "staging"),
    ("staging", "prod", "beta"), ("beta", "prod", "prod"), ("prod", None, None),
])
def test_auto_promotion_follows_the_route(config, env, ordinary, special):
    assert config.next_on_route(env, special=False) == ordinary
    assert config.next_on_route(env, special=True) == special
    assert set(filter(None, (ordinary, special))) <= set(config.promotion_targets(env))


def test_an_environment_followed_by_an_optional_one_may_promote_to_either(config):
    assert config.promotion_targets("dev") == ["project", "test"]
    assert config.promotion_targets("staging") == ["beta", "prod"]
    assert config.promotion_targets("test") == ["staging"]
    assert config.promotion_targets("prod") == []


def test_versions_matching_the_apps_rule_are_special(config):
    demo = config.apps["demo"]
    assert demo.is_special("2.0.0-special") and demo.is_special("2.0.0-special.3")
    assert not demo.is_special("2.0.0") and not demo.is_special("2.0.0-specialist")


RECORDED_ORDINARY = {"special": False, "route": ["dev", "test", "staging", "prod"], "environment": "dev",
                     "run_id": "manual__1"}


@pytest.mark.parametrize("recorded, requested, rule, special, why", [
    (None, None, False, False, "ordinary"),
    (None, None, True, True, "special_versions rule"),
    (None, True, False, True, "special param"),
    (None, False, True, False, "special param"),      # an explicit answer at the first promotion wins
    (RECORDED_ORDINARY, None, True, False, "recorded at its first promotion (dev)"),
    (RECORDED_ORDINARY, False, False, False, "recorded"),
])
def test_a_versions_route_is_fixed_at_its_first_promotion(recorded, requested, rule, special, why):
    got, reason = version_is_special("demo", "2.0.0", recorded, requested, rule)
    assert got is special and why in reason


def test_a_later_run_cannot_change_a_recorded_route():
    with pytest.raises(PlanError, match=r"demo 2.0.0 was recorded as an ordinary version at its first promotion "
                                        r"\(dev, run manual__1\); its route \(dev -> test -> staging -> prod\) "
                                        r"cannot change"):
        version_is_special("demo", "2.0.0", RECORDED_ORDINARY, True, False)


def _config_with(tmp_path, **changes) -> Path:
    raw = yaml.safe_load((REPO / "config" / "gantry.yaml").read_text())
    for path, value in changes.items():
        env, key = path.split("__")
        raw["environments"][env][key] = value
    return raw


@pytest.mark.parametrize("changes, message", [
    ({"dev__optional": True}, "environments.dev: optional, but no environment promotes to it"),
    ({"prod__optional": True}, "environments.prod: optional, but it promotes nowhere"),
    ({"perf__optional": True}, "environments.perf: optional, but no environment promotes to it"),
    ({"dev__upstream": "test"}, "environments.dev.upstream: test comes after dev on the chain "
                                "dev -> project -> test -> staging -> beta -> prod: no version could pass it "
                                "first, so dev would be unreachable"),
])
def test_a_chain_that_would_leave_an_environment_unreachable_is_refused_at_load(tmp_path, changes, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_config(_config_with(tmp_path, **changes), tmp_path)


def test_a_special_versions_rule_must_be_a_regular_expression(tmp_path):
    raw = yaml.safe_load((REPO / "config" / "gantry.yaml").read_text())
    raw["apps"]["demo"]["special_versions"] = "(unclosed"
    with pytest.raises(ConfigError, match=r"apps.demo.special_versions: '\(unclosed' is not a regular expression"):
        parse_config(raw, tmp_path)
