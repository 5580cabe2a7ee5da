"""CMDB adapters: where the hosts of an app in an environment come from, at run time."""
from __future__ import annotations

from pathlib import Path

import yaml
from airflow.providers.http.hooks.http import HttpHook

from gantry.plan import Host


class InventoryFileCmdb:
    """The inventory file in the repository (config/inventory.yaml)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def hosts(self, app: str, environment: str) -> list[Host]:
        data = yaml.safe_load(self.path.read_text()) or {}
        records = ((data.get("environments") or {}).get(environment) or {}).get(app) or []
        return [Host.from_record(r) for r in records]


class HttpCmdbHook(HttpHook):
    """A CMDB with a JSON API: ``GET <base>/api/v1/hosts?app=<app>&env=<env>`` answering
    ``{"hosts": [{"name": ..., "address": ..., "ssh_port": ...}, ...]}``."""

    conn_name_attr = "cmdb_conn_id"
    default_conn_name = "gantry_cmdb"
    conn_type = "http"
    hook_name = "Gantry HTTP CMDB"

    def __init__(self, cmdb_conn_id: str = default_conn_name, **kwargs) -> None:
        super().__init__(method="GET", http_conn_id=cmdb_conn_id, **kwargs)

    def hosts(self, app: str, environment: str) -> list[Host]:
        resp = self.run("/api/v1/hosts", data={"app": app, "env": environment}, extra_options={"timeout": 10})
        return [Host.from_record(r) for r in resp.json()["hosts"]]
