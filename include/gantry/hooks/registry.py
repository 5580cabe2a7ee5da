"""etcd as the RPC service registry, through etcd's v3 JSON gateway (no client library).

Keys, under the connection's ``prefix`` extra (default ``/gantry/registry``):
    <prefix>/<app>/<env>/instances/<host>   written by the instance itself, under a lease
    <prefix>/<app>/<env>/disabled/<host>    written by Gantry, no lease

A client routes to ``instances - disabled``. Disabling is a separate key (Dubbo's
"override" idea) so the instance's own keepalive or re-registration cannot undo it.
"""
from __future__ import annotations

import base64
import json
import time

from airflow.providers.http.hooks.http import HttpHook


def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def _unb64(s: str) -> str:
    return base64.b64decode(s).decode()


def _prefix_end(prefix: str) -> str:
    """etcd range_end for "every key starting with prefix"."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


class EtcdRegistryHook(HttpHook):
    conn_name_attr = "etcd_conn_id"
    default_conn_name = "gantry_registry"
    conn_type = "http"
    hook_name = "Gantry etcd registry"

    def __init__(self, etcd_conn_id: str = default_conn_name, **kwargs) -> None:
        super().__init__(method="POST", http_conn_id=etcd_conn_id, **kwargs)
        self.prefix = (self.get_connection(etcd_conn_id).extra_dejson.get("prefix") or "/gantry/registry").rstrip("/")

    def _call(self, path: str, body: dict) -> dict:
        return self.run(path, json=body, extra_options={"timeout": 5}).json()

    def _key(self, app: str, environment: str, kind: str, host: str = "") -> str:
        return f"{self.prefix}/{app}/{environment}/{kind}/{host}"

    def _range(self, prefix: str) -> dict[str, dict]:
        out = self._call("/v3/kv/range", {"key": _b64(prefix), "range_end": _b64(_prefix_end(prefix))})
        return {_unb64(kv["key"])[len(prefix):]: json.loads(_unb64(kv.get("value", "")) or "{}")
                for kv in out.get("kvs", [])}

    # ServiceRegistry
    # An etcd key is named by host: ``address`` and ``port`` are not needed.
    def disable(self, app: str, environment: str, host: str, reason: str, *,
                address: str | None = None, port: int | None = None) -> None:
        value = json.dumps({"by": "gantry", "reason": reason, "at": time.time()})
        self._call("/v3/kv/put", {"key": _b64(self._key(app, environment, "disabled", host)), "value": _b64(value)})

    def enable(self, app: str, environment: str, host: str, *,
               address: str | None = None, port: int | None = None) -> None:
        self._call("/v3/kv/deleterange", {"key": _b64(self._key(app, environment, "disabled", host))})

    def is_enabled(self, app: str, environment: str, host: str, *,
                   address: str | None = None, port: int | None = None) -> bool:
        return host not in self._range(self._key(app, environment, "disabled"))

    def instances(self, app: str, environment: str) -> dict[str, dict]:
        return self._range(self._key(app, environment, "instances"))

    def disabled(self, app: str, environment: str) -> dict[str, dict]:
        return self._range(self._key(app, environment, "disabled"))

    def routable(self, app: str, environment: str) -> dict[str, dict]:
        off = self.disabled(app, environment)
        return {h: v for h, v in self.instances(app, environment).items() if h not in off}
