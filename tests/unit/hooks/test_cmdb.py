"""What each CMDB answer gets: hosts, or a clear error before any host is touched. A CMDB that
answers garbage fails the run at once (CmdbDataError, a PlanError: collect_hosts fails without
retries); one that is down, slow or failing with a server error is retried (CmdbUnavailable).
The HTTP CMDB is a real server on 127.0.0.1, started by each test."""
import json
import threading
import time

import pytest
import yaml
from demo_process import free_port
from gantry import plan
from gantry.hooks.cmdb import (
    CmdbDataError,
    CmdbUnavailable,
    HttpCmdbHook,
    InventoryFileCmdb,
)
from local_http import answering

WEB_1 = {"name": "web-1", "address": "10.0.0.1", "ssh_port": 22}


def inventory(tmp_path, data):
    path = tmp_path / "inventory.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return InventoryFileCmdb(path)


def test_the_inventory_lists_hosts_and_none_where_it_lists_nothing(tmp_path):
    cmdb = inventory(tmp_path, {"environments": {"test": {"demo": [WEB_1]}}})
    assert [h.name for h in cmdb.hosts("demo", "test")] == ["web-1"]
    assert cmdb.hosts("demo", "prod") == [] and cmdb.hosts("other", "test") == []


def test_an_empty_host_list_is_refused_before_any_host(tmp_path):
    listed = inventory(tmp_path, {"environments": {"test": {"demo": []}}}).hosts("demo", "test")
    with pytest.raises(plan.PlanError, match="the CMDB returned no hosts for this app and environment"):
        plan.select_hosts(listed, None)


def test_duplicate_names_in_the_inventory_are_refused(tmp_path):
    listed = inventory(tmp_path, {"environments": {"test": {"demo": [WEB_1, {**WEB_1, "address": "10.0.0.2"}]}}})
    with pytest.raises(plan.PlanError, match=r"the CMDB lists a host twice: \['web-1'\]"):
        plan.select_hosts(listed.hosts("demo", "test"), None)


@pytest.mark.parametrize("record, message", [
    ({**WEB_1, "name": "web-1; reboot"}, "host record 2: CMDB host name 'web-1; reboot' is not a valid host name"),
    ({**WEB_1, "name": "$(reboot)"}, "host record 2: CMDB host name '\\$\\(reboot\\)' is not a valid host name"),
    ({**WEB_1, "address": "10.0.0.1 && reboot"}, "host record 2: CMDB host web-1: address"),
])
def test_names_and_addresses_with_shell_metacharacters_are_refused(tmp_path, record, message):
    cmdb = inventory(tmp_path, {"environments": {"test": {"demo": [{**WEB_1, "name": "web-0",
                                                                      "address": "10.0.0.9"}, record]}}})
    with pytest.raises(CmdbDataError, match=message) as err:
        cmdb.hosts("demo", "test")
    assert f"CMDB inventory {tmp_path / 'inventory.yaml'}, environments.test.demo" in str(err.value)


@pytest.mark.parametrize("text, message", [
    (None, "does not exist"),
    ("environments: {test: [\n", "is not valid YAML"),
    ("- web-1\n", "is not shaped environments: {<env>: {<app>: "),
    ("environments:\n  test: [web-1]\n", "environments.test is not a mapping of apps to host lists"),
    ("environments:\n  test:\n    demo: web-1\n", "expected a list of host records, got str 'web-1'"),
])
def test_an_inventory_that_is_missing_or_malformed_is_refused(tmp_path, text, message):
    cmdb = inventory(tmp_path, text) if text is not None else InventoryFileCmdb(tmp_path / "missing.yaml")
    with pytest.raises(CmdbDataError, match=message):
        cmdb.hosts("demo", "test")


# ---------------------------------------------------------------- HTTP CMDB
def test_the_http_cmdb_lists_hosts(serve):
    serve(answering(200, json.dumps({"hosts": [WEB_1, {**WEB_1, "name": "web-2", "address": "10.0.0.2"}]})),
          "gantry_cmdb")
    assert [h.name for h in HttpCmdbHook(timeout=2).hosts("demo", "test")] == ["web-1", "web-2"]


def test_an_http_cmdb_that_is_down_is_retried_with_a_clear_message(monkeypatch):
    port = free_port()  # nothing listens on it
    monkeypatch.setenv("AIRFLOW_CONN_GANTRY_CMDB", json.dumps(
        {"conn_type": "http", "host": "127.0.0.1", "port": port, "schema": "http"}))
    with pytest.raises(CmdbUnavailable, match=rf"the HTTP CMDB \(http://127.0.0.1:{port}/api/v1/hosts\?app=demo"
                                              r"&env=test\) cannot be reached .*Connection refused.*retried"):
        HttpCmdbHook(timeout=2).hosts("demo", "test")


def test_a_slow_http_cmdb_times_out_within_its_bound(serve):
    release = threading.Event()
    serve(answering(200, json.dumps({"hosts": [WEB_1]}), delay=release), "gantry_cmdb")
    started = time.monotonic()
    try:
        with pytest.raises(CmdbUnavailable, match="did not answer within 0.3 s; the task is retried"):
            HttpCmdbHook(timeout=0.3).hosts("demo", "test")
    finally:
        release.set()
    assert time.monotonic() - started < 3


@pytest.mark.parametrize("status, body, content_type, error, message", [
    (503, "upstream down", "text/plain", CmdbUnavailable, "answered HTTP 503 Service Unavailable; the task is retried"),
    (404, "no such API", "text/plain", CmdbDataError, "answered HTTP 404 Not Found; check the gantry_cmdb Connection"),
    (200, "<html>maintenance</html>", "text/html", CmdbDataError, "with something that is not JSON: '<html>"),
    (200, json.dumps([WEB_1]), "application/json", CmdbDataError, r"without a \"hosts\" list: \[\{'name'"),
    (200, json.dumps({"hosts": "web-1"}), "application/json", CmdbDataError, "expected a list of host records"),
    (200, json.dumps({"hosts": [{"name": "web-1"}]}), "application/json", CmdbDataError,
     "host record 1: CMDB record .* has no address"),
    (200, json.dumps({"hosts": [{**WEB_1, "name": "web 1;id"}]}), "application/json", CmdbDataError,
     "host record 1: CMDB host name 'web 1;id' is not a valid host name"),
])
def test_an_http_cmdb_answering_garbage_is_refused(serve, status, body, content_type, error, message):
    serve(answering(status, body, content_type), "gantry_cmdb")
    with pytest.raises(error, match=message) as err:
        HttpCmdbHook(timeout=2).hosts("demo", "test")
    assert "the HTTP CMDB (http://127.0.0.1:" in str(err.value)


def test_an_http_cmdb_answering_no_hosts_or_duplicates_is_refused_by_the_plan(serve):
    serve(answering(200, json.dumps({"hosts": []})), "gantry_cmdb")
    with pytest.raises(plan.PlanError, match="no hosts"):
        plan.select_hosts(HttpCmdbHook(timeout=2).hosts("demo", "test"), None)
