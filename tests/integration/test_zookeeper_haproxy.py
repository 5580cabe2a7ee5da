"""The ZooKeeper (Dubbo-style) registry and HAProxy load-balancer adapters against the real
servers of the local fleet: staging's three hosts register in ZooKeeper and sit behind HAProxy."""
import http.client
import threading
import time
from urllib.parse import quote, unquote

import pytest

from support import LoadGenerator, served_version

APP, ENV = "demo", "staging"
POOL = "demo-staging"
SERVICE = "com.example.demo.DemoService"


@pytest.fixture(scope="module")
def staging(fleet):
    fleet.reset("1.0.0", ENV)
    hosts = [h for h in fleet.inventory_hosts() if h["env"] == ENV and h["app"] == APP]
    assert {served_version(h["address"]) for h in hosts} == {"1.0.0"}
    return hosts


@pytest.fixture
def zk(fleet):
    from kazoo.client import KazooClient

    client = KazooClient(hosts=f"127.0.0.1:{fleet.ZOOKEEPER_PORT}")
    client.start(timeout=10)
    yield client
    client.stop()
    client.close()


def ssh(fleet, host, script):
    import subprocess

    return subprocess.run(fleet.ssh_cmd(host) + [script], capture_output=True, text=True, timeout=60)


def test_zookeeper_override_keeps_a_provider_out_across_its_own_reregistration(fleet, staging, zk):
    from gantry.hooks.zookeeper import ZooKeeperRegistryHook

    reg = ZooKeeperRegistryHook()
    host = staging[0]
    # Each instance registered itself: an ephemeral provider node of its own session, in its group.
    instances = reg.instances(APP, ENV)
    assert {n: (i["address"], i["version"]) for n, i in instances.items()} == {
        h["name"]: (h["address"], "1.0.0") for h in staging}
    providers = f"/dubbo/{SERVICE}/providers"
    for node in zk.get_children(providers):
        assert zk.exists(f"{providers}/{node}").ephemeralOwner != 0
        assert unquote(node).startswith("dubbo://")
    assert set(reg.routable(APP, ENV)) == {h["name"] for h in staging}

    reg.disable(APP, ENV, host["name"], reason="integration test", address=host["address"], port=9000)
    try:
        # Dubbo Admin's shape: a persistent override URL under configurators.
        configurators = f"/dubbo/{SERVICE}/configurators"
        (node,) = zk.get_children(configurators)
        assert zk.exists(f"{configurators}/{node}").ephemeralOwner == 0
        assert unquote(node).startswith(f"override://{host['address']}:9000/{SERVICE}?")
        assert "disabled=true" in unquote(node) and f"group={ENV}" in unquote(node)
        assert host["name"] not in reg.routable(APP, ENV)
        assert not reg.is_enabled(APP, ENV, host["name"], address=host["address"], port=9000)
        # Disabling twice leaves one entry.
        reg.disable(APP, ENV, host["name"], reason="again", address=host["address"], port=9000)
        assert len(zk.get_children(configurators)) == 1

        # The instance restarts: its session ends (its node goes), a new one registers it again -
        # and consumers still do not route to it.
        before = instances[host["name"]]["url"]
        result = ssh(fleet, host, "cd /srv/gantry/demo/current && bin/stop.sh && bin/start.sh")
        assert result.returncode == 0, result.stderr
        deadline = time.time() + 20
        while time.time() < deadline:
            now = reg.instances(APP, ENV).get(host["name"])
            if now and now["url"] != before:
                break
            time.sleep(0.1)
        else:
            pytest.fail("the restarted instance did not register again")
        assert host["name"] not in reg.routable(APP, ENV), "the override outlives the instance's session"
    finally:
        reg.enable(APP, ENV, host["name"], address=host["address"], port=9000)
    assert zk.get_children(configurators) == []
    assert host["name"] in reg.routable(APP, ENV)
    assert reg.is_enabled(APP, ENV, host["name"])  # the address found from its own registration


def test_zookeeper_leaves_a_humans_override_alone_and_says_when_it_is_unreachable(fleet, staging, zk, monkeypatch):
    import json

    from airflow.sdk.exceptions import AirflowException
    from gantry.hooks.zookeeper import ZooKeeperRegistryHook, override_url

    reg = ZooKeeperRegistryHook()
    host = staging[1]
    # An operator disabled every provider on that address for all groups (Dubbo Admin, 0 port).
    theirs = override_url(SERVICE, host["address"], 0, application=APP)
    path = f"/dubbo/{SERVICE}/configurators/{quote(theirs, safe='')}"
    zk.create(path, b"", makepath=True)
    try:
        assert host["name"] not in reg.routable(APP, ENV)
        reg.enable(APP, ENV, host["name"], address=host["address"], port=9000)
        assert zk.exists(path), "Gantry removes only its own entries"
        assert host["name"] not in reg.routable(APP, ENV)
    finally:
        zk.delete(path)
    assert host["name"] in reg.routable(APP, ENV)

    monkeypatch.setenv("AIRFLOW_CONN_GANTRY_ZOOKEEPER_DOWN",
                       json.dumps({"conn_type": "generic", "host": "127.0.0.1", "port": 1}))
    with pytest.raises(AirflowException, match="ZooKeeper at 127.0.0.1:1 is not reachable"):
        ZooKeeperRegistryHook("gantry_zookeeper_down").routable(APP, ENV)


