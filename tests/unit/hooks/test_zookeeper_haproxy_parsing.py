"""The parts of the ZooKeeper and HAProxy adapters that decide: Dubbo's override rules, the
runtime API's answers, and the choice of adapter per environment in config/gantry.yaml."""
import pytest

from gantry.hooks.haproxy import parse_servers_state, parse_stat
from gantry.hooks.zookeeper import disables, override_url, parse_url, provider_url

SERVICE = "com.example.demo.DemoService"


def test_provider_and_override_urls_round_trip_through_node_names():
    from urllib.parse import quote

    node = quote(provider_url(SERVICE, "10.0.0.5", 9000, group="prod", hostname="prod-1", revision="1.2"), safe="")
    assert "/" not in node, "a URL is one node name"
    url = parse_url(node)
    assert (url["scheme"], url["address"], url["port"], url["service"]) == ("dubbo", "10.0.0.5", 9000, SERVICE)
    assert url["params"] == {"group": "prod", "hostname": "prod-1", "revision": "1.2"}
    over = parse_url(quote(override_url(SERVICE, "10.0.0.5", 9000, group="prod", reason="a & b"), safe=""))
    assert over["params"] == {"category": "configurators", "disabled": "true", "dynamic": "false",
                              "enabled": "true", "group": "prod", "reason": "a & b"}


@pytest.mark.parametrize("address, port, params, disabled", [
    ("10.0.0.5", 9000, {"group": "prod"}, True),
    ("10.0.0.5", 0, {}, True),                     # no port, no group: every port, every group
    ("0.0.0.0", 9000, {"group": "prod"}, True),    # every address
    ("10.0.0.6", 9000, {"group": "prod"}, False),  # another instance
    ("10.0.0.5", 9001, {"group": "prod"}, False),  # another port on that address
    ("10.0.0.5", 9000, {"group": "staging"}, False),  # another environment's group
    ("10.0.0.5", 9000, {"group": "prod", "enabled": "false"}, False),  # a rule switched off
])
def test_which_overrides_take_an_instance_out(address, port, params, disabled):
    from urllib.parse import quote

    override = parse_url(quote(override_url(SERVICE, address, port, **params), safe=""))
    assert disables(override, "10.0.0.5", 9000, "prod") is disabled


def test_runtime_api_answers_are_read_by_their_headers():
    state = parse_servers_state(
        "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_port\n"
        "3 demo-staging 1 staging-demo-01 127.0.0.43 2 1 1 9000\n"
        "3 demo-staging 2 staging-demo-02 127.0.0.44 2 0 1 9000\n\n")
    assert [(s["srv_name"], s["srv_addr"], s["srv_admin_state"]) for s in state] == [
        ("staging-demo-01", "127.0.0.43", "1"), ("staging-demo-02", "127.0.0.44", "0")]
    stat = parse_stat("# pxname,svname,qcur,qmax,scur,smax,\ndemo-staging,staging-demo-01,0,0,2,5,\n")
    assert (stat[0]["svname"], stat[0]["scur"]) == ("staging-demo-01", "2")
    from airflow.sdk.exceptions import AirflowException

    with pytest.raises(AirflowException, match="unexpected 'show servers state' answer"):
        parse_servers_state("Unknown command\n")


def _config(tmp_path, **test_env):
    """Two apps (demo, other) in dev and test, with ``test_env``'s keys on test."""
    import yaml

    from gantry.config import load_config

    app = {"package": "demo-{version}.tar.gz", "install_root": "/srv/demo", "port": 9000,
           "start_command": "bin/start.sh", "stop_command": "bin/stop.sh", "pid_file": "/srv/demo/app.pid"}
    path = tmp_path / "gantry.yaml"
    path.write_text(yaml.safe_dump({"apps": {"demo": app, "other": {**app, "port": 9100}}, "environments": {
        "dev": {"promote_to": "test"}, "test": {"upstream": "dev", **test_env}}}))
    return load_config(path)


def test_each_environment_picks_its_registry_and_load_balancer_for_every_app_or_per_app(tmp_path):
    from gantry.config import ConfigError

    cfg = _config(tmp_path, registry="zookeeper")
    test, dev = cfg.environment("test"), cfg.environment("dev")
    assert (test.registry_of("demo"), test.load_balancer_of("demo")) == ("zookeeper", "nginx")
    assert (dev.registry_of("demo"), dev.load_balancer_of("demo")) == ("etcd", "nginx")
    assert cfg.app("demo").service_name == "demo", "the app's name when no rpc_service is set"
    per_app = _config(tmp_path, registry={"demo": "zookeeper", "default": "etcd"},
                      load_balancer={"other": "haproxy"}).environment("test")
    assert (per_app.registry_of("demo"), per_app.registry_of("other")) == ("zookeeper", "etcd")
    assert (per_app.load_balancer_of("demo"), per_app.load_balancer_of("other")) == ("nginx", "haproxy")
    with pytest.raises(ConfigError, match="environments.test.load_balancer must be one of nginx, haproxy, not 'f5'"):
        _config(tmp_path, load_balancer="f5")
    with pytest.raises(ConfigError, match="environments.test.registry must be one of etcd, zookeeper, not 'nacos'"):
        _config(tmp_path, registry="nacos")
    with pytest.raises(ConfigError, match="environments.test.registry.demo must be one of etcd, zookeeper, not 'consul'"):
        _config(tmp_path, registry={"demo": "consul"})
    with pytest.raises(ConfigError, match="environments.test.load_balancer: 'billing' is not a configured app"):
        _config(tmp_path, load_balancer={"billing": "haproxy"})


def test_the_dry_run_plan_names_each_environments_registry_and_load_balancer(monkeypatch):
    from pathlib import Path

    from gantry.config import load_config
    from gantry.operators.hosts import plan_steps

    monkeypatch.setenv("GANTRY_CONFIG", str(Path(__file__).resolve().parents[3] / "config" / "gantry.yaml"))
    app = load_config().app("demo")
    artifact = {"url": "http://artifacts/demo-1.1.0.tar.gz", "sha256": "ab" * 32}
    host = {"name": "h1", "address": "10.0.0.5"}
    staging = "\n".join(plan_steps(app, "staging", "1.1.0", host, artifact))
    assert ("registry (ZooKeeper): override disabled=true for 10.0.0.5:9000 in /dubbo/com.example.demo.DemoService "
            "(group staging)") in staging
    assert "load balancer (HAProxy): drain 10.0.0.5:9000 in backend demo-staging until its sessions end" in staging
    test = "\n".join(plan_steps(app, "test", "1.1.0", host, artifact))
    assert "registry (etcd): disable demo/test/h1" in test
    assert "load balancer: mark 10.0.0.5:9000 down in upstream demo-test" in test
