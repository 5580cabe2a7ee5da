"""Demo service released by Gantry on the local fleet.

Standard library only: it runs with the host's /usr/bin/python3.

- GET /health   200 when ready, 503 while starting or shutting down
- GET /version  the release version
- GET /?sleep_ms=N  answers after N ms (lets tests hold requests in flight)
- GET /metrics  Prometheus text format: ``demo_http_requests_total{code}`` and the histogram
  ``demo_http_request_duration_seconds``, each labelled app, env, host and version. They count
  the app's own requests only: not /metrics, nor /health and /version, which load balancers and
  Gantry ask every second or so. Counting those would dilute a bad build's error ratio (its
  /health stays 200) and make an idle host look busy: an analysis' minimum request count must
  be real traffic.

It registers itself in etcd (v3 JSON gateway) under a lease and keeps the lease
alive. On SIGTERM it fails its health check, removes its registration, stops
accepting, lets in-flight requests finish and exits 0.

Settings come from the environment (shared/app.env on the host) and from
release.json inside the package (behaviour baked into a build: a startup delay
imitating a slow JVM, a build that never becomes healthy, one that crashes soon after it
is ready, one that fails a share of its requests with 500 while /health stays 200
(``error_ratio``), or one that answers slower (``extra_latency_ms``)).
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
# With a management port, /metrics is served there only: a scraper's keep-alive connection then
# never counts as a request in flight on the traffic port, which a graceful drain waits out.
METRICS_PORT = int(os.environ.get("METRICS_PORT", "0"))
ETCD = os.environ.get("ETCD_URL", "")
# Or a Dubbo-style registry in ZooKeeper: a provider node under /dubbo/<service>/providers.
ZOOKEEPER = os.environ.get("ZOOKEEPER_HOSTS", "")
RPC_SERVICE = os.environ.get("RPC_SERVICE", APP)
LEASE_TTL = int(os.environ.get("LEASE_TTL", "6"))
PID_FILE = os.environ.get("PID_FILE", "")

state = {"ready": False, "stopping": False, "inflight": 0}
lock = threading.Lock()
# A bad build's share of failed requests (0-1) and added latency, from its release.json.
ERROR_RATIO = float(RELEASE.get("error_ratio", 0))
EXTRA_LATENCY = float(RELEASE.get("extra_latency_ms", 0)) / 1000
# Prometheus' default buckets (client_golang's DefBuckets), in seconds.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics:
    """Request counts by status code and a latency histogram, in Prometheus' text format."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        # Both codes exist from the start: a query for 5xx over a healthy host finds a series
        # at 0 rather than none (none reads as "no data", which is never a pass).
        self.requests = {"200": 0, "500": 0}
        self.buckets = [0] * len(BUCKETS)
        self.count = 0
        self.sum = 0.0
        self.served = 0  # application requests so far, for the deterministic error share

    def next_fails(self) -> bool:
        """Whether the next request fails: exactly ``error_ratio`` of them, evenly spread (request
        n fails when floor(n x ratio) steps up), so a test can count on the share."""
        with self.lock:
            self.served += 1
            return int(self.served * ERROR_RATIO) > int((self.served - 1) * ERROR_RATIO)

    def observe(self, code: int, seconds: float) -> None:
        with self.lock:
            self.requests[str(code)] = self.requests.get(str(code), 0) + 1
            self.count += 1
            self.sum += seconds
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    self.buckets[i] += 1

    def render(self) -> str:
        labels = f'app="{APP}",env="{ENVIRONMENT}",host="{HOST_NAME}",version="{VERSION}"'
        with self.lock:
            lines = ["# HELP demo_http_requests_total Requests served, by status code (not /health, /version, /metrics).",
                     "# TYPE demo_http_requests_total counter"]
            lines += [f'demo_http_requests_total{{{labels},code="{code}"}} {n}' for code, n in sorted(self.requests.items())]
            lines += ["# HELP demo_http_request_duration_seconds Time to answer a request (not /health, /version, /metrics).",
                      "# TYPE demo_http_request_duration_seconds histogram"]
            lines += [f'demo_http_request_duration_seconds_bucket{{{labels},le="{bound}"}} {n}'
                      for bound, n in zip(BUCKETS, self.buckets)]
            lines += [f'demo_http_request_duration_seconds_bucket{{{labels},le="+Inf"}} {self.count}',
                      f"demo_http_request_duration_seconds_sum{{{labels}}} {self.sum!r}",
                      f"demo_http_request_duration_seconds_count{{{labels}}} {self.count}"]
        return "\n".join(lines) + "\n"


metrics = Metrics()


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
        # Started once, never again: the client reconnects by itself for as long as it lives,
        # under a new session after an expiry. Its blocking start() would stop and close the
        # client whenever a reconnection outlasts its timeout, ending registration for good.
        self.zk.start_async().wait(5)
        self._register_once()
        threading.Thread(target=self._renew, daemon=True).start()

    def _register_once(self) -> None:
        from kazoo.exceptions import NodeExistsError

        if not self.zk.connected:
            return  # still (re)connecting: the next tick tries again
        try:
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

    def send(self, code: int, body: str, content_type: str = "text/plain") -> None:
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
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
            elif path == "/metrics" and not (METRICS_PORT and self.server.server_address[1] == PORT):
                self.send(200, metrics.render(), "text/plain; version=0.0.4; charset=utf-8")
            elif path == "/metrics" or self.server.server_address[1] != PORT:
                self.send(404, "not here\n")
            else:
                started = time.monotonic()
                params = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
                delay = int(params.get("sleep_ms", "0")) / 1000 + EXTRA_LATENCY
                if delay:
                    time.sleep(delay)
                if metrics.next_fails():
                    code, body = 500, f"{APP} {VERSION} on {HOST_NAME}: internal error\n"
                else:
                    code, body = 200, f"{APP} {VERSION} on {HOST_NAME}\n"
                self.send(code, body)
                metrics.observe(code, time.monotonic() - started)
        finally:
            with lock:
                state["inflight"] -= 1


class Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins request threads: in-flight requests finish
    block_on_close = True
    allow_reuse_address = True


class MetricsServer(ThreadingHTTPServer):
    daemon_threads = True  # scrapes are not traffic: the app never waits for them when it stops
    block_on_close = False
    allow_reuse_address = True


def main() -> int:
    Handler.disable_nagle_algorithm = True
    server = Server((BIND, PORT), Handler)
    if METRICS_PORT:
        management = MetricsServer((BIND, METRICS_PORT), Handler)
        threading.Thread(target=management.serve_forever, kwargs={"poll_interval": 0.5}, daemon=True).start()
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
