"""Benchmark of the release board's queries over a long ledger and many environments.

    GANTRY_STATE=/var/lib/gantry-test .venv/bin/python benchmarks/board.py \\
        [--rows 200000] [--apps 5] [--envs 40] [--hosts-per-cell 8] [--repeat 20]

Never touches the live ledger: it creates a scratch database (``--database``, default
``gantry_bench``, owned by the ``gantry_ledger`` Connection's role) on the local fleet's
PostgreSQL (127.0.0.1:15432, administered as fleetctl does: ``runuser -u postgres psql`` over the
fleet's socket), points a ``LedgerHook`` at it through an extra Connection
(``AIRFLOW_CONN_GANTRY_BENCH_LEDGER``: the ``gantry_ledger`` Connection's host and credentials,
read from ``$GANTRY_STATE/airflow.env``, with the scratch database), lets the hook create the
ledger's schema and indexes, and drops the database at the end (and at the start if a previous
run left it).

Seeded with COPY, reproducibly (``--seed``): ``--rows`` release attempts over ``--apps`` x
``--envs`` cells (synthetic names app0.., env00..; the environments form promotion chains of
``--chain``; every fourth one is released at window openings), one after the other over
``--days`` days, ids in start order as the ledger assigns them: 75% promotions, 5% rollbacks,
20% reconciler findings; 82% of the releases succeed (3% of promotions on part of the hosts),
the others fail, are partial, refused or aborted; each release records its hosts' outcomes
(jsonb). One release is running in ``--running`` cells. Every release of a window environment
came from a queue entry (dispatched; 15% more were superseded), and about half its apps have a
version waiting. ``--hosts-per-cell`` host observations per cell, 5% of them drifting,
unhealthy or out of rotation; one route per app version.

Measured, after a warm-up, ``--repeat`` times in rounds (the cases alternate), median and p90:
the ledger calls as the hook makes them (a new connection per call: the hook's engine has no
pool) - a bare ``SELECT 1`` (what every call pays to connect), ``latest`` for every cell, one
history page of the busiest cell (the first, and one ``--deep`` rows in via ``before=``, or
half-way down a shorter history), ``waiting``, ``running``, ``hosts`` and ``where()`` (the
CLI's and REST API's "what runs where"); then, from rows fetched once, ``board.build`` (the
board's data), ``board.render`` (its HTML) and a history page's data and HTML; and the whole
``/gantry/board/data`` request but Airflow's part (the four ledger calls, build and render).
For each: wall ms, the client's CPU ms (``time.process_time``) and the PostgreSQL backends' CPU
ms: ``/proc/<pid>/schedstat`` of each backend the call connected to (its pid as libpq knows it,
the ``pg_backend_pid()`` of the session, without a round trip), read as the connection is
returned, so the backend's whole life, connection start included; it needs the server on this
machine and root (as the fleet runs). Then ``EXPLAIN (ANALYZE, BUFFERS)`` of ``latest`` (the
plan's nodes and the indexes it uses) and of each statement ``where()`` runs.

Airflow's part of the board is not measured: ``read_airflow`` reads Airflow's metadata database
(the runs, task instances, plans and approvals of the releases in flight); the board is built
with an empty ``AirflowState`` instead, so releases in flight show no progress and no approval
waits. The configuration is built in memory (``parse_config``), no gantry.yaml is read.
Run it with nothing else using the machine; the fleet's PostgreSQL must be up (``./gantry up``).
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("GANTRY_STATE", "/var/lib/gantry-test")
REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "fleet"), str(REPO / "include"), str(REPO / "benchmarks")]
import fleetctl  # noqa: E402
from adapters import load_airflow_env  # noqa: E402

BENCH_CONN_ID = "gantry_bench_ledger"
USERS = ("alice", "bob", "carol", "dave", "erin", "ci")
WINDOW = {"timezone": "Europe/Berlin", "days": ["tue", "thu"], "hours": ["22:00-23:30"]}


# ------------------------------------------------------------------ the scratch database
def psql(sql: str) -> str:
    """As fleetctl administers the fleet's PostgreSQL: its superuser, over the fleet's socket."""
    out = subprocess.run(["runuser", "-u", "postgres", "--", "psql", "-h", str(fleetctl.STATE / "pgsock"),
                          "-p", str(fleetctl.PG_PORT), "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-tAc", sql],
                         capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"psql {sql!r}: {out.stderr.strip()}")
    return out.stdout.strip()


def drop_database(name: str) -> None:
    psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def bench_connection(database: str) -> str:
    """The ``gantry_ledger`` Connection with the scratch database; returns its role."""
    from airflow.sdk import BaseHook

    live = BaseHook.get_connection("gantry_ledger")
    if database == live.schema:
        raise SystemExit(f"--database {database} is the live ledger's database")
    os.environ[f"AIRFLOW_CONN_{BENCH_CONN_ID.upper()}"] = json.dumps(
        {"conn_type": "postgres", "host": live.host, "port": live.port, "login": live.login,
         "password": live.password, "schema": database})
    return live.login


# ------------------------------------------------------------------ the configuration
def environment_names(n: int) -> list[str]:
    return [f"env{i:02d}" for i in range(n)]


def make_config(apps: list[str], envs: list[str], chain: int):
    """Apps and environments in memory: chains of ``chain`` environments, each one gated by and
    auto-promoted from the one before; every fourth one released at window openings."""
    from gantry.config import parse_config

    raw_envs = {}
    for i, env in enumerate(envs):
        last_of_chain = i % chain == chain - 1 or i == len(envs) - 1
        e: dict = {"batches": "1, 50%, 100%"}
        if not last_of_chain:
            e.update(promote_to=envs[i + 1], auto_promote=i % chain < chain - 2)
        if i % chain:
            e["upstream"] = envs[i - 1]
        if i % 4 == 3:
            e.update(scheduled_release=True, window=WINDOW, approval=True, approvers=["alice", "carol"])
        raw_envs[env] = e
    raw_apps = {a: {"package": f"{a}-{{version}}.tar.gz", "install_root": f"/srv/{a}", "port": 9000 + i,
                    "start_command": "bin/start.sh", "stop_command": "bin/stop.sh",
                    "pid_file": f"/srv/{a}/shared/app.pid"} for i, a in enumerate(apps)}
    return parse_config({"apps": raw_apps, "environments": raw_envs}, Path("."))


# ------------------------------------------------------------------ seeding
def _t(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def _version(k: int) -> str:
    return f"1.{k // 100}.{k % 100}"


def host_names(app: str, env: str, n: int) -> list[str]:
    return [f"{app}-{env}-{h:02d}" for h in range(n)]


def host_outcomes(names: list[str], version: str, status: str, rng: random.Random) -> list[dict]:
    out = []
    for batch, name in enumerate(names):
        ok = status == "succeeded" or (status == "partial" and rng.random() < 0.7)
        out.append({"host": name, "batch": min(batch, 2), "outcome": "released" if ok else "failed",
                    "reason": "health check passed" if ok else "health check failed after 15 s",
                    "serving": version,
                    "steps": [["precheck", 0.4], ["stage", 2.1], ["offline: drain", 3.2], ["quiet period", 2.0],
                              ["restart", 1.7], ["health check", round(rng.uniform(0.5, 4), 1)]]})
    return out


def seed(engine, a: argparse.Namespace, config, rng: random.Random) -> dict:
    """COPY the synthetic ledger in (``engine``: the hook's, schema created)."""
    apps, envs = list(config.apps), list(config.environments)
    window_envs = {e for e in envs if config.environments[e].scheduled_release}
    cells = [(app, env) for app in apps for env in envs]
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    start = now - dt.timedelta(days=a.days)
    step = dt.timedelta(days=a.days) / max(a.rows, 1)
    promoted = {c: 0 for c in cells}    # versions promoted so far in the cell
    current = {c: None for c in cells}  # its version now
    names = {c: host_names(*c, a.hosts_per_cell) for c in cells}
    running = set(rng.sample(cells, min(a.running, len(cells))))
    finished = a.rows - len(running)
    release_cols = ("app, environment, kind, version, previous_version, scope, dag_id, run_id, triggered_by, "
                    "approved_by, override_reason, auto, status, message, hosts, started_at, ended_at")
    queue_cols = ("app, environment, version, queued_by, approved_by, status, dag_id, run_id, release_run_id, "
                  "queued_at, decided_at")
    releases, queue = io.StringIO(), io.StringIO()
    rw, qw = csv.writer(releases), csv.writer(queue)
    counts = {"releases": 0, "queue": 0, "hosts": 0, "versions": 0}
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()

        def flush(force: bool = False) -> None:
            if releases.tell() and (force or releases.tell() > 8 << 20):
                releases.seek(0)
                cur.copy_expert(f"COPY gantry_release ({release_cols}) FROM STDIN WITH (FORMAT csv)", releases)
                releases.seek(0), releases.truncate()
            if queue.tell() and (force or queue.tell() > 8 << 20):
                queue.seek(0)
                cur.copy_expert(f"COPY gantry_queue ({queue_cols}) FROM STDIN WITH (FORMAT csv)", queue)
                queue.seek(0), queue.truncate()

        def queued(app: str, env: str, version: str, at: dt.datetime, status: str, release_run: str | None,
                   decided: dt.datetime | None) -> None:
            qw.writerow([app, env, version, rng.choice(USERS), rng.choice(("alice", "carol")), status,
                         f"gantry_queue_{env}", f"manual__{_t(at)}_{counts['queue']}", release_run, _t(at),
                         _t(decided)])
            counts["queue"] += 1

        for i in range(a.rows):
            if i < finished:
                app, env = cells[rng.randrange(len(cells))]
                started = start + step * i + dt.timedelta(seconds=rng.uniform(0, 30))
            else:
                app, env = sorted(running)[i - finished]
                started = now - dt.timedelta(minutes=rng.uniform(1, 10))
            cell = (app, env)
            roll = rng.random()
            kind = "reconcile" if roll < 0.20 else "rollback" if roll < 0.25 and current[cell] else "promote"
            scheduled = kind == "promote" and env in window_envs
            run_id = f"{'scheduled' if scheduled else 'manual'}__{_t(started)}_{i}"
            previous, scope, override, auto, approved = current[cell], "full", None, False, None
            if kind == "reconcile":
                version, dag_id, by, auto = current[cell], "gantry_reconcile", "gantry-reconciler", True
                previous = None
                run_id = f"scheduled__{_t(started)}~{app}/{env}_{i}"
                status, message = "reconciled", "1 host(s) out of rotation: put back"
                hosts = [{"host": names[cell][0], "problems": ["out of rotation"], "put_back": True, "alert": False,
                          "done": []}]
                ended = started + dt.timedelta(seconds=rng.uniform(5, 60))
            else:
                if kind == "promote":
                    promoted[cell] += 1
                    version = _version(promoted[cell])
                    dag_id = f"gantry_scheduled_{env}" if scheduled else f"gantry_promote_{env}"
                    scope = "partial" if rng.random() < 0.03 else "full"
                else:
                    version = _version(max(promoted[cell] - 1, 0))
                    dag_id = f"gantry_rollback_{env}"
                by = "gantry-auto-promote" if kind == "promote" and rng.random() < 0.4 else rng.choice(USERS)
                auto = by == "gantry-auto-promote"
                approved = rng.choice(("alice", "carol")) if env in window_envs else None
                if rng.random() < 0.005:
                    override = "hotfix for an outage, approved on the phone"
                r = rng.random()
                status = ("succeeded" if r < 0.82 else "failed" if r < 0.91 else "partial" if r < 0.94
                          else "refused" if r < 0.98 else "aborted")
                message = {"succeeded": f"{a.hosts_per_cell}/{a.hosts_per_cell} host(s) released",
                           "failed": "1 host failed: health check failed after 15 s; the rollout stopped",
                           "partial": "not every host released", "refused": "stopped at check_gates",
                           "aborted": "the run ended without reporting"}[status]
                hosts = (host_outcomes(names[cell], version, status, rng) if status in ("succeeded", "failed",
                                                                                        "partial") else [])
                ended = started + dt.timedelta(seconds=rng.uniform(60, 1800))
                if status == "succeeded" and scope == "full":
                    current[cell] = version
                if scheduled:
                    queued_at = started - dt.timedelta(hours=rng.uniform(1, 48))
                    if rng.random() < 0.15:
                        queued(app, env, _version(max(promoted[cell] - 1, 0)), queued_at - dt.timedelta(hours=2),
                               "superseded", run_id, started)
                    queued(app, env, version, queued_at, "dispatched", run_id, started)
            if i >= finished:
                status, message, hosts, ended = "running", None, None, None
            rw.writerow([app, env, kind, version, previous, scope, dag_id, run_id, by, approved, override,
                         "t" if auto else "f", status, message, json.dumps(hosts) if hosts is not None else None,
                         _t(started), _t(ended)])
            counts["releases"] += 1
            flush()
        for env in sorted(window_envs):  # waiting for the next opening
            for app in apps:
                if rng.random() < 0.5:
                    queued(app, env, _version(promoted[(app, env)] + 1),
                           now - dt.timedelta(hours=rng.uniform(1, 24)), "approved", None, None)
        flush(force=True)
        hosts_csv = io.StringIO()
        hw = csv.writer(hosts_csv)
        for cell in cells:
            for name in names[cell]:
                r = rng.random()
                version = current[cell] if r >= 0.03 or not current[cell] else _version(max(promoted[cell] - 3, 0))
                hw.writerow([*cell, name, version, "f" if 0.03 <= r < 0.04 else "t",
                             "f" if 0.04 <= r < 0.05 else "t", "f", _t(now - dt.timedelta(minutes=rng.uniform(0, 15))),
                             "reconcile scheduled__bench", "ok"])
                counts["hosts"] += 1
        hosts_csv.seek(0)
        cur.copy_expert("COPY gantry_host (app, environment, host, version, healthy, in_rotation, silenced, "
                        "observed_at, observed_by, note) FROM STDIN WITH (FORMAT csv)", hosts_csv)
        chains = {e: config.chain(e) for e in envs}
        versions_csv = io.StringIO()
        vw = csv.writer(versions_csv)
        for app in apps:
            first = next(iter(envs))
            for k in range(max(promoted[(app, e)] for e in envs) + 1):
                vw.writerow([app, _version(k), "t" if k % 25 == 0 else "f",
                             "{" + ",".join(chains[first]) + "}", "ci", first, f"manual__bench_{k}"])
                counts["versions"] += 1
        versions_csv.seek(0)
        cur.copy_expert("COPY gantry_version (app, version, special, route, marked_by, environment, run_id) "
                        "FROM STDIN WITH (FORMAT csv)", versions_csv)
        raw.commit()
        # As autovacuum leaves a table that has settled: statistics and visibility map up to date.
        raw.set_session(autocommit=True)
        for table in ("gantry_release", "gantry_queue", "gantry_host", "gantry_version"):
            cur.execute(f"VACUUM ANALYZE {table}")
        cur.execute("SELECT pg_size_pretty(pg_total_relation_size('gantry_release'))")
        counts["gantry_release_size"] = cur.fetchone()[0]
    finally:
        raw.close()
    return counts


# ------------------------------------------------------------------ measuring
class BackendCPU:
    """CPU time of the PostgreSQL backends the engine's connections ran on, read from
    /proc/<pid>/schedstat (ns on CPU) when each connection is returned (the engine has no
    pool: the backend then exits, so that is its whole life)."""

    def __init__(self, engine) -> None:
        import sqlalchemy as sa

        self.ns = 0
        self.connections = 0
        self.unreadable = 0
        sa.event.listen(engine, "checkin", self._checkin)

    def _checkin(self, dbapi_connection, record) -> None:
        if dbapi_connection is None:
            return
        self.connections += 1
        try:
            pid = dbapi_connection.info.backend_pid
            self.ns += int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])
        except (OSError, ValueError, AttributeError):
            self.unreadable += 1

    def reset(self) -> None:
        self.ns = self.connections = self.unreadable = 0


