"""Bad trigger params and bad rollout requests: refused by the trigger form's JSON schema (a 400
before any run starts), and by the plain-Python plan functions the run calls before any host, with
the same rules, so a value the form lets through is one the run accepts."""
from pathlib import Path

import pytest
from airflow.sdk.definitions.param import ParamValidationError

from gantry import params, plan
from gantry.config import parse_config
from gantry.plan import Host, PlanError

APP = {"package": "demo-{version}.tar.gz", "install_root": "/srv/demo", "port": 9000,
       "start_command": "bin/start.sh", "stop_command": "bin/stop.sh", "pid_file": "/srv/demo/app.pid"}
CONFIG = parse_config({"apps": {"demo": APP},
                       "environments": {"prod": {"approval": True, "approval_timeout_minutes": 30}}}, Path("."))


def form(name):
    """A fresh copy of one param of prod's promotion form (resolving a Param keeps its value)."""
    return params.promotion_params(CONFIG, CONFIG.environments["prod"])[name]


@pytest.mark.parametrize("name, value, message", [
    ("app", "nope", "is not one of"),
    ("version", "1.1.0; rm -rf /", "does not match"),
    ("version", "$(reboot)", "does not match"),
    ("version", "1.1.0\n", "does not match"),
    ("version", "../1.0", "does not match"),
    ("version", "1..2", "does not match"),
    ("version", "", "does not match"),
    ("version", "1" * 65, "does not match"),
    ("hosts", ["a b"], "does not match"),
    ("hosts", ["web-1;reboot"], "does not match"),
    ("hosts", ["web-1\n"], "does not match"),
    ("hosts", ["web-1", "web-1"], "has non-unique elements"),
    ("hosts", "web-1", "is not of type 'array'"),
    ("batches", "0", "does not match"),
    ("batches", "150%", "does not match"),
    ("batches", "0%", "does not match"),
    ("batches", "100.5%", "does not match"),
    ("batches", "-1", "does not match"),
    ("batches", "05", "does not match"),
    ("batches", "1, , 100%", "does not match"),
    ("batches", "1, 25%,", "does not match"),
    ("batches", "1; reboot", "does not match"),
    ("batches", "", "does not match"),
    ("batches", 2, "is not of type"),
    ("failure_threshold", "0", "does not match"),
    ("failure_threshold", "101%", "does not match"),
    ("failure_threshold", "2.5", "does not match"),
    ("bake_seconds", -1, "is less than the minimum of 0"),
    ("bake_seconds", 86401, "is greater than the maximum of 86400"),
    ("bake_seconds", "10", "is not of type"),
    ("on_threshold", "stop", "is not one of"),
    ("confirm_batches", "yes", "is not of type"),
    ("analysis", "yes", "is not of type"),
    ("analysis", 1, "is not of type"),
    ("emergency_reason", "hotfix", "is too short"),
    ("emergency_reason", " " * 12, "does not match"),
    ("emergency_reason", "x" * 501, "is too long"),
    ("approval_timeout_minutes", 0, "is less than or equal to the minimum of 0"),
    ("approval_timeout_minutes", -5, "is less than or equal to the minimum of 0"),
    ("approval_timeout_minutes", 31, "is greater than the maximum of 30"),
    ("approval_timeout_minutes", "soon", "is not of type"),
    ("dry_run", "yes", "is not of type 'boolean'"),
    ("queue_id", 0, "is less than the minimum of 1"),
])
def test_bad_trigger_params_are_refused_by_the_form(name, value, message):
    """The schema Airflow checks when a run is triggered: a refusal here is the API's 400."""
    with pytest.raises(ParamValidationError, match=message):
        form(name).resolve(value)


