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


FINAL, STAGE = "g.offline_restart_online", "g.precheck_and_stage"


def test_gate_waits_until_every_previous_host_is_done():
    states = {0: {FINAL: "success"}, 1: {FINAL: "running"}, 2: {FINAL: "deferred"}}
    assert plan.gate_decision(states, FINAL, [0, 1], 2)[0] == plan.GATE_WAIT
    states[1][FINAL] = "success"
    assert plan.gate_decision(states, FINAL, [0, 1], 2)[0] == plan.GATE_GO


def test_gate_accepts_a_skipped_unhealthy_host():
    states = {0: {STAGE: "skipped", FINAL: "skipped"}}
    assert plan.gate_decision(states, FINAL, [0], 1)[0] == plan.GATE_GO


def test_gate_fails_at_once_on_a_failure_in_any_earlier_batch():
    # Host 0 failed; batch 2 (index 2) stops at once, without waiting for host 1.
    states = {0: {STAGE: "success", FINAL: "failed"}, 1: {FINAL: "deferred"}}
    decision, message = plan.gate_decision(states, FINAL, [1], 2)
    assert decision == plan.GATE_FAIL and "[0]" in message


def test_gate_ignores_failures_in_its_own_and_later_batches():
    states = {0: {FINAL: "success"}, 1: {STAGE: "failed"}, 2: {STAGE: "failed"}}
    assert plan.gate_decision(states, FINAL, [0], 1)[0] == plan.GATE_GO


def test_gate_treats_upstream_failed_as_failure():
    states = {0: {STAGE: "failed", FINAL: "upstream_failed"}}
    assert plan.gate_decision(states, FINAL, [0], 1)[0] == plan.GATE_FAIL


def test_batches_must_be_contiguous():
    with pytest.raises(PlanError):
        plan.assign_batches(hosts(3), [[0, 2], [1]])


def test_task_sdk_states_are_grouped_by_map_index():
    from gantry.triggers.batch_gate import group_states

    raw = {"host.precheck_and_stage_0": "success", "host.offline_restart_online_0": None,
           "host.precheck_and_stage_12": "failed"}
    assert group_states(raw) == {0: {"host.precheck_and_stage": "success", "host.offline_restart_online": None},
                                 12: {"host.precheck_and_stage": "failed"}}


def _o(host, outcome):
    return {"host": host, "outcome": outcome}


def test_a_run_succeeds_only_when_every_cmdb_host_got_the_version():
    status, summary, missing = plan.run_verdict([_o("a", plan.RELEASED), _o("b", plan.RELEASED)])
    assert (status, summary, missing) == (plan.SUCCEEDED, "released=2", [])


def test_a_skipped_unhealthy_host_makes_the_run_partial_and_is_named():
    status, summary, missing = plan.run_verdict([_o("a", plan.RELEASED), _o("b", plan.SKIPPED_UNHEALTHY)])
    assert (status, summary, missing) == (plan.PARTIAL, "released=1, skipped_unhealthy=1", ["b"])


def test_a_host_subset_is_partial_even_when_every_chosen_host_was_released():
    status, _, missing = plan.run_verdict([_o("b", plan.RELEASED)], cmdb_hosts=["a", "b", "c"])
    assert (status, missing) == (plan.PARTIAL, ["a", "c"])


def test_a_run_that_released_no_host_fails():
    assert plan.run_verdict([_o("a", plan.SKIPPED_UNHEALTHY), _o("b", plan.SKIPPED_UNHEALTHY)])[0] == plan.FAILED
    assert plan.run_verdict([])[0] == plan.FAILED


def test_any_failed_host_fails_the_run():
    status, _, missing = plan.run_verdict([_o("a", plan.RELEASED), _o("b", plan.ROLLED_BACK)])
    assert (status, missing) == (plan.FAILED, ["b"])


def test_render_plan_lists_every_host_with_its_batch():
    records = plan.assign_batches(hosts(3), plan.plan_batches(3, 2))
    text = plan.render_plan("demo", "test", "1.1.0", records, ["step one"])
    assert "3 host(s), 2 batch(es)" in text
    assert "batch 2: h2 (127.0.0.12:2222), after map index(es) [0, 1]" in text
    assert text.count("1. step one") == 3


