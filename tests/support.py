"""Observers used by the end-to-end tests: load through the load balancer, rotation sampling,
fleet state - read from whichever registry and load balancer the environment uses."""
from __future__ import annotations

import http.client
import email.header
import threading
import time
from collections import Counter

import fleetctl
from gantry.hooks.loadbalancer import parse_upstream


def lb_members(app: str = "demo", env: str = "test") -> dict[str, bool]:
    """The environment's load-balancer pool, {"addr:port": in rotation}: nginx's upstream file
    as the fleet wrote it, or HAProxy's runtime state."""
    pool = fleetctl.pool_name(app, env)
    if fleetctl.env_adapters(env, app)[1] == "haproxy":
        from gantry.hooks.haproxy import HAProxyRuntimeHook

        return HAProxyRuntimeHook().members(pool)
    return parse_upstream(fleetctl.upstream_file(pool).read_text())


def registry(env: str = "test", app: str = "demo"):
    """The app's registry hook in the environment (etcd or ZooKeeper)."""
    from gantry import adapters
    from gantry.config import load_config

    return adapters.registry(load_config().environment(env), app)


class LoadGenerator:
    """Requests through the load balancer, a new connection per request, until stopped. nginx
    and HAProxy are configured not to retry upstream errors, so any non-graceful step shows as a
    failure."""

    def __init__(self, env: str = "test", threads: int = 3, sleep_ms: int = 15, app: str = "demo") -> None:
        self.port, self.sleep_ms = fleetctl.lb_port(app, env), sleep_ms
        self.ok = 0
        self.failures: list[str] = []
        self.versions: Counter[str] = Counter()
        # (version, host) of every answer the app gave, 500s included: who served which build.
        self.served: Counter[tuple[str, str]] = Counter()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(threads)]

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                conn.request("GET", f"/?sleep_ms={self.sleep_ms}", headers={"Connection": "close"})
                resp = conn.getresponse()
                body = resp.read().decode()
                conn.close()
                words = body.split()
                with self._lock:
                    if len(words) >= 4 and words[2] == "on":
                        self.served[(words[1], words[3].rstrip(":"))] += 1
                    if resp.status == 200:
                        self.ok += 1
                        self.versions[body.split()[1]] += 1
                    else:
                        self.failures.append(f"{time.time():.3f} HTTP {resp.status}")
            except Exception as exc:
                with self._lock:
                    self.failures.append(f"{time.time():.3f} {type(exc).__name__}: {exc}")
            time.sleep(0.005)

    def __enter__(self) -> "LoadGenerator":
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=15)

    @property
    def total(self) -> int:
        return self.ok + len(self.failures)

    def hosts_serving(self, version: str) -> set[str]:
        """The hosts that answered any request with ``version``."""
        return {host for (v, host) in self.served if v == version}


class RotationSampler:
    """Reads the load balancer pool and the registry every ``interval`` seconds and keeps
    the largest number of hosts seen out of rotation at once."""

    def __init__(self, app: str = "demo", env: str = "test", interval: float = 0.1) -> None:
        self.app, self.env, self.interval = app, env, interval
        self.registry = registry(env, app)
        self.max_lb_down = 0
        self.max_registry_disabled = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            members = lb_members(self.app, self.env)
            down = sum(1 for enabled in members.values() if not enabled)
            disabled = len(self.registry.disabled(self.app, self.env))
            self.max_lb_down = max(self.max_lb_down, down)
            self.max_registry_disabled = max(self.max_registry_disabled, disabled)
            self.samples += 1
            time.sleep(self.interval)

    def __enter__(self) -> "RotationSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def served_version(address: str, port: int = 9000) -> str | None:
    try:
        conn = http.client.HTTPConnection(address, port, timeout=3)
        conn.request("GET", "/version")
        resp = conn.getresponse()
        return resp.read().decode().strip() if resp.status == 200 else None
    except OSError:
        return None


def fleet_state(app: str = "demo", env: str = "test") -> dict:
    """What the hosts, the load balancer, the registry and monitoring say right now."""
    from gantry.hooks.monitoring import AlertmanagerHook

    hosts = [h for h in fleetctl.inventory_hosts() if h["env"] == env and h["app"] == app]
    reg = registry(env, app)
    return {
        "versions": {h["name"]: served_version(h["address"]) for h in hosts},
        "lb": lb_members(app, env),
        "registry_disabled": set(reg.disabled(app, env)),
        "registry_instances": {k: v["version"] for k, v in reg.instances(app, env).items()},
        "silences": AlertmanagerHook().active(app, env),
        "hosts": hosts,
    }


