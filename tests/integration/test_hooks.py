"""Each hook against the real system it drives, in the local fleet."""
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import paramiko
import pytest

from support import fleet_state, served_version

APP, ENV = "demo", "test"
POOL = "demo-test"


@pytest.fixture(scope="module")
def running(fleet):
    fleet.reset("1.0.0")
    return fleet_state()


def test_ssh_runs_commands_in_the_hosts_own_namespace(running):
    from gantry.hooks.ssh import GantrySSHHook

    a, b = running["hosts"][0], running["hosts"][1]
    hook_a = GantrySSHHook(remote_host=a["address"], port=a["ssh_port"])
    hook_b = GantrySSHHook(remote_host=b["address"], port=b["ssh_port"])
    assert hook_a.run("hostname").stdout.strip() == a["name"]
    assert hook_a.run("echo private > /tmp/marker && cat /tmp/marker").stdout.strip() == "private"
    assert hook_b.run("cat /tmp/marker").exit_code != 0, "a file on one host is invisible on another"
    # Its own process view: the fleet's etcd and the other hosts' apps are invisible from here.
    seen = hook_a.run("ps -e -o args=").stdout
    assert "etcd" not in seen and "sshd" in seen
    assert sum("app.py" in line for line in seen.splitlines()) == 1
    # PID 1 is the host's own init (so that sshd can die alone, as on a real host).
    assert hook_a.run("cat /proc/1/comm").stdout.strip() == "sh"
    sshd_pids = [int(line.split()[0]) for line in hook_a.run("ps -o pid=,comm= -C sshd").stdout.splitlines()]
    assert sshd_pids and 1 not in sshd_pids


def test_ssh_rejects_an_unknown_host_key(running, tmp_path, monkeypatch):
    from gantry.hooks.ssh import GantrySSHHook

    host = running["hosts"][0]
    wrong = tmp_path / "known_hosts"
    # Another host's key under this host's name: a man in the middle, as far as the client knows.
    lines = open(json.loads(os.environ["AIRFLOW_CONN_GANTRY_SSH"])["extra"]["known_hosts"]).read().splitlines()
    other_key = next(l for l in lines if l.startswith(f"[{running['hosts'][1]['address']}]")).split(" ", 1)[1]
    wrong.write_text(f"[{host['address']}]:{host['ssh_port']} {other_key}\n")
    conn = json.loads(os.environ["AIRFLOW_CONN_GANTRY_SSH"])
    conn["extra"]["known_hosts"] = str(wrong)
    monkeypatch.setenv("AIRFLOW_CONN_GANTRY_SSH_WRONG", json.dumps(conn))
    with pytest.raises(paramiko.SSHException):
        GantrySSHHook("gantry_ssh_wrong", remote_host=host["address"], port=host["ssh_port"]).run("true")
    wrong.write_text("")
    with pytest.raises(paramiko.SSHException):
        GantrySSHHook("gantry_ssh_wrong", remote_host=host["address"], port=host["ssh_port"]).run("true")


def test_registry_disable_survives_the_instance_keepalive(running):
    from gantry.hooks.registry import EtcdRegistryHook

    reg = EtcdRegistryHook()
    host = running["hosts"][0]["name"]
    assert host in reg.routable(APP, ENV)
    reg.disable(APP, ENV, host, reason="test")
    try:
        time.sleep(4.5)  # the app renews its lease every 2 s
        assert host in reg.instances(APP, ENV), "the instance is still registered and alive"
        assert host not in reg.routable(APP, ENV), "but no client may route to it"
        assert not reg.is_enabled(APP, ENV, host)
    finally:
        reg.enable(APP, ENV, host)
    assert host in reg.routable(APP, ENV)


def test_nginx_pool_change_takes_a_host_out_and_back_without_errors(running):
    import http.client

    from gantry.hooks.loadbalancer import NginxUpstreamHook

    lb = NginxUpstreamHook()
    host = running["hosts"][0]
    member = f"{host['address']}:9000"

    def hit(n):
        seen = []
        for _ in range(n):
            c = http.client.HTTPConnection("127.0.0.1", 18080, timeout=5)
            c.request("GET", "/")
            r = c.getresponse()
            assert r.status == 200
            seen.append(r.read().decode().split()[-1])
        return seen

    assert lb.disable(POOL, host["address"], 9000) is True
    assert lb.disable(POOL, host["address"], 9000) is False, "idempotent"
    try:
        assert lb.members(POOL)[member] is False
        assert host["name"] not in hit(20)
    finally:
        assert lb.enable(POOL, host["address"], 9000) is True
    assert lb.members(POOL)[member] is True
    assert host["name"] in hit(20)


