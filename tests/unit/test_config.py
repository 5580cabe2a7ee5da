from pathlib import Path

import pytest

from gantry.config import ConfigError, load_config, parse_config

REPO = Path(__file__).resolve().parents[2]


def test_repository_config_loads():
    cfg = load_config(REPO / "config" / "gantry.yaml")
    demo = cfg.app("demo")
    assert demo.package_name("1.1.0") == "demo-1.1.0.tar.gz"
    assert demo.package_kind == "tar.gz"
    assert cfg.environment("test").batches == "1"


APP = {"package": "svc-{version}.jar", "install_root": "/srv/svc", "port": 8080,
       "start_command": "bin/start", "stop_command": "bin/stop", "pid_file": "/srv/svc/shared/pid"}


def test_the_inventory_is_next_to_the_config_unless_one_is_named(monkeypatch):
    raw = {"apps": {"svc": APP}, "environments": {"dev": {}}}
    monkeypatch.delenv("GANTRY_INVENTORY", raising=False)
    assert parse_config(raw, Path("/x")).inventory_path == Path("/x/inventory.yaml")
    monkeypatch.setenv("GANTRY_INVENTORY", "/state/inventory.yaml")  # the local fleet writes its own
    assert parse_config(raw, Path("/x")).inventory_path == Path("/state/inventory.yaml")


def test_jar_and_war_packages_are_supported():
    cfg = parse_config({"apps": {"svc": APP, "web": {**APP, "package": "web-{version}.war"}},
                        "environments": {"dev": {}}}, Path("/x"))
    assert cfg.app("svc").package_kind == "jar" and cfg.app("web").package_kind == "war"


def test_unknown_package_kind_and_relative_root_are_refused():
    with pytest.raises(ConfigError, match="tar.gz"):
        parse_config({"apps": {"svc": {**APP, "package": "svc.zip"}}, "environments": {"dev": {}}}, Path("/x"))
    with pytest.raises(ConfigError, match="absolute"):
        parse_config({"apps": {"svc": {**APP, "install_root": "srv"}}, "environments": {"dev": {}}}, Path("/x"))


def test_unknown_app_or_environment_names_the_configured_ones():
    cfg = parse_config({"apps": {"svc": APP}, "environments": {"dev": {}}}, Path("/x"))
    with pytest.raises(ConfigError, match=r"\['svc'\]"):
        cfg.app("nope")
    with pytest.raises(ConfigError, match=r"\['dev'\]"):
        cfg.environment("prod")
