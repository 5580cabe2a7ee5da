"""Airflow's own REST API (v2), read by a release task as a service user.

A task that waits for a human's answer reads it here: the task SDK gives a running task no way
to read a human-in-the-loop answer (only a trigger may), and parking the task instead loses
answers that come quickly (``gantry.hitl``). The Connection ``gantry_airflow`` names the API
server (http, host, port) and a user whose role may read the Gantry DAGs (a viewer is enough).
"""
from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import quote

import requests
from airflow.sdk import BaseHook


class AirflowApiUnavailable(RuntimeError):
    """The API server could not be reached or refused the service user."""


class AirflowApiHook(BaseHook):
    """Reads human-in-the-loop answers through Airflow's public REST API, logged in as the
    Connection's user (``POST /auth/token``, a bearer token, renewed once when it expires or the
    API server no longer accepts it).

    :param airflow_conn_id: the Connection of the API server and its service user.
    :param timeout: seconds for each request.
    """

    conn_name_attr = "airflow_conn_id"
    default_conn_name = "gantry_airflow"
    conn_type = "http"
    hook_name = "Gantry Airflow API"

    def __init__(self, airflow_conn_id: str = default_conn_name, timeout: float = 10) -> None:
        super().__init__()
        self.airflow_conn_id, self.timeout = airflow_conn_id, timeout
        self._session: requests.Session | None = None
        self._base = ""

    def get_conn(self) -> requests.Session:
        """A session logged in as the Connection's user."""
        if self._session is None:
            conn = self.get_connection(self.airflow_conn_id)
            self._base = f"{conn.schema or 'http'}://{conn.host}" + (f":{conn.port}" if conn.port else "")
            try:
                resp = requests.post(f"{self._base}/auth/token", json={"username": conn.login,
                                                                       "password": conn.password},
                                     timeout=self.timeout)
            except requests.RequestException as exc:
                raise AirflowApiUnavailable(f"cannot reach Airflow's API at {self._base}: {exc}") from exc
            if resp.status_code not in (200, 201):
                raise AirflowApiUnavailable(f"Airflow's API refused the user {conn.login!r} (HTTP {resp.status_code}); "
                                            f"check the {self.airflow_conn_id} Connection")
            session = requests.Session()
            session.headers["Authorization"] = f"Bearer {resp.json()['access_token']}"
            self._session = session
        return self._session

    def _get(self, endpoint: str) -> Any:
        for attempt in (1, 2):
            session = self.get_conn()
            try:
                resp = session.get(f"{self._base}{endpoint}", timeout=self.timeout)
            except requests.RequestException as exc:
                raise AirflowApiUnavailable(f"cannot reach Airflow's API at {self._base}: {exc}") from exc
            # The token expired (401), or the API server's signing secret changed since it was
            # issued (403 "Invalid JWT token"): log in again, once.
            stale = resp.status_code == 401 or (resp.status_code == 403 and "Invalid JWT" in resp.text)
            if stale and attempt == 1:
                self._session = None
                continue
            if resp.status_code != 200:
                raise AirflowApiUnavailable(f"GET {endpoint}: HTTP {resp.status_code} {resp.text[:200]}")
            return resp.json()
        raise AssertionError("unreachable")

    def hitl_detail(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> dict[str, Any]:
        """The human-in-the-loop request of one task instance, with its answer once there is one
        (``response_received``, ``chosen_options``, ``params_input``, ``responded_by_user``,
        ``responded_at`` as a datetime).

        :param dag_id: the DAG of the task instance.
        :param run_id: its run.
        :param task_id: its task.
        :param map_index: its map index (-1 for an unmapped task).
        """
        path = "/".join(quote(str(p), safe="") for p in (dag_id, "dagRuns", run_id, "taskInstances", task_id,
                                                           map_index))
        detail = self._get(f"/api/v2/dags/{path}/hitlDetails")
        if detail.get("responded_at"):
            detail["responded_at"] = dt.datetime.fromisoformat(detail["responded_at"].replace("Z", "+00:00"))
        return detail
