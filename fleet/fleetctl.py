"""The local stand-in fleet: real sshd hosts, nginx, etcd, Prometheus, Alertmanager, PostgreSQL and Airflow.

Everything runs as native processes on loopback. Each daemon is started in its own
process group and its PID is recorded under ``$GANTRY_STATE/pids``; ``down`` stops exactly
those groups. Hosts are sshd daemons, each PID 1 of its own PID/mount/UTS namespaces with
its own /srv, /tmp, /var/log and /root, bound to its own 127.0.0.N:2222.

    python fleet/fleetctl.py up            # fleet daemons (idempotent)
    python fleet/fleetctl.py airflow-up    # PostgreSQL + Airflow components
    python fleet/fleetctl.py bootstrap 1.0.0
    python fleet/fleetctl.py status
    python fleet/fleetctl.py down
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "fleet"))
import artifacts  # noqa: E402

STATE = Path(os.environ.get("GANTRY_STATE", "/var/lib/gantry-local"))
PIDS = STATE / "pids"
INVENTORY = REPO / "config" / "inventory.yaml"
# The CMDB the local Gantry reads: the repository's inventory plus generated environments.
CMDB_INVENTORY = STATE / "inventory.yaml"
# GANTRY_SCALE_HOSTS=N on `up` adds the `scale` environment: N generated hosts from 127.0.1.1.
SCALE_ENV, SCALE_FIRST_ADDRESS = "scale", "127.0.1.1"

LB_HOST = "127.0.0.10"
SSH_PORT = 2222
# nginx listens for each (app, environment) pool; the demo app's test pool is :18080.
LB_PORTS = {"dev": 18070, "project": 18074, "test": 18080, "staging": 18082, "beta": 18084, "prod": 18086, "perf": 18090,
            "scale": 18092}
APP_PORT_OFFSET = {"demo": 0}
ARTIFACT_PORT = 18081
ARTIFACT_OUTAGE_FLAG = STATE / "faults" / "artifacts-down"
ETCD_PORT, ETCD_PEER_PORT = 12379, 12380
# The other registry and load balancer an environment may pick (config/gantry.yaml).
ZOOKEEPER_PORT = 12181
HAPROXY_ADMIN_PORT = 19100  # HAProxy's runtime API (stats socket, level admin)
ALERTMANAGER_PORT = 19093
PROMETHEUS_PORT = 19090
# The demo app's management port, on each host's own address: Prometheus scrapes /metrics there,
# so its keep-alive scrape connection is never in-flight traffic that a drain waits out.
APP_METRICS_PORT = 9400
PG_PORT = 15432
AIRFLOW_PORT = 8080
SMTP_PORT = 10025
REDIS_PORT = 16379
# Airflow settings shared with docker-compose.yaml (config/airflow.env, README: Scale-out).
AIRFLOW_ENV_FILE = REPO / "config" / "airflow.env"
CELERY_ENV_FILE = REPO / "config" / "airflow-celery.env"
EXECUTORS = ("local", "celery")
EXECUTOR_FILE = STATE / "executor"
DEMO_VERSIONS = ["1.0.0", "1.1.0", "1.2.0"]
# Builds that pass every health check and misbehave only in their traffic, for release analysis
# (README, Analysis): two good ones and two that go wrong as releases really do. Not 1.3.0, which
# an end-to-end test publishes and tampers with.
DEMO_BUILDS = {"1.3.1": {}, "1.3.1-errors": {"error_ratio": 0.05}, "1.3.1-slow": {"extra_latency_ms": 250},
               "1.3.2": {}}
# Local Airflow users (password = name); `alice` is the configured prod approver.
DEMO_USERS = ("admin", "alice", "bob")
# Gantry's own user of Airflow's REST API (read-only): waiting approvals read their answers as it.
SERVICE_USER = "gantry"
# Under the FAB auth manager (fab_setup; not the default yet): one user of each kind of Gantry
# role (gantry.access), password = name, and the service user as FAB's read-only Viewer.
FAB_DEMO_USERS = {"victor": "ReleaseViewer", "dana": "Developer", "rita": "ReleaseManager",
                  "alice": "Approver", "oscar": "OnCall", "admin": "Admin"}
SERVICE_USER_FAB_ROLE = "Viewer"


# ---------------------------------------------------------------- helpers
def log(msg: str) -> None:
    print(f"[fleet] {msg}", flush=True)


def sh(*cmd: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=check, text=True, capture_output=True, **kw)


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def start_time(pid: int) -> str | None:
    """The kernel's start time of a process (clock ticks since boot), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def recorded_pid(name: str) -> int | None:
    """The PID a pid file records, if that process is still the one we started: a pid file left
    by an earlier boot or run may name a PID that now belongs to somebody else."""
    path = PIDS / f"{name}.pid"
    if not path.exists():
        return None
    pid, _, started = path.read_text().strip().partition(" ")
    if not pid.isdigit() or (started and start_time(int(pid)) != started):
        return None
    return int(pid)


def read_pid(name: str) -> int | None:
    pid = recorded_pid(name)
    return pid if pid and pid_alive(pid) else None


def spawn(name: str, cmd: list[str], *, env: dict | None = None, cwd: Path | None = None) -> int:
    """Start a daemon in its own session/process group, log to logs/<name>.log, record its PID."""
    if read_pid(name):
        return read_pid(name)
    (STATE / "logs").mkdir(parents=True, exist_ok=True)
    PIDS.mkdir(parents=True, exist_ok=True)
    out = open(STATE / "logs" / f"{name}.log", "ab")
    proc = subprocess.Popen(
        cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True, env=env, cwd=cwd,
    )
    (PIDS / f"{name}.pid").write_text(f"{proc.pid} {start_time(proc.pid)}")
    return proc.pid


def stop(name: str, timeout: float = 15) -> None:
    path = PIDS / f"{name}.pid"
    pid = recorded_pid(name)
    if pid is None:
        path.unlink(missing_ok=True)
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)  # the whole group: Airflow components fork workers
        except ProcessLookupError:
            break
        deadline = time.time() + timeout
        while time.time() < deadline and pid_alive(pid):
            time.sleep(0.1)
        if not pid_alive(pid):
            break
    path.unlink(missing_ok=True)


def wait_tcp(host: str, port: int, timeout: float = 30, name: str = "") -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{name or host}:{port} did not come up within {timeout}s; see {STATE}/logs")


def wait_http(url: str, timeout: float = 60, name: str = "") -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status < 500:
                    return
        except Exception:
            time.sleep(0.2)
    raise SystemExit(f"{name or url} not healthy within {timeout}s; see {STATE}/logs")


def scale_hosts(count: int, app: str = "demo") -> list[dict]:
    """``count`` generated hosts, numbered from 1, on consecutive loopback addresses (skipping
    .0 and .255)."""
    import ipaddress

    hosts, address = [], ipaddress.ip_address(SCALE_FIRST_ADDRESS)
    while len(hosts) < count:
        if int(address) & 0xFF not in (0, 255):
            hosts.append({"name": f"{SCALE_ENV}-{app}-{len(hosts) + 1:03d}", "address": str(address),
                          "ssh_port": SSH_PORT})
        address += 1
    return hosts


