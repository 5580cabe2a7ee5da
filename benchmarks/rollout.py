"""Benchmarks of the local fleet and a promotion, printed as a table and JSON.

    .venv/bin/python benchmarks/rollout.py [--version 1.1.0] [--skip-fleet-cycle]

Measures: fleet down/up time; memory (PSS) of the running fleet and of Airflow; DAG parse
time; the release-window timetable's computation and the ledger REST view's latency; for a
5-host and a 20-host promotion: wall time, the CPU-seconds the Airflow process tree spent
(total and per host), the critical path (per batch, the slowest host's drain + quiet period +
restart + health check, from the hosts' step tables), wall / critical path, the time before the
first host leaves rotation, and per batch the time out of rotation minus its critical path.
With ``--reconcile N``: N passes of the reconciler over every host (wall, CPU-seconds).
With ``--executors local,celery``: the 20-host promotion on each executor in turn, Airflow
restarted on it before every run (CPU-seconds include redis and the Celery workers).
Run it with nothing else using the fleet or the machine.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "fleet"), str(REPO / "include"), str(REPO / "tests")]
import fleetctl  # noqa: E402
from airflow_api import AirflowAPI  # noqa: E402



def descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                ppid = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(ppid, []).append(int(p.name))
    out, todo = set(), [pid]
    while todo:
        cur = todo.pop()
        out.add(cur)
        todo.extend(children.get(cur, []))
    return out


def pss_mib(pids: set[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def component_memory(prefixes: tuple[str, ...]) -> float:
    pids: set[int] = set()
    for f in fleetctl.PIDS.glob("*.pid"):
        if f.stem.startswith(prefixes) and (pid := fleetctl.read_pid(f.stem)):
            pids |= descendants(pid)
    return pss_mib(pids)


def parse_time() -> dict:
    env = {**os.environ, **fleetctl.airflow_env()}
    code = ("import time; t=time.perf_counter(); import airflow; t1=time.perf_counter();"
            "from airflow.dag_processing.dagbag import DagBag; b=DagBag('%s'); t2=time.perf_counter();"
            "import json; print(json.dumps({'import_airflow_s': t1-t, 'dagbag_fill_s': t2-t1,"
            "'files': {s.file: s.duration.total_seconds() for s in b.dagbag_stats}}))" % (REPO / "dags"))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def ts(value: str) -> float:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def cpu_seconds(prefixes: tuple[str, ...]) -> float:
    """User + system CPU of the components' process trees, including children they have reaped
    (every Airflow task process is a reaped child of an executor worker)."""
    tick = os.sysconf("SC_CLK_TCK")
    pids: set[int] = set()
    for f in fleetctl.PIDS.glob("*.pid"):
        if f.stem.startswith(prefixes) and (pid := fleetctl.read_pid(f.stem)):
            pids |= descendants(pid)
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return total / tick


# Steps on a batch's critical path that are the release itself: the drain, the configured quiet
# period, the restart and the health check, as measured on the host.
MANDATORY = ("offline: drain", "quiet period", "restart", "health check")


def promotion(api: AirflowAPI, env: str, version: str, plan: str | None = None, load: bool = False) -> dict:
    """One Gantry promotion; with ``load``, under traffic through the load balancer, counting
    failed requests and the most hosts seen out of rotation at once."""
    import contextlib

    from support import LoadGenerator, RotationSampler

    dag = f"gantry_promote_{env}"
    api.wait_for_dag(dag)
    conf = {"app": "demo", "version": version, "auto_promote": False}
    if plan:
        conf["batches"] = plan
    with contextlib.ExitStack() as stack:
        traffic = stack.enter_context(LoadGenerator(env=env, threads=3)) if load else None
        sampler = stack.enter_context(RotationSampler(env=env, interval=0.2)) if load else None
        # Every Airflow process (the Celery workers are airflow-worker-*) and the Celery broker.
        cpu0, t0 = cpu_seconds(("airflow-", "redis")), time.time()
        worker0 = cpu_seconds(("airflow-worker-",))
        run_id = api.trigger(dag, conf).json()["dag_run_id"]
        state = api.wait_run(dag, run_id, timeout=3600)
        wall, cpu = time.time() - t0, cpu_seconds(("airflow-", "redis")) - cpu0
        worker_cpu = cpu_seconds(("airflow-worker-",)) - worker0
    tis = api.task_instances(dag, run_id)
    # The run's own span, from the trigger (queued) to the scheduler marking it done: without the
    # up-to-1 s slack of polling for its end.
    run = api.get(f"/dags/{dag}/dagRuns/{run_id}")
    span = ts(run["end_date"]) - ts(run["queued_at"])
    records = [api.xcom(dag, run_id, ti["task_id"], "outcome", ti["map_index"]) or {}
               for ti in tis if ti["task_id"] == "host.offline_restart_online"]
    by_batch: dict[int, list[dict]] = {}
    for r in records:
        by_batch.setdefault(r.get("batch", -1), []).append(r)

    def step_s(r: dict, names) -> float:
        return sum(s["seconds"] for s in r.get("steps", []) if s["step"] in names)

    batches = []
    for b, rs in sorted(by_batch.items()):
        left = [s["at"] for r in rs for s in r.get("steps", []) if s["step"] == "silence monitoring"]
        back = [s["at"] + s["seconds"] for r in rs for s in r.get("steps", []) if s["step"] == "online"]
        critical = max(step_s(r, MANDATORY) for r in rs)
        batch_wall = (max(back) - min(left)) if left and back else None
        batches.append({"batch": b + 1, "hosts": len(rs), "critical_path_s": round(critical, 2),
                        "out_of_rotation_wall_s": round(batch_wall, 2) if batch_wall else None,
                        "overhead_s": round(batch_wall - critical, 2) if batch_wall else None})
    first_left = min((s["at"] for r in records for s in r.get("steps", []) if s["step"] == "silence monitoring"),
                     default=None)
    critical = sum(b["critical_path_s"] for b in batches)
    hosts = len(records)
    return {
        "state": state, "hosts": hosts, "batches": len(batches), "task_instances": len(tis),
        "wall_s": round(wall, 1), "run_span_s": round(span, 1), "airflow_cpu_s": round(cpu, 1),
        "airflow_cpu_s_per_host": round(cpu / max(hosts, 1), 2),
        # CeleryExecutor: the share spent in the Celery workers (their task processes included).
        "celery_worker_cpu_s_per_host": round(worker_cpu / max(hosts, 1), 2),
        "critical_path_s": round(critical, 1), "wall_to_critical_path": round(wall / critical, 1) if critical else None,
        "run_span_to_critical_path": round(span / critical, 2) if critical else None,
        "trigger_to_first_host_offline_s": round(first_left - t0, 1) if first_left else None,
        "per_batch": batches,
        **({"requests": traffic.total, "failed_requests": len(traffic.failures),
            "max_out_of_rotation_lb": sampler.max_lb_down, "max_disabled_in_registry": sampler.max_registry_disabled}
           if load else {}),
    }


def reconcile_passes(api: AirflowAPI, passes: int) -> dict:
    """Passes of gantry_reconcile over every environment: what a scheduled pass costs. The first
    pass may find (and record) drift left by earlier runs; the later ones find it unchanged, the
    steady state of a pass every few minutes."""
    dag = "gantry_reconcile"
    api.wait_for_dag(dag)
    out = []
    for _ in range(passes):
        cpu0, t0 = cpu_seconds(("airflow-",)), time.time()
        run_id = api.trigger(dag, {}).json()["dag_run_id"]
        state = api.wait_run(dag, run_id, timeout=900)
        wall, cpu = time.time() - t0, cpu_seconds(("airflow-",)) - cpu0
        run = api.get(f"/dags/{dag}/dagRuns/{run_id}")
        tis = api.task_instances(dag, run_id)
        span = ts(run["end_date"]) - ts(run["queued_at"])
        out.append({"state": state, "wall_s": round(wall, 1), "run_span_s": round(span, 1),
                    "airflow_cpu_s": round(cpu, 1), "task_instances": len(tis),
                    "hosts_acted_on": sum(1 for t in tis if t["task_id"] == "reconcile_host" and t["map_index"] >= 0)})
    hosts = len(fleetctl.inventory_hosts())
    steady = out[1:] or out
    return {"hosts_observed": hosts, "passes": out,
            "steady_run_span_s_median": median([p["run_span_s"] for p in steady]),
            "steady_airflow_cpu_s_median": median([p["airflow_cpu_s"] for p in steady]),
            "steady_airflow_cpu_s_per_host": round(median([p["airflow_cpu_s"] for p in steady]) / hosts, 3)}


def window_and_ledger(api: AirflowAPI) -> dict:
    """Cost of the scheduled-window parts: the timetable's next opening (computed by the scheduler
    for every parse of gantry_scheduled_prod) and the ledger's REST view (plugin, authenticated)."""
    from gantry.config import load_config
    from gantry.windows import ReleaseWindow

    window = ReleaseWindow.from_config(load_config().environment("prod").window)
    when, openings, t = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc), 0, time.perf_counter()
    while (when := window.next_opening(when)) and when.year == 2026:
        openings += 1
    year_s = time.perf_counter() - t
    latencies = []
    for _ in range(50):
        t = time.perf_counter()
        api.s.get(f"{api.base}/gantry/ledger/status", timeout=10).raise_for_status()
        latencies.append(time.perf_counter() - t)
    latencies.sort()
    return {"prod_openings_2026": openings, "next_opening_mean_ms": round(year_s / max(openings, 1) * 1000, 3),
            "ledger_rest_status_p50_ms": round(latencies[25] * 1000, 1),
            "ledger_rest_status_p95_ms": round(latencies[47] * 1000, 1)}


