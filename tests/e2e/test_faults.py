"""End to end: parts of Airflow die in the middle of a release, on the real fleet, under load.

One rollout of five hosts in `test` (one host per batch) takes several faults, each while a
host is out of rotation or while the later batches wait: a rollout is what these faults
interrupt, and sharing one keeps the suite short. Each fault's end state is in the README
(Faults); every one must end with the run and the ledger agreeing and no host out of rotation,
and a host Gantry took offline must be back within 90 s.
"""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from support import (
    LoadGenerator, RotationSampler, assert_all_in_rotation, fleet_state, in_load_balancer, per_host, wait_for)

pytestmark = pytest.mark.e2e
DAG = "gantry_promote_test"
DEV = "gantry_promote_dev"
RELEASE_TASK = "host.offline_restart_online"
# A host a dead process left out of rotation must be back (or its step retried) within this.
OUT_OF_ROTATION_BOUND = 90


def _processes_titled(title: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if title in (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    pids.append(int(proc.name))
            except OSError:
                pass
    return pids


def _parent(pid: int) -> int:
    return int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])


def _sigkill_group(fleet, component: str) -> None:
    pid = fleet.read_pid(component)
    assert pid, f"{component} is not running"
    os.killpg(pid, signal.SIGKILL)
    wait_for(lambda: fleet.read_pid(component) is None, f"{component} to die", timeout=30)


def _start(fleet, component: str) -> None:
    env = {**os.environ, **fleet.airflow_env()}
    fleet.spawn(component, [fleet.airflow_cmd(), *fleet.AIRFLOW_COMPONENTS[component]], env=env)


class OutOfRotation:
    """How long a host stays out of the load balancer after a fault, sampled every 0.2 s."""

    def __init__(self, fleet, host: dict) -> None:
        self.fleet, self.host = fleet, host

    def wait_offline(self) -> None:
        wait_for(lambda: in_load_balancer(self.host) is False, f"{self.host['name']} to leave rotation",
                  interval=0.05)

    def seconds_until_back(self, since: float) -> float:
        wait_for(lambda: in_load_balancer(self.host), f"{self.host['name']} back in rotation", timeout=300)
        return time.time() - since


