"""The release board: what runs where, what is being released, who is asked what, and what
waits for a window - from the release ledger and Airflow's metadata.

Plain functions over rows (``build`` and the ``render_*`` functions take what the queries
returned), so that the board is tested without a browser, a database or Airflow; the queries are
``read_airflow`` (Airflow's metadata database, in the API server) and the ledger hook's. Every
table is read once per board, never once per cell: the ledger's ``latest`` looks each cell up by
index in one query, and a cell's history is read page by page when someone opens it.
"""
from __future__ import annotations

import datetime as dt
import html
from dataclasses import dataclass, field
from typing import Any, Iterable
from urllib.parse import quote
from zoneinfo import ZoneInfo

from gantry.access import dag_kind_and_environment
from gantry.config import GantryConfig

HOST_GROUP = "host"
STAGE_TASK = f"{HOST_GROUP}.precheck_and_stage"
RELEASE_TASK = f"{HOST_GROUP}.offline_restart_online"
PLAN_TASK = "collect_hosts"
FAILED = {"failed", "upstream_failed"}
FINISHED = {"success", "skipped", "failed", "upstream_failed", "removed"}
WAITING_ON_A_HUMAN = "awaiting_input"
HISTORY_PAGE = 20


# ------------------------------------------------------------------ links into Airflow's UI
def run_link(base: str, dag_id: str, run_id: str) -> str:
    return f"{base}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"


