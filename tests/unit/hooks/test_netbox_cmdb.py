"""The NetBox CMDB adapter against NetBox's documented REST API (list shape, token auth,
pagination by ``next``, primary IPs with prefix lengths, custom fields), served by a local HTTP
server: no NetBox runs here."""
import json
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

import pytest
from local_http import Quiet, answering

from gantry.hooks.cmdb import CmdbDataError, CmdbUnavailable, NetBoxCmdbHook

TOKEN = "0123456789abcdef0123456789abcdef01234567"


def vm(name, ip, **custom):
    """A virtual machine as NetBox's API returns it (the fields Gantry reads, and some it does not)."""
    return {"id": abs(hash(name)) % 1000, "url": f"http://netbox/api/virtualization/virtual-machines/{name}/",
            "display": name, "name": name, "status": {"value": "active", "label": "Active"},
            "primary_ip4": {"id": 7, "family": {"value": 4, "label": "IPv4"}, "address": ip} if ip else None,
            "primary_ip": {"id": 7, "family": {"value": 4, "label": "IPv4"}, "address": ip} if ip else None,
            "tags": [{"id": 1, "name": "demo", "slug": "demo"}], "custom_fields": {"environment": "prod", **custom}}


def netbox(machines, seen: list, page_size=2):
    """NetBox's list endpoint: ``limit``/``offset`` pages with ``count``, ``next`` and ``previous``."""

    class Handler(Quiet, BaseHTTPRequestHandler):
        def do_GET(self):
            url = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            seen.append((url.path, query, self.headers.get("Authorization")))
            if self.headers.get("Authorization") != f"Token {TOKEN}":
                return self._send(403, {"detail": "Authentication credentials were not provided."})
            offset, limit = int(query.get("offset", 0)), min(int(query.get("limit", 50)), page_size)
            host = f"http://{self.headers['Host']}"
            rest = {k: v for k, v in query.items() if k not in ("offset", "limit")}
            nxt = (f"{host}{url.path}?{'&'.join(f'{k}={v}' for k, v in rest.items())}&limit={limit}"
                   f"&offset={offset + limit}") if offset + limit < len(machines) else None
            self._send(200, {"count": len(machines), "next": nxt, "previous": None,
                             "results": machines[offset:offset + limit]})

        def _send(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


@pytest.fixture
def netbox_at(monkeypatch, serve):
    """Serve a handler as the gantry_netbox Connection, with the token and ``extra``."""
    def start(handler, **extra):
        server = serve(handler, "gantry_netbox")
        monkeypatch.setenv("AIRFLOW_CONN_GANTRY_NETBOX", json.dumps(
            {"conn_type": "http", "host": "127.0.0.1", "port": server.server_port, "schema": "http",
             "password": TOKEN, "extra": extra}))
        return server
    return start


def test_netbox_lists_the_apps_hosts_across_pages_with_the_token(netbox_at):
    seen = []
    machines = [vm("prod-web-1", "10.1.0.11/24"), vm("prod-web-2", "10.1.0.12/24", ssh_port=2222),
                vm("prod-web-3", "10.1.0.13/32")]
    netbox_at(netbox(machines, seen))
    hosts = NetBoxCmdbHook(timeout=2).hosts("demo", "prod")
    assert [(h.name, h.address, h.ssh_port) for h in hosts] == [
        ("prod-web-1", "10.1.0.11", 22), ("prod-web-2", "10.1.0.12", 2222), ("prod-web-3", "10.1.0.13", 22)]
    assert len(seen) == 2, "two pages, following NetBox's next link"
    path, query, auth = seen[0]
    assert path == "/api/virtualization/virtual-machines/"
    assert {k: query[k] for k in ("tag", "cf_environment", "status")} == {
        "tag": "demo", "cf_environment": "prod", "status": "active"}
    assert auth == f"Token {TOKEN}" and seen[1][2] == f"Token {TOKEN}"


def test_netbox_devices_and_own_filters(netbox_at):
    seen = []
    netbox_at(netbox([vm("rack1-demo", "10.2.0.5/24", sshport=2200)], seen),
          kind="dcim/devices", filters={"role": "{app}-server", "tenant": "{env}"}, ssh_port_field="sshport")
    (host,) = NetBoxCmdbHook(timeout=2).hosts("demo", "staging")
    assert (host.name, host.address, host.ssh_port) == ("rack1-demo", "10.2.0.5", 2200)
    assert seen[0][0] == "/api/dcim/devices/"
    assert {k: v for k, v in seen[0][1].items() if k != "limit"} == {"role": "demo-server", "tenant": "staging"}


@pytest.mark.parametrize("handler, error, message", [
    (netbox([vm("prod-web-1", None)], []), CmdbDataError, "'prod-web-1' has no primary IP address in NetBox"),
    (netbox([vm("web 1; id", "10.0.0.1/24")], []), CmdbDataError, "is not a valid host name"),
    (netbox([vm("prod-web-1", "10.0.0.1/24 && reboot")], []), CmdbDataError, "is not an address with a prefix"),
    (netbox([vm("prod-web-1", "10.0.0.1;reboot/24")], []), CmdbDataError, "is not an IP address"),
    (answering(200, json.dumps([vm("a", "10.0.0.1/24")])), CmdbDataError, "without a \"results\" list"),
    (answering(503, "maintenance", "text/plain"), CmdbUnavailable, "answered HTTP 503 .* the task is retried"),
    (answering(404, json.dumps({"detail": "Not found."})), CmdbDataError, "answered HTTP 404 Not Found"),
])
def test_netbox_answers_that_name_no_usable_host_are_refused(netbox_at, handler, error, message):
    netbox_at(handler)
    with pytest.raises(error, match=message) as err:
        NetBoxCmdbHook(timeout=2).hosts("demo", "prod")
    assert "NetBox (http://127.0.0.1:" in str(err.value) and "for demo in prod" in str(err.value)


def test_netbox_refuses_a_missing_or_wrong_token_by_naming_the_connection(serve, monkeypatch):
    server = serve(netbox([vm("prod-web-1", "10.0.0.1/24")], []), "gantry_netbox")
    monkeypatch.setenv("AIRFLOW_CONN_GANTRY_NETBOX", json.dumps(
        {"conn_type": "http", "host": "127.0.0.1", "port": server.server_port, "schema": "http", "password": "wrong"}))
    with pytest.raises(CmdbDataError, match="HTTP 403 Forbidden: the gantry_netbox Connection's password must be "
                                            "a NetBox API token"):
        NetBoxCmdbHook(timeout=2).hosts("demo", "prod")