def test_killed_worker_triggerer_and_scheduler_mid_release_strand_no_host(fleet, airflow):
    from gantry.hooks.ledger import LedgerHook

    fleet.reset("1.0.0")
    hosts = fleet_state()["hosts"]
    assert len(hosts) == 5
    out_for: dict[str, float] = {}
    with LoadGenerator() as load, RotationSampler() as sampler:
        resp = airflow.trigger(DAG, {"app": "demo", "version": "1.1.0", "auto_promote": False})
        assert resp.status_code == 200, resp.text
        run_id = resp.json()["dag_run_id"]

        # 1. The worker running the canary's release step (its task process with it), SIGKILLed
        # once the canary is out of rotation: the task stops heartbeating, Airflow declares it
        # dead after [scheduler] task_instance_heartbeat_timeout and retries it; the retry runs
        # the idempotent cycle again and puts the host back.
        canary = OutOfRotation(fleet, hosts[0])
        canary.wait_offline()
        ti = next(t for t in airflow.task_instances(DAG, run_id) if t["task_id"] == RELEASE_TASK and t["map_index"] == 0)
        task_pids = _processes_titled(f"airflow worker -- {ti['id']}")
        assert task_pids, "the canary's task process was not found"
        killed_at = time.time()
        for pid in {*task_pids, *(_parent(p) for p in task_pids)}:
            os.kill(pid, signal.SIGKILL)
        out_for["worker killed"] = canary.seconds_until_back(killed_at)

        # 2. The triggerer, SIGKILLed while the later batches wait in it, and started again: the
        # new triggerer takes over the batch gates.
        wait_for(lambda: any(t["state"] == "deferred" for t in airflow.task_instances(DAG, run_id)
                              if t["task_id"] == RELEASE_TASK), "later batches to wait in the triggerer")
        _sigkill_group(fleet, "airflow-triggerer")
        _start(fleet, "airflow-triggerer")

        # 3. The scheduler (with the LocalExecutor's workers and their task processes: the whole
        # process group), SIGKILLed while the third host is out of rotation, then started again.
        third = OutOfRotation(fleet, hosts[2])
        third.wait_offline()
        killed_at = time.time()
        _sigkill_group(fleet, "airflow-scheduler")
        _start(fleet, "airflow-scheduler")
        out_for["scheduler killed"] = third.seconds_until_back(killed_at)

        state = airflow.wait_run(DAG, run_id, timeout=900)

    tis = {(t["task_id"], t["map_index"]): t for t in airflow.task_instances(DAG, run_id)}
    assert state == "success"
    releases = per_host(tis, "offline_restart_online")
    assert {h: ti["state"] for h, ti in releases.items()} == {h["name"]: "success" for h in hosts}
    assert releases[hosts[0]["name"]]["try_number"] == 2, "the killed step was retried"
    after = fleet_state()
    assert set(after["versions"].values()) == {"1.1.0"}
    assert_all_in_rotation(after)
    row = LedgerHook().history("demo", "test", 1)[0]
    assert (row["run_id"], row["status"], row["version"]) == (run_id, "succeeded", "1.1.0")
    # The bound on time out of rotation, and on hosts out at once (batch size 1).
    assert all(s < OUT_OF_ROTATION_BOUND for s in out_for.values()), out_for
    assert sampler.max_lb_down == 1 and sampler.max_registry_disabled == 1
    # No request failed: the killed processes are Airflow's, the hosts Gantry took offline
    # were out of the load balancer the whole time.
    assert load.total > 1000 and load.failures == [], f"{len(load.failures)} of {load.total}: {load.failures[:5]}"
    print(f"\nout of rotation after each fault: {out_for}; {load.total} requests, 0 failed")


def test_api_server_and_postgres_restarted_mid_release_strand_no_host(fleet, airflow):
    """The API server restarted (the workers' only way to Airflow's database) while the canary
    is out of rotation, then PostgreSQL (Airflow's metadata and the ledger) restarted while the
    third host is. Any Airflow component that exits on the database outage is started again,
    as its service manager (systemd, Kubernetes) would: here, ``fleetctl airflow-up``."""
    from gantry.hooks.ledger import LedgerHook

    fleet.reset("1.0.0")
    hosts = fleet_state()["hosts"]
    out_for: dict[str, float] = {}
    with LoadGenerator() as load, RotationSampler() as sampler:
        resp = airflow.trigger(DAG, {"app": "demo", "version": "1.1.0", "auto_promote": False})
        run_id = resp.json()["dag_run_id"]

        canary = OutOfRotation(fleet, hosts[0])
        canary.wait_offline()
        restarted_at = time.time()
        fleet.stop("airflow-api-server")
        _start(fleet, "airflow-api-server")
        fleet.wait_http(f"http://127.0.0.1:{fleet.AIRFLOW_PORT}/api/v2/monitor/health", timeout=120, name="api")
        out_for["api server restarted"] = canary.seconds_until_back(restarted_at)

        third = OutOfRotation(fleet, hosts[2])
        third.wait_offline()
        restarted_at = time.time()
        os.killpg(fleet.read_pid("postgres"), signal.SIGINT)  # a fast shutdown
        wait_for(lambda: fleet.read_pid("postgres") is None, "postgres to stop", timeout=60)
        fleet.postgres_up()
        restarted: list[str] = []

        def supervise() -> bool:
            """As a service manager would: start any component that exited (the scheduler may
            give up a few seconds after the outage); True once the run is over."""
            for component in fleet.AIRFLOW_COMPONENTS:
                if fleet.read_pid(component) is None:
                    restarted.append(component)
                    _start(fleet, component)
            try:
                return type(airflow)().run_state(DAG, run_id) in ("success", "failed")
            except Exception:  # noqa: BLE001 - the API server may be starting again
                return False

        wait_for(lambda: supervise() or in_load_balancer(hosts[2]), "the third host back", timeout=300, interval=1)
        out_for["postgres restarted"] = time.time() - restarted_at
        wait_for(supervise, "the run to end", timeout=900, interval=2)
        airflow = type(airflow)()  # a new token: the API server's sessions did not survive
        state = airflow.run_state(DAG, run_id)

    assert state == "success"
    after = fleet_state()
    assert set(after["versions"].values()) == {"1.1.0"}
    assert_all_in_rotation(after)
    row = LedgerHook().history("demo", "test", 1)[0]
    assert (row["run_id"], row["status"]) == (run_id, "succeeded")
    assert all(s < OUT_OF_ROTATION_BOUND for s in out_for.values()), out_for
    assert sampler.max_lb_down == 1
    assert load.total > 1000 and load.failures == [], f"{len(load.failures)} of {load.total}: {load.failures[:5]}"
    print(f"\nout of rotation after each fault: {out_for}; {load.total} requests, 0 failed; "
          f"restarted after exiting: {restarted or 'none'}")


