"""Demo service released by Gantry on the local fleet.

Standard library only: it runs with the host's /usr/bin/python3.

- GET /health   200 when ready, 503 while starting or shutting down
- GET /version  the release version
- GET /?sleep_ms=N  answers after N ms (lets tests hold requests in flight)

It registers itself in etcd (v3 JSON gateway) under a lease and keeps the lease
alive. On SIGTERM it fails its health check, removes its registration, stops
accepting, lets in-flight requests finish and exits 0.

Settings come from the environment (shared/app.env on the host) and from
release.json inside the package (behaviour baked into a build: a startup delay
imitating a slow JVM, a build that never becomes healthy, or one that crashes soon after it
is ready).
"""
from __future__ import annotations

import base64
import json
import os
import signal
import sys
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
RELEASE = json.loads((HERE / "release.json").read_text())
VERSION = RELEASE["version"]

APP = os.environ.get("GANTRY_APP", "demo")
ENVIRONMENT = os.environ.get("GANTRY_ENV", "test")
HOST_NAME = os.environ.get("HOST_NAME", "localhost")
BIND = os.environ.get("BIND_ADDR", "127.0.0.1")
PORT = int(os.environ.get("PORT", "9000"))
ETCD = os.environ.get("ETCD_URL", "")
# Or a Dubbo-style registry in ZooKeeper: a provider node under /dubbo/<service>/providers.
ZOOKEEPER = os.environ.get("ZOOKEEPER_HOSTS", "")
RPC_SERVICE = os.environ.get("RPC_SERVICE", APP)
LEASE_TTL = int(os.environ.get("LEASE_TTL", "6"))
PID_FILE = os.environ.get("PID_FILE", "")

state = {"ready": False, "stopping": False, "inflight": 0}
lock = threading.Lock()


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} [{HOST_NAME} {VERSION}] {msg}", flush=True)


def etcd(path: str, body: dict) -> dict:
    req = urllib.request.Request(
        ETCD + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=3) as resp:
        return json.loads(resp.read() or b"{}")


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


INSTANCE_KEY = f"/gantry/registry/{APP}/{ENVIRONMENT}/instances/{HOST_NAME}"


