"""The analysis after each batch: what it costs, and how fast it takes a bad build out of rotation.

    .venv/bin/python benchmarks/analysis.py [--good-runs 5] [--bad-runs 1]

On the local fleet's ``test`` (5 hosts, plan ``1, 100%``: a canary, then the other four), under
load through nginx, with the environment's analysis (config/gantry.yaml: error ratio and p99
latency, 3 measurements of 4 s each) switched on by the trigger's ``analysis: true``:

- **Cost and false alarms**: ``--good-runs`` releases of the good build ``1.3.1`` (from 1.0.0)
  with the analysis, alternated with the same release without it. For each run: the run's wall
  and span, the CPU-seconds of Airflow with PostgreSQL and of Prometheus, the queries Prometheus
  answered (its own ``prometheus_http_requests_total{handler="/api/v1/query"}``) and the time it
  spent evaluating them (``prometheus_engine_query_duration_seconds_sum``), each analysis'
  verdict. A false alarm is a good build's analysis that is not PASS, or a run that does not
  succeed.
- **Detection**: ``--bad-runs`` releases each of ``1.3.1-errors`` (5 % of requests fail,
  ``/health`` green) and ``1.3.1-slow`` (250 ms more per request), from 1.3.1. For each: how
  long the bad build was in rotation (the canary's online step's end to its rollback's offline
  step's start, from the host's recorded steps), the requests it served and the requests that
  failed through the load balancer, the hosts that ever served it, and the verdict.

Writes ``benchmarks/last-run-analysis.json``. Run it with nothing else using the fleet or the
machine (``./gantry up`` first; the CPU of Prometheus' scraping counts in its figure).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rollout import REPO, cpu_seconds, fleetctl, median, ts  # noqa: E402

from airflow_api import AirflowAPI  # noqa: E402

DAG, ENV, PLAN = "gantry_promote_test", "test", "1, 100%"


def prometheus_counters() -> dict[str, float]:
    """The query counters Prometheus keeps about itself (its /metrics, not a query: asking would
    count)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{fleetctl.PROMETHEUS_PORT}/metrics", timeout=5).read().decode()
    queries = evaluation = 0.0
    for line in text.splitlines():
        if line.startswith("prometheus_http_requests_total{") and 'handler="/api/v1/query"' in line:
            queries += float(line.rsplit(" ", 1)[1])
        elif line.startswith("prometheus_engine_query_duration_seconds_sum{"):
            evaluation += float(line.rsplit(" ", 1)[1])
    return {"queries": queries, "evaluation_s": evaluation}


def idle_cpu_rate(seconds: float = 20) -> dict[str, float]:
    """CPU-seconds per second that Airflow with PostgreSQL, and Prometheus, spend with nothing
    running (the scheduler's loop, the DAG processor, scraping): a longer run costs this much
    more without doing anything more."""
    airflow0, prom0 = cpu_seconds(("airflow-", "postgres")), cpu_seconds(("prometheus",))
    time.sleep(seconds)
    return {"airflow_and_postgres": round((cpu_seconds(("airflow-", "postgres")) - airflow0) / seconds, 3),
            "prometheus": round((cpu_seconds(("prometheus",)) - prom0) / seconds, 3)}


def release(api: AirflowAPI, version: str, analysis: bool) -> dict:
    """One release of ``version`` to test under load; what it cost and what the analysis said."""
    from gantry.hooks.ledger import LedgerHook
    from support import LoadGenerator

    conf = {"app": "demo", "version": version, "batches": PLAN, "analysis": analysis, "auto_promote": False}
    with LoadGenerator(env=ENV, threads=3) as load:
        airflow0, prom0, counters0 = cpu_seconds(("airflow-", "postgres")), cpu_seconds(("prometheus",)), \
            prometheus_counters()
        t0 = time.time()
        run_id = api.trigger(DAG, conf).json()["dag_run_id"]
        state = api.wait_run(DAG, run_id, timeout=600)
        wall = time.time() - t0
        airflow_cpu, prom_cpu = cpu_seconds(("airflow-", "postgres")) - airflow0, cpu_seconds(("prometheus",)) - prom0
        counters = prometheus_counters()
    run = api.get(f"/dags/{DAG}/dagRuns/{run_id}")
    analyses = LedgerHook().analyses(DAG, run_id)
    return {
        "version": version, "analysis": analysis, "state": state, "run_id": run_id, "wall_s": round(wall, 1),
        "run_span_s": round(ts(run["end_date"]) - ts(run["queued_at"]), 1),
        "airflow_and_postgres_cpu_s": round(airflow_cpu, 2), "prometheus_cpu_s": round(prom_cpu, 2),
        "prometheus_queries": int(counters["queries"] - counters0["queries"]),
        "prometheus_evaluation_s": round(counters["evaluation_s"] - counters0["evaluation_s"], 4),
        "analyses": [{"batch": a["batch"], "verdict": a["verdict"], "action": a["action"],
                      "reason": a["evidence"]["reason"]} for a in analyses],
        "requests": load.total, "failed_requests": len(load.failures),
        "answers_by_version": {v: sum(n for (w, _), n in load.served.items() if w == v)
                               for v in sorted({w for w, _ in load.served})},
        "hosts_serving_version": sorted(load.hosts_serving(version)),
        "_tis": api.task_instances(DAG, run_id),
    }


