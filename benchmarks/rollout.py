"""Benchmarks of the local fleet and a promotion, printed as a table and JSON.

    .venv/bin/python benchmarks/rollout.py [--version 1.1.0] [--skip-fleet-cycle]

Measures: fleet down/up time; memory (PSS) of the running fleet and of Airflow; DAG parse
time; the release-window timetable's computation and the ledger REST view's latency; wall
time of a 5-host and a 20-host promotion and how it splits into configured waits, task run
time and Airflow scheduling overhead (time on the critical path where no task of the host
chain was running). Run it with nothing else using the fleet.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "fleet"), str(REPO / "include")]
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
        if f.stem.startswith(prefixes):
            pids |= descendants(int(f.read_text()))
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


def promotion(api: AirflowAPI, env: str, version: str) -> dict:
    cfg = fleetctl.app_config("demo")
    dag = f"gantry_promote_{env}"
    api.wait_for_dag(dag)
    t0 = time.time()
    run_id = api.trigger(dag, {"app": "demo", "version": version, "auto_promote": False}).json()["dag_run_id"]
    state = api.wait_run(dag, run_id)
    wall = time.time() - t0
    tis = [ti for ti in api.task_instances(dag, run_id) if ti["start_date"] and ti["end_date"]]
    hosts = {ti["map_index"] for ti in tis if ti["map_index"] >= 0}
    batches = len({(api.xcom(dag, run_id, "host_release.bring_online", "outcome", i) or {}).get("batch")
                   for i in hosts})
    run = api.get(f"/dags/{dag}/dagRuns/{run_id}")
    run_span = ts(run["end_date"]) - ts(run["start_date"])
    # Union of intervals where any task was working (batch gates excluded: they only wait, deferred):
    # the rest of the run is scheduling, queuing and deferral latency.
    working = [ti for ti in tis if not ti["task_id"].endswith("wait_for_batch")]
    intervals = sorted((ts(ti["start_date"]), ts(ti["end_date"])) for ti in working)
    busy, cur_s, cur_e = 0.0, None, None
    for s, e in intervals:
        if cur_e is None or s > cur_e:
            if cur_e is not None:
                busy += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    busy += (cur_e - cur_s) if cur_e else 0
    # Configured waits on the critical path: one quiet period per batch (hosts of a batch wait
    # in parallel); drains are measured, not configured, and were ~0.6 s each here.
    waits = batches * cfg["timeouts"]["quiet_period"]
    task_seconds = sum(ts(ti["end_date"]) - ts(ti["start_date"]) for ti in working)
    per_step: dict[str, list[float]] = {}
    for ti in working:
        per_step.setdefault(ti["task_id"].split(".")[-1], []).append(ts(ti["end_date"]) - ts(ti["start_date"]))
    return {
        "state": state, "hosts": len(hosts), "batches": batches, "tasks": len(tis), "wall_s": round(wall, 1),
        "run_span_s": round(run_span, 1), "configured_waits_s": waits,
        "tasks_working_s": round(busy, 1), "no_task_working_s": round(run_span - busy, 1),
        "sum_task_durations_s": round(task_seconds, 1),
        "wall_to_waits_ratio": round(run_span / waits, 1),
        "mean_step_s": {k: round(sum(v) / len(v), 2) for k, v in per_step.items()},
    }


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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--version", default="1.1.0")
    ap.add_argument("--skip-fleet-cycle", action="store_true")
    a = ap.parse_args()
    results: dict = {}
    if not a.skip_fleet_cycle:
        t = time.time(); fleetctl.fleet_down(); results["fleet_down_s"] = round(time.time() - t, 2)
        t = time.time(); fleetctl.up(); results["fleet_up_s"] = round(time.time() - t, 2)
    fleetctl.reset("1.0.0")
    fleetctl.reset("1.0.0", "perf")
    results["fleet_memory_pss_mib"] = round(component_memory(("host-", "lb-sshd", "nginx", "etcd", "alertmanager")), 1)
    results["airflow_memory_pss_mib"] = round(component_memory(("airflow-", "postgres")), 1)
    results["parse"] = parse_time()
    api = AirflowAPI()
    results["window_and_ledger"] = window_and_ledger(api)
    results["promotion_test_5_hosts_batch_1"] = promotion(api, "test", a.version)
    results["promotion_perf_20_hosts_4_batches"] = promotion(api, "perf", a.version)
    fleetctl.reset("1.0.0")
    fleetctl.reset("1.0.0", "perf")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