class _Outage:
    """One part of the fleet unavailable for the length of a ``with`` block."""

    def __init__(self, fleet, part: str) -> None:
        self.fleet, self.part = fleet, part
        self.nginx_conf = fleet.STATE / "nginx" / "nginx.conf"

    def __enter__(self):
        if self.part in ("etcd", "alertmanager"):
            self.fleet.stop(self.part)
        elif self.part == "nginx config test":
            self.saved = self.nginx_conf.read_text()
            self.nginx_conf.write_text(self.saved + "\nnot_a_directive on;\n")  # `nginx -t` fails
        elif self.part == "artifact server":
            self.fleet.ARTIFACT_OUTAGE_FLAG.parent.mkdir(exist_ok=True)
            self.fleet.ARTIFACT_OUTAGE_FLAG.touch()
        return self

    def __exit__(self, *exc) -> None:
        if self.part == "nginx config test":
            self.nginx_conf.write_text(self.saved)
        self.fleet.ARTIFACT_OUTAGE_FLAG.unlink(missing_ok=True)
        self.fleet.up()  # starts what was stopped


# What each outage stops, and where: the step that needs the part fails, is retried, and the run
# ends failed with every host back on its release, in rotation and unsilenced.
OUTAGES = {
    "artifact server": ("verify_artifact", None),
    "alertmanager": ("host.offline_restart_online", "silence monitoring"),
    "etcd": ("host.offline_restart_online", "offline: registry"),
    "nginx config test": ("host.offline_restart_online", "offline: load balancer"),
}


@pytest.mark.parametrize("part", list(OUTAGES))
def test_a_part_unavailable_at_its_step_fails_the_run_with_every_host_in_rotation(fleet, airflow, part):
    from gantry.hooks.ledger import LedgerHook
    from support import host_outcomes, run_dag, step

    # In `dev` (two hosts, one retry): the shortest rollout that reaches every step.
    fleet.reset("1.0.0", "dev")
    failed_task, failed_step = OUTAGES[part]
    with _Outage(fleet, part):
        run_id, state, tis = run_dag(airflow, DEV, {"app": "demo", "version": "1.1.0", "auto_promote": False})
        during = fleet_state(env="dev") if part not in ("etcd", "alertmanager") else None
    assert state == "failed"
    failed = [k for k, ti in tis.items() if ti["state"] == "failed"]
    assert (failed_task, 0 if failed_task.startswith("host.") else -1) in failed, failed
    after = fleet_state(env="dev")
    assert set(after["versions"].values()) == {"1.0.0"}, "no host changed release"
    assert_all_in_rotation(after)
    if during:
        assert_all_in_rotation(during)
    row = LedgerHook().history("demo", "dev", 1)[0]
    assert (row["run_id"], row["status"]) == (run_id, "failed")
    if failed_step:
        canary = host_outcomes(airflow, DEV, run_id, tis)[after["hosts"][0]["name"]]
        assert canary["outcome"] == "restored", canary
        assert step(canary, failed_step)["status"] == "failed", canary["steps"]
        assert tis[(failed_task, 0)]["try_number"] == 2, "a transient outage is retried"


