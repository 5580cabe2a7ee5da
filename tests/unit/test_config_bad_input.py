"""Every mistake in config/gantry.yaml is a ConfigError naming the file and the key, raised when the
file is loaded: at DAG parse, so no run of a misconfigured environment can start."""
import copy
from pathlib import Path

import pytest
import yaml

from gantry.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[2]
APP = {"package": "demo-{version}.tar.gz", "install_root": "/srv/demo", "port": 9000,
       "start_command": "bin/start.sh", "stop_command": "bin/stop.sh", "pid_file": "/srv/demo/app.pid",
       "timeouts": {"startup": 15, "drain": 20}, "migrations": {"path": "migrations"}}
WINDOW = {"timezone": "Europe/Berlin", "days": ["mon", "tue"], "hours": ["10:00-16:00"],
          "freeze": ["2026-12-24..2026-12-26"], "outside": "wait"}
VALID = {"apps": {"demo": APP},
         "environments": {"dev": {"batches": "1", "auto_promote": True, "promote_to": "test"},
                          "test": {"upstream": "dev", "batches": "1, 25%, 100%", "max_unavailable": "50%",
                                   "failure_threshold": "0.5%", "promote_to": "prod"},
                          "prod": {"upstream": "test", "window": WINDOW, "approval": True, "approvers": ["alice"]}}}


def write(tmp_path, raw, name="gantry.yaml"):
    path = tmp_path / name
    path.write_text(raw if isinstance(raw, str) else yaml.safe_dump(raw))
    return path


def changed(path, value):
    """VALID with the key at ``path`` (dotted) set to ``value``, or removed when value is DELETE."""
    raw = copy.deepcopy(VALID)
    *parents, last = path.split(".")
    node = raw
    for key in parents:
        node = node[key]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return raw


DELETE = object()