@pytest.mark.parametrize("name, value", [
    ("version", "1.1.0"), ("version", "2024.06.01-rc1+build.7"),
    ("hosts", []), ("hosts", ["web-1", "web-2"]),
    *[("batches", v) for v in (None, "1", "2", "1, 25%, 100%", "1, 10%, 50%, 100%", "0.5%", "100%",
                               " 1 ,50% ", "12.5%")],
    *[("failure_threshold", v) for v in (None, "1", "3", "1%", "0.5%", "100%")],
    ("bake_seconds", 0), ("bake_seconds", None),
    ("analysis", None), ("analysis", True), ("analysis", False),
    ("emergency_reason", "payment outage, INC-4711"), ("emergency_reason", None),
    ("approval_timeout_minutes", 30), ("approval_timeout_minutes", 0.5), ("approval_timeout_minutes", None),
])
def test_good_trigger_params_pass_the_form(name, value):
    assert form(name).resolve(value) == value


@pytest.mark.parametrize("spec", ["1", "2", "1, 25%, 100%", "1, 10%, 50%, 100%", "0.5%", "100%", "12.5%",
                                  "1, 50%", "5, 10%"])
def test_the_form_and_plan_agree_on_good_plans(spec):
    assert form("batches").resolve(spec) == spec
    assert plan.validate_batch_plan(spec) == spec
    assert plan.parse_batch_plan(spec, 200)


@pytest.mark.parametrize("spec, message", [
    ("0", "batch size '0' is not a count of hosts"),
    (0, "batch size 0 is not a count of hosts"),
    ("150%", r"batch size '150%' is not a count of hosts \(1, 2, ...\) or a percentage in \(0%, 100%\]"),
    ("0%", "batch size '0%' is not"),
    ("0.0%", "batch size '0.0%' is not"),
    ("05", "batch size '05' is not"),
    ("1.5", "batch size '1.5' is not"),
    ("1, , 100%", "has an empty step"),
    ("1, 25%,", "has an empty step"),
    ("1, 0%, 100%", "batch step '0%' is not"),
    ("1, 150%", "batch step '150%' is not"),
    ([], "an empty batch plan"),
    (True, "batch size True is not"),
])
def test_bad_batch_plans_are_refused_by_plan_with_a_clear_message(spec, message):
    """What a run gets when a plan reaches it without the form (the config, a direct call)."""
    with pytest.raises(PlanError, match=message):
        plan.parse_batch_plan(spec, 20)
    with pytest.raises(PlanError, match=message):
        plan.validate_batch_plan(spec)
    if isinstance(spec, str):
        with pytest.raises(ParamValidationError, match="does not match"):
            form("batches").resolve(spec)


@pytest.mark.parametrize("spec, hosts", [("50%, 25%", 20), ("5, 2", 20), ("5, 10%", 20)])
def test_shrinking_plans_are_refused_before_any_host(spec, hosts):
    """Counts or percentages that shrink among themselves are wrong on any fleet (validate_batch_plan,
    at config load); a count against a percentage only on some (parse_batch_plan, at collect_hosts)."""
    with pytest.raises(PlanError, match="must not shrink"):
        plan.parse_batch_plan(spec, hosts)
    if spec == "5, 10%":
        assert plan.validate_batch_plan(spec) == spec  # 10% of 200 hosts is 20: fine there
        assert [len(b) for b in plan.parse_batch_plan(spec, 200)] == [5, 15, 180]


def test_percentages_round_up_exactly():
    assert [len(b) for b in plan.parse_batch_plan("0.5%", 1000)][:2] == [5, 5]
    assert plan.failure_threshold("33.5%", 3) == 2  # 1.005 hosts: a float product would say 1
    assert plan.failure_threshold("0.5%", 3) == 1   # at least one host


@pytest.mark.parametrize("spec", ["0", "0%", "101%", "x", "-1", "2.5"])
def test_bad_failure_thresholds_and_max_unavailable_are_refused(spec):
    with pytest.raises(PlanError, match="is not a count of hosts"):
        plan.failure_threshold(spec, 10)
    with pytest.raises(PlanError, match="is not a count of hosts"):
        plan.check_plan(plan.parse_batch_plan("1", 10), 10, spec)