class Registration(threading.Thread):
    """Keeps this instance's key alive under a lease; re-registers if the lease was lost."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.lease: str | None = None
        self.stop = threading.Event()

    def register(self) -> None:
        self.lease = etcd("/v3/lease/grant", {"TTL": LEASE_TTL})["ID"]
        value = json.dumps({"host": HOST_NAME, "address": BIND, "port": PORT, "version": VERSION})
        etcd("/v3/kv/put", {"key": b64(INSTANCE_KEY), "value": b64(value), "lease": self.lease})
        log(f"registered {INSTANCE_KEY}")

    def run(self) -> None:
        while not self.stop.wait(LEASE_TTL / 3):
            try:
                if self.lease is None:
                    self.register()
                    continue
                out = etcd("/v3/lease/keepalive", {"ID": self.lease})
                if int(out.get("result", {}).get("TTL", 0)) <= 0:
                    self.lease = None  # expired: register again on the next tick
            except Exception as exc:  # registry outage must not kill the service
                log(f"registry keepalive failed: {exc}")

    def deregister(self) -> None:
        self.stop.set()
        if self.lease:
            try:
                etcd("/v3/lease/revoke", {"ID": self.lease})
            except Exception as exc:
                log(f"deregister failed: {exc}")


class ZooKeeperRegistration:
    """This instance as a Dubbo provider: an ephemeral node of its own ZooKeeper session, made
    again whenever a new session replaces an expired one (as Dubbo's registry does)."""

    def __init__(self) -> None:
        sys.path.insert(0, str(HERE / "vendor"))  # the package ships its ZooKeeper client
        from kazoo.client import KazooClient

        self.zk = KazooClient(hosts=ZOOKEEPER, timeout=6)
        params = {"anyhost": "false", "application": APP, "group": ENVIRONMENT, "hostname": HOST_NAME,
                  "interface": RPC_SERVICE, "pid": str(os.getpid()), "revision": VERSION, "side": "provider",
                  "timestamp": str(int(time.time() * 1000))}
        url = f"dubbo://{BIND}:{PORT}/{RPC_SERVICE}?{urllib.parse.urlencode(sorted(params.items()))}"
        self.path = f"/dubbo/{RPC_SERVICE}/providers/{urllib.parse.quote(url, safe='')}"
        self.lost = threading.Event()
        self.stopping = False

    def register(self) -> None:
        from kazoo.protocol.states import KazooState

        self.zk.add_listener(lambda st: self.lost.set() if st == KazooState.LOST else None)
        self.lost.set()
        self._register_once()
        threading.Thread(target=self._renew, daemon=True).start()

    def _register_once(self) -> None:
        from kazoo.exceptions import NodeExistsError

        try:
            if not self.zk.connected:
                self.zk.start(timeout=5)
            self.zk.create(self.path, b"", ephemeral=True, makepath=True)
            log(f"registered provider in /dubbo/{RPC_SERVICE}/providers")
        except NodeExistsError:
            pass
        except Exception as exc:  # registry outage must not kill the service
            log(f"registration failed, will retry: {exc}")
            return
        self.lost.clear()

    def _renew(self) -> None:
        while not self.stopping:
            if self.lost.wait(1) and not self.stopping:
                self._register_once()

    def deregister(self) -> None:
        self.stopping = True
        try:
            self.zk.delete(self.path)
        except Exception as exc:
            log(f"deregister failed: {exc}")
        self.zk.stop()
        self.zk.close()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # keep the log to lifecycle events
        pass

    def send(self, code: int, body: str) -> None:
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        with lock:
            state["inflight"] += 1
        try:
            path, _, query = self.path.partition("?")
            if path == "/health":
                broken = RELEASE.get("never_healthy") or HOST_NAME in RELEASE.get("never_healthy_on", [])
                ok = state["ready"] and not state["stopping"] and not broken
                self.send(200 if ok else 503, "ok\n" if ok else "unavailable\n")
            elif path == "/version":
                self.send(200, VERSION + "\n")
            else:
                params = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
                delay = int(params.get("sleep_ms", "0"))
                if delay:
                    time.sleep(delay / 1000)
                self.send(200, f"{APP} {VERSION} on {HOST_NAME}\n")
        finally:
            with lock:
                state["inflight"] -= 1


class Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins request threads: in-flight requests finish
    block_on_close = True
    allow_reuse_address = True


def main() -> int:
    Handler.disable_nagle_algorithm = True
    server = Server((BIND, PORT), Handler)
    if PID_FILE:
        Path(PID_FILE).write_text(str(os.getpid()))
    registration = ZooKeeperRegistration() if ZOOKEEPER else Registration()

    def on_term(signum, frame):
        log("SIGTERM: failing health, deregistering, draining")
        state["stopping"] = True
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_term)
    log(f"listening on {BIND}:{PORT}")

    def become_ready():
        time.sleep(float(RELEASE.get("startup_delay", 0)))
        if ZOOKEEPER:
            registration.register()
        elif ETCD:
            try:
                registration.register()
            except Exception as exc:
                log(f"initial registration failed, will retry: {exc}")
            registration.start()
        state["ready"] = True
        log("ready")
        if HOST_NAME in RELEASE.get("crash_after_ready_on", []):  # a flapping build
            time.sleep(float(RELEASE.get("crash_after_seconds", 1)))
            log("crashing")
            os._exit(70)

    threading.Thread(target=become_ready, daemon=True).start()
    server.serve_forever(poll_interval=0.2)
    registration.deregister()
    server.server_close()  # waits for in-flight request threads
    if PID_FILE and Path(PID_FILE).read_text().strip() == str(os.getpid()):
        Path(PID_FILE).unlink()
    log("stopped cleanly")
    return 0


if __name__ == "__main__":
    sys.exit(main())