def spy(hook, call) -> list[tuple[str, dict]]:
    """The statements (and parameters) a hook method runs."""
    seen: list[tuple[str, dict]] = []
    original = hook._rows

    def recording(sql: str, **params):
        seen.append((sql, params))
        return original(sql, **params)

    hook._rows = recording
    try:
        call()
    finally:
        del hook._rows
    return seen


def explain(engine, sql: str, params: dict) -> dict:
    """EXPLAIN (ANALYZE, BUFFERS): the plan as an indented tree of node names, the indexes used,
    the relations read by sequential scan, and the server's planning and execution time."""
    import sqlalchemy as sa

    with engine.connect() as conn:
        doc = conn.execute(sa.text("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql), params).scalar()
    if isinstance(doc, str):
        doc = json.loads(doc)
    top = doc[0]
    lines, indexes, seq = [], [], []

    def walk(node: dict, depth: int) -> None:
        label = node["Node Type"]
        if node.get("Join Type") and node["Join Type"] != "Inner":
            label = f"{label} ({node['Join Type']})"
        if node.get("Index Name"):
            label += f" using {node['Index Name']}"
            indexes.append(node["Index Name"])
        if node.get("Relation Name"):
            label += f" on {node['Relation Name']}"
            if node["Node Type"] == "Seq Scan":
                seq.append(node["Relation Name"])
        if node.get("Alias") and node.get("Alias") != node.get("Relation Name"):
            label += f" {node['Alias']}"
        label += f"  [rows {node.get('Actual Rows')} x{node.get('Actual Loops')}"
        label += f", {node['Rows Removed by Filter']} filtered out per loop]" if node.get("Rows Removed by Filter") else "]"
        lines.append("  " * depth + label)
        for child in node.get("Plans", []):
            walk(child, depth + 1)

    walk(top["Plan"], 0)
    return {"plan": lines, "indexes": sorted(set(indexes)), "seq_scans": sorted(set(seq)),
            "planning_ms": round(top.get("Planning Time", 0), 2),
            "execution_ms": round(top.get("Execution Time", 0), 2),
            "shared_buffers_hit": top["Plan"].get("Shared Hit Blocks"),
            "shared_buffers_read": top["Plan"].get("Shared Read Blocks")}


def count(value) -> int | None:
    if isinstance(value, (list, tuple)):
        return len(value)
    if isinstance(value, str):
        return len(value)  # characters of HTML
    if isinstance(value, dict) and "rows" in value:
        return len(value["rows"])
    return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=200_000, help="release attempts in the ledger")
    ap.add_argument("--apps", type=int, default=5)
    ap.add_argument("--envs", type=int, default=40)
    ap.add_argument("--chain", type=int, default=8, help="environments per promotion chain")
    ap.add_argument("--hosts-per-cell", type=int, default=8)
    ap.add_argument("--running", type=int, default=3, help="cells with a release running")
    ap.add_argument("--days", type=int, default=730, help="the ledger's span")
    ap.add_argument("--deep", type=int, default=500, help="rows into the cell's history of the deep page")
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--database", default="gantry_bench", help="the scratch database (dropped at the end)")
    a = ap.parse_args()
    import logging

    logging.disable(logging.INFO)  # the hooks log every call at INFO
    load_airflow_env()
    owner = bench_connection(a.database)

    from gantry import board as b
    from gantry.hooks.ledger import LedgerHook

    drop_database(a.database)  # left over by an interrupted run
    psql(f'CREATE DATABASE "{a.database}" OWNER "{owner}"')
    try:
        rng = random.Random(a.seed)
        apps = [f"app{i}" for i in range(a.apps)]
        config = make_config(apps, environment_names(a.envs), a.chain)
        envs = b.environment_order(config)
        cells = [(app, env) for app in config.apps for env in envs]
        hook = LedgerHook(BENCH_CONN_ID)
        engine = hook.engine()  # creates the ledger's schema and indexes
        w0 = time.perf_counter()
        seeded = seed(engine, a, config, rng)
        seeded["seconds"] = round(time.perf_counter() - w0, 1)
        print(f"seeded {a.database} in {seeded['seconds']} s: {seeded['releases']} releases "
              f"({seeded['gantry_release_size']}), {seeded['queue']} queue entries, {seeded['hosts']} hosts, "
              f"{seeded['versions']} versions; {len(cells)} cells")

        # The cell whose history is paged: the one with the most releases, as a busy one would be.
        hist_app, hist_env = hook._rows("SELECT app, environment FROM gantry_release GROUP BY 1, 2 "
                                        "ORDER BY count(*) DESC, 1, 2 LIMIT 1")[0].values()
        n_hist = hook._rows("SELECT count(*) AS n FROM gantry_release WHERE app=:a AND environment=:e",
                            a=hist_app, e=hist_env)[0]["n"]
        depth = min(a.deep, n_hist // 2)  # a small ledger's cells are shorter than --deep
        before = hook._rows("SELECT id FROM gantry_release WHERE app=:a AND environment=:e "
                            "ORDER BY started_at DESC, id DESC OFFSET :o LIMIT 1",
                            a=hist_app, e=hist_env, o=depth)[0]["id"]
        page = b.HISTORY_PAGE + 1  # as the board's route asks: one more, to know a next page exists
        now = dt.datetime.now(dt.timezone.utc)
        airflow = b.AirflowState()  # Airflow's part is not measured (see the docstring)

        rows = {"latest": hook.latest(cells), "hosts": hook.hosts(), "running": hook.running(),
                "waiting": hook.waiting(envs), "history": hook.history(hist_app, hist_env, page)}
        board_data = b.build(config, latest=rows["latest"], hosts=rows["hosts"], running=rows["running"],
                             waiting=rows["waiting"], airflow=airflow, now=now)

        def whole_board() -> str:  # /gantry/board/data without read_airflow
            running = hook.running()
            out = b.build(config, latest=hook.latest(cells), hosts=hook.hosts(), running=running,
                          waiting=hook.waiting(envs), airflow=airflow, now=now)
            return b.render(out)

        cases = {
            "connect + SELECT 1": lambda: hook._rows("SELECT 1"),
            f"latest ({len(cells)} cells)": lambda: hook.latest(cells),
            "history, first page": lambda: hook.history(hist_app, hist_env, page),
            f"history, page {depth} rows in": lambda: hook.history(hist_app, hist_env, page, before=before),
            "waiting": lambda: hook.waiting(envs),
            "running": lambda: hook.running(),
            "hosts": lambda: hook.hosts(),
            "where() (CLI/REST)": lambda: hook.where(),
            "board.build (data)": lambda: b.build(config, latest=rows["latest"], hosts=rows["hosts"],
                                                  running=rows["running"], waiting=rows["waiting"],
                                                  airflow=airflow, now=now),
            "board.render (HTML)": lambda: b.render(board_data),
            "history page data + HTML": lambda: b.render_history(hist_app, hist_env,
                                                                 b.history(rows["history"], "", b.HISTORY_PAGE)),
            "board/data w/o Airflow": whole_board,
        }
        backend = BackendCPU(engine)
        results_of = {name: fn() for name, fn in cases.items()}  # warm-up: imports, caches, plans
        samples: dict[str, list[tuple[float, float, float, int]]] = {name: [] for name in cases}
        unreadable = 0
        for _ in range(a.repeat):
            for name, fn in cases.items():
                backend.reset()
                w, c = time.perf_counter(), time.process_time()
                fn()
                w, c = time.perf_counter() - w, time.process_time() - c
                unreadable += backend.unreadable
                samples[name].append((w, c, backend.ns / 1e9, backend.connections))

        result: dict = {"params": dict(vars(a)), "seeded": seeded,
                        "history_cell": {"app": hist_app, "environment": hist_env, "releases": n_hist,
                                         "deep_page_offset": depth, "before": before},
                        "loadavg_at_end": None, "cases": {}}
        for name, s in samples.items():
            walls = sorted(x[0] for x in s)
            conns = s[0][3]
            result["cases"][name] = {
                "wall_ms_median": round(statistics.median(walls) * 1000, 2),
                "wall_ms_p90": round(walls[max(int(len(walls) * 0.9) - 1, 0)] * 1000, 2),
                "client_cpu_ms_median": round(statistics.median(x[1] for x in s) * 1000, 2),
                "backend_cpu_ms_median": (round(statistics.median(x[2] for x in s) * 1000, 2)
                                          if conns and not unreadable else None),
                "connections": conns, "result_size": count(results_of[name])}

        latest_sql = spy(hook, lambda: hook.latest(cells))
        result["explain"] = {"latest": explain(engine, *latest_sql[0]),
                             "where": [{"statement": sql.split(" FROM ")[0][:60] + " ...", **explain(engine, sql, p)}
                                       for sql, p in spy(hook, hook.where)]}
        result["loadavg_at_end"] = Path("/proc/loadavg").read_text().split()[:3]

        print(f"\n{'case':30s} {'wall median':>12s} {'p90':>9s} {'client CPU':>11s} {'PG backend CPU':>15s} "
              f"{'conns':>5s} {'size':>7s}")
        for name, r in result["cases"].items():
            pg = f"{r['backend_cpu_ms_median']:>12.2f} ms" if r["backend_cpu_ms_median"] is not None else f"{'-':>15s}"
            print(f"{name:30s} {r['wall_ms_median']:>9.2f} ms {r['wall_ms_p90']:>6.2f} ms "
                  f"{r['client_cpu_ms_median']:>8.2f} ms {pg} {r['connections']:>5d} {r['result_size'] or '':>7}")
        print("(size: rows returned, or characters of HTML)")
        if unreadable:
            print(f"PG backend CPU not measured: /proc/<pid>/schedstat unreadable for {unreadable} connection(s)")
        e = result["explain"]["latest"]
        print(f"\nEXPLAIN ANALYZE latest(): execution {e['execution_ms']} ms, planning {e['planning_ms']} ms; "
              f"indexes {', '.join(e['indexes']) or 'none'}; sequential scans: {', '.join(e['seq_scans']) or 'none'}")
        for line in e["plan"]:
            print("   ", line)
        print("\nEXPLAIN ANALYZE of where()'s statements:")
        for w in result["explain"]["where"]:
            print(f"    {w['execution_ms']:>8.2f} ms  {w['statement']}")
            print(f"              top: {w['plan'][0].strip()}; indexes: {', '.join(w['indexes']) or 'none'}; "
                  f"sequential scans: {', '.join(w['seq_scans']) or 'none'}")
        print(f"\nload average at the end: {' '.join(result['loadavg_at_end'])} ({os.cpu_count()} CPUs)")
        out = REPO / "benchmarks" / "last-run-board.json"
        out.write_text(json.dumps(result, indent=2, default=str) + "\n")
        print(f"written to {out}")
    finally:
        drop_database(a.database)


if __name__ == "__main__":
    main()