def test_the_valid_example_and_the_repository_config_load(tmp_path):
    cfg = load_config(write(tmp_path, VALID))
    assert cfg.environment("test").failure_threshold == "0.5%"
    assert load_config(REPO / "config" / "gantry.yaml").environment("prod").window["outside"] == "wait"


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match=f"{tmp_path / 'nope.yaml'}: no such configuration file"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize("text, message", [
    ("apps: [demo\nenvironments: {}\n", "not valid YAML"),          # unclosed flow sequence
    ("apps:\n  demo:\n\tport: 1\n", "not valid YAML"),              # a tab indents
    ("- demo\n- dev\n", "top level: expected a mapping"),
    ("", "needs at least one app"),
])
def test_malformed_yaml_is_refused_with_the_file_and_position(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as err:
        load_config(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("key, value, message", [
    ("enviroments", {}, "top level: unknown key 'enviroments'; did you mean 'environments'"),
    ("apps.demo.start_comand", "x", "apps.demo: unknown key 'start_comand'; did you mean 'start_command'"),
    ("apps.demo.timeouts.drian", 5, "apps.demo.timeouts: unknown key 'drian'; did you mean 'drain'"),
    ("apps.demo.migrations.conection", "x", "apps.demo.migrations: unknown key 'conection'"),
    ("environments.test.batchs", "2", "environments.test: unknown key 'batchs'; did you mean 'batches'"),
    ("environments.prod.window.hour", ["10:00-12:00"], "environments.prod.window: unknown key 'hour'"),
    ("environments.dev.colour", "blue", "environments.dev: unknown key 'colour'; known keys: "),
])
def test_unknown_keys_are_refused_at_every_level(tmp_path, key, value, message):
    path = write(tmp_path, changed(key, value))
    with pytest.raises(ConfigError, match=message) as err:
        load_config(path)
    assert str(err.value).startswith(f"{path}: ")


@pytest.mark.parametrize("key, value, message", [
    ("apps.demo.start_command", DELETE, "apps.demo: start_command is missing: the command"),
    ("apps.demo.stop_command", DELETE, "apps.demo: stop_command is missing: the command"),
    ("apps.demo.stop_command", "  ", "apps.demo.stop_command is empty"),
    ("apps.demo.start_command", None, r"apps.demo.start_command: None is not text"),
    ("apps.demo.pid_file", DELETE, "apps.demo: pid_file is missing"),
    ("apps.demo.port", "9000", "apps.demo.port: '9000' is not a whole number"),
    ("apps.demo.port", 70000, "apps.demo.port: 70000 is not a TCP port"),
    ("apps.demo.timeouts.startup", 0, "apps.demo.timeouts.startup: 0 must be above 0"),
    ("apps.demo.package", "demo-{ver}.tar.gz", r"apps.demo.package: .* may use only \{version\}"),
    ("apps.demo.package", "demo-{version}.zip", "is not a .tar.gz, .jar or .war"),
    ("apps.demo.install_root", "srv/demo", "install_root must be an absolute path"),
    ("apps.demo.migrations.connection", "db_{application}", r"may use only \{app\}, \{env\}"),
    ("environments.prod.queue", "prod zone", "environments.prod.queue 'prod zone': a queue name is letters"),
    ("environments.prod.queue", 7, "environments.prod.queue: 7 is not text"),
])
def test_an_app_without_its_commands_or_with_wrong_values_is_refused(tmp_path, key, value, message):
    path = write(tmp_path, changed(key, value))
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_an_app_or_environment_name_must_be_usable_in_dag_ids(tmp_path):
    raw = changed("apps", {"de mo": APP})
    with pytest.raises(ConfigError, match="apps: name 'de mo' must be"):
        load_config(write(tmp_path, raw))


@pytest.mark.parametrize("key, value, message", [
    ("environments.test.batches", "0", "environments.test: batch size '0' is not a count of hosts"),
    ("environments.test.batches", 0, "environments.test: batch size '0' is not a count of hosts"),
    ("environments.test.batches", "150%", "batch size '150%' is not a count"),
    ("environments.test.batches", "1, , 100%", "has an empty step"),
    ("environments.test.batches", "50%, 25%", "must not shrink"),
    ("environments.test.max_unavailable", "0", "max_unavailable '0' is not a count"),
    ("environments.test.failure_threshold", "101%", "failure_threshold '101%' is not a count"),
    ("environments.test.on_threshold", "stop", "on_threshold must be 'halt' or 'pause'"),
    ("environments.test.cmdb", "ldap", "environments.test.cmdb must be one of inventory, http"),
    ("environments.test.retries", -1, "environments.test.retries: -1 must be at least 0"),
    ("environments.test.bake_seconds", "10s", "environments.test.bake_seconds: '10s' is not a number"),
    ("environments.prod.approvers", "alice", "environments.prod.approvers: 'alice' is not a list of text"),
    ("environments.prod.approval", "yes", "environments.prod.approval: 'yes' is not true or false"),
    ("environments.prod.approval_timeout_minutes", 0, "approval_timeout_minutes: 0 must be above 0"),
])
def test_policy_values_are_refused_as_the_trigger_form_refuses_them(tmp_path, key, value, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, changed(key, value)))


@pytest.mark.parametrize("key, value, message", [
    ("environments.test.upstream", "qa", "environments.test.upstream: unknown environment 'qa'; configured: "
                                         "dev, prod, test"),
    ("environments.test.promote_to", "staging", "environments.test.promote_to: unknown environment 'staging'"),
    ("environments.prod.promote_to", "dev", "promote_to forms a cycle: dev -> test -> prod -> dev"),
    ("environments.dev.upstream", "prod", "upstream forms a cycle: dev -> prod -> test -> dev"),
    ("environments.test.upstream", "test", "upstream forms a cycle: test -> test"),
    ("environments.test.auto_promote", True, None),  # test promotes to prod: valid
    ("environments.prod.auto_promote", True, "auto_promote needs promote_to"),
    ("environments.test.scheduled_release", True, "scheduled_release needs a window"),
])
def test_an_environment_chain_with_a_cycle_or_an_unknown_name_is_refused(tmp_path, key, value, message):
    path = write(tmp_path, changed(key, value))
    if message is None:
        load_config(path)
        return
    with pytest.raises(ConfigError, match=message):
        load_config(path)


@pytest.mark.parametrize("key, value, message", [
    ("hours", ["25:00-26:00"], "'25:00' is not a time like 22:00"),
    ("hours", ["10:00"], r"hours: '10:00' is not a time range like \"10:00-16:00\""),
    ("hours", "10:00-16:00", "hours: expected a list"),
    ("hours", [], "hours is empty: the window would never open"),
    ("days", ["mon", "funday"], "days: 'funday' is not a weekday"),
    ("days", "mon", "days: expected a list"),
    ("days", [], "days is empty"),
    ("timezone", "Mars/Olympus_Mons", "unknown time zone 'Mars/Olympus_Mons'"),
    ("freeze", ["2026-13-01"], "'2026-13-01' is not a date like 2026-12-24"),
    ("outside", "later", "outside must be 'wait' or 'refuse'"),
])
def test_a_malformed_window_is_refused(tmp_path, key, value, message):
    with pytest.raises(ConfigError, match=message) as err:
        load_config(write(tmp_path, changed(f"environments.prod.window.{key}", value)))
    assert "environments.prod.window" in str(err.value)


def test_a_window_that_is_not_a_mapping_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="environments.prod.window: 'always' is not a mapping or empty"):
        load_config(write(tmp_path, changed("environments.prod.window", "always")))