@pytest.mark.parametrize("spec, n, sizes", [
    ("2", 5, [2, 2, 1]),
    (3, 7, [3, 3, 1]),
    ("1, 10%, 50%, 100%", 20, [1, 1, 8, 10]),
    ("1, 25%, 50%, 100%", 12, [1, 2, 3, 6]),
    ("1, 50%", 10, [1, 4, 5]),            # the rest follows the last step
    (["1", "100%"], 4, [1, 3]),
    ("1, 10%, 100%", 5, [1, 4]),          # 10% of 5 rounds up to 1: the steps collapse
    ("1, 25%, 50%, 100%", 1, [1]),
    ("50%, 1", 10, None),                 # shrinking steps are a mistake
])
def test_batch_plans(spec, n, sizes):
    if sizes is None:
        with pytest.raises(PlanError, match="shrink"):
            plan.parse_batch_plan(spec, n)
        return
    batches = plan.parse_batch_plan(spec, n)
    assert [len(b) for b in batches] == sizes
    assert [i for b in batches for i in b] == list(range(n))


@pytest.mark.parametrize("spec", ["0", "-1", "x", "150%", "0%", "1, , 0"])
def test_bad_batch_steps_are_refused(spec):
    with pytest.raises(PlanError):
        plan.parse_batch_plan(spec, 10)


def test_max_unavailable_refuses_plans_that_would_exceed_it():
    batches = plan.parse_batch_plan("1, 25%, 50%, 100%", 12)  # sizes 1, 2, 3, 6
    assert plan.check_plan(batches, 12, "50%") == 6
    assert plan.check_plan(batches, 12, 6) == 6
    with pytest.raises(PlanError, match="exceeds max_unavailable"):
        plan.check_plan(batches, 12, "25%")


def test_a_plan_that_leaves_no_host_in_rotation_is_refused():
    with pytest.raises(PlanError, match="every one of the 4 hosts"):
        plan.check_plan(plan.parse_batch_plan("4", 4), 4, None)
    with pytest.raises(PlanError, match="allow every host"):
        plan.check_plan(plan.parse_batch_plan("1", 4), 4, "100%")
    assert plan.check_plan(plan.parse_batch_plan("1", 1), 1, None) == 1  # a single host has no choice


def test_failure_threshold():
    assert plan.failure_threshold(None, 10) == 1
    assert plan.failure_threshold("2", 10) == 2
    assert plan.failure_threshold("20%", 12) == 3


def test_gate_continues_below_the_failure_threshold_and_stops_at_it():
    states = {0: {STAGE: "success", FINAL: "failed"}, 1: {FINAL: "success"},
              2: {FINAL: "success"}}
    decision, message = plan.gate_decision(states, FINAL, [1, 2], 3, threshold=2)
    assert decision == plan.GATE_GO and "below the threshold" in message
    states[2] = {STAGE: "success", FINAL: "failed"}
    assert plan.gate_decision(states, FINAL, [1, 2], 3, threshold=2)[0] == plan.GATE_FAIL


def test_previous_version_from_the_release_log():
    from gantry.remote import previous_version

    log = ["2026-01-01T00:00:00Z 1.0.0", "2026-01-02T00:00:00Z 1.1.0", "2026-01-03T00:00:00Z 1.2.0"]
    assert previous_version(log, "1.2.0") == "1.1.0"
    assert previous_version(log + ["2026-01-04T00:00:00Z 1.2.0"], "1.2.0") == "1.1.0"  # restarts repeat
    assert previous_version(log[:1], "1.0.0") is None
    assert previous_version([], None) is None


def test_the_first_batch_goes_at_once_and_a_later_one_after_the_previous_batch():
    records = plan.assign_batches(hosts(4), plan.parse_batch_plan("1, 50%, 100%", 4))
    assert plan.batch_gate(records[0], {}, STAGE, FINAL)[0] == plan.GATE_GO
    states = {0: {STAGE: "success", FINAL: "running"}}
    assert plan.batch_gate(records[1], states, STAGE, FINAL)[0] == plan.GATE_WAIT
    states[0][FINAL] = "success"
    assert plan.batch_gate(records[1], states, STAGE, FINAL)[0] == plan.GATE_GO
    # Batch [2, 3] waits for host 1; without a go-ahead to ask for, both hosts go together.
    assert plan.batch_gate(records[3], states, STAGE, FINAL)[0] == plan.GATE_WAIT
    states[1] = {STAGE: "success", FINAL: "success"}
    assert plan.batch_gate(records[2], states, STAGE, FINAL)[0] == plan.GATE_GO
    assert plan.batch_gate(records[3], states, STAGE, FINAL)[0] == plan.GATE_GO