@pytest.mark.parametrize("version", ["1.1.0\n", "1..2", "1.1.0; rm -rf /", 110, None])
def test_bad_versions_are_refused_by_plan(version):
    with pytest.raises(PlanError, match="no spaces or shell metacharacters"):
        plan.validate_version(version)


# ---------------------------------------------------------------- CMDB records and host lists
def hosts(n):
    return [Host(f"web-{i}", f"10.0.0.{i + 1}", 22) for i in range(n)]


@pytest.mark.parametrize("record, message", [
    ({"name": "web-1; reboot", "address": "10.0.0.1"}, "is not a valid host name"),
    ({"name": "$(reboot)", "address": "10.0.0.1"}, "is not a valid host name"),
    ({"name": "web`id`", "address": "10.0.0.1"}, "is not a valid host name"),
    ({"name": "web-1\n", "address": "10.0.0.1"}, "is not a valid host name"),
    ({"name": "-oProxyCommand=x", "address": "10.0.0.1"}, "is not a valid host name"),
    ({"name": ["web-1"], "address": "10.0.0.1"}, "is not a valid host name"),
    ({"name": "web-1", "address": "10.0.0.1; reboot"}, "address '10.0.0.1; reboot' is not an IP address"),
    ({"name": "web-1", "address": "-oProxyCommand=x"}, "is not an IP address or a DNS name"),
    ({"name": "web-1", "address": "10.0.0.1", "ssh_port": "22; reboot"}, "ssh_port '22; reboot' is not a TCP port"),
    ({"name": "web-1", "address": "10.0.0.1", "ssh_port": 0}, "ssh_port 0 is not a TCP port"),
    ({"name": "web-1", "address": "10.0.0.1", "ssh_port": 70000}, "ssh_port 70000 is not a TCP port"),
    ({"name": "web-1", "address": "10.0.0.1", "ssh_port": True}, "ssh_port True is not a TCP port"),
    ({"name": "web-1"}, "has no address"),
    ({"address": "10.0.0.1"}, "has no name"),
    ("web-1", "is not a mapping of name, address and ssh_port"),
])
def test_bad_cmdb_records_are_refused(record, message):
    with pytest.raises(PlanError, match=message):
        Host.from_record(record)


def test_good_cmdb_records_pass():
    assert Host.from_record({"name": "web-1", "address": "fd00::1", "ssh_port": "2222"}) == Host("web-1", "fd00::1",
                                                                                                 2222)
    assert Host.from_record({"name": "web-1", "address": "web-1.example.com"}).ssh_port == 22


def test_an_empty_host_list_is_refused():
    with pytest.raises(PlanError, match="the CMDB returned no hosts for this app and environment"):
        plan.select_hosts([], None)


def test_a_host_listed_twice_is_refused():
    with pytest.raises(PlanError, match=r"the CMDB lists a host twice: \['web-0'\]"):
        plan.select_hosts(hosts(3) + hosts(1), None)


def test_one_instance_under_two_names_is_refused():
    twin = Host("web-9", "10.0.0.1", 22)
    with pytest.raises(PlanError, match=r"the same address under two host names: \['10.0.0.1:22'\]"):
        plan.select_hosts(hosts(3) + [twin], None)
    assert len(plan.select_hosts(hosts(3) + [Host("web-9", "10.0.0.1", 2222)], None)) == 4  # another sshd


@pytest.mark.parametrize("subset, message", [
    (["web-1", "ghost-9"], r"hosts not in the CMDB for this app/environment: \['ghost-9'\]"),
    ("web-1", "hosts must be a list of host names, not the text 'web-1'"),
])
def test_a_bad_host_subset_is_refused(subset, message):
    with pytest.raises(PlanError, match=message):
        plan.select_hosts(hosts(3), subset)
