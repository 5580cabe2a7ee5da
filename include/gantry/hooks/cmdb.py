"""CMDB adapters: where the hosts of an app in an environment come from, at run time.

Whatever a CMDB answers is refused unless it is a list of valid host records
(``plan.Host.from_record``): a CMDB that answers with something else fails the run at once
(``CmdbDataError``, never retried), one that does not answer in time is retried
(``CmdbUnavailable``). Either way no host has been touched.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import requests
import yaml
from airflow.providers.http.hooks.http import HttpHook

from gantry.plan import Host, PlanError


class CmdbDataError(PlanError):
    """The CMDB answered, but not with a list of valid host records: deterministic, never retried."""


class CmdbUnavailable(ConnectionError):
    """The CMDB did not answer in time, or answered with a server error: transient, retried."""


def hosts_from_records(records: Any, source: str) -> list[Host]:
    """Hosts from a CMDB's records, each checked; ``source`` says where they came from."""
    if not isinstance(records, list):
        raise CmdbDataError(f"{source}: expected a list of host records, got {type(records).__name__} "
                            f"{_excerpt(records)}")
    hosts = []
    for number, record in enumerate(records, 1):
        try:
            hosts.append(Host.from_record(record))
        except PlanError as exc:
            raise CmdbDataError(f"{source}, host record {number}: {exc}") from None
    return hosts


def _excerpt(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


class InventoryFileCmdb:
    """The inventory file in the repository (config/inventory.yaml)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def hosts(self, app: str, environment: str) -> list[Host]:
        """The app's hosts in ``environment``; none when the inventory does not list it there."""
        source = f"CMDB inventory {self.path}"
        try:
            data = yaml.safe_load(self.path.read_text())
        except FileNotFoundError:
            raise CmdbDataError(f"{source} does not exist (GANTRY_INVENTORY or the config's inventory names "
                                "the file)") from None
        except yaml.YAMLError as exc:
            raise CmdbDataError(f"{source} is not valid YAML: {exc}") from None
        shape = "environments: {<env>: {<app>: [{name, address, ssh_port}, ...]}}"
        data = {} if data is None else data
        if not isinstance(data, dict) or not isinstance(data.get("environments") or {}, dict):
            raise CmdbDataError(f"{source} is not shaped {shape}")
        apps = (data.get("environments") or {}).get(environment) or {}
        if not isinstance(apps, dict):
            raise CmdbDataError(f"{source}: environments.{environment} is not a mapping of apps to host lists "
                                f"({shape})")
        return hosts_from_records(apps.get(app) or [], f"{source}, environments.{environment}.{app}")


class HttpCmdbHook(HttpHook):
    """A CMDB with a JSON API: ``GET <base>/api/v1/hosts?app=<app>&env=<env>`` answering
    ``{"hosts": [{"name": ..., "address": ..., "ssh_port": ...}, ...]}``.

    ``timeout`` bounds the wait for a connection and for each read of the answer, so a CMDB
    that hangs fails the try instead of holding a worker slot."""

    conn_name_attr = "cmdb_conn_id"
    default_conn_name = "gantry_cmdb"
    conn_type = "http"
    hook_name = "Gantry HTTP CMDB"
    endpoint = "/api/v1/hosts"

    def __init__(self, cmdb_conn_id: str = default_conn_name, timeout: float = 10, **kwargs) -> None:
        super().__init__(method="GET", http_conn_id=cmdb_conn_id, **kwargs)
        self.timeout = timeout

    def hosts(self, app: str, environment: str) -> list[Host]:
        query = {"app": app, "env": environment}
        try:
            resp = self.run(self.endpoint, data=query, extra_options={"timeout": self.timeout,
                                                                       "check_response": False})
        except requests.Timeout as exc:
            raise CmdbUnavailable(f"{self._where(app, environment)} did not answer within {self.timeout:g} s; "
                                  "the task is retried") from exc
        except requests.ConnectionError as exc:
            raise CmdbUnavailable(f"{self._where(app, environment)} cannot be reached ({exc}); "
                                  "the task is retried") from exc
        source = f"{self._where(app, environment)} answered HTTP {resp.status_code}"
        if resp.status_code >= 500:
            raise CmdbUnavailable(f"{source} {resp.reason}; the task is retried")
        if resp.status_code >= 300:
            raise CmdbDataError(f"{source} {resp.reason}; check the {self.http_conn_id} Connection's base "
                                f"URL and that the CMDB serves GET {self.endpoint}?app=&env=")
        try:
            body = resp.json()
        except ValueError:
            raise CmdbDataError(f"{source} with something that is not JSON: {_excerpt(resp.text)}") from None
        if not isinstance(body, dict) or "hosts" not in body:
            raise CmdbDataError(f"{source} without a \"hosts\" list: {_excerpt(body)}")
        return hosts_from_records(body["hosts"], source)

    def _where(self, app: str, environment: str) -> str:
        return f"the HTTP CMDB ({self.base_url}{self.endpoint}?app={app}&env={environment})"
