"""Small client for Airflow's REST API (v2), used by the demo script, tests and benchmarks."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import requests

BASE = os.environ.get("GANTRY_AIRFLOW_URL", "http://127.0.0.1:8080")
TERMINAL = {"success", "failed"}


class AirflowAPI:
    def __init__(self, base: str = BASE, username: str = "admin", password: str | None = None) -> None:
        self.base = base.rstrip("/")
        if password is None:
            state = Path(os.environ.get("GANTRY_STATE", "/var/lib/gantry-local"))
            password = json.loads((state / "airflow/passwords.json").read_text())[username]
        token = requests.post(f"{self.base}/auth/token", json={"username": username, "password": password},
                              timeout=10).json()["access_token"]
        self.s = requests.Session()
        self.s.headers["Authorization"] = f"Bearer {token}"

    def get(self, path: str, **params):
        r = self.s.get(f"{self.base}/api/v2{path}", params=params, timeout=30)
        r.raise_for_status()
        return r.json()

    def wait_for_dag(self, dag_id: str, timeout: float = 120) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            r = self.s.get(f"{self.base}/api/v2/dags/{dag_id}", timeout=10)
            if r.status_code == 200:
                if r.json()["is_paused"]:
                    self.s.patch(f"{self.base}/api/v2/dags/{dag_id}", json={"is_paused": False}, timeout=10)
                return
            time.sleep(1)
        raise TimeoutError(f"DAG {dag_id} not parsed within {timeout}s")

    def trigger(self, dag_id: str, conf: dict) -> requests.Response:
        return self.s.post(f"{self.base}/api/v2/dags/{dag_id}/dagRuns",
                           json={"logical_date": None, "conf": conf}, timeout=30)

    def run_state(self, dag_id: str, run_id: str) -> str:
        return self.get(f"/dags/{dag_id}/dagRuns/{run_id}")["state"]

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 600) -> str:
        deadline = time.time() + timeout
        while time.time() < deadline:
            state = self.run_state(dag_id, run_id)
            if state in TERMINAL:
                return state
            time.sleep(0.25)  # one cheap request; a waiting test or benchmark learns the end sooner
        raise TimeoutError(f"run {run_id} still running after {timeout}s")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        """Every task instance of the run (the API pages at 100)."""
        out: list[dict] = []
        while True:
            page = self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", limit=100, offset=len(out))
            out.extend(page["task_instances"])
            if not page["task_instances"] or len(out) >= page["total_entries"]:
                return out

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1):
        r = self.s.get(f"{self.base}/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}",
                       params={"map_index": map_index, "deserialize": True}, timeout=30)
        return r.json().get("value") if r.status_code == 200 else None

    def set_variable(self, key: str, value: str) -> None:
        r = self.s.patch(f"{self.base}/api/v2/variables/{key}", json={"key": key, "value": value}, timeout=10)
        if r.status_code == 404:
            r = self.s.post(f"{self.base}/api/v2/variables", json={"key": key, "value": value}, timeout=10)
        r.raise_for_status()

    def delete_variable(self, key: str) -> None:
        self.s.delete(f"{self.base}/api/v2/variables/{key}", timeout=10)

    def runs(self, dag_id: str) -> list[dict]:
        return self.get(f"/dags/{dag_id}/dagRuns", order_by="-start_date", limit=50)["dag_runs"]

    def pending_approvals(self, dag_id: str, run_id: str) -> list[dict]:
        return self.get(f"/dags/{dag_id}/dagRuns/{run_id}/hitlDetails", response_received=False)["hitl_details"]

    def respond(self, dag_id: str, run_id: str, task_id: str, map_index: int, option: str) -> requests.Response:
        return self.s.patch(
            f"{self.base}/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/{map_index}/hitlDetails",
            json={"chosen_options": [option], "params_input": {}}, timeout=30)

    def log(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1, try_number: int | None = None) -> str:
        """The task's log as text, with error details; by default of its latest try."""
        if try_number is None:
            ti = self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/{map_index}" if map_index >= 0
                          else f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}")
            try_number = max(1, ti["try_number"])
        r = self.s.get(f"{self.base}/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
                       params={"map_index": map_index}, headers={"Accept": "application/x-ndjson"}, timeout=30)
        lines = []
        for raw in r.text.splitlines():
            try:
                event = json.loads(raw)
            except ValueError:
                continue
            lines.append(str(event.get("event", "")))
            for err in event.get("error_detail") or []:
                lines.append(f"{err.get('exc_type')}: {err.get('exc_value')}")
        return "\n".join(lines)
