"""The batch gate in the triggerer: one shared poll per run, each waiting host deciding for
itself from the snapshots (no Airflow services needed: the stream is fed by hand)."""
import asyncio
import time

from gantry import plan
from gantry.triggers.batch_gate import BatchGateTrigger

STAGE, RELEASE = "host.precheck_and_stage", "host.offline_restart_online"


def hosts(n):
    return [plan.Host(f"h{i}", f"127.0.0.{i + 1}") for i in range(n)]


def trigger(map_index: int) -> BatchGateTrigger:
    return BatchGateTrigger(group_id="host", plan_task_id="collect_hosts", prepare_task_id=STAGE,
                            release_task_id=RELEASE, dag_id="d", run_id="r", map_index=map_index)


async def feed(snapshots, delay=0.0):
    for s in snapshots:
        yield s
        await asyncio.sleep(delay)


def first_event(trig, snapshots, delay=0.0):
    async def go():
        async for event in trig.filter_shared_stream(feed(snapshots, delay)):
            return event.payload
        return None
    return asyncio.run(go())


def test_hosts_of_one_run_share_one_stream_and_a_restart_keeps_the_key():
    a, b = trigger(1), trigger(7)
    assert a.shared_stream_key() == b.shared_stream_key() == ("gantry-batch-gate", "d", "r", "host")
    cls, kwargs = a.serialize()
    again = BatchGateTrigger(**kwargs)
    assert again.shared_stream_key() == a.shared_stream_key() and again.map_index == 1
    other_run = BatchGateTrigger(**{**kwargs, "run_id": "r2"})
    assert other_run.shared_stream_key() != a.shared_stream_key()


def test_a_host_fires_once_when_its_previous_batch_is_back():
    records = plan.assign_batches(hosts(3), plan.parse_batch_plan("1, 100%", 3))
    waiting = {"records": records, "states": {0: {STAGE: "success", RELEASE: "running"}}}
    back = {"records": records, "states": {0: {STAGE: "success", RELEASE: "success"}}}
    assert first_event(trigger(2), [waiting, waiting]) is None
    event = first_event(trigger(2), [waiting, back, back])
    assert event["decision"] == plan.GATE_GO


def test_a_failure_at_the_threshold_fails_the_waiting_hosts():
    records = plan.assign_batches(hosts(3), plan.parse_batch_plan("1, 100%", 3), threshold=1)
    failed = {"records": records, "states": {0: {STAGE: "success", RELEASE: "failed"}}}
    event = first_event(trigger(1), [failed])
    assert event["decision"] == plan.GATE_FAIL and "threshold" in event["message"]


def test_bake_time_holds_the_batch_leader_on_later_ticks():
    records = plan.assign_batches(hosts(2), plan.plan_batches(2, 1), bake_seconds=0.3)
    back = {"records": records, "states": {0: {STAGE: "success", RELEASE: "success"}}}
    started = time.monotonic()
    event = first_event(trigger(1), [back] * 20, delay=0.05)
    assert event["decision"] == plan.GATE_GO and "baked" in event["message"]
    assert time.monotonic() - started >= 0.3
    assert first_event(trigger(1), [back] * 3, delay=0.01) is None, "no go before the bake time has passed"


def test_the_shared_poll_is_fast_while_hosts_move_and_backs_off_while_nothing_does_unless_a_wait_is_timed():
    from gantry.triggers.batch_gate import FAST_TICK, SLOW_TICK, TIMED_TICK, next_tick

    running = {0: {STAGE: "success", RELEASE: "running"}, 1: {STAGE: "success", RELEASE: "deferred"}}
    assert next_tick(2.0, running) == FAST_TICK
    idle = {0: {STAGE: "success", RELEASE: "awaiting_input"}, 1: {STAGE: "success", RELEASE: "deferred"}}
    ticks = [FAST_TICK]
    for _ in range(8):
        ticks.append(next_tick(ticks[-1], idle))
    assert ticks == sorted(ticks) and ticks[-1] == SLOW_TICK
    # A rollout that bakes or analyses between batches: its leaders' waits end on a tick.
    assert next_tick(SLOW_TICK, idle, timed=True) == TIMED_TICK < SLOW_TICK


def test_with_an_analysis_the_leader_waits_its_intervals_and_says_since_when_and_the_others_wait_for_it():
    records = plan.assign_batches(hosts(3), plan.parse_batch_plan("1, 100%", 3), bake_seconds=0.0,
                                  analysis_seconds=0.3, analysis="analysis of the previous batch")
    back = {"records": records, "states": {0: {STAGE: "success", RELEASE: "success"}}}
    before = time.time()
    assert first_event(trigger(1), [back] * 3, delay=0.01) is None, "no go before the intervals have ended"
    event = first_event(trigger(1), [back] * 20, delay=0.05)
    assert event["decision"] == plan.GATE_GO and "measured for" in event["message"]
    assert before <= event["analysis_since"] <= before + 0.2
    # The other host of the batch follows the leader, whose analysis decides for the batch.
    assert first_event(trigger(2), [back] * 3) is None
    leader_done = {"records": records, "states": {0: {STAGE: "success", RELEASE: "success"},
                                                  1: {STAGE: "success", RELEASE: "success"}}}
    assert first_event(trigger(2), [leader_done])["decision"] == plan.GATE_GO
    leader_failed = {"records": records, "states": {0: {STAGE: "success", RELEASE: "success"},
                                                    1: {STAGE: "success", RELEASE: "failed"}}}
    assert first_event(trigger(2), [leader_failed])["decision"] == plan.GATE_FAIL
