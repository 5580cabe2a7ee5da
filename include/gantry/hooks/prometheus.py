"""Metrics for release analysis, through Prometheus' HTTP query API.

``POST <base><path_prefix>/api/v1/query`` with the form fields ``query``, ``time`` and ``timeout``
(documented at https://prometheus.io/docs/prometheus/latest/querying/api/). Thanos Query,
VictoriaMetrics and Grafana Mimir serve the same API under a path of their own: the Connection's
extra ``path_prefix`` names it (Mimir: ``/prometheus``; VictoriaMetrics cluster:
``/select/0/prometheus``). POST, not GET: a query naming 200 hosts does not fit every URL limit,
and the API takes both.

Connection ``gantry_prometheus`` (http): host, port, schema; login and password for basic auth;
any other extra is sent as a request header, as for every HTTP Connection (Mimir's
``X-Scope-OrgID`` tenant header, for example).

Whatever goes wrong is a ``MetricsUnavailable``: no answer, a server error, an answer that is not
the API's. An analysis that cannot ask gives its ``on_unreachable`` decision, never a pass. A
query the store refuses (bad PromQL, a range vector where one value per series is needed) is a
``MetricsQueryRejected``, its subclass: the same decision, and a message that says to fix the
query.
"""
from __future__ import annotations

import math
from typing import Any

import requests
from airflow.providers.http.hooks.http import HttpHook


class MetricsUnavailable(ConnectionError):
    """The metrics store could not be asked, or did not answer with the query API's shape."""


class MetricsQueryRejected(MetricsUnavailable):
    """The metrics store answered, and refused the query: fix the query, not the store."""


def _value(raw: Any, where: str) -> float:
    """A sample value as the API writes it: ``[<unix time>, "<float>"]``, with "NaN" and "+Inf"."""
    try:
        value = float(raw[1])
    except (TypeError, ValueError, IndexError) as exc:
        raise MetricsUnavailable(f"{where}: {raw!r} is not a [time, \"value\"] pair") from exc
    return value


def parse_query_response(body: Any, where: str) -> list[tuple[dict[str, str], float]]:
    """The (labels, value) pairs of an instant query's answer: one per series of a vector, one
    with no labels for a scalar. A matrix (``x[5m]`` without a function) or a string is refused.

    :param body: the decoded JSON answer.
    :param where: the store and the query, for messages.
    """
    if not isinstance(body, dict) or body.get("status") not in ("success", "error"):
        raise MetricsUnavailable(f"{where}: the answer is not Prometheus' query API shape: {str(body)[:200]}")
    if body["status"] == "error":
        raise MetricsQueryRejected(f"{where}: {body.get('errorType', 'error')}: {body.get('error', '')}")
    data = body.get("data")
    if not isinstance(data, dict):
        raise MetricsUnavailable(f"{where}: a successful answer without data: {str(body)[:200]}")
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar":
        return [({}, _value(result, where))]
    if kind == "vector" and isinstance(result, list):
        return [(dict(series.get("metric") or {}), _value(series.get("value"), where)) for series in result]
    if kind in ("matrix", "string"):
        raise MetricsQueryRejected(f"{where}: the query gives a {kind}; an analysis query must give one "
                                   "value per series (an instant vector or a scalar): wrap range vectors "
                                   "in a function such as rate() or avg_over_time()")
    raise MetricsUnavailable(f"{where}: unknown result type {kind!r}")


class PrometheusHook(HttpHook):
    """Instant queries against Prometheus or a store with its query API (``MetricsQuery``)."""

    conn_name_attr = "prometheus_conn_id"
    default_conn_name = "gantry_prometheus"
    conn_type = "http"
    hook_name = "Gantry Prometheus"
    endpoint = "/api/v1/query"
    OWN_EXTRAS = ("path_prefix",)

    def __init__(self, prometheus_conn_id: str = default_conn_name, timeout: float = 10, **kwargs) -> None:
        """
        :param prometheus_conn_id: the Airflow Connection of the metrics store.
        :param timeout: seconds to wait for a connection and for the answer; the store is asked to
            give up a little earlier, so a slow query ends as its error, not as a dropped connection.
        """
        super().__init__(method="POST", http_conn_id=prometheus_conn_id, **kwargs)
        self.timeout = timeout
        prefix = str(self.get_connection(prometheus_conn_id).extra_dejson.get("path_prefix") or "")
        self.path_prefix = ("/" + prefix.strip("/")) if prefix.strip("/") else ""

    def get_conn(self, headers: dict | None = None, extra_options: dict | None = None):
        # HttpHook sends a Connection's extras as request headers: not this one, which is Gantry's.
        session = super().get_conn(headers, extra_options)
        for key in self.OWN_EXTRAS:
            session.headers.pop(key, None)
        return session

    def query(self, promql: str, at: float | None = None) -> list[tuple[dict[str, str], float]]:
        """Evaluate ``promql`` at one instant.

        :param promql: the query (``gantry.analysis.render_query`` fills a template).
        :param at: the evaluation time, Unix seconds; None: now. Measurements of one interval ask
            the canary and the baseline at the same ``at``, so they cover the same seconds.
        :return: (labels, value) per series; a scalar is one pair with no labels; no series, an
            empty list. Values may be NaN (0/0, e.g. an error ratio with no requests).
        """
        form = {"query": promql, "timeout": f"{max(self.timeout - 1, 1):g}s"}
        if at is not None:
            form["time"] = f"{at:.3f}"
        try:
            resp = self.run(self.path_prefix + self.endpoint, data=form,
                            headers={"Accept": "application/json"},
                            extra_options={"timeout": self.timeout, "check_response": False})
        except requests.Timeout as exc:
            raise MetricsUnavailable(f"{self._where(promql)} did not answer within {self.timeout:g} s") from exc
        except requests.ConnectionError as exc:
            raise MetricsUnavailable(f"{self._where(promql)} cannot be reached ({exc})") from exc
        where = f"{self._where(promql)} answered HTTP {resp.status_code}"
        try:
            body = resp.json()
        except ValueError:
            body = None
        # The API answers a refused query with 400 (bad_data) or 422 (execution), and a JSON body
        # that says why; anything else not 2xx is the store's or a proxy's trouble.
        if resp.status_code in (400, 422) and isinstance(body, dict) and body.get("status") == "error":
            return parse_query_response(body, where)
        if resp.status_code >= 300:
            raise MetricsUnavailable(f"{where} {resp.reason}: {resp.text[:200]}; check the {self.http_conn_id} "
                                     "Connection (base URL, extra path_prefix) and that the store is up")
        if body is None:
            raise MetricsUnavailable(f"{where} with something that is not JSON: {resp.text[:200]}")
        return parse_query_response(body, where)

    def _where(self, promql: str) -> str:
        # base_url is known once a request was prepared (HttpHook sets it from the Connection).
        return f"Prometheus ({self.base_url}{self.path_prefix}{self.endpoint}) for {promql!r}"

    def value(self, promql: str, at: float | None = None) -> float | None:
        """The single value of a query that aggregates to one series (``sum(...)``); None when it
        gives no series (nothing matched: no data, which is never a pass).

        :param promql: the query.
        :param at: the evaluation time, Unix seconds; None: now.
        """
        series = self.query(promql, at)
        if not series:
            return None
        if len(series) > 1:
            raise MetricsQueryRejected(f"{promql!r} gives {len(series)} series; an analysis query must aggregate "
                                       f"to one value (sum, avg, histogram_quantile over sum by (le), ...): "
                                       f"{[labels for labels, _ in series[:3]]}")
        number = series[0][1]
        return None if math.isnan(number) else number
