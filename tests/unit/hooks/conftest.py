"""A real HTTP server on 127.0.0.1 for the hooks to talk to, started inside the test."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@pytest.fixture
def serve(monkeypatch):
    """``serve(handler, conn_id)``: serve ``handler`` on a free loopback port and point the Airflow
    Connection ``conn_id`` at it. Returns the server; every server stops when the test ends."""
    servers = []

    def start(handler: type[BaseHTTPRequestHandler], conn_id: str) -> ThreadingHTTPServer:
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        servers.append(server)
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(
            {"conn_type": "http", "host": "127.0.0.1", "port": server.server_port, "schema": "http"}))
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
