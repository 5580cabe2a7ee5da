"""ZooKeeper as the RPC service registry, the way Dubbo uses it (kazoo client).

Layout, under the connection's ``root`` extra (default ``/dubbo``), for an app's RPC service
(``apps.<app>.rpc_service``, default the app's name):

    <root>/<service>/providers/<url-encoded dubbo://ADDR:PORT/<service>?group=<env>&...>
        one ephemeral node per running instance, written by the instance's own session
    <root>/<service>/configurators/<url-encoded override://ADDR:PORT/<service>?disabled=true&...>
        persistent override entries, written by Gantry (as Dubbo Admin's "disable provider" does)

Environments are Dubbo groups (``group=<env>``). A consumer routes to the providers of its group
that no ``disabled=true`` override names: the instance's session cannot undo an override, so a
restart that re-registers the provider keeps it out until Gantry enables it again.
"""
from __future__ import annotations

import time
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from airflow.sdk.bases.hook import BaseHook
from airflow.sdk.exceptions import AirflowException

OWNER = "gantry"  # marks the override entries Gantry writes, and may remove


def provider_url(service: str, address: str, port: int, **params: str) -> str:
    """A Dubbo provider URL; ``params`` in a stable order so that one instance is one node."""
    return f"dubbo://{address}:{int(port)}/{service}?{urlencode(sorted(params.items()))}"


def override_url(service: str, address: str, port: int, **params: str) -> str:
    fixed = {"category": "configurators", "disabled": "true", "dynamic": "false", "enabled": "true"}
    return f"override://{address}:{int(port)}/{service}?{urlencode(sorted({**fixed, **params}.items()))}"


def parse_url(node: str) -> dict:
    """A registry node name (a URL-encoded URL) as {scheme, address, port, service, params}."""
    parts = urlsplit(unquote(node))
    return {"scheme": parts.scheme, "address": parts.hostname, "port": parts.port,
            "service": parts.path.lstrip("/"), "params": dict(parse_qsl(parts.query))}


def disables(override: dict, address: str, port: int | None, group: str) -> bool:
    """Whether an override entry takes the instance at ``address:port`` of ``group`` out.
    Dubbo's rules: ``0.0.0.0`` is every address, no port is every port, no group is every group."""
    p = override["params"]
    return (override["scheme"] == "override" and p.get("disabled") == "true" and p.get("enabled", "true") == "true"
            and override["address"] in (address, "0.0.0.0")
            and (not override["port"] or port is None or override["port"] == int(port))
            and p.get("group", group) == group)


