"""The main job of `./gantry up`: promote the demo app's next version in `test` through
Airflow, follow it host by host, and say how to run the next one from the UI."""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "fleet"))
from airflow_api import BASE, AirflowAPI  # noqa: E402

DAG = "gantry_promote_test"
VERSION = sys.argv[1] if len(sys.argv) > 1 else "1.1.0"


def main() -> int:
    api = AirflowAPI()
    api.wait_for_dag(DAG, timeout=180)
    resp = api.trigger(DAG, {"app": "demo", "version": VERSION})
    if resp.status_code == 409 or "already" in resp.text and resp.status_code != 200:
        print(f"a run of {DAG} is already in progress; see {BASE}/dags/{DAG}")
        return 0
    resp.raise_for_status()
    run_id = resp.json()["dag_run_id"]
    print(f"\nPromoting demo {VERSION} in `test`: {BASE}/dags/{DAG}/runs/{run_id}\n")
    seen: dict[tuple[str, int], str] = {}
    state = "queued"
    while state not in ("success", "failed"):
        time.sleep(2)
        state = api.run_state(DAG, run_id)
        for ti in api.task_instances(DAG, run_id):
            key = (ti["task_id"], ti["map_index"])
            if ti["state"] in ("success", "failed", "skipped") and seen.get(key) != ti["state"]:
                seen[key] = ti["state"]
                label = ti.get("rendered_map_index") or ""
                print(f"  {ti['task_id'].removeprefix('host.'):22s} {label:14s} {ti['state']}")
    report = api.xcom(DAG, run_id, "report")
    print(f"\nRun {state}: {report.get('summary') if isinstance(report, dict) else ''}")
    if state == "success":
        print(f"The chain goes on by itself: {BASE}/dags/gantry_promote_staging (see `./gantry ledger status`).")
    print(f"""
Airflow UI:  {BASE}   (login: admin / admin)
Next release from the UI: DAGs -> {DAG} -> Trigger, fill in the form
  (app: demo, version: 1.2.0; optional hosts, batch size, dry run), then follow each host
  under host.precheck_and_stage and host.offline_restart_online -> Mapped Tasks, labelled
  with the host name; each host's log has one folded, timed section per step.
Or:  curl -X POST {BASE}/api/v2/dags/{DAG}/dagRuns -H "Authorization: Bearer $TOKEN" \\
       -H 'Content-Type: application/json' -d '{{"logical_date": null, "conf": {{"app": "demo", "version": "1.2.0"}}}}'
Stop everything: ./gantry down
""")
    return 0 if state == "success" else 1


if __name__ == "__main__":
    sys.exit(main())
