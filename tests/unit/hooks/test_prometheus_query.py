"""The Prometheus query hook against a real HTTP server on 127.0.0.1 that answers with the shapes
Prometheus' HTTP API documents (https://prometheus.io/docs/prometheus/latest/querying/api/):
``{"status": "success", "data": {"resultType": ..., "result": ...}}``, and for a refused query
HTTP 400/422 with ``{"status": "error", "errorType": ..., "error": ...}``."""
import json
import math
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from demo_process import free_port
from gantry import adapters
from gantry.hooks.prometheus import (
    MetricsQueryRejected,
    MetricsUnavailable,
    PrometheusHook,
)

VECTOR = {"status": "success", "data": {"resultType": "vector", "result": [
    {"metric": {"host": "beta-demo-01", "code": "200"}, "value": [1700000000.5, "41.5"]},
    {"metric": {"host": "beta-demo-02", "code": "500"}, "value": [1700000000.5, "NaN"]}]}}


class Store:
    """A stand-in metrics store: answers every request with (status, body), records each one."""

    def __init__(self, status=200, body=VECTOR, content_type="application/json", delay=0.0):
        self.status, self.body, self.content_type, self.delay = status, body, content_type, delay
        self.requests = []
        store = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())
                store.requests.append({"path": self.path, "form": {k: v[0] for k, v in form.items()},
                                       "headers": dict(self.headers)})
                if store.delay:
                    threading.Event().wait(store.delay)
                data = store.body if isinstance(store.body, bytes) else json.dumps(store.body).encode()
                try:
                    self.send_response(store.status)
                    self.send_header("Content-Type", store.content_type)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the slow-store test's client gave up, as it should

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()


@pytest.fixture
def store(monkeypatch):
    """``store(extra=None, **answer)``: a stand-in store, with the Connection gantry_prometheus on it."""
    stores = []

    def start(extra=None, **answer):
        s = Store(**answer)
        stores.append(s)
        monkeypatch.setenv("AIRFLOW_CONN_GANTRY_PROMETHEUS", json.dumps(
            {"conn_type": "http", "host": "127.0.0.1", "port": s.server.server_port, "schema": "http",
             "extra": extra or {}}))
        return s

    yield start
    for s in stores:
        s.server.shutdown()
        s.server.server_close()


def test_an_instant_query_gives_labels_and_values(store):
    s = store()
    series = PrometheusHook(timeout=5).query('sum by (host, code) (rate(x[30s]))', at=1700000000.5)
    assert series[0] == ({"host": "beta-demo-01", "code": "200"}, 41.5)
    assert series[1][0] == {"host": "beta-demo-02", "code": "500"} and math.isnan(series[1][1])
    (request,) = s.requests
    assert request["path"] == "/api/v1/query"
    assert request["form"] == {"query": "sum by (host, code) (rate(x[30s]))", "time": "1700000000.500",
                               "timeout": "4s"}


def test_path_prefix_reaches_a_compatible_store_and_other_extras_are_headers(store):
    s = store(extra={"path_prefix": "prometheus/", "X-Scope-OrgID": "team-a"})
    PrometheusHook().query("up")
    (request,) = s.requests
    assert request["path"] == "/prometheus/api/v1/query" and "time" not in request["form"]
    assert request["headers"]["X-Scope-OrgID"] == "team-a"
    assert "path_prefix" not in {k.lower() for k in request["headers"]}


def test_a_scalar_is_one_value_without_labels(store):
    store(body={"status": "success", "data": {"resultType": "scalar", "result": [1700000000, "0.25"]}})
    assert PrometheusHook().query("scalar(x)") == [({}, 0.25)]


def test_value_is_the_single_series_or_none_when_nothing_matched_or_no_traffic(store):
    one = {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, "0.02"]}]}}
    store(body=one)
    assert PrometheusHook().value("sum(x)") == 0.02
    store(body={"status": "success", "data": {"resultType": "vector", "result": []}})
    assert PrometheusHook().value("sum(x)") is None
    store(body={"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, "NaN"]}]}})
    assert PrometheusHook().value("sum(a) / sum(b)") is None
    store()
    with pytest.raises(MetricsQueryRejected, match="gives 2 series; an analysis query must aggregate"):
        PrometheusHook().value("x")


@pytest.mark.parametrize("status, body, message", [
    (400, {"status": "error", "errorType": "bad_data", "error": "1:5: parse error: unexpected <EOF>"},
     "answered HTTP 400: bad_data: 1:5: parse error: unexpected <EOF>"),
    (422, {"status": "error", "errorType": "execution", "error": "query processing would load too many samples"},
     "execution: query processing would load too many samples"),
    (200, {"status": "success", "data": {"resultType": "matrix", "result": []}}, "the query gives a matrix"),
])
def test_a_refused_query_says_to_fix_the_query(store, status, body, message):
    store(status=status, body=body)
    with pytest.raises(MetricsQueryRejected, match=message):
        PrometheusHook().query("rate(x[")


@pytest.mark.parametrize("status, body, content_type, message", [
    (503, b"<html>Service Unavailable</html>", "text/html", "answered HTTP 503 Service Unavailable"),
    (502, b"bad gateway", "text/plain", "check the gantry_prometheus Connection"),
    (200, b"<html>login</html>", "text/html", "with something that is not JSON"),
    (200, {"hello": "world"}, "application/json", "not Prometheus' query API shape"),
    (200, {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": "7"}]}},
     "application/json", "is not a \\[time, \"value\"\\] pair"),
])
def test_a_store_that_does_not_answer_the_api_is_unavailable(store, status, body, content_type, message):
    store(status=status, body=body, content_type=content_type)
    with pytest.raises(MetricsUnavailable, match=message) as err:
        PrometheusHook().query("up")
    assert not isinstance(err.value, MetricsQueryRejected)


def test_a_store_that_is_down_or_slow_is_unavailable(store, monkeypatch):
    port = free_port()  # nothing listens on it
    monkeypatch.setenv("AIRFLOW_CONN_GANTRY_PROMETHEUS", json.dumps(
        {"conn_type": "http", "host": "127.0.0.1", "port": port, "schema": "http"}))
    with pytest.raises(MetricsUnavailable, match=f"Prometheus \\(http://127.0.0.1:{port}/api/v1/query\\) .* "
                                                 "cannot be reached"):
        PrometheusHook().query("up")
    store(delay=3)
    with pytest.raises(MetricsUnavailable, match="did not answer within 0.5 s"):
        PrometheusHook(timeout=0.5).query("up")


def test_the_adapter_is_the_prometheus_hook(store):
    store()
    assert isinstance(adapters.metrics(), PrometheusHook)