def _answered_by(port: int, count: int) -> set[str]:
    seen = set()
    for _ in range(count):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/", headers={"Connection": "close"})
        seen.add(conn.getresponse().read().decode().split()[-1])
        conn.close()
    return seen


def test_an_expired_session_registers_the_instance_again_and_gantrys_override_still_holds(fleet, staging, zk):
    """A provider's ZooKeeper session expires (the process stalls past its session timeout, as
    in a long GC pause): ZooKeeper drops its node; once it runs again it registers anew under a
    new session, and an instance Gantry took out stays out."""
    from gantry.hooks.zookeeper import ZooKeeperRegistryHook

    reg = ZooKeeperRegistryHook()
    host = staging[2]
    providers = f"/dubbo/{SERVICE}/providers"

    def own_node():
        for node in zk.get_children(providers):
            if f"hostname={host['name']}&" in unquote(node):
                stat = zk.exists(f"{providers}/{node}")
                return stat.ephemeralOwner if stat else None
        return None

    def wait(predicate, what, timeout=30.0):
        deadline = time.time() + timeout
        while not predicate():
            assert time.time() < deadline, f"timed out waiting for {what}"
            time.sleep(0.1)

    first_session = own_node()
    assert first_session
    reg.disable(APP, ENV, host["name"], reason="integration test", address=host["address"], port=9000)
    try:
        stalled = ssh(fleet, host, "kill -STOP \"$(cat /srv/gantry/demo/shared/app.pid)\"")
        assert stalled.returncode == 0, stalled.stderr
        try:
            wait(lambda: own_node() is None, "ZooKeeper to expire the stalled instance's session")
        finally:
            resumed = ssh(fleet, host, "kill -CONT \"$(cat /srv/gantry/demo/shared/app.pid)\"")
        assert resumed.returncode == 0, resumed.stderr
        wait(lambda: own_node() not in (None, first_session), "the instance to register under a new session")
        assert host["name"] in reg.instances(APP, ENV)
        assert host["name"] not in reg.routable(APP, ENV), "Gantry's override outlives the expired session"
    finally:
        reg.enable(APP, ENV, host["name"], address=host["address"], port=9000)
    assert host["name"] in reg.routable(APP, ENV)
    wait(lambda: served_version(host["address"]) == "1.0.0", "the instance to answer again")


def test_haproxy_drains_in_flight_requests_before_maintenance(fleet, staging):
    from airflow.sdk.exceptions import AirflowException
    from gantry.hooks.haproxy import HAProxyRuntimeHook

    lb = HAProxyRuntimeHook()
    host = staging[0]
    member = f"{host['address']}:9000"
    port = fleet.lb_port(APP, ENV)
    assert lb.members(POOL) == {f"{h['address']}:9000": True for h in staging}
    # Slow requests in flight on every server (round robin): the drain must wait for them.
    results: list[int | str] = []

    def slow():
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/?sleep_ms=1200", headers={"Connection": "close"})
            results.append(conn.getresponse().status)
        except Exception as exc:
            results.append(repr(exc))

    with LoadGenerator(env=ENV, threads=2, sleep_ms=20) as load:
        threads = [threading.Thread(target=slow) for _ in range(6)]
        for t in threads:
            t.start()
        time.sleep(0.3)
        assert lb.current_sessions(POOL, host["name"]) > 0
        t0 = time.monotonic()
        assert lb.disable(POOL, host["address"], 9000) is True
        waited = time.monotonic() - t0
        assert lb.current_sessions(POOL, host["name"]) == 0
        assert lb.members(POOL)[member] is False
        assert lb.disable(POOL, host["address"], 9000) is False, "out already"
        assert host["name"] not in _answered_by(port, 12)
        for t in threads:
            t.join()
        assert lb.enable(POOL, host["address"], 9000) is True
        assert lb.enable(POOL, host["address"], 9000) is False
        assert host["name"] in _answered_by(port, 12)
    assert waited > 0.5, f"disable returned after {waited:.2f}s while a 1.2 s request was in flight"
    assert results == [200] * 6, results
    assert load.failures == [] and load.ok > 20
    assert all(lb.members(POOL).values())

    with pytest.raises(AirflowException, match="127.0.0.99:9000 is not a member of backend demo-staging"):
        lb.disable(POOL, "127.0.0.99", 9000)
    with pytest.raises(AirflowException, match="no backend nope"):
        lb.members("nope")


def test_a_member_gantry_took_out_stays_out_when_haproxy_is_restarted(fleet, staging):
    """HAProxy keeps runtime state in its process: restarted the way README says (state dumped to
    its server-state-file first, `fleetctl haproxy-restart`), a member Gantry took out comes back
    out of rotation and receives no request, then Gantry puts it back as usual."""
    from gantry.hooks.haproxy import HAProxyRuntimeHook

    lb = HAProxyRuntimeHook()
    host = staging[1]
    member = f"{host['address']}:9000"
    port = fleet.lb_port(APP, ENV)
    assert lb.disable(POOL, host["address"], 9000) is True
    try:
        old_pid = fleet.read_pid("haproxy")
        fleet.haproxy_restart()
        assert fleet.read_pid("haproxy") not in (None, old_pid), "HAProxy was restarted"
        assert lb.members(POOL)[member] is False, "the member came back in rotation"
        assert host["name"] not in _answered_by(port, 12)
    finally:
        assert lb.enable(POOL, host["address"], 9000) is True
    assert host["name"] in _answered_by(port, 12)
    assert all(lb.members(POOL).values())
