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


class NetBoxCmdbHook(HttpHook):
    """NetBox as the CMDB, through its REST API (documented at
    https://netboxlabs.com/docs/netbox/en/stable/integrations/rest-api/; no NetBox runs here: the
    tests answer with the documented shapes from a local HTTP server).

    ``GET <base>/api/<kind>/?<filters>&limit=<page>`` with ``Authorization: Token <password>``,
    following ``next`` until the last page. Connection extras:

    - ``kind``: ``virtualization/virtual-machines`` (default) or ``dcim/devices``;
    - ``filters``: query parameters, ``{app}`` and ``{env}`` filled in; default
      ``{"tag": "{app}", "cf_environment": "{env}", "status": "active"}`` (the app as a tag, the
      environment as the custom field ``environment``);
    - ``ssh_port_field``: the custom field holding a host's SSH port (default ``ssh_port``; 22
      when unset).

    A host is its ``name`` and its primary IP (``primary_ip4``, else ``primary_ip``) without the
    prefix length; one without a primary IP is refused by name: Gantry would not know where to go.
    """

    conn_name_attr = "netbox_conn_id"
    default_conn_name = "gantry_netbox"
    conn_type = "http"
    hook_name = "Gantry NetBox CMDB"
    DEFAULT_FILTERS = {"tag": "{app}", "cf_environment": "{env}", "status": "active"}
    OWN_EXTRAS = ("kind", "filters", "ssh_port_field")
    PAGE = 500

    def __init__(self, netbox_conn_id: str = default_conn_name, timeout: float = 10, **kwargs) -> None:
        super().__init__(method="GET", http_conn_id=netbox_conn_id, **kwargs)
        self.timeout = timeout
        conn = self.get_connection(netbox_conn_id)
        extra = conn.extra_dejson
        self.kind = extra.get("kind", "virtualization/virtual-machines").strip("/")
        self.filters = extra.get("filters") or self.DEFAULT_FILTERS
        self.ssh_port_field = extra.get("ssh_port_field", "ssh_port")
        self.token = conn.password

    def hosts(self, app: str, environment: str) -> list[Host]:
        query = {k: str(v).format(app=app, env=environment) for k, v in self.filters.items()}
        endpoint = f"/api/{self.kind}/"
        url: str | None = None
        records, page = [], 0
        while True:
            page += 1
            body = self._page(endpoint, url, {**query, "limit": self.PAGE} if url is None else None, app, environment)
            for item in body["results"]:
                records.append(self._record(item, app, environment))
            url = body.get("next")
            if not url:
                break
            if page > 1000:
                raise CmdbDataError(f"{self._where(app, environment)}: more than 1000 pages; the filters match too much")
        return hosts_from_records(records, self._where(app, environment))

    def get_conn(self, headers: dict | None = None, extra_options: dict | None = None):
        # HttpHook sends a Connection's extras as request headers: not these, which are Gantry's.
        session = super().get_conn(headers, extra_options)
        for key in self.OWN_EXTRAS:
            session.headers.pop(key, None)
        return session

    def _page(self, endpoint: str, url: str | None, query: dict | None, app: str, environment: str) -> dict:
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Token {self.token}"
        options = {"timeout": self.timeout, "check_response": False}
        try:
            if url is None:
                resp = self.run(endpoint, data=query, headers=headers, extra_options=options)
            else:  # NetBox's own link to the next page (same server, offset set)
                session = self.get_conn(headers)
                resp = session.get(url, timeout=self.timeout)
        except requests.Timeout as exc:
            raise CmdbUnavailable(f"{self._where(app, environment)} did not answer within {self.timeout:g} s; "
                                  "the task is retried") from exc
        except requests.ConnectionError as exc:
            raise CmdbUnavailable(f"{self._where(app, environment)} cannot be reached ({exc}); "
                                  "the task is retried") from exc
        source = f"{self._where(app, environment)} answered HTTP {resp.status_code}"
        if resp.status_code >= 500:
            raise CmdbUnavailable(f"{source} {resp.reason}; the task is retried")
        if resp.status_code in (401, 403):
            raise CmdbDataError(f"{source} {resp.reason}: the {self.http_conn_id} Connection's password must be "
                                "a NetBox API token allowed to read it")
        if resp.status_code >= 300:
            raise CmdbDataError(f"{source} {resp.reason}: {_excerpt(resp.text)}")
        try:
            body = resp.json()
        except ValueError:
            raise CmdbDataError(f"{source} with something that is not JSON: {_excerpt(resp.text)}") from None
        if not isinstance(body, dict) or not isinstance(body.get("results"), list):
            raise CmdbDataError(f"{source} without a \"results\" list (not NetBox's list shape): {_excerpt(body)}")
        return body

    def _record(self, item: Any, app: str, environment: str) -> dict:
        if not isinstance(item, dict):
            raise CmdbDataError(f"{self._where(app, environment)}: a result is not an object: {_excerpt(item)}")
        ip = item.get("primary_ip4") or item.get("primary_ip") or {}
        cidr = ip.get("address", "") if isinstance(ip, dict) else ""
        address, _, prefix = str(cidr).partition("/")
        if prefix and not prefix.isdigit():
            raise CmdbDataError(f"{self._where(app, environment)}: {item.get('name')!r} has primary IP {cidr!r}, "
                                "which is not an address with a prefix length")
        if not address:
            raise CmdbDataError(f"{self._where(app, environment)}: {item.get('name')!r} has no primary IP address "
                                "in NetBox; set one, or leave the host out of the filter")
        port = (item.get("custom_fields") or {}).get(self.ssh_port_field) or 22
        return {"name": item.get("name"), "address": address, "ssh_port": port}

    def _where(self, app: str, environment: str) -> str:
        return f"NetBox ({self.base_url}/api/{self.kind}/ for {app} in {environment})"