def write_inventory() -> dict:
    """The CMDB's inventory: the repository's, plus ``GANTRY_SCALE_HOSTS`` generated hosts."""
    inv = yaml.safe_load(INVENTORY.read_text())
    count = int(os.environ.get("GANTRY_SCALE_HOSTS") or 0)
    if count:
        inv["environments"][SCALE_ENV] = {"demo": scale_hosts(count)}
    STATE.mkdir(parents=True, exist_ok=True)
    CMDB_INVENTORY.write_text(yaml.safe_dump(inv, sort_keys=False))
    return inv


def inventory_hosts() -> list[dict]:
    inv = yaml.safe_load(CMDB_INVENTORY.read_text()) if CMDB_INVENTORY.exists() else write_inventory()
    hosts = []
    for env, apps in inv["environments"].items():
        for app, entries in apps.items():
            for h in entries:
                hosts.append({**h, "env": env, "app": app})
    return hosts


def app_config(app: str) -> dict:
    return yaml.safe_load((REPO / "config" / "gantry.yaml").read_text())["apps"][app]


def env_adapters(env: str, app: str) -> tuple[str, str]:
    """(registry, load balancer) of an app in an environment, as config/gantry.yaml picks them
    (one name, or per app with a default: gantry.config.adapter_of)."""
    cfg = yaml.safe_load((REPO / "config" / "gantry.yaml").read_text())["environments"].get(env) or {}

    def pick(choice, fallback):
        return choice if isinstance(choice, str) else choice.get(app, choice.get("default", fallback))

    return pick(cfg.get("registry", "etcd"), "etcd"), pick(cfg.get("load_balancer", "nginx"), "nginx")


def rpc_service(app: str) -> str:
    return app_config(app).get("rpc_service") or app


# ---------------------------------------------------------------- ssh identity
def ensure_keys() -> None:
    ssh = STATE / "ssh"
    ssh.mkdir(parents=True, exist_ok=True)
    os.chmod(STATE, 0o755)
    if not (ssh / "id_ed25519").exists():
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "gantry", "-f", str(ssh / "id_ed25519"))


def host_key(hostdir: Path) -> str:
    key = hostdir / "ssh_host_ed25519_key"
    if not key.exists():
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key))
    return (hostdir / "ssh_host_ed25519_key.pub").read_text().split()[:2]


SSHD_CONFIG = """\
ListenAddress {address}:{port}
HostKey {host_key}
PidFile none
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
AuthorizedKeysFile {authorized_keys}
MaxStartups 100:30:200
MaxSessions 50
AcceptEnv LANG
Subsystem sftp internal-sftp
"""

HOST_INIT = """\
#!/bin/sh
# PID 1 of one stand-in host: give it its own filesystem view, start sshd, and stay (reaping
# orphans) so that sshd can die alone - the app keeps running, as on a real host.
set -e
D="$1"; NAME="$2"
mount --bind "$D/etc-ssh" /etc/ssh
mount --bind "$D/srv" /srv
mount --bind "$D/var-log" /var/log
mount --bind "$D/root" /root
mount -t tmpfs tmpfs /run
mkdir -p /run/sshd
mount -t tmpfs tmpfs /tmp
hostname "$NAME"
/usr/sbin/sshd -D -e -f /etc/ssh/sshd_config &
trap 'exit 0' TERM INT
while :; do wait || true; sleep 1; done
"""


def host_dir(name: str) -> Path:
    return STATE / "hosts" / name