def detection(api: AirflowAPI, result: dict) -> dict:
    """How long the bad build served, from the steps the canary's release and rollback recorded."""
    records = [api.xcom(DAG, result["run_id"], ti["task_id"], "outcome", ti["map_index"]) or {}
               for ti in result["_tis"] if ti["task_id"] == "host.offline_restart_online"]
    rollbacks = [o for r in records for o in r.get("overrides", []) if o.get("outcome") == "rolled_back"]
    if not rollbacks:
        return {"rolled_back": []}
    canary = {r["host"]: r for r in records}[rollbacks[0]["host"]]
    online = [s for s in canary.get("steps", []) if s["step"] == "online"][-1]
    offline = next(s for s in rollbacks[0]["steps"] if s["step"].endswith(": offline"))
    back = [s for s in rollbacks[0]["steps"] if s["step"].endswith(": online")][-1]
    return {"rolled_back": [o["host"] for o in rollbacks],
            "bad_build_in_rotation_s": round(offline["at"] - (online["at"] + online["seconds"]), 1),
            "rollback_s": round(back["at"] + back["seconds"] - offline["at"], 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--good-runs", type=int, default=5)
    ap.add_argument("--bad-runs", type=int, default=1)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "last-run-analysis.json"))
    a = ap.parse_args()
    os.environ.update({k: v for k, v in fleetctl.airflow_env().items() if k.startswith("AIRFLOW_CONN_")})
    api = AirflowAPI()
    api.wait_for_dag(DAG)
    idle = idle_cpu_rate()
    good: dict[str, list[dict]] = {"with_analysis": [], "without_analysis": []}
    for _ in range(a.good_runs):
        for analysis in (True, False):
            fleetctl.reset("1.0.0", ENV)
            r = release(api, "1.3.1", analysis)
            r.pop("_tis")
            good["with_analysis" if analysis else "without_analysis"].append(r)
    bad: list[dict] = []
    for _ in range(a.bad_runs):
        for version in ("1.3.1-errors", "1.3.1-slow"):
            fleetctl.reset("1.3.1", ENV)
            r = release(api, version, True)
            r.update(detection(api, r))
            r.pop("_tis")
            bad.append(r)
    fleetctl.reset("1.0.0", ENV)

    def med(runs: list[dict], key: str) -> float | None:
        return median([r[key] for r in runs])

    with_, without = good["with_analysis"], good["without_analysis"]
    longer = med(with_, "run_span_s") - med(without, "run_span_s")
    airflow_extra = med(with_, "airflow_and_postgres_cpu_s") - med(without, "airflow_and_postgres_cpu_s")
    result = {
        "command": "benchmarks/analysis.py " + " ".join(sys.argv[1:]),
        "environment": ENV, "plan": PLAN, "hosts": 5,
        "analysis": "error_ratio and latency_p99, 3 measurements x 4 s, canary vs baseline (config/gantry.yaml)",
        "good_runs": good,
        "false_alarms": sum(1 for r in with_ if r["state"] != "success"
                            or any(x["verdict"] != "PASS" for x in r["analyses"])),
        "good_runs_with_analysis_states": [r["state"] for r in with_],
        "cost_per_analysed_batch": {
            "prometheus_queries_median": med(with_, "prometheus_queries"),
            "prometheus_queries_without_analysis_median": med(without, "prometheus_queries"),
            "prometheus_evaluation_s_median": med(with_, "prometheus_evaluation_s"),
            "airflow_and_postgres_cpu_s_median": med(with_, "airflow_and_postgres_cpu_s"),
            "airflow_and_postgres_cpu_s_without_analysis_median": med(without, "airflow_and_postgres_cpu_s"),
            "prometheus_cpu_s_median": med(with_, "prometheus_cpu_s"),
            "prometheus_cpu_s_without_analysis_median": med(without, "prometheus_cpu_s"),
            "run_span_s_median": med(with_, "run_span_s"),
            "run_span_s_without_analysis_median": med(without, "run_span_s"),
            "idle_cpu_s_per_s": idle,
            # The extra CPU of a run with an analysis, less what Airflow spends idle over the
            # extra time the run takes (the analysis' intervals): the analysis' own work.
            "airflow_and_postgres_cpu_s_beyond_idle": round(airflow_extra - idle["airflow_and_postgres"] * longer, 2),
        },
        "bad_builds": bad,
        "loadavg_at_end": Path("/proc/loadavg").read_text().split()[:3],
    }
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "good_runs"}, indent=2))


if __name__ == "__main__":
    main()
