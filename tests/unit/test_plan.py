import pytest

from gantry import plan
from gantry.plan import Host, PlanError


@pytest.mark.parametrize("v", ["1.0.0", "2.0.0-rc.1", "1.2.3+build.7", "20261126_1"])
def test_valid_versions(v):
    assert plan.validate_version(v) == v


@pytest.mark.parametrize("v", ["", "-1", "1.0;rm", "$(x)", "1 0", "../1", "1..2", "a/b", "x" * 65, None])
def test_invalid_versions_are_refused(v):
    with pytest.raises(PlanError):
        plan.validate_version(v)


def hosts(n):
    return [Host(f"h{i}", f"127.0.0.{10 + i}", 2222) for i in range(n)]


def test_select_hosts_keeps_cmdb_order_and_refuses_unknown_names():
    hs = hosts(4)
    assert [h.name for h in plan.select_hosts(hs, ["h3", "h1"])] == ["h1", "h3"]
    assert plan.select_hosts(hs, []) == hs
    with pytest.raises(PlanError, match="ghost"):
        plan.select_hosts(hs, ["h1", "ghost"])
    with pytest.raises(PlanError, match="no hosts"):
        plan.select_hosts([], None)
    with pytest.raises(PlanError, match="twice"):
        plan.select_hosts(hs + hs[:1], None)


@pytest.mark.parametrize("n, size, expected", [
    (5, 1, [[0], [1], [2], [3], [4]]),
    (5, 2, [[0, 1], [2, 3], [4]]),
    (3, 10, [[0, 1, 2]]),
    (0, 1, []),
])
def test_plan_batches(n, size, expected):
    assert plan.plan_batches(n, size) == expected


def test_batch_size_must_be_positive():
    with pytest.raises(PlanError):
        plan.plan_batches(3, 0)


def test_assign_batches_links_each_batch_to_the_previous_one():
    records = plan.assign_batches(hosts(5), plan.plan_batches(5, 2))
    assert [r["batch"] for r in records] == [0, 0, 1, 1, 2]
    assert [r["after"] for r in records] == [[], [], [0, 1], [0, 1], [2, 3]]
    assert [r["batch_start"] for r in records] == [0, 0, 2, 2, 4]
    assert {r["batches"] for r in records} == {3}


FINAL = "g.bring_online"


def test_gate_waits_until_every_previous_host_is_done():
    states = {0: {FINAL: "success"}, 1: {FINAL: "running"}, 2: {"g.wait_for_batch": "deferred"}}
    assert plan.gate_decision(states, FINAL, [0, 1], 2)[0] == plan.GATE_WAIT
    states[1][FINAL] = "success"
    assert plan.gate_decision(states, FINAL, [0, 1], 2)[0] == plan.GATE_GO


def test_gate_accepts_a_skipped_unhealthy_host():
    states = {0: {"g.precheck": "skipped", "g.restart_app": "skipped", FINAL: "success"}}
    assert plan.gate_decision(states, FINAL, [0], 1)[0] == plan.GATE_GO


def test_gate_fails_at_once_on_a_failure_in_any_earlier_batch():
    # Host 0 failed and is still rolling back; batch 2 (index 2) need not wait for it.
    states = {0: {"g.await_healthy": "failed", FINAL: "running"}, 1: {"g.wait_for_batch": "deferred"}}
    decision, message = plan.gate_decision(states, FINAL, [1], 2)
    assert decision == plan.GATE_FAIL and "[0]" in message


def test_gate_ignores_failures_in_its_own_and_later_batches():
    states = {0: {FINAL: "success"}, 1: {"g.stage_package": "failed"}, 2: {"g.precheck": "failed"}}
    assert plan.gate_decision(states, FINAL, [0], 1)[0] == plan.GATE_GO


def test_gate_treats_upstream_failed_as_failure():
    states = {0: {"g.wait_for_batch": "failed", "g.precheck": "upstream_failed", FINAL: "success"}}
    assert plan.gate_decision(states, FINAL, [0], 1)[0] == plan.GATE_FAIL


def test_batches_must_be_contiguous():
    with pytest.raises(PlanError):
        plan.assign_batches(hosts(3), [[0, 2], [1]])


def test_task_sdk_states_are_grouped_by_map_index():
    from gantry.triggers.batch_gate import group_states

    raw = {"host_release.precheck_0": "success", "host_release.bring_online_0": None,
           "host_release.precheck_12": "failed"}
    assert group_states(raw) == {0: {"host_release.precheck": "success", "host_release.bring_online": None},
                                 12: {"host_release.precheck": "failed"}}


def test_run_verdict():
    ok, summary = plan.run_verdict([{"outcome": "released"}, {"outcome": "skipped_unhealthy"}])
    assert ok and summary == "released=1, skipped_unhealthy=1"
    assert not plan.run_verdict([{"outcome": "released"}, {"outcome": "rolled_back"}])[0]
    assert not plan.run_verdict([])[0]


def test_render_plan_lists_every_host_with_its_batch():
    records = plan.assign_batches(hosts(3), plan.plan_batches(3, 2))
    text = plan.render_plan("demo", "test", "1.1.0", records, ["step one"])
    assert "3 host(s), 2 batch(es)" in text
    assert "batch 2: h2 (127.0.0.12:2222), after map index(es) [0, 1]" in text
    assert text.count("1. step one") == 3