def prepare_host(h: dict, pubkey: str) -> list[str]:
    d = host_dir(h["name"])
    for sub in ("etc-ssh", "srv", "var-log", "root/.ssh"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    os.chmod(d / "root", 0o700)
    ktype, kdata = host_key(d / "etc-ssh")
    (d / "root/.ssh/authorized_keys").write_text(pubkey)
    (d / "etc-ssh/sshd_config").write_text(SSHD_CONFIG.format(
        address=h["address"], port=h.get("ssh_port", SSH_PORT),
        host_key="/etc/ssh/ssh_host_ed25519_key", authorized_keys="/root/.ssh/authorized_keys"))
    (d / "init.sh").write_text(HOST_INIT)
    # What configuration management would have put on a real host: the app's environment.
    cfg = app_config(h["app"])
    shared = d / "srv" / cfg["install_root"].removeprefix("/srv/") / "shared"
    (shared).mkdir(parents=True, exist_ok=True)
    (d / "srv" / cfg["install_root"].removeprefix("/srv/") / "releases").mkdir(exist_ok=True)
    registry = env_adapters(h["env"], h["app"])[0]
    where = (f"ZOOKEEPER_HOSTS=127.0.0.1:{ZOOKEEPER_PORT}\nRPC_SERVICE={rpc_service(h['app'])}\n"
             if registry == "zookeeper" else f"ETCD_URL=http://127.0.0.1:{ETCD_PORT}\n")
    (shared / "app.env").write_text(
        f"GANTRY_APP={h['app']}\nGANTRY_ENV={h['env']}\nHOST_NAME={h['name']}\n"
        f"BIND_ADDR={h['address']}\nPORT={cfg['port']}\nMETRICS_PORT={APP_METRICS_PORT}\n{where}")
    return [f"[{h['address']}]:{h.get('ssh_port', SSH_PORT)}", ktype, kdata]


def start_host(h: dict) -> None:
    d = host_dir(h["name"])
    spawn(f"host-{h['name']}", [
        "unshare", "--mount", "--uts", "--pid", "--fork", "--mount-proc", "--kill-child",
        "sh", str(d / "init.sh"), str(d), h["name"]])


def _host_processes(name: str, command: str) -> list[int]:
    """PIDs (as seen from here) of the processes named ``command`` inside one host's namespace."""
    pid = read_pid(f"host-{name}")
    if not pid:
        return []
    init = int(Path(f"/proc/{pid}/task/{pid}/children").read_text().split()[0])
    ns = os.readlink(f"/proc/{init}/ns/pid")
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and os.readlink(proc / "ns/pid") == ns and \
                    (proc / "comm").read_text().strip() == command:
                found.append(int(proc.name))
        except OSError:
            pass
    return found


def sshd_gone(name: str) -> None:
    """Fault: the host's sshd (listener and sessions) dies; the host and its app stay up."""
    for pid in _host_processes(name, "sshd"):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def sshd_back(name: str) -> None:
    """Starts the host's sshd again inside its namespace."""
    pid = read_pid(f"host-{name}")
    init = int(Path(f"/proc/{pid}/task/{pid}/children").read_text().split()[0])
    sh("nsenter", "-t", str(init), "-m", "-u", "-p", "--", "/usr/sbin/sshd", "-e", "-f", "/etc/ssh/sshd_config")


def stop_host(name: str) -> None:
    """Ending the host's PID 1 ends everything deployed there."""
    pid = read_pid(f"host-{name}")
    if pid:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        for c in children:
            try:
                os.kill(int(c), signal.SIGTERM)
            except ProcessLookupError:
                pass
    stop(f"host-{name}", timeout=5)


# ---------------------------------------------------------------- nginx
def pool_name(app: str, env: str) -> str:
    return f"{app}-{env}"


def lb_port(app: str, env: str) -> int:
    return LB_PORTS[env] + APP_PORT_OFFSET[app]


def upstream_file(pool: str) -> Path:
    return STATE / "nginx" / "upstreams" / f"{pool}.conf"


def write_nginx_conf(hosts: list[dict]) -> None:
    n = STATE / "nginx"
    for sub in ("upstreams", "logs", "temp"):
        (n / sub).mkdir(parents=True, exist_ok=True)
    servers = []
    for env, app in sorted({(h["env"], h["app"]) for h in hosts}):
        if env_adapters(env, app)[1] != "nginx":
            continue
        pool = pool_name(app, env)
        ups = upstream_file(pool)
        pool_hosts = [h for h in hosts if h["app"] == app and h["env"] == env]
        if not ups.exists():  # keep the live state across `up` runs
            ups.write_text("".join(
                f"server {h['address']}:{app_config(app)['port']};\n" for h in pool_hosts))
        servers.append(f"""
    upstream {pool} {{
        include {ups};
    }}
    server {{
        listen 127.0.0.1:{lb_port(app, env)};
        access_log off;
        location / {{
            proxy_pass http://{pool};
            # Do not hide upstream failures by retrying elsewhere: a drain that is not
            # graceful must show up as failed requests.
            proxy_next_upstream off;
            proxy_connect_timeout 2s;
        }}
    }}""")
    (n / "nginx.conf").write_text(f"""
pid {n}/nginx.pid;
error_log {n}/logs/error.log;
worker_processes 1;
events {{ worker_connections 4096; }}
http {{
    client_body_temp_path {n}/temp/body;
    proxy_temp_path {n}/temp/proxy;
    fastcgi_temp_path {n}/temp/fastcgi;
    uwsgi_temp_path {n}/temp/uwsgi;
    scgi_temp_path {n}/temp/scgi;
    access_log off;
    keepalive_timeout 5s;
    {''.join(servers)}
    server {{
        # The artifact repository: <app>/<version>/<file> and <file>.sha256
        listen 127.0.0.1:{ARTIFACT_PORT};
        root {STATE}/artifacts;
        autoindex on;
        # An outage of the store, for the fault tests: while this file exists it answers 503.
        if (-f {ARTIFACT_OUTAGE_FLAG}) {{ return 503; }}
    }}
}}
""")


# ---------------------------------------------------------------- HAProxy
def haproxy_pools(hosts: list[dict]) -> dict[str, list[dict]]:
    pools: dict[str, list[dict]] = {}
    for h in hosts:
        if env_adapters(h["env"], h["app"])[1] == "haproxy":
            pools.setdefault(pool_name(h["app"], h["env"]), []).append(h)
    return pools


def write_haproxy_conf(hosts: list[dict]) -> Path:
    d = STATE / "haproxy"
    d.mkdir(parents=True, exist_ok=True)
    sections = []
    for pool, members in sorted(haproxy_pools(hosts).items()):
        app, env = members[0]["app"], members[0]["env"]
        port = app_config(app)["port"]
        servers = "".join(f"    server {h['name']} {h['address']}:{port}\n" for h in members)
        sections.append(f"""
frontend {pool}
    bind 127.0.0.1:{lb_port(app, env)}
    default_backend {pool}

backend {pool}
    balance roundrobin
{servers}""")
    conf = d / "haproxy.cfg"
    conf.write_text(f"""global
    pidfile {d}/haproxy.pid
    # The runtime API Gantry drives (Connection gantry_haproxy); loopback only.
    stats socket ipv4@127.0.0.1:{HAPROXY_ADMIN_PORT} level admin
    stats socket {d}/admin.sock mode 600 level admin
    # Members' runtime state (drain, maint: a host Gantry took out) survives a restart that
    # dumps it here first (haproxy_restart, as a unit's ExecReload/ExecStop would).
    server-state-file {d}/server-state

defaults
    load-server-state-from-file global
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    # No retry on another server: a drain that is not graceful must show as failed requests
    # (as nginx's proxy_next_upstream off does for the nginx pools).
    retries 0
    option http-server-close
{''.join(sections)}""")
    return conf


def haproxy_start(conf: Path) -> None:
    spawn("haproxy", ["haproxy", "-db", "-f", str(conf)])


def haproxy_restart() -> None:
    """Restart HAProxy the way its operators must (README, Adapters): the members' runtime state
    dumped into its server-state-file first, so a member Gantry drained or put in maintenance
    comes back that way instead of back in rotation."""
    d = STATE / "haproxy"
    (d / "server-state").write_text(haproxy_command("show servers state"))
    stop("haproxy")
    haproxy_start(d / "haproxy.cfg")
    wait_tcp("127.0.0.1", HAPROXY_ADMIN_PORT, name="haproxy")


def haproxy_command(cmd: str) -> str:
    with socket.create_connection(("127.0.0.1", HAPROXY_ADMIN_PORT), timeout=5) as sock:
        sock.sendall(cmd.encode() + b"\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode()


# ---------------------------------------------------------------- ZooKeeper
ZOOKEEPER_CLASSPATH = "/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar"


def zookeeper_up() -> None:
    d = STATE / "zookeeper"
    (d / "data").mkdir(parents=True, exist_ok=True)
    (d / "zoo.cfg").write_text(f"""dataDir={d / 'data'}
clientPort={ZOOKEEPER_PORT}
clientPortAddress=127.0.0.1
tickTime=500
initLimit=10
syncLimit=5
maxClientCnxns=0
admin.enableServer=false
4lw.commands.whitelist=ruok,mntr,srvr
""")
    spawn("zookeeper", ["java", "-Xmx128m", "-cp", ZOOKEEPER_CLASSPATH,
                        "org.apache.zookeeper.server.quorum.QuorumPeerMain", str(d / "zoo.cfg")])


def zookeeper_ready(timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", ZOOKEEPER_PORT), timeout=1) as sock:
                sock.sendall(b"ruok")
                if sock.recv(16) == b"imok":
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"zookeeper did not answer within {timeout}s; see {STATE}/logs/zookeeper.log")


# ---------------------------------------------------------------- Prometheus
# Scraped and evaluated every second: a canary is one host, and an analysis measures it over
# intervals of 10-30 s; 1 s samples give rate() ten or more points in such a window and let an
# alert fire within seconds of a bad build taking traffic. 40 local targets cost little.
PROMETHEUS_INTERVAL = "1s"
# Alert rules Prometheus evaluates; firing alerts go to the fleet's Alertmanager, labelled app,
# env and host, which is what stops a rollout (README, Analysis).
PROMETHEUS_RULES = """\
groups:
  - name: demo
    rules:
      - alert: DemoHighErrorRate
        expr: >-
          sum by (app, env, host) (rate(demo_http_requests_total{code=~"5.."}[30s]))
          / sum by (app, env, host) (rate(demo_http_requests_total[30s])) > 0.02
        for: 5s
        labels: {severity: page}
        annotations:
          summary: "{{ $labels.host }} fails {{ $value | humanizePercentage }} of its requests"
"""


def prometheus_config(targets: list[dict], rule_file: Path, alertmanager: str | None) -> str:
    """Prometheus' configuration: every target's /metrics, labelled env, app and host.

    :param targets: ``{"address", "port", "env", "app", "name"}`` per app instance.
    :param rule_file: the alert rules to evaluate.
    :param alertmanager: ``host:port`` that firing alerts go to; None: none.
    """
    config = {
        "global": {"scrape_interval": PROMETHEUS_INTERVAL, "evaluation_interval": PROMETHEUS_INTERVAL,
                   "scrape_timeout": PROMETHEUS_INTERVAL},
        "rule_files": [str(rule_file)],
        "scrape_configs": [{
            "job_name": "apps",
            # The app labels its own series with app, env, host and version; the target's labels
            # fill in those it leaves out (and label `up`).
            "honor_labels": True,
            "static_configs": [{"targets": [f"{t['address']}:{t['port']}"],
                                "labels": {"env": t["env"], "app": t["app"], "host": t["name"]}} for t in targets],
        }],
    }
    if alertmanager:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    return yaml.safe_dump(config, sort_keys=False)


def prometheus_command(directory: Path, port: int) -> list[str]:
    """Prometheus on 127.0.0.1:``port``, its configuration and storage under ``directory``."""
    return ["prometheus", f"--config.file={directory / 'prometheus.yml'}",
            f"--storage.tsdb.path={directory / 'data'}", "--storage.tsdb.retention.time=2d",
            f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"]


def write_prometheus_files(directory: Path, targets: list[dict], alertmanager: str | None) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "rules.yml").write_text(PROMETHEUS_RULES)
    (directory / "prometheus.yml").write_text(prometheus_config(targets, directory / "rules.yml", alertmanager))


def prometheus_up(hosts: list[dict]) -> None:
    """The fleet's Prometheus, scraping every host's app; a running one re-reads its files (SIGHUP)."""
    targets = [{**h, "port": APP_METRICS_PORT} for h in hosts]
    directory = STATE / "prometheus"
    write_prometheus_files(directory, targets, f"127.0.0.1:{ALERTMANAGER_PORT}")
    running = read_pid("prometheus")
    if running:
        os.kill(running, signal.SIGHUP)
        return
    spawn("prometheus", prometheus_command(directory, PROMETHEUS_PORT))


# ---------------------------------------------------------------- components
def up() -> None:
    t0 = time.time()
    ensure_keys()
    pubkey = (STATE / "ssh/id_ed25519.pub").read_text()
    write_inventory()
    hosts = inventory_hosts()
    known = [prepare_host(h, pubkey) for h in hosts]

    # The LB box: sshd on the real filesystem, where nginx's config lives.
    lb = STATE / "lb"
    lb.mkdir(exist_ok=True)
    ktype, kdata = host_key(lb)
    (lb / "authorized_keys").write_text(pubkey)
    (lb / "sshd_config").write_text(SSHD_CONFIG.format(
        address=LB_HOST, port=SSH_PORT, host_key=lb / "ssh_host_ed25519_key",
        authorized_keys=lb / "authorized_keys"))
    known.append([f"[{LB_HOST}]:{SSH_PORT}", ktype, kdata])
    (STATE / "ssh/known_hosts").write_text("".join(" ".join(k) + "\n" for k in known))
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)
    spawn("lb-sshd", ["/usr/sbin/sshd", "-D", "-e", "-f", str(lb / "sshd_config")])
    for h in hosts:
        start_host(h)

    (STATE / "artifacts").mkdir(exist_ok=True)
    for v, behaviour in {**{v: {} for v in DEMO_VERSIONS}, **DEMO_BUILDS}.items():
        if not (STATE / "artifacts/demo" / v).exists():
            artifacts.publish_demo(STATE / "artifacts", v, **behaviour)
    write_nginx_conf(hosts)
    n = STATE / "nginx"
    if read_pid("nginx"):  # running from an earlier `up`: pick up new pools
        sh("nginx", "-s", "reload", "-c", str(n / "nginx.conf"))
    spawn("nginx", ["nginx", "-e", str(n / "logs/error.log"), "-c", str(n / "nginx.conf"), "-g", "daemon off;"])

    haproxy_conf = write_haproxy_conf(hosts)
    if not read_pid("haproxy"):  # a fresh start: no member is out of rotation yet
        (STATE / "haproxy" / "server-state").unlink(missing_ok=True)
    haproxy_start(haproxy_conf)
    zookeeper_up()

    spawn("etcd", [
        "etcd", "--name", "gantry", "--data-dir", str(STATE / "etcd"),
        "--listen-client-urls", f"http://127.0.0.1:{ETCD_PORT}",
        "--advertise-client-urls", f"http://127.0.0.1:{ETCD_PORT}",
        "--listen-peer-urls", f"http://127.0.0.1:{ETCD_PEER_PORT}",
        "--initial-advertise-peer-urls", f"http://127.0.0.1:{ETCD_PEER_PORT}",
        "--initial-cluster", f"gantry=http://127.0.0.1:{ETCD_PEER_PORT}",
        "--initial-cluster-state", "new", "--log-level", "warn"])

    am = STATE / "alertmanager"
    am.mkdir(exist_ok=True)
    (am / "alertmanager.yml").write_text(
        "route:\n  receiver: fleet\nreceivers:\n  - name: fleet\n")
    spawn("alertmanager", [
        "prometheus-alertmanager", f"--config.file={am / 'alertmanager.yml'}",
        f"--storage.path={am / 'data'}", f"--web.listen-address=127.0.0.1:{ALERTMANAGER_PORT}",
        "--cluster.listen-address="])

    prometheus_up(hosts)
    spawn("mailbox", [sys.executable, str(REPO / "fleet" / "mailbox.py"), "127.0.0.1", str(SMTP_PORT),
                      str(STATE / "mail")])

    for h in hosts:
        wait_tcp(h["address"], h.get("ssh_port", SSH_PORT), name=h["name"])
    wait_tcp(LB_HOST, SSH_PORT, name="lb-sshd")
    for port in {lb_port(h["app"], h["env"]) for h in hosts} | {ARTIFACT_PORT}:
        wait_tcp("127.0.0.1", port, name="nginx")
    wait_http(f"http://127.0.0.1:{ETCD_PORT}/health", name="etcd")
    wait_tcp("127.0.0.1", HAPROXY_ADMIN_PORT, name="haproxy")
    zookeeper_ready()
    wait_http(f"http://127.0.0.1:{ALERTMANAGER_PORT}/-/ready", name="alertmanager")
    wait_http(f"http://127.0.0.1:{PROMETHEUS_PORT}/-/ready", name="prometheus")
    wait_tcp("127.0.0.1", SMTP_PORT, name="mailbox")
    # The port answering is not enough: it may be a stranger's (a host left over from another
    # inventory). Each host's own sshd must still be running.
    dead = [h["name"] for h in hosts if not read_pid(f"host-{h['name']}")]
    if dead:
        raise SystemExit(f"sshd of {', '.join(dead)} exited; see {STATE / 'logs'} (address already in use?)")
    log(f"fleet up: {len(hosts)} hosts, nginx, haproxy, etcd, zookeeper, prometheus, alertmanager, artifacts in "
        f"{time.time() - t0:.2f}s")


def fleet_down() -> None:
    t0 = time.time()
    # Every host that was started, by its recorded PID - also hosts the inventory no longer lists.
    for path in sorted(PIDS.glob("host-*.pid")) if PIDS.exists() else []:
        stop_host(path.stem.removeprefix("host-"))
    for name in ("lb-sshd", "nginx", "haproxy", "etcd", "zookeeper", "prometheus", "alertmanager", "mailbox"):
        stop(name)
    log(f"fleet down in {time.time() - t0:.2f}s")


# ---------------------------------------------------------------- PostgreSQL + Airflow
PG_BIN = Path("/usr/lib/postgresql/15/bin")


def postgres_up() -> None:
    data = STATE / "pg"
    if not (data / "PG_VERSION").exists():
        data.mkdir(parents=True, exist_ok=True)
        shutil.chown(data, "postgres", "postgres")
        sh("runuser", "-u", "postgres", "--", str(PG_BIN / "initdb"), "-D", str(data),
           "-A", "trust", "-U", "postgres", "--no-sync")
    sock = STATE / "pgsock"
    sock.mkdir(exist_ok=True)
    shutil.chown(sock, "postgres", "postgres")
    if not read_pid("postgres"):
        spawn("postgres", ["runuser", "-u", "postgres", "--", str(PG_BIN / "postgres"), "-D", str(data),
                           "-p", str(PG_PORT), "-c", "listen_addresses=127.0.0.1",
                           "-c", f"unix_socket_directories={sock}", "-c", "max_connections=300",
                           "-c", "fsync=off"])
    wait_tcp("127.0.0.1", PG_PORT, name="postgres")
    for _ in range(50):
        if sh(str(PG_BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(PG_PORT), check=False).returncode == 0:
            break
        time.sleep(0.2)
    psql = ["runuser", "-u", "postgres", "--", "psql", "-h", str(sock), "-p", str(PG_PORT), "-tAc"]
    if sh(*psql, "SELECT 1 FROM pg_roles WHERE rolname='airflow'").stdout.strip() != "1":
        sh(*psql, "CREATE ROLE airflow LOGIN PASSWORD 'airflow'")
    if sh(*psql, "SELECT 1 FROM pg_database WHERE datname='airflow'").stdout.strip() != "1":
        sh(*psql, "CREATE DATABASE airflow OWNER airflow")
    # Gantry's release ledger.
    if sh(*psql, "SELECT 1 FROM pg_roles WHERE rolname='gantry'").stdout.strip() != "1":
        sh(*psql, "CREATE ROLE gantry LOGIN PASSWORD 'gantry'")
    if sh(*psql, "SELECT 1 FROM pg_database WHERE datname='gantry'").stdout.strip() != "1":
        sh(*psql, "CREATE DATABASE gantry OWNER gantry")
    # Each app with migrations gets a database per environment (what its releases migrate).
    for app, env in app_databases():
        if sh(*psql, f"SELECT 1 FROM pg_roles WHERE rolname='{app}'").stdout.strip() != "1":
            sh(*psql, f"CREATE ROLE {app} LOGIN PASSWORD '{app}'")
        if sh(*psql, f"SELECT 1 FROM pg_database WHERE datname='{app}_{env}'").stdout.strip() != "1":
            sh(*psql, f"CREATE DATABASE {app}_{env} OWNER {app}")


def app_databases() -> list[tuple[str, str]]:
    """Every environment of an app with migrations has its database, with or without hosts."""
    config = yaml.safe_load((REPO / "config" / "gantry.yaml").read_text())
    return sorted((app, env) for app, cfg in config["apps"].items() if cfg.get("migrations")
                  for env in config["environments"])


def reset_database(app: str, env: str) -> None:
    """Empty the app's database in one environment (test resets)."""
    sock = STATE / "pgsock"
    sh("runuser", "-u", "postgres", "--", "psql", "-h", str(sock), "-p", str(PG_PORT), "-d", f"{app}_{env}",
       "-qc", f"DROP SCHEMA public CASCADE; CREATE SCHEMA public AUTHORIZATION {app};")


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines (docker compose's env_file format: no quotes, no expansion)."""
    pairs = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, sep, value = line.partition("=")
            if not sep:
                raise SystemExit(f"{path}: not KEY=VALUE: {line!r}")
            pairs[key.strip()] = value
    return pairs


def requested_executor() -> str:
    """The executor `up` starts Airflow on: ``GANTRY_EXECUTOR`` (local or celery), default local."""
    name = os.environ.get("GANTRY_EXECUTOR") or "local"
    if name not in EXECUTORS:
        raise SystemExit(f"GANTRY_EXECUTOR={name!r}: expected one of {', '.join(EXECUTORS)}")
    return name


def running_executor() -> str:
    """The executor the running install was started on (a component restarted alone must use it)."""
    return EXECUTOR_FILE.read_text().strip() if EXECUTOR_FILE.exists() else requested_executor()


def airflow_env(executor: str | None = None) -> dict[str, str]:
    """Airflow settings for the local install, and the Connections Gantry uses."""
    executor = executor or running_executor()
    STATE.mkdir(parents=True, exist_ok=True)
    secrets = STATE / "airflow-secrets.json"
    if not secrets.exists():
        secrets.write_text(json.dumps({k: os.urandom(24).hex() for k in ("jwt", "api")}))
        os.chmod(secrets, 0o600)
    s = json.loads(secrets.read_text())
    from cryptography.fernet import Fernet  # an Airflow dependency
    if "fernet" not in s or "service" not in s:
        s.setdefault("fernet", Fernet.generate_key().decode())
        # The password of Gantry's own API user (SERVICE_USER), which reads approvals' answers.
        s.setdefault("service", os.urandom(18).hex())
        secrets.write_text(json.dumps(s))
    home = STATE / "airflow"
    env = {
        # What Gantry runs with on any install (and docker-compose.yaml reads too).
        **read_env_file(AIRFLOW_ENV_FILE),
        **(read_env_file(CELERY_ENV_FILE) if executor == "celery" else {"AIRFLOW__CORE__EXECUTOR": "LocalExecutor"}),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__FERNET_KEY": s["fernet"],
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join([*(f"{u}:admin" for u in DEMO_USERS),
                                                              f"{SERVICE_USER}:viewer"]),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{AIRFLOW_PORT}/execution/",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN":
            f"postgresql+psycopg2://airflow:airflow@127.0.0.1:{PG_PORT}/airflow",
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{AIRFLOW_PORT}",
        "AIRFLOW__API__PORT": str(AIRFLOW_PORT),
        "AIRFLOW__API__SECRET_KEY": s["api"],
        "AIRFLOW__API_AUTH__JWT_SECRET": s["jwt"],
        "PYTHONPATH": str(REPO / "include"),
        "GANTRY_CONFIG": str(REPO / "config" / "gantry.yaml"),
        "GANTRY_INVENTORY": str(CMDB_INVENTORY),
    }
    if os.environ.get("GANTRY_AIRFLOW_PARALLELISM"):
        env["AIRFLOW__CORE__PARALLELISM"] = os.environ["GANTRY_AIRFLOW_PARALLELISM"]
    if os.environ.get("GANTRY_RECONCILE_EVERY_MINUTES"):
        env["GANTRY_RECONCILE_EVERY_MINUTES"] = os.environ["GANTRY_RECONCILE_EVERY_MINUTES"]
    if executor == "celery":
        env["AIRFLOW__CELERY__BROKER_URL"] = f"redis://127.0.0.1:{REDIS_PORT}/0"
        env["AIRFLOW__CELERY__RESULT_BACKEND"] = f"db+postgresql+psycopg2://airflow:airflow@127.0.0.1:{PG_PORT}/airflow"
    key = STATE / "ssh/id_ed25519"
    known = STATE / "ssh/known_hosts"
    conns = {
        # One SSH identity for every host; the host address comes from the CMDB at run time.
        "gantry_ssh": {"conn_type": "ssh", "login": "root", "port": SSH_PORT,
                       "extra": {"key_file": str(key), "known_hosts": str(known)}},
        "gantry_lb": {"conn_type": "ssh", "host": LB_HOST, "login": "root", "port": SSH_PORT,
                      "extra": {"key_file": str(key), "known_hosts": str(known),
                                "nginx_conf": str(STATE / "nginx/nginx.conf"),
                                "upstream_dir": str(STATE / "nginx/upstreams")}},
        "gantry_registry": {"conn_type": "http", "host": "127.0.0.1", "port": ETCD_PORT, "schema": "http",
                            "extra": {"prefix": "/gantry/registry"}},
        "gantry_zookeeper": {"conn_type": "generic", "host": "127.0.0.1", "port": ZOOKEEPER_PORT,
                             "extra": {"root": "/dubbo"}},
        "gantry_haproxy": {"conn_type": "generic", "host": "127.0.0.1", "port": HAPROXY_ADMIN_PORT,
                           "extra": {"drain_timeout": 30}},
        "gantry_alertmanager": {"conn_type": "http", "host": "127.0.0.1", "port": ALERTMANAGER_PORT,
                                "schema": "http"},
        "gantry_prometheus": {"conn_type": "http", "host": "127.0.0.1", "port": PROMETHEUS_PORT,
                              "schema": "http"},
        "gantry_artifacts": {"conn_type": "http", "host": "127.0.0.1", "port": ARTIFACT_PORT,
                             "schema": "http"},
        # Airflow's REST API as Gantry's service user: a waiting approval reads its answer there.
        "gantry_airflow": {"conn_type": "http", "host": "127.0.0.1", "port": AIRFLOW_PORT, "schema": "http",
                           "login": SERVICE_USER, "password": s["service"]},
    }
    conns["gantry_smtp"] = {"conn_type": "smtp", "host": "127.0.0.1", "port": SMTP_PORT,
                            "extra": {"from_email": "gantry@localhost", "disable_tls": True, "disable_ssl": True}}
    conns["gantry_ledger"] = {"conn_type": "postgres", "host": "127.0.0.1", "port": PG_PORT, "login": "gantry",
                              "password": "gantry", "schema": "gantry"}
    for app, env_name in app_databases():
        conns[f"gantry_db_{app}_{env_name}"] = {
            "conn_type": "postgres", "host": "127.0.0.1", "port": PG_PORT, "login": app, "password": app,
            "schema": f"{app}_{env_name}"}
    for conn_id, c in conns.items():
        env[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(c)
    return env


def airflow_cmd() -> str:
    return str(Path(sys.executable).parent / "airflow")


AIRFLOW_COMPONENTS = {
    "airflow-api-server": ["api-server", "--port", str(AIRFLOW_PORT)],
    "airflow-scheduler": ["scheduler"],
    "airflow-dag-processor": ["dag-processor"],
    "airflow-triggerer": ["triggerer"],
}
# Tasks without an environment queue go to Airflow's default queue, as configured in the shared file.
DEFAULT_QUEUE = read_env_file(AIRFLOW_ENV_FILE)["AIRFLOW__OPERATORS__DEFAULT_QUEUE"]


def celery_queues() -> list[str]:
    """The Celery queues the config routes to: the default one and every environment's ``queue``
    (README, Scale-out). The local demo runs one worker per queue."""
    config = yaml.safe_load((REPO / "config" / "gantry.yaml").read_text())
    zones = {env["queue"] for env in config["environments"].values() if env.get("queue")}
    return [DEFAULT_QUEUE, *sorted(zones - {DEFAULT_QUEUE})]


def worker_component(name: str) -> str:
    return f"airflow-worker-{name}"


def start_worker(name: str, queue: str, executor_env: dict[str, str], serve_logs: bool = False) -> int:
    """One Celery worker process serving ``queue``. Workers on one machine share its log
    directory, so one log server (the first worker's, on [logging] worker_log_server_port)
    serves every worker's task logs; each worker records its own name on the task instances
    it runs (gantry.workers.worker_hostname)."""
    # No mingle/gossip: Airflow needs neither, and they cost a second at start and chatter after.
    args = ["celery", "worker", "--queues", queue, "--celery-hostname", f"{name}@%h", "--without-mingle",
            "--without-gossip"]
    if not serve_logs:
        args.append("--skip-serve-logs")
    return spawn(worker_component(name), [airflow_cmd(), *args],
                 env={**os.environ, **executor_env, "GANTRY_WORKER_NAME": f"worker-{name}"})


def redis_up() -> None:
    """The Celery broker: Debian's redis-server on loopback. Its append-only file, written at every
    command, keeps the queued (and the taken but unacknowledged) task messages across a restart
    or a crash: without it a restarted broker loses them, and each lost task waits for Airflow's
    task_queued_timeout (300 s) before it is queued again."""
    data = STATE / "redis"
    data.mkdir(parents=True, exist_ok=True)
    spawn("redis", ["redis-server", "--bind", "127.0.0.1", "--port", str(REDIS_PORT), "--dir", str(data),
                    "--save", "", "--appendonly", "yes", "--appendfsync", "always", "--protected-mode", "yes"])
    wait_tcp("127.0.0.1", REDIS_PORT, name="redis")


def write_env_file(executor: str | None = None) -> Path:
    env = airflow_env(executor)
    path = STATE / "airflow.env"
    path.write_text("".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items()))
    return path


def start_airflow_components(executor: str) -> None:
    EXECUTOR_FILE.write_text(executor)
    write_env_file(executor)
    env = {**os.environ, **airflow_env(executor)}
    if executor == "celery":
        redis_up()
        for i, queue in enumerate(celery_queues()):
            start_worker(queue, queue, env, serve_logs=(i == 0))
    for name, args in AIRFLOW_COMPONENTS.items():
        spawn(name, [airflow_cmd(), *args], env=env)
    wait_http(f"http://127.0.0.1:{AIRFLOW_PORT}/api/v2/monitor/health", timeout=120, name="airflow api")


def stop_airflow_components() -> None:
    for name in AIRFLOW_COMPONENTS:
        stop(name, timeout=20)
    # Every worker that was started, by its recorded PID (also spares a test started).
    for path in sorted(PIDS.glob(f"{worker_component('')}*.pid")) if PIDS.exists() else []:
        stop(path.stem, timeout=20)
    stop("redis")


def airflow_up(executor: str | None = None) -> None:
    t0 = time.time()
    executor = executor or requested_executor()
    running = running_executor()
    if running != executor and read_pid("airflow-scheduler"):
        log(f"airflow runs on the {running} executor: restarting it on the {executor} executor")
        stop_airflow_components()
    postgres_up()
    env = {**os.environ, **airflow_env(executor)}
    home = Path(env["AIRFLOW_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    pw = home / "passwords.json"
    service_password = json.loads(env["AIRFLOW_CONN_GANTRY_AIRFLOW"])["password"]
    pw.write_text(json.dumps({**{u: u for u in DEMO_USERS}, SERVICE_USER: service_password}))
    os.chmod(pw, 0o600)
    subprocess.run([airflow_cmd(), "db", "migrate"], env=env, check=True,
                   stdout=open(STATE / "logs/airflow-db-migrate.log", "ab"), stderr=subprocess.STDOUT)
    start_airflow_components(executor)
    log(f"airflow up ({executor} executor) in {time.time() - t0:.1f}s: http://127.0.0.1:{AIRFLOW_PORT} (admin / admin)")


def switch_executor(executor: str) -> None:
    """Restart Airflow's components on another executor (PostgreSQL, its history and the
    fleet stay as they are). Nothing may be running."""
    t0 = time.time()
    stop_airflow_components()
    start_airflow_components(executor)
    log(f"airflow switched to the {executor} executor in {time.time() - t0:.1f}s")


def airflow_down() -> None:
    stop_airflow_components()
    stop("postgres")


# ---------------------------------------------------------------- deploy a baseline directly
def fab_role_commands(roles: dict[str, frozenset[tuple[str, str]]]) -> list[list[str]]:
    """The ``airflow roles`` commands that create ``roles`` (name -> (action, resource)
    permissions) with their permissions. ``roles add-perms`` grants every action it is given on
    every resource to every role, so the roles that need the same resources for an action share
    one command: a handful of CLI calls, each a few seconds, instead of one per permission.

    :param roles: the roles and their global permissions (gantry.access.fab_roles).
    """
    groups: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for role in sorted(roles):
        for action in sorted({a for a, _ in roles[role]}):
            resources = tuple(sorted(r for a, r in roles[role] if a == action))
            groups.setdefault((action, resources), []).append(role)
    commands = [["roles", "create", *sorted(roles)]]
    for (action, resources), members in sorted(groups.items()):
        commands.append(["roles", "add-perms", *members, "-r", *resources, "-a", action])
    return commands


def cli_json(output: str) -> list:
    """The JSON list an ``airflow ... -o json`` command printed; Airflow may log warnings to
    stdout before it.

    :param output: the command's standard output.
    """
    lines = output.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("[")), None)
    return json.loads("\n".join(lines[start:])) if start is not None else []


def fab_user_commands(users: dict[str, str], existing: set[str], service_password: str) -> list[list[str]]:
    """The ``airflow users create`` commands for the demo users (password = name) and Gantry's
    service user that ``existing`` does not hold yet.

    :param users: user name -> role.
    :param existing: user names already in FAB's database.
    :param service_password: the service user's password (from the fleet's secrets).
    """
    wanted = {**{u: (role, u) for u, role in users.items()},
              SERVICE_USER: (SERVICE_USER_FAB_ROLE, service_password)}
    return [["users", "create", "--username", user, "--firstname", user, "--lastname", "Gantry demo",
             "--email", f"{user}@example.com", "--role", role, "--password", password]
            for user, (role, password) in sorted(wanted.items()) if user not in existing]


def fab_setup(env: dict[str, str] | None = None) -> None:
    """Create Gantry's FAB roles (gantry.access.fab_roles, from config/gantry.yaml) and the demo
    users in the Airflow database of ``env``, which must run the FAB auth manager. Idempotent:
    existing roles get the permissions they lack (none are taken away: ``airflow roles
    del-perms`` does that), existing users are left as they are. Not run by ``up`` yet.

    The order matters: ``sync-perm`` creates FAB's resources and built-in roles; the roles must
    exist before a DAG naming them in its access_control is synced (otherwise that DAG's file
    gets an import error until the next parse); ``sync-perm --include-dags`` then applies the
    DAGs' access_control without waiting for the DAG processor.

    :param env: the Airflow environment; default: the local fleet's, with the FAB auth manager.
    """
    sys.path.insert(0, str(REPO / "include"))
    from gantry.access import FAB_AUTH_MANAGER, fab_roles, uses_fab
    from gantry.config import load_config

    if env is None:
        env = {**os.environ, **airflow_env(), "AIRFLOW__CORE__AUTH_MANAGER": FAB_AUTH_MANAGER}
    if not uses_fab(env.get("AIRFLOW__CORE__AUTH_MANAGER", "")):
        raise SystemExit("fab-setup: AIRFLOW__CORE__AUTH_MANAGER is not the FAB auth manager "
                         f"({FAB_AUTH_MANAGER})")

    def airflow(*args: str) -> str:
        done = sh(airflow_cmd(), *args, env=env, check=False)
        if done.returncode != 0:
            raise SystemExit(f"fab-setup: airflow {' '.join(args[:2])} failed: {(done.stderr or done.stdout).strip()[-800:]}")
        return done.stdout

    started = time.monotonic()
    airflow("sync-perm")
    for command in fab_role_commands(fab_roles(load_config(env.get("GANTRY_CONFIG")))):
        airflow(*command)
    existing = {u["username"] for u in cli_json(airflow("users", "list", "-o", "json"))}
    service_password = json.loads((STATE / "airflow-secrets.json").read_text())["service"] \
        if (STATE / "airflow-secrets.json").exists() else os.urandom(18).hex()
    for command in fab_user_commands(FAB_DEMO_USERS, existing, service_password):
        airflow(*command)
    airflow("sync-perm", "--include-dags")
    log(f"fab: roles and users ready in {time.monotonic() - started:.1f}s")


def ssh_cmd(h: dict) -> list[str]:
    return ["ssh", "-i", str(STATE / "ssh/id_ed25519"), "-o", f"UserKnownHostsFile={STATE}/ssh/known_hosts",
            "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-p", str(h.get("ssh_port", SSH_PORT)),
            f"root@{h['address']}"]


def bootstrap(version: str, env_name: str = "test", app: str = "demo", force: bool = False) -> None:
    """First install of an app on hosts that run nothing healthy yet (not graceful: nothing is
    serving). With ``force`` (test resets), any host not serving ``version`` is reinstalled."""
    cfg = app_config(app)
    pkg = cfg["package"].format(version=version)
    url = f"http://127.0.0.1:{ARTIFACT_PORT}/{app}/{version}/{pkg}"
    root = cfg["install_root"]
    procs = []
    for h in inventory_hosts():
        if h["env"] != env_name or h["app"] != app:
            continue
        script = f"""set -e
cd {root}
if {{ [ {'"$(readlink current 2>/dev/null)" != "releases/' + version + '"' if force else "! -e current"} ]; }} || ! curl -fsS -m 2 http://{h['address']}:{cfg['port']}{cfg['health_path']} >/dev/null 2>&1; then
  [ -e current ] && (cd current && {cfg['stop_command']}) || true
  rm -rf releases/{version} && mkdir -p releases/{version}
  curl -fsS {url} -o /tmp/{pkg} && tar -xzf /tmp/{pkg} -C releases/{version} && rm -f /tmp/{pkg}
  ln -sfn releases/{version} current.new && mv -T current.new current
  (cd current && {cfg['start_command']})
  echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) {version}" >> shared/gantry-releases.log
fi
{'echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) ' + version + '" > shared/gantry-releases.log' if force else ''}"""
        procs.append((h, subprocess.Popen(ssh_cmd(h) + [script], stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, text=True)))
    for h, p in procs:
        out, _ = p.communicate(timeout=60)
        if p.returncode:
            raise SystemExit(f"bootstrap on {h['name']} failed: {out}")
    for h, _ in procs:
        wait_http(f"http://{h['address']}:{cfg['port']}{cfg['health_path']}", timeout=30, name=h["name"])
    log(f"{app} {version} running on {len(procs)} {env_name} hosts")


def reset(version: str, env_name: str = "test", app: str = "demo") -> None:
    """Put the fleet back to a known state between tests: the version running everywhere,
    every host in the pool and the registry, no silences."""
    hosts = [h for h in inventory_hosts() if h["env"] == env_name and h["app"] == app]
    registry, balancer = env_adapters(env_name, app)
    if balancer == "haproxy":
        for h in hosts:
            haproxy_command(f"set server {pool_name(app, env_name)}/{h['name']} state ready")
    else:
        upstream_file(pool_name(app, env_name)).write_text(
            "".join(f"server {h['address']}:{app_config(app)['port']};\n" for h in hosts))
        n = STATE / "nginx"
        sh("nginx", "-s", "reload", "-c", str(n / "nginx.conf"))
    if registry == "zookeeper":
        reset_zookeeper(app, env_name)
    else:
        import base64
        prefix = f"/gantry/registry/{app}/{env_name}/disabled/"
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        body = json.dumps({"key": base64.b64encode(prefix.encode()).decode(),
                           "range_end": base64.b64encode(end.encode()).decode()}).encode()
        urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{ETCD_PORT}/v3/kv/deleterange", data=body),
                               timeout=5).read()
    am = f"http://127.0.0.1:{ALERTMANAGER_PORT}/api/v2"
    ours = urllib.parse.urlencode([("filter", f'app="{app}"'), ("filter", f'env="{env_name}"')])
    # Only this environment's silences: a release running elsewhere keeps its hosts silenced.
    for silence in json.load(urllib.request.urlopen(f"{am}/silences?{ours}", timeout=5)):
        if silence["status"]["state"] == "active":
            urllib.request.urlopen(urllib.request.Request(f"{am}/silence/{silence['id']}", method="DELETE"),
                                   timeout=5).read()
    if (app, env_name) in app_databases() and read_pid("postgres"):
        reset_database(app, env_name)
    bootstrap(version, env_name, app, force=True)


def reset_zookeeper(app: str, env_name: str) -> None:
    """Removes every override of the environment's Dubbo group (Gantry's disable entries)."""
    from urllib.parse import parse_qsl, unquote, urlsplit

    from kazoo.client import KazooClient

    zk = KazooClient(hosts=f"127.0.0.1:{ZOOKEEPER_PORT}")
    zk.start(timeout=10)
    try:
        path = f"/dubbo/{rpc_service(app)}/configurators"
        for node in zk.get_children(path) if zk.exists(path) else []:
            if dict(parse_qsl(urlsplit(unquote(node)).query)).get("group") == env_name:
                zk.delete(f"{path}/{node}")
    finally:
        zk.stop()
        zk.close()


def status() -> None:
    names = sorted(p.stem for p in PIDS.glob("*.pid")) if PIDS.exists() else []
    for n in names:
        print(f"{n:32s} {'up' if read_pid(n) else 'DOWN'}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("command", choices=["up", "down", "airflow-up", "airflow-down", "bootstrap", "reset", "status",
                                        "env-file", "switch-executor", "fab-setup", "haproxy-restart"])
    ap.add_argument("version", nargs="?", default="1.0.0",
                    help="bootstrap, reset: the version to install; switch-executor: local or celery")
    a = ap.parse_args()
    if a.command == "up":
        up()
    elif a.command == "down":
        airflow_down()
        fleet_down()
    elif a.command == "airflow-up":
        airflow_up()
    elif a.command == "airflow-down":
        airflow_down()
    elif a.command == "bootstrap":  # every environment the demo shows runs the app
        for env_name in sorted({h["env"] for h in inventory_hosts() if h["app"] == "demo"}):
            bootstrap(a.version, env_name)
    elif a.command == "reset":
        reset(a.version)
    elif a.command == "env-file":
        print(write_env_file())
    elif a.command == "haproxy-restart":
        haproxy_restart()
    elif a.command == "fab-setup":  # FAB roles and demo users (README, Who may do what); not part of up yet
        fab_setup()
    elif a.command == "switch-executor":
        if a.version not in EXECUTORS:
            raise SystemExit(f"switch-executor: expected one of {', '.join(EXECUTORS)}")
        switch_executor(a.version)
    else:
        status()


if __name__ == "__main__":
    main()