class ZooKeeperRegistryHook(BaseHook):
    """ServiceRegistry on ZooKeeper. Connection: host (``h1:2181,h2:2181`` or one host with
    port); extras ``root`` (default ``/dubbo``), ``consumer_wait_seconds`` (default 10)."""

    conn_name_attr = "zookeeper_conn_id"
    default_conn_name = "gantry_zookeeper"
    conn_type = "generic"
    hook_name = "Gantry ZooKeeper (Dubbo) registry"

    def __init__(self, zookeeper_conn_id: str = default_conn_name, **kwargs) -> None:
        super().__init__(**kwargs)
        conn = self.get_connection(zookeeper_conn_id)
        hosts = conn.host or ""
        self.hosts = hosts if "," in hosts or not conn.port else f"{hosts}:{conn.port}"
        extra = conn.extra_dejson
        self.root = (extra.get("root") or "/dubbo").rstrip("/")
        self.consumer_wait = float(extra.get("consumer_wait_seconds", 10))
        self._client = None

    def get_conn(self):
        if self._client is None:
            from kazoo.client import KazooClient

            client = KazooClient(hosts=self.hosts, timeout=5, connection_retry={"max_tries": 3, "delay": 0.2})
            try:
                client.start(timeout=5)
            except Exception as exc:
                client.close()
                raise AirflowException(f"ZooKeeper at {self.hosts} is not reachable: {exc}") from exc
            self._client = client
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.stop()
            self._client.close()
            self._client = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    @staticmethod
    def _service(app: str) -> str:
        from gantry.config import load_config

        return load_config().app(app).service_name

    def _children(self, path: str) -> list[str]:
        from kazoo.exceptions import NoNodeError

        try:
            return self.get_conn().get_children(path)
        except NoNodeError:
            return []

    def _path(self, service: str, category: str) -> str:
        return f"{self.root}/{service}/{category}"

    def instances(self, app: str, environment: str) -> dict[str, dict]:
        """The providers of the app in the environment (its Dubbo group), by host name."""
        service = self._service(app)
        out = {}
        for node in self._children(self._path(service, "providers")):
            url = parse_url(node)
            if url["params"].get("group") == environment:
                name = url["params"].get("hostname") or f"{url['address']}:{url['port']}"
                out[name] = {"address": url["address"], "port": url["port"], "version": url["params"].get("revision"),
                             "url": unquote(node)}
        return out

    def _overrides(self, service: str) -> list[tuple[str, dict]]:
        return [(node, parse_url(node)) for node in self._children(self._path(service, "configurators"))]

    def disabled(self, app: str, environment: str) -> dict[str, dict]:
        """The instances that an override keeps out, by host name (``hostname`` of the entry)."""
        return {o["params"].get("hostname") or f"{o['address']}:{o['port']}": o["params"]
                for _, o in self._overrides(self._service(app))
                if o["params"].get("disabled") == "true" and o["params"].get("group", environment) == environment}

    def routable(self, app: str, environment: str) -> dict[str, dict]:
        """What a consumer of the group routes to: providers that no override disables."""
        overrides = [o for _, o in self._overrides(self._service(app))]
        return {h: i for h, i in self.instances(app, environment).items()
                if not any(disables(o, i["address"], i["port"], environment) for o in overrides)}

    # ServiceRegistry
    def disable(self, app: str, environment: str, host: str, reason: str, *,
                address: str | None = None, port: int | None = None) -> None:
        service = self._service(app)
        address, port = self._address(app, environment, host, address, port)
        url = override_url(service, address, port, application=app, group=environment, hostname=host,
                           owner=OWNER, reason=reason[:200])
        if not any(self._ours(o, address, environment) for _, o in self._overrides(service)):
            self.get_conn().create(f"{self._path(service, 'configurators')}/{quote(url, safe='')}", b"",
                                   makepath=True)
        # Consumers learn of the override by their watch on configurators/. Wait until the
        # registry's view - read after a sync with the leader, as a consumer's would be - has
        # the instance out; only then may draining begin.
        self._wait(lambda: host not in self.routable(app, environment), f"{host} to leave {service}")

    def enable(self, app: str, environment: str, host: str, *,
               address: str | None = None, port: int | None = None) -> None:
        service = self._service(app)
        address, port = self._address(app, environment, host, address, port)
        client = self.get_conn()
        from kazoo.exceptions import NoNodeError

        # Only Gantry's own entries: an operator's override (another owner, a wildcard address
        # or port, all groups) stays until that operator lifts it.
        for node, o in self._overrides(service):
            if self._ours(o, address, environment):
                try:
                    client.delete(f"{self._path(service, 'configurators')}/{node}")
                except NoNodeError:
                    pass  # someone else enabled it meanwhile

    def is_enabled(self, app: str, environment: str, host: str, *,
                   address: str | None = None, port: int | None = None) -> bool:
        address, port = self._address(app, environment, host, address, port)
        return not any(disables(o, address, port, environment) for _, o in self._overrides(self._service(app)))

    @staticmethod
    def _ours(override: dict, address: str, environment: str) -> bool:
        p = override["params"]
        return override["address"] == address and p.get("owner") == OWNER and p.get("group") == environment

    def _address(self, app, environment, host, address, port) -> tuple[str, int | None]:
        """An override names the instance by address: from the caller (the CMDB's), or from
        the instance's own registration."""
        if address:
            return address, port
        instance = self.instances(app, environment).get(host)
        if not instance:
            raise AirflowException(f"{host} is not registered in {self._service(app)} ({environment}) and no "
                                   "address was given: cannot name it in an override")
        return instance["address"], instance["port"]

    def _wait(self, done, what: str) -> None:
        deadline = time.monotonic() + self.consumer_wait
        while True:
            self.get_conn().sync(self.root or "/")
            if done():
                return
            if time.monotonic() > deadline:
                raise AirflowException(f"timed out after {self.consumer_wait:.0f}s waiting for {what}")
            time.sleep(0.1)