def _quiet_period_of(airflow, run_id: str, host: dict) -> None:
    """Wait until ``host`` is in the quiet period before its restart (out of rotation, drained),
    as its live task log says: the step's heading is written as the step starts."""
    def started() -> bool:
        tis = [t for t in airflow.task_instances(DAG, run_id) if t["task_id"] == "host.offline_restart_online"
               and t["rendered_map_index"] == host["name"] and t["state"] == "running"]
        return bool(tis) and "::group::quiet period" in airflow.log(DAG, run_id, tis[0]["task_id"],
                                                                   tis[0]["map_index"])

    wait_for(started, f"{host['name']}'s quiet period", interval=0.05)
    assert in_load_balancer(host) is False


def test_a_hosts_sshd_gone_mid_release_leaves_it_to_the_reconciler(fleet, airflow):
    """SSH to the canary dies (its sshd killed, listener and sessions; the app keeps running)
    between offline and restart. Gantry cannot look at the host, so it does not put it back
    blind: the step fails, is retried, and the rollout stops with the host out of rotation and
    the ledger saying why. The reconciler's next pass finds the app healthy (over HTTP, as the
    load balancer would) and puts it back."""
    from gantry.hooks.ledger import LedgerHook
    from support import host_outcomes

    fleet.reset("1.0.0")
    hosts = fleet_state()["hosts"]
    canary = hosts[0]
    try:
        with LoadGenerator() as load:
            run_id = airflow.trigger(DAG, {"app": "demo", "version": "1.1.0", "auto_promote": False}
                                     ).json()["dag_run_id"]
            _quiet_period_of(airflow, run_id, canary)
            fleet.sshd_gone(canary["name"])
            state = airflow.wait_run(DAG, run_id, timeout=600)
            tis = {(t["task_id"], t["map_index"]): t for t in airflow.task_instances(DAG, run_id)}
            assert state == "failed"
            outcome = host_outcomes(airflow, DAG, run_id, tis)[canary["name"]]
            assert outcome["outcome"] == "unreachable", outcome
            row = LedgerHook().history("demo", "test", 1)[0]
            assert (row["run_id"], row["status"]) == (run_id, "failed")
            assert "unreachable=1" in row["message"]
            left = fleet_state()
            assert left["lb"][f"{canary['address']}:9000"] is False, "not put back blind"
            assert set(left["versions"].values()) == {"1.0.0"}, "the app kept running its release"

            reconcile_test_environment(airflow)
        after = fleet_state()
        assert_all_in_rotation(after)
        assert load.failures == [], f"{len(load.failures)} of {load.total}: {load.failures[:5]}"
    finally:
        fleet.sshd_back(canary["name"])


def reconcile_test_environment(airflow) -> None:
    """One pass of the reconciler over `test` (the suite runs it on demand, not on its schedule)."""
    from support import run_dag

    run_dag(airflow, "gantry_reconcile", {"environments": ["test"]}, timeout=300)