def test_followers_of_a_confirmed_batch_wait_for_their_leader():
    records = plan.assign_batches(hosts(3), plan.parse_batch_plan("1, 100%", 3), confirm=True)
    states = {0: {STAGE: "success", FINAL: "success"}, 1: {STAGE: "success", FINAL: "running"}}  # the leader asks a human
    assert plan.batch_gate(records[2], states, STAGE, FINAL)[0] == plan.GATE_WAIT
    states[1][FINAL] = "success"
    assert plan.batch_gate(records[2], states, STAGE, FINAL)[0] == plan.GATE_GO
    states[1][FINAL] = "skipped"
    assert plan.batch_gate(records[2], states, STAGE, FINAL)[0] == plan.GATE_FAIL


def test_a_rejected_batch_stops_every_later_batch_even_under_pause():
    records = plan.assign_batches(hosts(3), plan.plan_batches(3, 1), on_threshold="pause", threshold=1)
    # The leader of batch 2 was staged, then a human rejected its go-ahead (skipped).
    states = {0: {STAGE: "success", FINAL: "success"}, 1: {STAGE: "success", FINAL: "skipped"}}
    decision, message = plan.batch_gate(records[2], states, STAGE, FINAL)
    assert decision == plan.GATE_FAIL and "a human stopped" in message


def test_an_unhealthy_skipped_host_is_not_a_human_stop():
    records = plan.assign_batches(hosts(3), plan.plan_batches(3, 1))
    states = {0: {STAGE: "success", FINAL: "success"}, 1: {STAGE: "skipped", FINAL: "skipped"}}
    assert plan.batch_gate(records[2], states, STAGE, FINAL)[0] == plan.GATE_GO


def test_pause_policy_waits_for_the_batch_then_lets_a_human_decide():
    states = {0: {STAGE: "success", FINAL: "running"}}
    assert plan.gate_decision(states, FINAL, [0], 1, 1, "pause")[0] == plan.GATE_WAIT
    states[0][FINAL] = "failed"
    decision, message = plan.gate_decision(states, FINAL, [0], 1, 1, "pause")
    assert decision == plan.GATE_GO and "a human decides" in message


def test_only_batch_leaders_ask_and_only_when_the_policy_says_so():
    records = plan.assign_batches(hosts(4), plan.parse_batch_plan("1, 50%, 100%", 4), threshold=1,
                                  on_threshold="halt", confirm=True)
    # batches [0], [1], [2, 3]: hosts 1 and 2 lead their batches
    assert [plan.needs_confirmation(r, {}) is not None for r in records] == [False, True, True, False]
    quiet = [dict(r, confirm=False) for r in records]
    assert all(plan.needs_confirmation(r, {}) is None for r in quiet)
    paused = [dict(r, on_threshold="pause") for r in quiet]
    failed = {0: {STAGE: "success", FINAL: "failed"}}
    assert "failure threshold" in plan.needs_confirmation(paused[1], failed)


def test_a_host_that_could_not_be_staged_fails_the_run():
    status, summary, _ = plan.run_verdict([_o("a", plan.RELEASED), _o("b", plan.NOT_STAGED)])
    assert status == plan.FAILED and "not_staged=1" in summary


def test_the_plan_and_the_dry_run_say_which_analysis_runs_before_a_batch():
    hosts = [plan.Host(f"h{i}", f"127.0.0.{i + 1}") for i in range(3)]
    records = plan.assign_batches(hosts, plan.parse_batch_plan("1, 100%", 3), analysis_seconds=14,
                                  analysis="analysis of the previous batch (error_ratio 3 x 4s)")
    text = plan.render_plan("demo", "test", "1.1.0", records, [])
    assert text.count("before it: analysis of the previous batch (error_ratio 3 x 4s)") == 1