def assert_all_in_rotation(state: dict) -> None:
    assert all(state["lb"].values()), f"hosts left down in the load balancer: {state['lb']}"
    assert not state["registry_disabled"], f"hosts left disabled in the registry: {state['registry_disabled']}"
    assert not state["silences"], f"silences left active: {state['silences']}"


def wait_for_mail(subject_part: str, after: float, timeout: float = 90) -> "email.message.Message":
    """A message the fleet's SMTP receiver stored after ``after`` (epoch s) whose subject contains
    ``subject_part``."""
    import email

    deadline = time.time() + timeout
    seen: list[str] = []
    while time.time() < deadline:
        for path in sorted((fleetctl.STATE / "mail").glob("*.eml")):
            if int(path.stem) / 1e9 < after:
                continue
            msg = email.message_from_bytes(path.read_bytes())
            subject = str(email.header.make_header(email.header.decode_header(msg["Subject"])))
            if subject_part in subject:
                return msg
            seen.append(subject)
        time.sleep(0.5)
    raise AssertionError(f"no mail with {subject_part!r}; saw {sorted(set(seen))}")


def mail_text(msg) -> str:
    """All text parts of a message, decoded."""
    parts = msg.walk() if msg.is_multipart() else [msg]
    return "".join(p.get_payload(decode=True).decode(errors="replace") for p in parts
                   if p.get_content_maintype() == "text")


def run_dag(airflow, dag_id: str, conf: dict, timeout: float = 900) -> tuple[str, str, dict]:
    """Trigger, wait for the end; returns run id, final state and task instances by (task, map index)."""
    resp = airflow.trigger(dag_id, conf)
    assert resp.status_code == 200, resp.text
    run_id = resp.json()["dag_run_id"]
    state = airflow.wait_run(dag_id, run_id, timeout=timeout)
    tis = {(ti["task_id"], ti["map_index"]): ti for ti in airflow.task_instances(dag_id, run_id)}
    return run_id, state, tis


def per_host(tis: dict, task: str) -> dict[str, dict]:
    """One host step's task instances, by host name (the rendered map index)."""
    return {ti["rendered_map_index"]: ti for (t, _), ti in tis.items() if t == f"host.{task}"}


def host_outcomes(airflow, dag_id: str, run_id: str, tis: dict) -> dict[str, dict]:
    """What each host's tasks recorded as its outcome (the run report's source; the later task wins)."""
    out = {}
    for task in ("host.precheck_and_stage", "host.offline_restart_online"):
        for (t, idx), ti in tis.items():
            if t == task:
                record = airflow.xcom(dag_id, run_id, task, key="outcome", map_index=idx)
                if record:
                    out[record["host"]] = record
    return out


def step(record: dict, name: str) -> dict | None:
    """One step of a host's step table ({"step", "at" (epoch s), "seconds", "status"}), or None."""
    return next((s for s in record.get("steps", []) if s["step"] == name), None)


def left_rotation_at(record: dict) -> float | None:
    """When the host started leaving rotation (its silence), or None if it never did."""
    s = step(record, "silence monitoring")
    return s["at"] if s else None


def back_in_rotation_at(record: dict) -> float | None:
    """When the host was back in rotation (end of its last online step), or None."""
    s = [x for x in record.get("steps", []) if x["step"] == "online"]
    return s[-1]["at"] + s[-1]["seconds"] if s else None


def wait_for(predicate, what: str, timeout: float = 180, interval: float = 0.2):
    """Poll until ``predicate()`` returns something true, and return it."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if value := predicate():
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def in_load_balancer(host: dict, env: str = "test", app: str = "demo") -> bool | None:
    """Whether the load balancer's pool serves the host (None: not in the pool at all)."""
    members = lb_members(app, env)
    return members.get(f"{host['address']}:9000")


def wait_for_approval(api, dag_id: str, run_id: str, timeout: float = 180) -> dict:
    """The run's first unanswered human-in-the-loop request, as soon as it exists (polled every
    0.1 s: the tests answer at once, as a ChatOps bot would); fails if the run ends first."""
    def asked():
        if pending := api.pending_approvals(dag_id, run_id):
            return pending[0]
        assert api.run_state(dag_id, run_id) not in ("success", "failed"), "the run ended without asking"
        return None

    return wait_for(asked, f"a question of {dag_id} {run_id}", timeout=timeout, interval=0.1)