def approval_link(base: str, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> str:
    """The task instance's "Required Actions" page, where the approver answers."""
    mapped = f"/mapped/{map_index}" if map_index is not None and map_index >= 0 else ""
    return f"{run_link(base, dag_id, run_id)}/tasks/{quote(task_id, safe='')}{mapped}/required_actions"


# ------------------------------------------------------------------ what Airflow says
@dataclass
class AirflowState:
    """Airflow's view of the runs the ledger names, and the approvals waiting in Gantry's DAGs."""
    runs: dict[tuple[str, str], dict] = field(default_factory=dict)          # state, start_date, conf
    tasks: dict[tuple[str, str], list[dict]] = field(default_factory=dict)   # task_id, map_index, state, label
    plans: dict[tuple[str, str], list[dict]] = field(default_factory=dict)   # collect_hosts' records
    approvals: list[dict] = field(default_factory=list)                      # pending HITL rows
    window_overrides: dict[str, Any] = field(default_factory=dict)           # Variable gantry_windows
    readable: set[str] | None = None                                         # DAG ids the user may read


def read_airflow(keys: Iterable[tuple[str, str]], readable: set[str] | None = None) -> AirflowState:
    """One query per table: the runs ``keys`` names, their task instances, their batch plans,
    every pending approval of a ``gantry_*`` DAG, and the windows' override Variable."""
    import json

    from sqlalchemy import and_, or_, select, tuple_

    from airflow.models.dagrun import DagRun
    from airflow.models.hitl import HITLDetail
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.variable import Variable
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    keys = sorted(set(keys))
    state = AirflowState(readable=readable)
    with create_session() as session:
        if keys:
            for r in session.execute(select(DagRun.dag_id, DagRun.run_id, DagRun.state, DagRun.start_date,
                                            DagRun.conf).where(tuple_(DagRun.dag_id, DagRun.run_id).in_(keys))):
                state.runs[(r.dag_id, r.run_id)] = {"state": r.state, "start_date": r.start_date, "conf": r.conf or {}}
            for t in session.execute(select(TaskInstance.dag_id, TaskInstance.run_id, TaskInstance.task_id,
                                            TaskInstance.map_index, TaskInstance.state,
                                            TaskInstance.rendered_map_index)
                                     .where(tuple_(TaskInstance.dag_id, TaskInstance.run_id).in_(keys))):
                state.tasks.setdefault((t.dag_id, t.run_id), []).append(
                    {"task_id": t.task_id, "map_index": t.map_index, "state": t.state, "label": t.rendered_map_index})
            for x in session.execute(select(XComModel.dag_id, XComModel.run_id, XComModel.value).where(
                    tuple_(XComModel.dag_id, XComModel.run_id).in_(keys), XComModel.task_id == PLAN_TASK,
                    XComModel.key == "return_value", XComModel.map_index == -1)):
                value = json.loads(x.value) if isinstance(x.value, str) else x.value
                if isinstance(value, list):
                    state.plans[(x.dag_id, x.run_id)] = [v for v in value if isinstance(v, dict)]
        pending = session.execute(
            select(HITLDetail.subject, HITLDetail.assignees, HITLDetail.created_at, HITLDetail.options,
                   TaskInstance.dag_id, TaskInstance.run_id, TaskInstance.task_id, TaskInstance.map_index,
                   TaskInstance.rendered_map_index, TaskInstance.state, DagRun.conf)
            .join(TaskInstance, TaskInstance.id == HITLDetail.ti_id)
            .join(DagRun, and_(DagRun.dag_id == TaskInstance.dag_id, DagRun.run_id == TaskInstance.run_id))
            .where(HITLDetail.responded_at.is_(None), TaskInstance.dag_id.like("gantry\\_%", escape="\\"),
                   or_(TaskInstance.state.is_(None), TaskInstance.state.not_in(sorted(FINISHED))))
            .order_by(HITLDetail.created_at))
        state.approvals = [dict(r._mapping) for r in pending]
        variable = session.scalar(select(Variable).where(Variable.key == "gantry_windows"))
        if variable is not None:
            try:
                state.window_overrides = json.loads(variable.val or "{}") or {}
            except ValueError:
                state.window_overrides = {}
    return state


# ------------------------------------------------------------------ the board's parts
def environment_order(config: GantryConfig) -> list[str]:
    """Environments in promotion order: each chain from its head, chains (and environments
    outside any chain) in the order the configuration lists them."""
    order: list[str] = []
    for name in config.environments:
        if name not in order:
            order.extend(e for e in config.chain(name) if e not in order)
    return order


def _text_time(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value.astimezone(dt.timezone.utc).isoformat(timespec="seconds")


def matrix(config: GantryConfig, latest: list[dict], hosts: list[dict], running: list[dict]) -> dict:
    """Apps x environments: per cell the ledger's version (the last release that succeeded on
    every host), since when, by whom; the last attempt when it did not succeed; hosts seen
    drifting from the version (as the ledger's ``where``); the release running there, if any."""
    from gantry.hooks.ledger import LedgerHook

    seen: dict[tuple[str, str], list[dict]] = {}
    for h in hosts:
        seen.setdefault((h["app"], h["environment"]), []).append(h)
    by_cell = {(r["app"], r["environment"]): r for r in latest}
    releasing = {(r["app"], r["environment"]): r for r in running}
    envs = environment_order(config)
    cells: dict[str, dict[str, dict]] = {}
    for app in config.apps:
        for env in envs:
            row = by_cell.get((app, env)) or {}
            current, attempt = row.get("current"), row.get("attempt")
            version = current["version"] if current else None
            cell = {
                "app": app, "environment": env, "version": version,
                "since": _text_time(current["ended_at"]) if current else None,
                "by": current.get("triggered_by") if current else None,
                "approved_by": current.get("approved_by") if current else None,
                "kind": current.get("kind") if current else None,
                "run": {"dag_id": current["dag_id"], "run_id": current["run_id"]} if current else None,
                "route": row.get("route"), "special": row.get("special"),
                "hosts": len(seen.get((app, env), [])),
                "drift": LedgerHook.drift(version, seen.get((app, env), [])),
                "analyses": (row.get("current_analyses") or []) if current else [],
                "last_attempt": None, "releasing": None,
            }
            if attempt and (not current or attempt["id"] != current["id"]):
                cell["last_attempt"] = {"kind": attempt["kind"], "version": attempt["version"],
                                        "status": attempt["status"], "message": attempt["message"],
                                        "at": _text_time(attempt["ended_at"]),
                                        "analyses": row.get("attempt_analyses") or [],
                                        "run": {"dag_id": attempt["dag_id"], "run_id": attempt["run_id"]}}
            if (app, env) in releasing:
                r = releasing[(app, env)]
                cell["releasing"] = {"kind": r["kind"], "version": r["version"], "dag_id": r["dag_id"],
                                     "run_id": r["run_id"]}
            cells.setdefault(app, {})[env] = cell
    return {"apps": list(config.apps), "environments": envs, "cells": cells}


def progress(tasks: list[dict], plan: list[dict] | None, asking: set[tuple[str, int]] = frozenset()) -> dict:
    """A release's progress from its task instances and its batch plan (``collect_hosts``):
    batch k of n (the latest batch whose hosts started), hosts released, out of rotation (their
    release step runs), failed, waiting; the step the run is at when no host is. ``asking``:
    the (task_id, map_index) of the run's unanswered questions - a host whose release task runs
    to ask a human is still in rotation, waiting (gantry.hitl waits in the task)."""
    names = {p.get("index", i): p.get("name") for i, p in enumerate(plan or [])}
    batch_of = {p.get("index", i): p.get("batch", 0) for i, p in enumerate(plan or [])}
    batches = max((p.get("batches", 1) for p in plan), default=0) if plan else 0
    hosts: dict[int, dict] = {}
    step = None
    for t in tasks:
        if t["task_id"] in (STAGE_TASK, RELEASE_TASK) and t["map_index"] >= 0:
            h = hosts.setdefault(t["map_index"], {"name": t.get("label") or names.get(t["map_index"])
                                                  or f"#{t['map_index']}", "stage": None, "release": None})
            state = WAITING_ON_A_HUMAN if (t["task_id"], t["map_index"]) in asking else t["state"]
            h["stage" if t["task_id"] == STAGE_TASK else "release"] = state
        elif t["state"] in ("running", "queued", "scheduled", "deferred", "up_for_retry", WAITING_ON_A_HUMAN):
            state = WAITING_ON_A_HUMAN if (t["task_id"], t["map_index"]) in asking else t["state"]
            step = step or {"task_id": t["task_id"], "state": state}
    counts = {"released": 0, "out_of_rotation": 0, "failed": 0, "waiting": 0}
    started_batches = []
    for i, h in hosts.items():
        if h["release"] in FAILED or h["stage"] in FAILED:
            h["status"] = "failed"
        elif h["release"] == "success":
            h["status"] = "released"
        elif h["release"] in ("running", "up_for_retry"):
            h["status"] = "out_of_rotation"
        elif h["release"] == WAITING_ON_A_HUMAN:
            h["status"] = "waiting"  # for a human's go-ahead, still in rotation
        else:
            h["status"] = "waiting"
        counts[h["status"]] += 1
        if h["release"] in ("running", "up_for_retry", "success", "failed"):  # upstream_failed: never ran
            started_batches.append(batch_of.get(i, 0))
    batch = (max(started_batches) + 1) if started_batches else 0
    return {"batch": batch, "batches": batches, "hosts": len(hosts) or len(plan or []), **counts,
            "step": step, "host_states": [{"index": i, **hosts[i]} for i in sorted(hosts)]}


def in_flight(running: list[dict], airflow: AirflowState, base: str) -> list[dict]:
    """The ledger's running releases, with their runs' progress in Airflow."""
    out = []
    for r in running:
        key = (r["dag_id"], r["run_id"])
        if airflow.readable is not None and r["dag_id"] not in airflow.readable:
            continue
        run = airflow.runs.get(key, {})
        out.append({
            "app": r["app"], "environment": r["environment"], "kind": r["kind"], "version": r["version"],
            "previous_version": r.get("previous_version"), "triggered_by": r.get("triggered_by"),
            "started_at": _text_time(r.get("started_at")), "dag_id": r["dag_id"], "run_id": r["run_id"],
            "run_state": run.get("state"), "link": run_link(base, *key),
            **progress(airflow.tasks.get(key, []), airflow.plans.get(key),
                       {(a["task_id"], a["map_index"]) for a in airflow.approvals
                        if (a["dag_id"], a["run_id"]) == key}),
        })
    return out


def approvals(config: GantryConfig, airflow: AirflowState, base: str) -> list[dict]:
    """Approvals waiting for an answer, with who may give it (the HITL request's assignees, the
    environment's ``approvers``) and the page to answer on."""
    out = []
    for a in airflow.approvals:
        if airflow.readable is not None and a["dag_id"] not in airflow.readable:
            continue
        env = dag_kind_and_environment(a["dag_id"])[1]
        configured = config.environments.get(env)
        assigned = [u.get("name") or u.get("id") for u in (a.get("assignees") or [])]
        conf = a.get("conf") or {}
        out.append({
            "environment": env, "app": conf.get("app"), "version": conf.get("version"),
            "subject": a["subject"], "asked_at": _text_time(a["created_at"]),
            "approvers": assigned or list(configured.approvers if configured else ()),
            "dag_id": a["dag_id"], "run_id": a["run_id"], "task_id": a["task_id"], "map_index": a["map_index"],
            "host": a.get("rendered_map_index") if a["map_index"] >= 0 else None,
            "link": approval_link(base, a["dag_id"], a["run_id"], a["task_id"], a["map_index"]),
            "run_link": run_link(base, a["dag_id"], a["run_id"]),
        })
    return out


def next_window(config: GantryConfig, environment: str, now: dt.datetime,
                overrides: dict[str, Any] | None = None) -> dict | None:
    """The environment's next window opening (the override Variable's window first), in UTC and
    in the window's own time zone; None without a window."""
    from gantry.windows import ReleaseWindow

    raw = (overrides or {}).get(environment, config.environments[environment].window)
    if not raw:
        return None
    window = ReleaseWindow.from_config(raw)
    opening = window.next_opening(now)
    local = opening.astimezone(ZoneInfo(window.timezone)) if opening else None
    return {"timezone": window.timezone, "window": window.describe(), "open_now": window.is_open(now),
            "opens_at": opening.isoformat(timespec="seconds") if opening else None,
            "opens_local": f"{local:%a %Y-%m-%d %H:%M %Z}" if local else None}


def queued(config: GantryConfig, waiting: list[dict], now: dt.datetime,
           overrides: dict[str, Any] | None = None) -> list[dict]:
    """Per environment released at its window openings (and any other with versions waiting):
    the approved versions waiting, oldest first, and the next opening in its time zone."""
    by_env: dict[str, list[dict]] = {}
    for q in waiting:
        by_env.setdefault(q["environment"], []).append(q)
    out = []
    for env in environment_order(config):
        if not (config.environments[env].scheduled_release or env in by_env):
            continue
        out.append({"environment": env, "next_window": next_window(config, env, now, overrides),
                    "versions": [{"app": q["app"], "version": q["version"], "queued_by": q.get("queued_by"),
                                  "approved_by": q.get("approved_by"), "queued_at": _text_time(q.get("queued_at")),
                                  "id": q["id"]} for q in by_env.get(env, [])]})
    return out


def build(config: GantryConfig, *, latest: list[dict], hosts: list[dict], running: list[dict],
          waiting: list[dict], airflow: AirflowState, now: dt.datetime, base: str = "") -> dict:
    """The whole board, as JSON-ready data."""
    flights = in_flight(running, airflow, base)
    asks = approvals(config, airflow, base)
    return {
        "generated_at": now.astimezone(dt.timezone.utc).isoformat(timespec="seconds"),
        "matrix": matrix(config, latest, hosts, running),
        "in_flight": flights, "approvals": asks,
        "queue": queued(config, waiting, now, airflow.window_overrides),
        # The page polls quickly while something moves, slowly otherwise.
        "active": bool(flights or asks),
    }


def history(rows: list[dict], base: str, limit: int = HISTORY_PAGE) -> dict:
    """One page of a cell's history (the ledger's ``history`` with ``limit + 1`` rows asked, so
    that a next page is known to exist): its rows and the cursor of the next page."""
    page = rows[:limit]
    return {
        "rows": [{"id": r["id"], "kind": r["kind"], "version": r["version"], "previous": r.get("previous_version"),
                  "status": r["status"], "message": r.get("message"), "triggered_by": r.get("triggered_by"),
                  "approved_by": r.get("approved_by"), "auto": r.get("auto"),
                  "override_reason": r.get("override_reason"), "scope": r.get("scope"),
                  "started_at": _text_time(r.get("started_at")), "ended_at": _text_time(r.get("ended_at")),
                  "route": r.get("route"), "special": r.get("special"),
                  "decisions": [{"kind": d["kind"], "by": d.get("by"), "detail": (d.get("detail") or "").split("\n")[0],
                                 "at": _text_time(d.get("at"))} for d in r.get("decisions") or []],
                  "analyses": [{k: a.get(k) for k in ("batch", "verdict", "action", "score", "reason")}
                               for a in r.get("analyses") or []],
                  "link": run_link(base, r["dag_id"], r["run_id"])} for r in page],
        "next_before": page[-1]["id"] if len(rows) > limit and page else None,
    }


# ------------------------------------------------------------------ HTML
def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _when(iso: str | None) -> str:
    return _e(iso.replace("T", " ").replace("+00:00", " UTC")) if iso else ""


def _a(href: str, text: str, cls: str = "") -> str:
    """A link into Airflow's UI (the page hands it to the UI around it; see PAGE's script)."""
    return f'<a data-ui href="{_e(href)}"{f" class={cls!r}" if cls else ""}>{text}</a>'


def _list_table(columns: list[str], rows: list[str]) -> str:
    head = "".join(f"<th>{c}</th>" for c in columns)
    return f'<table class="list"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _analysis_summary(analyses: list[dict]) -> str:
    """A release's batch analyses in a cell: each batch's verdict, and what the rollout did when
    it did not proceed ("batch 1 FAIL: roll_back")."""
    if not analyses:
        return ""
    items = ", ".join(f'batch {a["batch"]} {_e(a["verdict"])}'
                      + ("" if a["action"] == "proceed" else f': {_e(a["action"])}') for a in analyses)
    passed = all(a["action"] == "proceed" for a in analyses)
    return f'<div class="analysis {"muted" if passed else "attempt failed"}">analysis: {items}</div>'


def render_matrix(board: dict, base: str) -> str:
    m = board["matrix"]
    head = "".join(f"<th>{_e(env)}</th>" for env in m["environments"])
    body = []
    for app in m["apps"]:
        cells = []
        for env in m["environments"]:
            c = m["cells"][app][env]
            parts = []
            if c["version"]:
                parts.append(f'<div class="version">{_e(c["version"])}</div>')
                by = _e(c["by"]) + (f", approved by {_e(c['approved_by'])}" if c["approved_by"] else "")
                parts.append(f'<div class="since">since {_when(c["since"])}<br>by {by}</div>')
                parts.append(_analysis_summary(c["analyses"]))
            else:
                parts.append('<div class="none">no release recorded</div>')
            if c["drift"]:
                items = "".join(
                    f"<li>{_e(d['host'])}: {_e(d['version'])}"
                    + ("" if d["healthy"] is not False else ", unhealthy")
                    + ("" if d["in_rotation"] is not False else ", out of rotation")
                    + f" <span class=muted>(seen {_when(d['observed_at'])})</span></li>" for d in c["drift"])
                parts.append(f'<div class="drift" data-drift="{len(c["drift"])}">&#9888; {len(c["drift"])} '
                             f'host(s) drifting<ul>{items}</ul></div>')
            if c["last_attempt"]:
                la = c["last_attempt"]
                parts.append(f'<div class="attempt {_e(la["status"])}">last: {_e(la["kind"])} '
                             f'{_e(la["version"])} {_e(la["status"])}</div>')
                parts.append(_analysis_summary(la["analyses"]))
            if c["releasing"]:
                r = c["releasing"]
                parts.append('<div class="releasing">&#9654; ' + _a(run_link(base, r["dag_id"], r["run_id"]),
                                                                     f'{_e(r["kind"])} {_e(r["version"])}') + "</div>")
            parts.append(f'<button class="hist" data-app="{_e(app)}" data-env="{_e(env)}">history</button>')
            state = "drifting" if c["drift"] else "releasing" if c["releasing"] else "ok" if c["version"] else "empty"
            cells.append(f'<td class="cell {state}" data-app="{_e(app)}" data-env="{_e(env)}" '
                         f'data-version="{_e(c["version"])}">{"".join(parts)}</td>')
        body.append(f"<tr><th>{_e(app)}</th>{''.join(cells)}</tr>")
    return (f'<table class="matrix"><thead><tr><th>app \\ environment</th>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')


def render_in_flight(board: dict) -> str:
    if not board["in_flight"]:
        return '<p class="muted" id="no-flights">No release is running.</p>'
    rows = []
    for f in board["in_flight"]:
        batch = f"batch {f['batch']} of {f['batches']}" if f["batches"] else "planning"
        step = f["step"]
        at = f" &middot; at {_e(step['task_id'])} ({_e(step['state'])})" if step and not f["batch"] else ""
        hosts = " ".join(f'<span class="host {_e(h["status"])}" title="{_e(h["status"])}">{_e(h["name"])}</span>'
                         for h in f["host_states"])
        rows.append(
            f'<tr class="flight" data-env="{_e(f["environment"])}" data-run="{_e(f["run_id"])}">'
            f'<td>{_e(f["app"])}</td><td>{_e(f["environment"])}</td>'
            f'<td>{_e(f["kind"])} {_e(f["version"])} <span class=muted>(from {_e(f["previous_version"] or "-")})'
            f'</span></td><td>{batch}{at}</td>'
            f'<td><b class="released">{f["released"]}</b> released &middot; <b class="out">{f["out_of_rotation"]}'
            f'</b> out of rotation &middot; <b class="failed">{f["failed"]}</b> failed &middot; {f["waiting"]} waiting'
            f' <span class=muted>of {f["hosts"]}</span><div class="hosts">{hosts}</div></td>'
            f'<td>{_e(f["triggered_by"])}<br><span class=muted>{_when(f["started_at"])}</span></td>'
            f'<td>{_a(f["link"], "run &#8599;", "run-link")}</td></tr>')
    return _list_table(["app", "environment", "release", "progress", "hosts", "started", ""], rows)


def render_approvals(board: dict) -> str:
    if not board["approvals"]:
        return '<p class="muted" id="no-approvals">No approval is waiting.</p>'
    rows = []
    for a in board["approvals"]:
        who = ", ".join(_e(u) for u in a["approvers"]) or "any user with access"
        host = f' <span class=muted>({_e(a["host"])})</span>' if a["host"] else ""
        rows.append(
            f'<tr class="approval" data-env="{_e(a["environment"])}"><td>{_e(a["environment"])}</td>'
            f'<td>{_e(a["subject"])}{host}</td>'
            f'<td>{who}</td><td class=muted>{_when(a["asked_at"])}</td>'
            f'<td>{_a(a["link"], "answer &#8599;", "approval-link")} {_a(a["run_link"], "run", "muted")}</td></tr>')
    return _list_table(["environment", "asks", "who may answer", "asked", ""], rows)


def render_queue(board: dict) -> str:
    if not board["queue"]:
        return '<p class="muted">No environment is released at window openings.</p>'
    rows = []
    for q in board["queue"]:
        w = q["next_window"]
        opening = (("open now; next opening " if w["open_now"] else "next opening ")
                   + (_e(w["opens_local"]) if w["opens_at"] else "never") + f' <span class=muted>({_e(w["window"])})</span>'
                   if w else "no window")
        versions = ", ".join(f'{_e(v["app"])} <b>{_e(v["version"])}</b> <span class=muted>(approved by '
                             f'{_e(v["approved_by"] or "-")}, {_when(v["queued_at"])})</span>'
                             for v in q["versions"]) or '<span class="muted">nothing queued</span>'
        rows.append(f'<tr class="queue" data-env="{_e(q["environment"])}"><td>{_e(q["environment"])}</td>'
                    f'<td>{versions}</td><td class="window">{opening}</td></tr>')
    return _list_table(["environment", "queued versions", "window"], rows)


def render(board: dict, base: str = "") -> str:
    """The board's sections (what the page's script swaps in at each refresh)."""
    return (f'<section><h2>What runs where</h2>{render_matrix(board, base)}</section>'
            f'<section id="in-flight"><h2>Releases in flight</h2>{render_in_flight(board)}</section>'
            f'<section id="approvals"><h2>Approvals waiting</h2>{render_approvals(board)}</section>'
            f'<section id="queue"><h2>Queued for a release window</h2>{render_queue(board)}</section>'
            f'<p class="muted" id="generated">as of {_when(board["generated_at"])}</p>')


def render_history(app: str, environment: str, page: dict) -> str:
    rows = []
    for r in page["rows"]:
        who = _e(r["triggered_by"]) + (f", approved by {_e(r['approved_by'])}" if r["approved_by"] else "")
        extra = f'<div class=muted>{_e(r["message"])}</div>' if r["message"] else ""
        if r["override_reason"]:
            extra += f'<div class="attempt failed">emergency: {_e(r["override_reason"])}</div>'
        for d in r.get("decisions") or []:
            if d["kind"] != "triggered":  # the trigger is the row's "by"
                extra += (f'<div class="decision muted">{_e(d["kind"].replace("_", " "))} by '
                          f'{_e(d["by"] or "nobody")}{": " + _e(d["detail"]) if d["detail"] else ""}</div>')
        for a in r.get("analyses") or []:
            passed = a["verdict"] == "PASS"
            extra += (f'<div class="analysis {"muted" if passed else "attempt failed"}">analysis of batch '
                      f'{_e(a["batch"])}: {_e(a["verdict"])} &rarr; {_e(str(a["action"]).replace("_", " "))}'
                      f'{" (" + _e(a["reason"]) + ")" if a["reason"] else ""}</div>')
        rows.append(f'<tr class="hist-row {_e(r["status"])}" data-id="{r["id"]}"><td>{_when(r["started_at"])}</td>'
                    f'<td>{_e(r["kind"])}{" (partial)" if r["scope"] == "partial" else ""}</td>'
                    f'<td><b>{_e(r["version"])}</b></td><td>{_e(r["previous"] or "-")}</td>'
                    f'<td>{who}</td><td class="status">{_e(r["status"])}{extra}</td>'
                    f'<td>{_a(r["link"], "run &#8599;")}</td></tr>')
    return "".join(rows)


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Gantry release board</title>
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:16px;color:#1a202c;background:#fff;font-size:14px}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:20px 0 8px}
.muted{color:#718096} table{border-collapse:collapse} th,td{padding:6px 8px;vertical-align:top;text-align:left}
.matrix td,.matrix th{border:1px solid #e2e8f0;min-width:120px} .matrix thead th{background:#f7fafc}
.cell.ok{background:#f0fff4} .cell.drifting{background:#fffaf0} .cell.releasing{background:#ebf8ff} .cell.empty{background:#fafafa}
.version{font-weight:600;font-size:15px} .since{font-size:12px;color:#4a5568}
.drift{color:#c05621;font-size:12px;margin-top:4px} .drift ul{margin:2px 0;padding-left:16px}
.attempt{font-size:12px} .attempt.failed,.attempt.refused,.attempt.aborted{color:#c53030}
.releasing{font-size:12px;margin-top:4px} button.hist{font-size:11px;margin-top:4px;cursor:pointer}
.list td,.list th{border-bottom:1px solid #e2e8f0} .host{display:inline-block;padding:1px 5px;margin:2px;border-radius:3px;font-size:11px;background:#edf2f7}
.host.released{background:#c6f6d5} .host.out_of_rotation{background:#feebc8} .host.failed{background:#fed7d7}
b.failed{color:#c53030} b.out{color:#c05621} b.released{color:#276749}
#history{margin-top:16px;border-top:2px solid #e2e8f0} tr.failed td.status,tr.refused td.status{color:#c53030}
a{color:#2b6cb0}
</style></head>
<body><h1>Gantry release board</h1>
<div class="muted">Signed in as {user}. Refreshes every few seconds while releases run.</div>
<div id="board">{board}</div>
<section id="history" hidden><h2 id="history-title"></h2>
<table class="list"><thead><tr><th>started</th><th>kind</th><th>version</th><th>previous</th><th>by</th><th>result</th><th></th></tr></thead>
<tbody id="history-rows"></tbody></table><button id="older" hidden>older</button></section>
<script>
(function () {
  var root = {root}, active = {active}, cell = null, before = null, timer = null;
  function uiNavigate(ev) {
    // Inside the Airflow UI's frame: open the UI's own page there, not inside this frame.
    var a = ev.target.closest("a[data-ui]");
    if (!a || ev.button !== 0 || ev.ctrlKey || ev.metaKey || ev.shiftKey) return;
    var top;
    try { top = window.top; if (top === window || !top.history) return; void top.location.href; } catch (e) { return; }
    ev.preventDefault();
    var st = top.history.state || {};
    top.history.pushState({usr: null, key: Math.random().toString(36).slice(2, 10), idx: (st.idx || 0) + 1}, "", a.getAttribute("href"));
    top.dispatchEvent(new PopStateEvent("popstate", {state: top.history.state}));
  }
  function refresh() {
    fetch(root + "/board/data", {credentials: "same-origin", headers: {Accept: "application/json"}})
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
      .then(function (d) { document.getElementById("board").innerHTML = d.html; active = d.active; })
      .catch(function () {})
      .finally(function () { timer = setTimeout(refresh, active ? 2000 : 15000); });
  }
  function history(more) {
    var url = root + "/board/history/" + encodeURIComponent(cell[0]) + "/" + encodeURIComponent(cell[1]) + (more && before ? "?before=" + before : "");
    fetch(url, {credentials: "same-origin"}).then(function (r) { return r.json(); }).then(function (d) {
      var rows = document.getElementById("history-rows");
      if (more) rows.insertAdjacentHTML("beforeend", d.html); else rows.innerHTML = d.html || '<tr><td class=muted colspan=7>no release recorded</td></tr>';
      before = d.next_before;
      document.getElementById("older").hidden = !before;
      document.getElementById("history").hidden = false;
    });
  }
  document.addEventListener("click", function (ev) {
    var b = ev.target.closest("button.hist");
    if (b) {
      cell = [b.dataset.app, b.dataset.env]; before = null;
      document.getElementById("history-title").textContent = "History of " + cell[0] + " in " + cell[1];
      history(false); document.getElementById("history").scrollIntoView(); return;
    }
    if (ev.target.id === "older") { history(true); return; }
    uiNavigate(ev);
  });
  timer = setTimeout(refresh, active ? 2000 : 15000);
})();
</script></body></html>
"""


def render_page(board: dict, base: str, root: str, user: str) -> str:
    import json

    return (PAGE.replace("{user}", _e(user)).replace("{root}", json.dumps(root))
            .replace("{active}", "true" if board["active"] else "false").replace("{board}", render(board, base)))
