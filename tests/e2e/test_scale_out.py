"""End to end on the CeleryExecutor (marked ``celery``: tests/conftest.py restarts Airflow on it,
with redis and one worker process per queue, as `GANTRY_EXECUTOR=celery ./gantry up` runs it).

One promotion in `test` under load carries the main promotion's guarantees (every host
released, not one failed request, never more than one host out of rotation), a broker restart
while its first task waits in it, and a worker SIGKILLed while it runs a host step. The zone routing (beta and prod on the `prod-zone` worker)
is checked by the chain tests, which run on Celery too (test_promotion_chain.py).
"""
from __future__ import annotations

import base64
import json
import os
import signal
import time

import pytest

from support import (
    LoadGenerator, RotationSampler, assert_all_in_rotation, fleet_state, host_outcomes, in_load_balancer, per_host,
    wait_for)

pytestmark = [pytest.mark.e2e, pytest.mark.celery]
DAG = "gantry_promote_test"
RELEASE_TASK = "host.offline_restart_online"
# A host a dead worker left out of rotation is back within this (README, Faults).
OUT_OF_ROTATION_BOUND = 90


@pytest.fixture
def spare_worker(fleet):
    """A second worker on the default queue, as a zone with two workers for redundancy has; the
    demo's own workers are put back as they were afterwards, whichever one the test killed."""
    env = {**os.environ, **fleet.airflow_env("celery")}
    fleet.start_worker("default-spare", "default", env)
    yield "worker-default-spare"
    fleet.stop(fleet.worker_component("default-spare"))
    if not fleet.read_pid(fleet.worker_component("default")):
        fleet.start_worker("default", "default", env, serve_logs=True)


def test_promotion_on_celery_loses_no_request_and_survives_a_killed_worker(fleet, airflow, spare_worker):
    from gantry.hooks.ledger import LedgerHook

    fleet.reset("1.0.0")
    hosts = fleet_state()["hosts"]
    default_workers = {"worker-default", spare_worker}
    with LoadGenerator() as load, RotationSampler() as sampler:
        # The broker (redis) restarted while a task waits in it, no worker there to take it: the
        # message survives in its append-only file, and the run goes on as soon as a worker is
        # back, not after Airflow's task_queued_timeout (300 s).
        env = {**os.environ, **fleet.airflow_env("celery")}
        for name in ("default", "default-spare"):
            fleet.stop(fleet.worker_component(name))
        resp = airflow.trigger(DAG, {"app": "demo", "version": "1.1.0", "auto_promote": False})
        assert resp.status_code == 200, resp.text
        run_id = resp.json()["dag_run_id"]

        def first_task() -> dict:
            return wait_for(lambda: next((t for t in airflow.task_instances(DAG, run_id)
                                          if t["task_id"] == "claim_release"), None), "the run's first task")

        import redis

        broker = redis.Redis(host="127.0.0.1", port=fleet.REDIS_PORT)
        ti_id = first_task()["id"]

        def in_broker() -> bool:  # Airflow marks it queued before the message reaches redis
            return any(ti_id in base64.b64decode(json.loads(raw)["body"]).decode(errors="replace")
                       for raw in broker.lrange("default", 0, -1))

        wait_for(in_broker, "the first task's message to wait in the broker's queue")
        assert first_task()["state"] == "queued"
        fleet.stop("redis")
        fleet.redis_up()
        fleet.start_worker("default", "default", env, serve_logs=True)
        fleet.start_worker("default-spare", "default", env)
        wait_for(lambda: first_task()["state"] == "success", "the first task to run after the broker's restart",
                 timeout=60)

        # The worker running the canary's release step, SIGKILLed with everything it started (its
        # process group: pool processes, the task's supervisor and process) once the canary is
        # out of rotation - a worker machine dying. Its message is not acknowledged (acks_late),
        # but the retry does not wait for Celery to redeliver it: Airflow declares the task dead
        # after task_instance_heartbeat_timeout and queues try 2, which the other worker runs.
        canary = hosts[0]
        wait_for(lambda: in_load_balancer(canary) is False, "the canary to leave rotation", interval=0.05)

        def canary_step():
            return next((t for t in airflow.task_instances(DAG, run_id)
                         if t["task_id"] == RELEASE_TASK and t["map_index"] == 0 and t["hostname"]), None)

        victim = wait_for(canary_step, "the canary's step to name its worker", interval=0.05)["hostname"]
        assert victim in default_workers, victim
        killed_at = time.time()
        os.killpg(fleet.read_pid(fleet.worker_component(victim.removeprefix("worker-"))), signal.SIGKILL)
        wait_for(lambda: in_load_balancer(canary), "the canary back in rotation", timeout=300)
        out_of_rotation = time.time() - killed_at

        state = airflow.wait_run(DAG, run_id, timeout=900)

    tis = {(t["task_id"], t["map_index"]): t for t in airflow.task_instances(DAG, run_id)}
    assert state == "success"
    releases = per_host(tis, "offline_restart_online")
    assert {h: ti["state"] for h, ti in releases.items()} == {h["name"]: "success" for h in hosts}
    retried = releases[hosts[0]["name"]]
    assert retried["try_number"] == 2, "the killed step was retried"
    assert retried["hostname"] in default_workers - {victim}, "the retry ran on the other worker"
    # Every task of `test` ran on the default queue's workers, none on the prod zone's.
    assert {t["queue"] for t in tis.values()} == {"default"}
    assert {t["hostname"] for t in tis.values() if t["state"] == "success"} <= default_workers
    after = fleet_state()
    assert set(after["versions"].values()) == {"1.1.0"}
    assert set(after["registry_instances"].values()) == {"1.1.0"}
    assert_all_in_rotation(after)
    row = LedgerHook().history("demo", "test", 1)[0]
    assert (row["run_id"], row["status"], row["version"]) == (run_id, "succeeded", "1.1.0")
    # The main promotion's guarantees, on Celery and through a dead worker.
    assert load.total >= 2000, f"only {load.total} requests were sent"
    assert load.failures == [], f"{len(load.failures)} of {load.total} failed: {load.failures[:5]}"
    assert set(load.versions) == {"1.0.0", "1.1.0"}
    assert {o["outcome"] for o in host_outcomes(airflow, DAG, run_id, tis).values()} == {"released"}
    assert sampler.samples > 100
    assert sampler.max_lb_down == 1 and sampler.max_registry_disabled == 1
    assert out_of_rotation < OUT_OF_ROTATION_BOUND, f"the canary was out {out_of_rotation:.0f}s after the kill"
    print(f"\ncelery worker killed: canary out of rotation {out_of_rotation:.1f}s after the kill; "
          f"{load.total} requests, 0 failed")
