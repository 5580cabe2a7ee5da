"""HAProxy as the layer-7 load balancer, through its runtime API (the admin stats socket).

An app's pool is a backend (``<app>-<env>`` by default); its members are servers, found by
address and port, whatever their names. Taking a member out is HAProxy's own graceful path:
``set server B/S state drain`` (no new traffic), wait until the server's current sessions reach
0 (in-flight requests finish), then ``state maint``. Putting it back is ``state ready``.

The runtime state lives in the running process: HAProxy's ``server-state-file`` must be used
where it is reloaded, or a reload would put every drained member back.
"""
from __future__ import annotations

import csv
import io
import re
import socket
import time

from airflow.sdk.bases.hook import BaseHook
from airflow.sdk.exceptions import AirflowException

NAME = re.compile(r"^[A-Za-z0-9_.:-]+$")


def parse_servers_state(text: str) -> list[dict]:
    """``show servers state`` (format 1) as one dict per server, keyed by its header's names."""
    lines = [l for l in text.splitlines() if l.strip()]
    if not lines or lines[0].strip() != "1":
        raise AirflowException(f"unexpected 'show servers state' answer: {text[:200]!r}")
    header = lines[1].lstrip("# ").split()
    return [dict(zip(header, l.split())) for l in lines[2:]]


def parse_stat(text: str) -> list[dict]:
    """``show stat`` CSV (header line starts with ``# ``)."""
    return list(csv.DictReader(io.StringIO(text.lstrip("# "))))


class HAProxyRuntimeHook(BaseHook):
    """LoadBalancer on HAProxy's runtime API. Connection: host and port of a TCP stats socket
    (``stats socket ipv4@ADDR:PORT level admin``), or extra ``socket``: the path of a UNIX one.
    Extra ``drain_timeout`` (s, default 30): the longest wait for sessions to finish."""

    conn_name_attr = "haproxy_conn_id"
    default_conn_name = "gantry_haproxy"
    conn_type = "generic"
    hook_name = "Gantry HAProxy load balancer"

    def __init__(self, haproxy_conn_id: str = default_conn_name, **kwargs) -> None:
        super().__init__(**kwargs)
        conn = self.get_connection(haproxy_conn_id)
        extra = conn.extra_dejson
        self.unix_socket = extra.get("socket")
        self.address = (conn.host, int(conn.port or 9999))
        self.drain_timeout = float(extra.get("drain_timeout", 30))

    def command(self, cmd: str) -> str:
        """One runtime API command (the non-interactive mode: the socket closes after the answer)."""
        if "\n" in cmd or ";" in cmd:
            raise ValueError(f"one command at a time: {cmd!r}")
        if self.unix_socket:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            target = self.unix_socket
        else:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            target = self.address
        sock.settimeout(5)
        try:
            sock.connect(target)
            sock.sendall(cmd.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except OSError as exc:
            raise AirflowException(f"HAProxy runtime API at {target} failed on {cmd.split()[0:3]}: {exc}") from exc
        finally:
            sock.close()
        return b"".join(chunks).decode()

    def servers(self, pool: str) -> list[dict]:
        if not NAME.match(pool):
            raise ValueError(f"invalid backend name {pool!r}")
        answer = self.command(f"show servers state {pool}")
        if "Can't find backend" in answer:
            raise AirflowException(f"HAProxy has no backend {pool}")
        return parse_servers_state(answer)

    def _server(self, pool: str, address: str, port: int) -> dict:
        for s in self.servers(pool):
            if s["srv_addr"] == address and int(s["srv_port"]) == int(port):
                return s
        raise AirflowException(f"{address}:{port} is not a member of backend {pool}")

    def current_sessions(self, pool: str, server: str) -> int:
        for row in parse_stat(self.command("show stat")):
            if row["pxname"] == pool and row["svname"] == server:
                return int(row["scur"] or 0)
        raise AirflowException(f"no stats for {pool}/{server}")

    def _set_state(self, pool: str, server: str, state: str) -> None:
        answer = self.command(f"set server {pool}/{server} state {state}").strip()
        if answer:  # the runtime API answers an accepted command with an empty line
            raise AirflowException(f"set server {pool}/{server} state {state}: {answer}")

    # LoadBalancer
    def disable(self, pool: str, address: str, port: int) -> bool:
        """Drain, wait for the server's sessions to end, then maintenance. False: it was out already."""
        server = self._server(pool, address, port)
        name = server["srv_name"]
        if int(server["srv_admin_state"]) & 0x01:  # forced maintenance: out already
            return False
        self._set_state(pool, name, "drain")
        deadline = time.monotonic() + self.drain_timeout
        while (sessions := self.current_sessions(pool, name)) > 0:
            if time.monotonic() > deadline:
                self.log.warning("%s/%s still has %d sessions after %.0fs of drain", pool, name, sessions,
                                 self.drain_timeout)
                break
            time.sleep(0.1)
        self._set_state(pool, name, "maint")
        return True

    def enable(self, pool: str, address: str, port: int) -> bool:
        server = self._server(pool, address, port)
        if int(server["srv_admin_state"]) == 0:
            return False
        self._set_state(pool, server["srv_name"], "ready")
        return True

    def members(self, pool: str) -> dict[str, bool]:
        """{"addr:port": in rotation}: no administrative state (maintenance or drain) set."""
        return {f"{s['srv_addr']}:{s['srv_port']}": int(s["srv_admin_state"]) == 0 for s in self.servers(pool)}