def test_nginx_refuses_a_member_that_is_not_in_the_pool(running):
    from airflow.sdk.exceptions import AirflowException

    from gantry.hooks.loadbalancer import NginxUpstreamHook

    with pytest.raises(AirflowException, match="not a member"):
        NginxUpstreamHook().disable(POOL, "127.0.0.99", 9000)


def test_alertmanager_silence_is_reused_and_expired(running):
    from gantry.hooks.monitoring import AlertmanagerHook

    am = AlertmanagerHook()
    host = running["hosts"][0]["name"]
    sid = am.silence(APP, ENV, host, minutes=5, comment="test")
    assert am.silence(APP, ENV, host, minutes=5, comment="test") == sid
    assert [s["id"] for s in am.active(APP, ENV, host)] == [sid]
    assert am.unsilence(APP, ENV, host) == 1
    assert am.active(APP, ENV, host) == []


def test_artifact_checksum_and_missing_versions(running):
    from gantry.hooks.artifacts import ArtifactNotFound, ArtifactRepositoryHook

    repo = ArtifactRepositoryHook()
    assert len(repo.checksum(APP, "1.1.0", "demo-1.1.0.tar.gz")) == 64
    with pytest.raises(ArtifactNotFound, match="not in the artifact repository"):
        repo.checksum(APP, "7.7.7", "demo-7.7.7.tar.gz")
    assert repo.package_url(APP, "1.1.0", "demo-1.1.0.tar.gz").endswith("/demo/1.1.0/demo-1.1.0.tar.gz")


def test_artifact_without_checksum_is_refused(running, fleet):
    from gantry.hooks.artifacts import ArtifactNotFound, ArtifactRepositoryHook

    import artifacts

    path = artifacts.publish_demo(fleet.STATE / "artifacts", "1.4.0-nosum")
    (path.parent / f"{path.name}.sha256").unlink()
    with pytest.raises(ArtifactNotFound, match="sha256 is missing"):
        ArtifactRepositoryHook().checksum(APP, "1.4.0-nosum", path.name)


def test_inventory_cmdb_reads_the_repository_inventory(running):
    from gantry import adapters
    from gantry.config import load_config

    cfg = load_config()
    hosts = adapters.cmdb(cfg, cfg.environment("test")).hosts(APP, ENV)
    assert [h.name for h in hosts] == [h["name"] for h in running["hosts"]]
    assert adapters.cmdb(cfg, cfg.environment("test")).hosts(APP, "nowhere") == []


def test_http_cmdb_reads_a_json_api(monkeypatch):
    from gantry.hooks.cmdb import HttpCmdbHook

    seen = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            seen.append(self.path)
            body = json.dumps({"hosts": [{"name": "web-1", "address": "10.0.0.1", "ssh_port": 22}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("AIRFLOW_CONN_GANTRY_CMDB", json.dumps(
            {"conn_type": "http", "host": "127.0.0.1", "port": server.server_port, "schema": "http"}))
        hosts = HttpCmdbHook().hosts("web", "prod")
    finally:
        server.shutdown()
    assert [(h.name, h.address, h.ssh_port) for h in hosts] == [("web-1", "10.0.0.1", 22)]
    assert seen == ["/api/v1/hosts?app=web&env=prod"]


def test_demo_app_finishes_in_flight_requests_on_sigterm(running, fleet):
    """The app's own graceful stop: a slow request in flight completes, then it exits 0."""
    import http.client
    import subprocess

    host = running["hosts"][4]
    result = {}

    def slow():
        c = http.client.HTTPConnection(host["address"], 9000, timeout=10)
        c.request("GET", "/?sleep_ms=1500")
        r = c.getresponse()
        result["status"], result["body"] = r.status, r.read().decode()

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.3)
    stop = subprocess.run(fleet.ssh_cmd(host) + ["cd /srv/gantry/demo/current && bin/stop.sh"],
                          capture_output=True, text=True, timeout=40)
    t.join(10)
    assert stop.returncode == 0 and "stopped pid" in stop.stdout
    assert result == {"status": 200, "body": f"demo 1.0.0 on {host['name']}\n"}
    assert served_version(host["address"]) is None
    log = subprocess.run(fleet.ssh_cmd(host) + ["tail -3 /srv/gantry/demo/shared/app.log"],
                         capture_output=True, text=True).stdout
    assert "stopped cleanly" in log
    fleet.reset("1.0.0")
