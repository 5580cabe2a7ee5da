"""The local fleet's own bookkeeping: generated hosts and pid files."""
import json
import os
import subprocess

import yaml

import fleetctl


def test_generated_scale_hosts_are_unique_loopback_addresses():
    hosts = fleetctl.scale_hosts(300)
    assert hosts[0] == {"name": "scale-demo-001", "address": "127.0.1.1", "ssh_port": fleetctl.SSH_PORT}
    addresses = [h["address"] for h in hosts]
    assert len(set(addresses)) == 300 and len({h["name"] for h in hosts}) == 300
    assert not [a for a in addresses if a.endswith((".0", ".255"))]
    assert all(a.startswith("127.") for a in addresses)


def test_the_cmdb_inventory_gets_the_scale_environment_only_when_asked(tmp_path, monkeypatch):
    monkeypatch.setattr(fleetctl, "STATE", tmp_path)
    monkeypatch.setattr(fleetctl, "CMDB_INVENTORY", tmp_path / "inventory.yaml")
    monkeypatch.setenv("GANTRY_SCALE_HOSTS", "12")
    fleetctl.write_inventory()
    envs = yaml.safe_load((tmp_path / "inventory.yaml").read_text())["environments"]
    assert len(envs["scale"]["demo"]) == 12 and "perf" in envs
    monkeypatch.delenv("GANTRY_SCALE_HOSTS")
    fleetctl.write_inventory()
    assert "scale" not in yaml.safe_load((tmp_path / "inventory.yaml").read_text())["environments"]


def test_a_pid_file_naming_another_process_is_not_ours(tmp_path, monkeypatch):
    monkeypatch.setattr(fleetctl, "PIDS", tmp_path)
    proc = subprocess.Popen(["sleep", "30"])
    try:
        (tmp_path / "mine.pid").write_text(f"{proc.pid} {fleetctl.start_time(proc.pid)}")
        assert fleetctl.read_pid("mine") == proc.pid
        # Same PID, other start time: what a pid file from an earlier boot looks like.
        (tmp_path / "stale.pid").write_text(f"{proc.pid} 1")
        assert fleetctl.read_pid("stale") is None
        fleetctl.stop("stale")
        assert fleetctl.pid_alive(proc.pid), "stop() must not signal a process it did not start"
        assert not (tmp_path / "stale.pid").exists()
    finally:
        proc.kill()
        proc.wait()
    assert os.path.exists(tmp_path / "mine.pid")


def test_prometheus_scrapes_every_host_labelled_and_alerts_the_fleets_alertmanager(tmp_path):
    hosts = [{"name": "beta-demo-01", "address": "127.0.0.31", "port": 9000, "env": "beta", "app": "demo"},
             {"name": "prod-demo-01", "address": "127.0.0.41", "port": 9000, "env": "prod", "app": "demo"}]
    fleetctl.write_prometheus_files(tmp_path, hosts, alertmanager="127.0.0.1:19093")
    config = yaml.safe_load((tmp_path / "prometheus.yml").read_text())
    assert config["global"]["scrape_interval"] == "1s" and config["rule_files"] == [str(tmp_path / "rules.yml")]
    (job,) = config["scrape_configs"]
    assert job["honor_labels"] is True
    assert job["static_configs"][0] == {"targets": ["127.0.0.31:9000"],
                                        "labels": {"env": "beta", "app": "demo", "host": "beta-demo-01"}}
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["127.0.0.1:19093"]
    (rule,) = yaml.safe_load((tmp_path / "rules.yml").read_text())["groups"][0]["rules"]
    assert rule["alert"] == "DemoHighErrorRate" and "sum by (app, env, host)" in rule["expr"]
    assert "--web.listen-address=127.0.0.1:19090" in fleetctl.prometheus_command(tmp_path, fleetctl.PROMETHEUS_PORT)


def test_the_prometheus_connection_is_written_beside_the_others():
    conn = json.loads(fleetctl.airflow_env("local")["AIRFLOW_CONN_GANTRY_PROMETHEUS"])
    assert (conn["conn_type"], conn["host"], conn["port"]) == ("http", "127.0.0.1", fleetctl.PROMETHEUS_PORT)


def test_fab_role_commands_grant_each_role_exactly_its_permissions():
    """Replaying the add-perms commands (roles x resources x actions, as the FAB CLI grants them)
    gives each role its permissions from gantry.access, and nothing more."""
    from gantry.access import fab_roles
    from gantry.config import load_config

    import fleetctl

    roles = fab_roles(load_config())
    commands = fleetctl.fab_role_commands(roles)
    assert commands[0] == ["roles", "create", *sorted(roles)]
    granted: dict[str, set] = {role: set() for role in roles}
    for command in commands[1:]:
        assert command[:2] == ["roles", "add-perms"]
        r, a = command.index("-r"), command.index("-a")
        for role in command[2:r]:
            granted[role] |= {(action, resource) for resource in command[r + 1:a] for action in command[a + 1:]}
    assert granted == {role: set(perms) for role, perms in roles.items()}
    assert len(commands) <= 8  # grouped: each CLI call costs seconds


def test_fab_user_commands_create_only_the_missing_users_each_with_its_role():
    import fleetctl

    commands = fleetctl.fab_user_commands(fleetctl.FAB_DEMO_USERS, existing={"admin", "rita"}, service_password="s3")
    created = {c[c.index("--username") + 1]: (c[c.index("--role") + 1], c[c.index("--password") + 1]) for c in commands}
    assert created == {"victor": ("ReleaseViewer", "victor"), "dana": ("Developer", "dana"),
                       "alice": ("Approver", "alice"), "oscar": ("OnCall", "oscar"),
                       fleetctl.SERVICE_USER: ("Viewer", "s3")}


def test_cli_json_skips_what_airflow_logs_before_the_list():
    out = '2026-12-02T16:48:24Z [warning  ] Using `httpx` ... deprecated\n[{"username": "admin"}]\n'
    assert fleetctl.cli_json(out) == [{"username": "admin"}]
    assert fleetctl.cli_json("") == []