@pytest.mark.parametrize("key, value, message", [
    ("environments.prod.access", ["ReleaseManager"], "environments.prod.access: expected a mapping of keys"),
    ("environments.prod.access", {"relase": ["ReleaseManager"]},
     "environments.prod.access: unknown key 'relase'; did you mean 'release'"),
    ("environments.prod.access", {"release": "ReleaseManager"},
     "environments.prod.access.release: expected a list of role names or a mapping with roles and users"),
    ("environments.prod.access", {"release": {"role": ["ReleaseManager"]}},
     "environments.prod.access.release: unknown key 'role'; did you mean 'roles'"),
    ("environments.prod.access", {"release": {"roles": "ReleaseManager"}},
     "environments.prod.access.release.roles: expected a list of names, got 'ReleaseManager'"),
    ("environments.prod.access", {"view": ["ReleaseViewer", ""]},
     "environments.prod.access.view.roles: '' is not a name"),
    ("environments.prod.access", {"rollback": ["OnCall", 7]},
     "environments.prod.access.rollback.roles: 7 is not a name"),
    ("environments.prod.access", {"release": {"roles": ["ReleaseManager"], "users": ["rita"]}},
     "environments.prod.access.release.users: Airflow grants release to roles only"),
    ("environments.prod.access", {"approve": {"users": ["bob"]}},
     "environments.prod: approvers and access.approve.users both name who may approve; keep one"),
])
def test_a_malformed_access_section_is_refused_naming_the_key(tmp_path, key, value, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, changed(key, value)))


def test_approvers_and_access_approve_users_are_one_list(tmp_path):
    """VALID's prod names approvers: they become access.approve.users; given only there, they
    become approvers."""
    assert load_config(write(tmp_path, VALID)).environment("prod").access.approve.users == ("alice",)
    raw = changed("environments.prod.approvers", DELETE)
    raw["environments"]["prod"]["access"] = {"approve": {"roles": ["Approver"], "users": ["bob", "bob"]}}
    prod = load_config(write(tmp_path, raw)).environment("prod")
    assert prod.approvers == ("bob",) and prod.access.approve.roles == ("Approver",)


def test_a_bad_config_is_a_dag_import_error_naming_the_key(tmp_path, monkeypatch):
    """What an operator sees: the DAG files fail to import, so no run can start from the bad file."""
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("GANTRY_CONFIG", str(write(tmp_path, changed("environments.test.batches", "0"))))
    bag = DagBag(str(REPO / "dags" / "gantry_promote.py"))
    assert not bag.dags
    errors = "\n".join(bag.import_errors.values())
    assert "environments.test: batch size '0' is not a count of hosts" in errors