def test_a_hung_ssh_command_times_out_and_the_retry_finishes_the_release(fleet, airflow):
    """Every process of the canary stopped (SIGSTOP) during its quiet period: the restart
    command hangs, times out after the app's command timeout, the host is restored once it
    answers again (SIGCONT, as after a stall), and the retry releases it. The run never hangs."""
    fleet.reset("1.0.0")
    hosts = fleet_state()["hosts"]
    canary = hosts[0]
    stopped = []
    try:
        with LoadGenerator() as load:
            run_id = airflow.trigger(DAG, {"app": "demo", "version": "1.1.0", "auto_promote": False}
                                     ).json()["dag_run_id"]
            _quiet_period_of(airflow, run_id, canary)
            offline_at = time.time()
            stopped = [p for comm in ("sshd", "python3") for p in fleet._host_processes(canary["name"], comm)]
            for pid in stopped:
                os.kill(pid, signal.SIGSTOP)
            time.sleep(35)  # past the app's command timeout (30 s)
            for pid in stopped:
                os.kill(pid, signal.SIGCONT)
            stopped = []
            out_for = OutOfRotation(fleet, canary).seconds_until_back(offline_at)
            state = airflow.wait_run(DAG, run_id, timeout=600)
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
    tis = {(t["task_id"], t["map_index"]): t for t in airflow.task_instances(DAG, run_id)}
    assert state == "success"
    release = tis[(RELEASE_TASK, 0)]
    assert release["try_number"] == 2
    first_try = airflow.log(DAG, run_id, RELEASE_TASK, map_index=0, try_number=1)
    # The hung step gave up after its timeout (opening the command's channel, or waiting for
    # output) and the host was put back on its release before the retry.
    assert "Timeout opening channel" in first_try or "SSH command timed out" in first_try
    assert "back in rotation on 1.0.0" in first_try
    after = fleet_state()
    assert set(after["versions"].values()) == {"1.1.0"}
    assert_all_in_rotation(after)
    assert out_for < OUT_OF_ROTATION_BOUND
    assert load.failures == [], f"{len(load.failures)} of {load.total}: {load.failures[:5]}"


def test_a_release_that_crashes_right_after_its_health_check_is_taken_out_and_rolled_back(fleet, airflow):
    """Flapping: the new build passes its health check, goes online and crashes a second later.
    The settle step (health watched for `settle_seconds` back in rotation) takes it
    out again and rolls it back; the rollout stops. Requests that reached the crashed process
    in that window fail - they are counted, and no other request fails."""
    import artifacts
    from gantry.hooks.ledger import LedgerHook
    from support import host_outcomes, step

    fleet.reset("1.0.0")
    hosts = fleet_state()["hosts"]
    canary = hosts[0]
    artifacts.publish_demo(fleet.STATE / "artifacts", "1.3.0-flaky", crash_after_ready_on=(canary["name"],),
                           crash_after_seconds=1)
    with LoadGenerator() as load:
        run_id = airflow.trigger(DAG, {"app": "demo", "version": "1.3.0-flaky", "auto_promote": False,
                                       "settle_seconds": 3}).json()["dag_run_id"]
        state = airflow.wait_run(DAG, run_id, timeout=600)
    tis = {(t["task_id"], t["map_index"]): t for t in airflow.task_instances(DAG, run_id)}
    assert state == "failed"
    outcome = host_outcomes(airflow, DAG, run_id, tis)[canary["name"]]
    assert outcome["outcome"] == "rolled_back", outcome
    assert "stopped being healthy within 3s of going online" in outcome["reason"]
    assert step(outcome, "settle")["status"] == "ok"  # the step ran; its verdict was "not steady"
    after = fleet_state()
    assert set(after["versions"].values()) == {"1.0.0"}
    assert_all_in_rotation(after)
    row = LedgerHook().history("demo", "test", 1)[0]
    assert (row["run_id"], row["status"]) == (run_id, "failed")
    # Only requests that met the crashed process failed: between its going online and its being
    # taken out again (plus a reload's worth of slack).
    online, out_again = step(outcome, "online"), step(outcome, "offline again")
    window = (online["at"], out_again["at"] + out_again["seconds"] + 1.0)
    failed_at = [float(f.split()[0]) for f in load.failures]
    assert all(window[0] <= t <= window[1] for t in failed_at), (window, load.failures[:5])
    print(f"\nflapping canary: {len(load.failures)} of {load.total} requests failed, all within "
          f"{window[1] - window[0]:.1f}s of the crash window")