# ---------------------------------------------------------------- the peer: Ansible
ANSIBLE_DIR = REPO / "benchmarks" / "ansible"
ANSIBLE_VENV = REPO / "benchmarks" / ".venv-ansible"
SIZES = {5: ("test",), 20: ("perf",), 200: ("scale",)}


def ensure_ansible() -> Path:
    """ansible-core in its own venv, pinned by benchmarks/ansible/requirements.txt."""
    playbook = ANSIBLE_VENV / "bin" / "ansible-playbook"
    stamp = ANSIBLE_VENV / ".requirements"
    want = (ANSIBLE_DIR / "requirements.txt").read_text()
    if not playbook.exists() or not stamp.exists() or stamp.read_text() != want:
        subprocess.run(["python3", "-m", "venv", str(ANSIBLE_VENV)], check=True)
        subprocess.run([str(ANSIBLE_VENV / "bin" / "pip"), "install", "-q", "-r", str(ANSIBLE_DIR / "requirements.txt")],
                       check=True)
        stamp.write_text(want)
    return playbook


def ansible_inventory(env: str, workdir: Path) -> Path:
    key, known = fleetctl.STATE / "ssh/id_ed25519", fleetctl.STATE / "ssh/known_hosts"
    ssh = {"ansible_user": "root", "ansible_port": fleetctl.SSH_PORT, "ansible_ssh_private_key_file": str(key),
           "ansible_ssh_common_args": f"-o UserKnownHostsFile={known} -o StrictHostKeyChecking=yes",
           "ansible_python_interpreter": "/usr/bin/python3"}
    hosts = {h["name"]: {"ansible_host": h["address"]} for h in fleetctl.inventory_hosts()
             if h["env"] == env and h["app"] == "demo"}
    inventory = {"all": {"vars": ssh, "children": {"release": {"hosts": hosts}}, "hosts": {
        "lb": {"ansible_host": fleetctl.LB_HOST},
        "localhost": {"ansible_connection": "local", "ansible_python_interpreter": str(ANSIBLE_VENV / "bin/python")},
    }}}
    path = workdir / f"inventory-{env}.yml"
    path.write_text(json.dumps(inventory))
    return path


