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


def version_key(version: str) -> tuple:
    """Orders release versions: numeric parts as numbers, a pre-release (1.2.0-rc1) before its release."""
    release, _, pre = version.partition("-")
    return tuple(int(p) if p.isdigit() else -1 for p in release.split(".")), pre == "", pre


def already_there(api: AirflowAPI) -> str | None:
    """Why the demo release would be pointless or a downgrade, from the ledger; None to go on."""
    r = api.s.get(f"{BASE}/gantry/ledger/status", params={"app": "demo"}, timeout=30)
    r.raise_for_status()
    current = {row["environment"]: row.get("version") for row in r.json()}.get("test")
    if not current:
        return None
    if current == VERSION:
        return f"test already runs demo {VERSION}; not releasing it again"
    if version_key(current) > version_key(VERSION):
        return (f"test already runs demo {current}, newer than {VERSION}; not releasing {VERSION} (a downgrade: "
                f"to go back, trigger gantry_rollback_test with version {VERSION})")
    return None


def failed_tasks(api: AirflowAPI, run_id: str) -> list[str]:
    """Each failed task of the run with the reason it recorded (gantry.rollout.record_refusal)."""
    out = []
    for ti in sorted(api.task_instances(DAG, run_id), key=lambda t: t.get("end_date") or ""):
        if ti["state"] == "failed":
            reason = api.xcom(DAG, run_id, ti["task_id"], key="refusal", map_index=ti["map_index"])
            label = ti.get("rendered_map_index") or ""
            out.append(f"{ti['task_id']}{f' [{label}]' if label else ''}: {reason or 'see its log'}")
    # The report only repeats what stopped the run when something before it failed.
    return [line for line in out if not line.startswith("report:")] or out


def main() -> int:
    api = AirflowAPI()
    api.wait_for_dag(DAG, timeout=180)
    if why := already_there(api):
        print(f"\n{why}.\nSee {BASE}/gantry/board or `./gantry ledger status`.")
        print_next_steps()
        return 0
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
        # In the order they ended.
        for ti in sorted(api.task_instances(DAG, run_id), key=lambda t: t.get("end_date") or ""):
            key = (ti["task_id"], ti["map_index"])
            if ti["state"] in ("success", "failed", "skipped") and seen.get(key) != ti["state"]:
                seen[key] = ti["state"]
                label = ti.get("rendered_map_index") or ""
                print(f"  {ti['task_id'].removeprefix('host.'):22s} {label:14s} {ti['state']}")
    report = api.xcom(DAG, run_id, "report")
    if state == "success":
        print(f"\nRun succeeded: {report.get('summary') if isinstance(report, dict) else ''}")
        print(f"The chain goes on by itself: {BASE}/dags/gantry_promote_staging (see `./gantry ledger status`).")
    else:
        print(f"\nRun failed ({BASE}/dags/{DAG}/runs/{run_id}):")
        for line in failed_tasks(api, run_id) or ["no task failed; see the run in the UI"]:
            print(f"  {line}")
    print_next_steps()
    return 0 if state == "success" else 1


def print_next_steps() -> None:
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


if __name__ == "__main__":
    sys.exit(main())