def ansible_rollout(env: str, version: str, plan: str) -> dict:
    """The same rollout by the Ansible playbook; wall time and the controller's CPU-seconds."""
    import resource

    from gantry import plan as planning
    from gantry.config import load_config

    playbook = ensure_ansible()
    cfg = load_config().app("demo")
    hosts = [h for h in fleetctl.inventory_hosts() if h["env"] == env and h["app"] == "demo"]
    serial = [len(b) for b in planning.parse_batch_plan(plan, len(hosts))]
    base = f"http://127.0.0.1:{fleetctl.ARTIFACT_PORT}/demo/{version}"
    package = cfg.package_name(version)
    sha256 = urllib.request.urlopen(f"{base}/{package}.sha256", timeout=5).read().decode().split()[0]
    workdir = fleetctl.STATE / "bench-ansible"
    workdir.mkdir(exist_ok=True)
    extra = {
        "app": "demo", "env": env, "version": version, "sha256": sha256, "package_url": f"{base}/{package}",
        "install_root": cfg.install_root, "app_port": cfg.port, "health_path": cfg.health_path,
        "version_path": cfg.version_path, "stop_command": cfg.stop_command, "start_command": cfg.start_command,
        "drain_timeout": cfg.timeouts.drain, "quiet_period": cfg.timeouts.quiet_period,
        "startup_timeout": cfg.timeouts.startup, "serial_plan": serial,
        "alertmanager": f"http://127.0.0.1:{fleetctl.ALERTMANAGER_PORT}", "etcd": f"http://127.0.0.1:{fleetctl.ETCD_PORT}",
        "registry_prefix": "/gantry/registry", "pool": fleetctl.pool_name("demo", env),
        "upstream_dir": str(fleetctl.STATE / "nginx/upstreams"), "nginx_conf": str(fleetctl.STATE / "nginx/nginx.conf"),
    }
    (workdir / "vars.json").write_text(json.dumps(extra))
    env_vars = {**os.environ, "ANSIBLE_HOST_KEY_CHECKING": "True", "ANSIBLE_PIPELINING": "True",
                "ANSIBLE_FORKS": str(max(serial + [len(hosts)])), "ANSIBLE_LOCAL_TEMP": str(workdir / "tmp"),
                "ANSIBLE_SSH_CONTROL_PATH_DIR": str(workdir / "cp"), "ANSIBLE_STDOUT_CALLBACK": "default"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    out = subprocess.run([str(playbook), "-i", str(ansible_inventory(env, workdir)), str(ANSIBLE_DIR / "rolling_update.yml"),
                          "-e", f"@{workdir / 'vars.json'}"], env=env_vars, capture_output=True, text=True)
    wall = time.time() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if out.returncode:
        (workdir / "last-failure.log").write_text(out.stdout + out.stderr)
    return {"state": "success" if out.returncode == 0 else f"failed ({workdir / 'last-failure.log'})",
            "hosts": len(hosts), "batches": len(serial), "serial": serial, "wall_s": round(wall, 1),
            "controller_cpu_s": round(cpu, 1), "controller_cpu_s_per_host": round(cpu / len(hosts), 2)}


def median(values: list[float]) -> float | None:
    return sorted(values)[len(values) // 2] if values else None


def compare(api: AirflowAPI, size: int, plan: str, version: str, runs: int, tools: tuple[str, ...],
            load: bool = False) -> dict:
    """Gantry and Ansible alternately on the same hosts, each run from the same baseline."""
    env = SIZES[size][0]
    out: dict = {"hosts": size, "environment": env, "plan": plan, "gantry": [], "ansible": []}
    for _ in range(runs):
        if "gantry" in tools:
            fleetctl.reset("1.0.0", env)
            out["gantry"].append(promotion(api, env, version, plan, load))
        if "ansible" in tools:
            fleetctl.reset("1.0.0", env)
            out["ansible"].append(ansible_rollout(env, version, plan))
    fleetctl.reset("1.0.0", env)
    if tools != ("gantry", "ansible"):
        return out
    g = median([r["wall_s"] for r in out["gantry"]])
    a = median([r["wall_s"] for r in out["ansible"]])
    critical = median([r["critical_path_s"] for r in out["gantry"]])
    out["summary"] = {
        "gantry_wall_s_median": g, "ansible_wall_s_median": a, "gantry_over_ansible": round(g / a, 2),
        "critical_path_s_median": critical, "gantry_wall_over_critical_path": round(g / critical, 1),
        "ansible_wall_over_critical_path": round(a / critical, 1),
        "gantry_airflow_cpu_s_per_host_median": median([r["airflow_cpu_s_per_host"] for r in out["gantry"]]),
        "ansible_controller_cpu_s_per_host_median": median([r["controller_cpu_s_per_host"] for r in out["ansible"]]),
    }
    return out


def compare_executors(api: AirflowAPI, executors: list[str], plan: str, version: str, runs: int,
                      warmup: bool) -> dict:
    """The 20-host promotion on each executor, alternated run by run. Airflow is restarted on the
    executor before each run (fleetctl switch-executor); with ``warmup`` one unrecorded run
    after the restart takes the first-run costs (DAG caches, worker pools) out of the figures."""
    out: dict = {"hosts": 20, "environment": "perf", "plan": plan, **{e: [] for e in executors}}
    for _ in range(runs):
        for executor in executors:
            fleetctl.switch_executor(executor)
            api.wait_for_dag("gantry_promote_perf")
            if warmup:
                fleetctl.reset("1.0.0", "perf")
                promotion(api, "perf", version, plan)
            fleetctl.reset("1.0.0", "perf")
            out[executor].append(promotion(api, "perf", version, plan))
    fleetctl.reset("1.0.0", "perf")
    out["summary"] = {executor: {
        "wall_s_median": median([r["wall_s"] for r in out[executor]]),
        "run_span_s_median": median([r["run_span_s"] for r in out[executor]]),
        "airflow_cpu_s_per_host_median": median([r["airflow_cpu_s_per_host"] for r in out[executor]]),
        "celery_worker_cpu_s_per_host_median": median([r["celery_worker_cpu_s_per_host"] for r in out[executor]]),
        "critical_path_s_median": median([r["critical_path_s"] for r in out[executor]]),
        "states": [r["state"] for r in out[executor]],
    } for executor in executors}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--version", default="1.1.0")
    ap.add_argument("--skip-fleet-cycle", action="store_true")
    ap.add_argument("--runs", type=int, default=1, help="runs of each tool per size, alternated")
    ap.add_argument("--sizes", default="5,20", help="host counts to compare: 5 (test), 20 (perf), 200 (scale: "
                    "the fleet must be up with GANTRY_SCALE_HOSTS=200)")
    ap.add_argument("--plan", default="1, 25%, 50%, 100%", help="batch plan for 20 hosts; 5 hosts use 1 at a time, "
                    "200 hosts 1, 10%, 50%, 100%")
    ap.add_argument("--consecutive", type=int, default=0,
                    help="only run this many consecutive Gantry promotions of perf and report their walls")
    ap.add_argument("--tools", default="gantry,ansible", help="which rollouts to run")
    ap.add_argument("--load", action="store_true", help="Gantry's runs under traffic through the load balancer")
    ap.add_argument("--reconcile", type=int, default=0,
                    help="only run this many reconciler passes over every environment and report their cost")
    ap.add_argument("--executors", default="",
                    help="only compare the 20-host promotion on these executors (e.g. local,celery), alternated")
    ap.add_argument("--warmup", action="store_true", help="with --executors: one unrecorded run after each restart")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "last-run.json"))
    a = ap.parse_args()
    # The observers under --load read the registry through the same Airflow Connections as Gantry.
    os.environ.update({k: v for k, v in fleetctl.airflow_env().items() if k.startswith("AIRFLOW_CONN_")})
    api = AirflowAPI()
    if a.reconcile:
        result = reconcile_passes(api, a.reconcile)
        Path(REPO / "benchmarks" / "last-run-reconcile.json").write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result, indent=2))
        return
    if a.executors:
        result = compare_executors(api, a.executors.split(","), a.plan, a.version, a.runs, a.warmup)
        Path(REPO / "benchmarks" / "last-run-executors.json").write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result, indent=2))
        return
    if a.consecutive:
        walls = []
        for _ in range(a.consecutive):
            fleetctl.reset("1.0.0", "perf")
            walls.append(promotion(api, "perf", a.version, a.plan)["wall_s"])
        print(json.dumps({"consecutive_perf_walls_s": walls}))
        return
    results: dict = {}
    if not a.skip_fleet_cycle:
        t = time.time(); fleetctl.fleet_down(); results["fleet_down_s"] = round(time.time() - t, 2)
        t = time.time(); fleetctl.up(); results["fleet_up_s"] = round(time.time() - t, 2)
    fleetctl.reset("1.0.0")
    fleetctl.reset("1.0.0", "perf")
    results["fleet_memory_pss_mib"] = round(component_memory(("host-", "lb-sshd", "nginx", "etcd", "alertmanager")), 1)
    results["airflow_memory_pss_mib"] = round(component_memory(("airflow-", "postgres")), 1)
    results["parse"] = parse_time()
    results["window_and_ledger"] = window_and_ledger(api)
    plans = {5: "1", 20: a.plan, 200: "1, 10%, 50%, 100%"}
    for size in (int(x) for x in a.sizes.split(",")):
        results[f"compare_{size}_hosts"] = compare(api, size, plans[size], a.version, a.runs,
                                                   tuple(a.tools.split(",")), a.load)
    Path(a.out).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
