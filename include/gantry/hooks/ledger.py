"""The release ledger: every release attempt, what runs where and since when.

A PostgreSQL database of its own (Airflow Connection ``gantry_ledger``), not Airflow's metadata
database: it outlives DAG runs and Airflow upgrades, and other tools may read it. A partial
unique index makes "one release per app and environment at a time" a database guarantee.
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from airflow.sdk import BaseHook

from gantry.hooks.postgres import postgres_engine

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS gantry_release (
        id bigserial PRIMARY KEY,
        app text NOT NULL, environment text NOT NULL, kind text NOT NULL,
        version text, previous_version text, scope text NOT NULL DEFAULT 'full',
        dag_id text NOT NULL, run_id text NOT NULL,
        triggered_by text, approved_by text, override_reason text, auto boolean NOT NULL DEFAULT false,
        status text NOT NULL, message text, hosts jsonb,
        started_at timestamptz NOT NULL DEFAULT now(), ended_at timestamptz,
        UNIQUE (dag_id, run_id))""",
    """CREATE UNIQUE INDEX IF NOT EXISTS gantry_release_one_at_a_time
        ON gantry_release (app, environment) WHERE status = 'running'""",
    # Versions approved now for release at an environment's next window opening.
    # status: approved -> dispatched (handed to a release run) | superseded (a newer one was)
    """CREATE TABLE IF NOT EXISTS gantry_queue (
        id bigserial PRIMARY KEY,
        app text NOT NULL, environment text NOT NULL, version text NOT NULL,
        queued_by text, approved_by text, status text NOT NULL DEFAULT 'approved',
        dag_id text NOT NULL, run_id text NOT NULL, release_run_id text,
        queued_at timestamptz NOT NULL DEFAULT now(), decided_at timestamptz,
        UNIQUE (dag_id, run_id))""",
    # What each host was last seen running, and whether it was healthy and in rotation: written
    # by every release (for the hosts it touched) and by the reconciler (for every host).
    """CREATE TABLE IF NOT EXISTS gantry_host (
        app text NOT NULL, environment text NOT NULL, host text NOT NULL,
        version text, healthy boolean, in_rotation boolean, silenced boolean,
        observed_at timestamptz NOT NULL DEFAULT now(), observed_by text, note text,
        PRIMARY KEY (app, environment, host))""",
    # A version's route along the chain, fixed at its first promotion: special versions pass the
    # optional environments, ordinary ones skip them.
    """CREATE TABLE IF NOT EXISTS gantry_version (
        app text NOT NULL, version text NOT NULL, special boolean NOT NULL, route text[] NOT NULL,
        marked_by text NOT NULL, environment text NOT NULL, run_id text NOT NULL,
        recorded_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (app, version))""",
    # Reading by app and environment, newest first: a cell's history page by page, and its latest
    # success or attempt (the release board), without reading the rest of a long ledger.
    """CREATE INDEX IF NOT EXISTS gantry_release_history
        ON gantry_release (app, environment, started_at DESC, id DESC)""",
    """CREATE INDEX IF NOT EXISTS gantry_queue_waiting ON gantry_queue (environment, queued_at DESC)
        WHERE status = 'approved'""",
    """CREATE INDEX IF NOT EXISTS gantry_release_finished
        ON gantry_release (app, environment, ended_at DESC NULLS LAST) WHERE status <> 'running'""",
    # Every human decision of a run, with who made it and what they saw or said (DECISIONS).
    """CREATE TABLE IF NOT EXISTS gantry_decision (
        id bigserial PRIMARY KEY,
        app text NOT NULL, environment text NOT NULL, dag_id text NOT NULL, run_id text NOT NULL,
        kind text NOT NULL, decided_by text, detail text, decided_at timestamptz NOT NULL DEFAULT now())""",
    """CREATE INDEX IF NOT EXISTS gantry_decision_run ON gantry_decision (dag_id, run_id, id)""",
    # Every analysis a rollout ran after a batch: the verdict, what the rollout did, and the
    # evidence (every measurement, rank test and firing alert; AnalysisOutcome.evidence()).
    """CREATE TABLE IF NOT EXISTS gantry_analysis (
        id bigserial PRIMARY KEY,
        app text NOT NULL, environment text NOT NULL, version text NOT NULL, dag_id text NOT NULL,
        run_id text NOT NULL, batch integer NOT NULL, verdict text NOT NULL, action text NOT NULL,
        evidence jsonb NOT NULL, analysed_at timestamptz NOT NULL DEFAULT now())""",
    """CREATE INDEX IF NOT EXISTS gantry_analysis_run ON gantry_analysis (dag_id, run_id, id)""",
]
# The schema is created (or completed) while this relation, its newest, is missing.
NEWEST_TABLE = "gantry_analysis_run"

# What a human decided in a run (gantry_decision.kind): who started it, who overrode a window or
# freeze and why, who answered the release approval (and what it showed them), who let a batch
# go or stopped the rollout.
DECISIONS = ("triggered", "override", "approved", "rejected", "no_answer", "batch_go_ahead", "batch_stopped",
             "soak_accepted", "soak_rejected")


# A run's batch analyses as a JSON list (batch, verdict, action, score, reason) in the order they
# ran, by the index on (dag_id, run_id); ``run`` is the alias of the gantry_release row.
ANALYSES = ("(SELECT COALESCE(jsonb_agg(jsonb_build_object('batch', a.batch, 'verdict', a.verdict, "
            "'action', a.action, 'score', a.evidence->'score', 'reason', a.evidence->>'reason') ORDER BY a.id), "
            "'[]') FROM gantry_analysis a WHERE a.dag_id={run}.dag_id AND a.run_id={run}.run_id)")

SCHEMA_LOCK = 0x6761_6E74  # advisory lock key while creating the schema


class ReleaseInProgress(RuntimeError):
    """Another release of the same app in the same environment is running; ``holder`` is its row."""

    def __init__(self, message: str, holder: dict) -> None:
        super().__init__(message)
        self.holder = holder


@dataclass(frozen=True)
class Current:
    app: str
    environment: str
    version: str
    since: Any
    kind: str
    run_id: str

    def as_dict(self) -> dict[str, str]:
        return {"app": self.app, "environment": self.environment, "version": self.version,
                "since": self.since.isoformat(timespec="seconds"), "by": self.kind, "run_id": self.run_id}


def _seconds(timestamp: str | None) -> str | None:
    """A timestamp as ``latest`` returns it (JSON, ISO 8601) in the seconds-precision ISO form the
    ledger's views print."""
    return dt.datetime.fromisoformat(timestamp).isoformat(timespec="seconds") if timestamp else None


class LedgerHook(BaseHook):
    conn_name_attr = "ledger_conn_id"
    default_conn_name = "gantry_ledger"
    conn_type = "postgres"
    hook_name = "Gantry release ledger"

    def __init__(self, ledger_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.ledger_conn_id = ledger_conn_id
        self._engine: sa.Engine | None = None

    def engine(self) -> sa.Engine:
        if self._engine is None:
            self._engine = postgres_engine(self.ledger_conn_id)
            with self._engine.begin() as conn:
                # Concurrent "CREATE ... IF NOT EXISTS" can still collide in PostgreSQL (unique
                # violation in pg_type), and DDL locks tables: create the schema once, serialized.
                if conn.execute(sa.text(f"SELECT to_regclass('{NEWEST_TABLE}')")).scalar() is None:
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": SCHEMA_LOCK})
                    for ddl in SCHEMA:
                        conn.execute(sa.text(ddl))
        return self._engine

    def _rows(self, sql: str, **params) -> list[dict]:
        with self.engine().connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.text(sql), params)]

    # -------------------------------------------------------------- writing
    def claim(self, *, app: str, environment: str, kind: str, version: str | None, dag_id: str, run_id: str,
              triggered_by: str | None, scope: str, auto: bool, override_reason: str | None,
              previous_version: str | None) -> int:
        """Record the start of a release; refuses while another one of the app in the environment runs."""
        try:
            with self.engine().begin() as conn:
                existing = conn.execute(sa.text(
                    "SELECT id FROM gantry_release WHERE dag_id=:d AND run_id=:r"), {"d": dag_id, "r": run_id}).scalar()
                if existing:  # a retried claim of the same run
                    return existing
                return conn.execute(sa.text(
                    "INSERT INTO gantry_release (app, environment, kind, version, previous_version, scope, dag_id, "
                    "run_id, triggered_by, auto, override_reason, status) VALUES (:app, :env, :kind, :version, "
                    ":prev, :scope, :dag, :run, :by, :auto, :reason, 'running') RETURNING id"),
                    {"app": app, "env": environment, "kind": kind, "version": version, "prev": previous_version,
                     "scope": scope, "dag": dag_id, "run": run_id, "by": triggered_by, "auto": auto,
                     "reason": override_reason}).scalar()
        except sa.exc.IntegrityError:
            other = self._rows("SELECT * FROM gantry_release WHERE app=:a AND environment=:e AND status='running'",
                               a=app, e=environment)
            o = other[0] if other else {}
            raise ReleaseInProgress(
                f"another release of {app} in {environment} is in progress: {o.get('kind')} of {o.get('version')} "
                f"(run {o.get('run_id')}, started {o.get('started_at')} by {o.get('triggered_by')}); "
                "wait for it to end, then trigger again", o) from None

    def update(self, dag_id: str, run_id: str, **fields: Any) -> None:
        sets = ", ".join(f"{k} = :{k}" for k in fields)
        with self.engine().begin() as conn:
            conn.execute(sa.text(f"UPDATE gantry_release SET {sets} WHERE dag_id=:dag AND run_id=:run"),
                         {**fields, "dag": dag_id, "run": run_id})

    def finish(self, dag_id: str, run_id: str, status: str, message: str, hosts: list[dict],
               approved_by: str | None = None) -> None:
        with self.engine().begin() as conn:
            conn.execute(sa.text(
                "UPDATE gantry_release SET status=:s, message=:m, hosts=CAST(:h AS jsonb), "
                "approved_by=COALESCE(:ab, approved_by), ended_at=now() WHERE dag_id=:d AND run_id=:r"),
                {"s": status, "m": message, "h": json.dumps(hosts), "ab": approved_by, "d": dag_id, "r": run_id})

    def record(self, *, app: str, environment: str, kind: str, version: str | None, dag_id: str, run_id: str,
               triggered_by: str, status: str, message: str, hosts: list[dict]) -> None:
        """An entry that needed no claim (the reconciler's findings when it changes nothing)."""
        with self.engine().begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO gantry_release (app, environment, kind, version, dag_id, run_id, triggered_by, auto, "
                "status, message, hosts, ended_at) VALUES (:a, :e, :k, :v, :d, :r, :by, true, :s, :m, "
                "CAST(:h AS jsonb), now()) ON CONFLICT (dag_id, run_id) DO NOTHING"),
                {"a": app, "e": environment, "k": kind, "v": version, "d": dag_id, "r": run_id, "by": triggered_by,
                 "s": status, "m": message, "h": json.dumps(hosts)})

    def decide(self, *, app: str, environment: str, dag_id: str, run_id: str, kind: str, by: str | None,
               detail: str | None = None) -> None:
        """Record a human decision of the run (``kind`` one of DECISIONS).

        :param app: the app released.
        :param environment: where.
        :param dag_id: the run's DAG.
        :param run_id: the run.
        :param kind: what was decided.
        :param by: who decided (the Airflow user; None when nobody answered).
        :param detail: what they saw (an approval's question) or said (an override's reason).
        """
        if kind not in DECISIONS:
            raise ValueError(f"unknown decision {kind!r}; one of {', '.join(DECISIONS)}")
        with self.engine().begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO gantry_decision (app, environment, dag_id, run_id, kind, decided_by, detail) "
                "VALUES (:a, :e, :d, :r, :k, :by, :detail)"),
                {"a": app, "e": environment, "d": dag_id, "r": run_id, "k": kind, "by": by, "detail": detail})

    def decisions(self, dag_id: str, run_id: str) -> list[dict]:
        """The run's human decisions, in the order they were made."""
        return self._rows("SELECT kind, decided_by, detail, decided_at FROM gantry_decision "
                          "WHERE dag_id=:d AND run_id=:r ORDER BY id", d=dag_id, r=run_id)

    def record_analysis(self, *, app: str, environment: str, version: str, dag_id: str, run_id: str, batch: int,
                        evidence: dict) -> None:
        """Record the analysis of a batch (``batch`` counts from 1) with its evidence.

        :param app: the app released.
        :param environment: where.
        :param version: the version released.
        :param dag_id: the run's DAG.
        :param run_id: the run.
        :param batch: the analysed batch, from 1.
        :param evidence: ``AnalysisOutcome.evidence()`` (its ``verdict`` and ``action`` are kept as columns too).
        """
        with self.engine().begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO gantry_analysis (app, environment, version, dag_id, run_id, batch, verdict, action, "
                "evidence) VALUES (:a, :e, :v, :d, :r, :b, :verdict, :action, CAST(:evidence AS jsonb))"),
                {"a": app, "e": environment, "v": version, "d": dag_id, "r": run_id, "b": batch,
                 "verdict": evidence["verdict"], "action": evidence["action"], "evidence": json.dumps(evidence)})

    def analyses(self, dag_id: str, run_id: str) -> list[dict]:
        """The run's batch analyses, in the order they ran."""
        return self._rows("SELECT batch, version, verdict, action, evidence, analysed_at FROM gantry_analysis "
                          "WHERE dag_id=:d AND run_id=:r ORDER BY id", d=dag_id, r=run_id)

    def abandon(self, dag_id: str, run_id: str, message: str) -> bool:
        """Close a claim whose run ended without reporting (killed, marked failed by hand):
        the environment is free again. False when the claim was not running any more."""
        with self.engine().begin() as conn:
            return conn.execute(sa.text(
                "UPDATE gantry_release SET status='aborted', message=:m, ended_at=now() "
                "WHERE dag_id=:d AND run_id=:r AND status='running'"), {"m": message, "d": dag_id, "r": run_id}
            ).rowcount > 0

    def observe(self, app: str, environment: str, observations: list[dict], observed_by: str) -> None:
        """Record what hosts were seen running: ``{host, version, healthy, in_rotation, silenced,
        note}`` each (a missing field keeps what was known)."""
        with self.engine().begin() as conn:
            for o in observations:
                conn.execute(sa.text(
                    "INSERT INTO gantry_host (app, environment, host, version, healthy, in_rotation, silenced, "
                    "observed_by, note) VALUES (:a, :e, :h, :v, :hl, :ir, :si, :by, :n) "
                    "ON CONFLICT (app, environment, host) DO UPDATE SET "
                    "version=COALESCE(EXCLUDED.version, gantry_host.version), "
                    "healthy=COALESCE(EXCLUDED.healthy, gantry_host.healthy), "
                    "in_rotation=COALESCE(EXCLUDED.in_rotation, gantry_host.in_rotation), "
                    "silenced=COALESCE(EXCLUDED.silenced, gantry_host.silenced), "
                    "observed_at=now(), observed_by=EXCLUDED.observed_by, note=EXCLUDED.note"),
                    {"a": app, "e": environment, "h": o["host"], "v": o.get("version"), "hl": o.get("healthy"),
                     "ir": o.get("in_rotation"), "si": o.get("silenced"), "by": observed_by, "n": o.get("note")})

    # -------------------------------------------------------------- reading
    def running(self) -> list[dict]:
        """Releases the ledger believes are in progress."""
        return self._rows("SELECT * FROM gantry_release WHERE status='running' ORDER BY started_at")

    def hosts(self, app: str | None = None, environment: str | None = None) -> list[dict]:
        """What each host was last seen running (see ``observe``)."""
        return self._rows("SELECT * FROM gantry_host WHERE (:a IS NULL OR app=:a) AND (:e IS NULL OR environment=:e) "
                          "ORDER BY app, environment, host", a=app, e=environment)

    def released_hosts(self, app: str, environment: str) -> set[str]:
        """Hosts some release of the app in the environment brought to a version."""
        return {r["host"] for r in self._rows(
            "SELECT DISTINCT h->>'host' AS host FROM gantry_release, jsonb_array_elements(hosts) h "
            "WHERE app=:a AND environment=:e AND jsonb_typeof(hosts)='array' AND h->>'outcome'='released'",
            a=app, e=environment)}

    def last_reconcile(self, app: str, environment: str) -> dict | None:
        rows = self._rows("SELECT * FROM gantry_release WHERE app=:a AND environment=:e AND kind='reconcile' "
                          "AND status <> 'running' ORDER BY started_at DESC LIMIT 1", a=app, e=environment)
        return rows[0] if rows else None

    def where(self, app: str | None = None) -> list[dict]:
        """What runs where: per app and environment the ledger's version (the last release that
        succeeded on every host), the last attempt when it did not, and every host seen on
        another version, unhealthy or out of rotation (drift)."""
        # Every cell the ledger knows, found by skipping through the history index from one
        # (app, environment) to the next, plus the cells only observations name; then each
        # cell's current release and last attempt by index (``latest``): no full scan of a
        # long ledger.
        cells = [(r["app"], r["environment"]) for r in self._rows(
            "WITH RECURSIVE cell AS ("
            " (SELECT app, environment FROM gantry_release WHERE (:a IS NULL OR app=:a)"
            "  ORDER BY app, environment LIMIT 1)"
            " UNION ALL SELECT n.app, n.environment FROM cell, LATERAL ("
            "  SELECT app, environment FROM gantry_release r WHERE (r.app, r.environment) > (cell.app, cell.environment)"
            "  AND (:a IS NULL OR r.app=:a) ORDER BY app, environment LIMIT 1) n)"
            " SELECT app, environment FROM cell UNION SELECT app, environment FROM gantry_host"
            " WHERE (:a IS NULL OR app=:a)", a=app)]
        seen: dict[tuple[str, str], list[dict]] = {}
        for h in self.hosts(app):
            seen.setdefault((h["app"], h["environment"]), []).append(h)
        rows = []
        for cell in self.latest(sorted(cells)):
            key, c, attempt = (cell["app"], cell["environment"]), cell["current"], cell["attempt"]
            if not (c or attempt or key in seen):
                continue  # only a release still running, or the reconciler's records: nothing to show yet
            row = {"app": key[0], "environment": key[1], "version": None, "since": None, "by": None, "run_id": None}
            if c:
                row.update(version=c["version"], since=_seconds(c["ended_at"]), by=c["kind"], run_id=c["run_id"])
            row["special"], row["route"] = (cell["special"], cell["route"]) if c and cell["route"] else (None, None)
            if attempt and (not c or attempt["run_id"] != c["run_id"]):
                row["last_attempt"] = {k: _seconds(attempt[k]) if k == "ended_at" else attempt[k]
                                       for k in ("kind", "version", "status", "message", "run_id", "ended_at")}
            # With no version in the ledger yet there is nothing to drift from (hosts installed
            # before any release): only unhealthy or out-of-rotation hosts are shown then.
            row["drift"] = self.drift(row["version"], seen.get(key, []))
            rows.append(row)
        return rows

    def current(self, app: str | None = None, environment: str | None = None) -> list[Current]:
        """What runs in each environment: the latest release that succeeded on all hosts."""
        rows = self._rows(
            "SELECT DISTINCT ON (app, environment) app, environment, version, ended_at, kind, run_id "
            "FROM gantry_release WHERE status='succeeded' AND scope='full' "
            "AND (:app IS NULL OR app=:app) AND (:env IS NULL OR environment=:env) "
            "ORDER BY app, environment, ended_at DESC", app=app, env=environment)
        return [Current(r["app"], r["environment"], r["version"], r["ended_at"], r["kind"], r["run_id"]) for r in rows]

    def history(self, app: str, environment: str, limit: int = 50, before: int | None = None) -> list[dict]:
        """The environment's release attempts, newest first, each with its version's route, its
        human decisions (``decisions``: kind, by, detail, at; in the order they were made) and its
        batch analyses (``analyses``: batch, verdict, action, score, reason; in the order they ran).
        ``before``: the ``id`` of the last row of the previous page; the page continues after it."""
        return self._rows(
            "SELECT r.*, v.special, v.route, (SELECT COALESCE(jsonb_agg(jsonb_build_object('kind', d.kind, "
            "'by', d.decided_by, 'detail', left(d.detail, 1000), 'at', d.decided_at) ORDER BY d.id), '[]') "
            "FROM gantry_decision d WHERE d.dag_id=r.dag_id AND d.run_id=r.run_id) AS decisions, "
            f"{ANALYSES.format(run='r')} AS analyses "
            "FROM gantry_release r LEFT JOIN gantry_version v "
            "ON v.app=r.app AND v.version=r.version WHERE r.app=:a AND r.environment=:e "
            "AND (CAST(:b AS bigint) IS NULL OR (r.started_at, r.id) < "
            "(SELECT started_at, id FROM gantry_release WHERE id=CAST(:b AS bigint))) "
            "ORDER BY r.started_at DESC, r.id DESC LIMIT :n", a=app, e=environment, n=limit, b=before)

    def latest(self, cells: list[tuple[str, str]]) -> list[dict]:
        """For each (app, environment): its current release (the latest that succeeded on every
        host, as ``current``) and its last finished attempt other than the reconciler's (as in
        ``where``), each looked up by index: one query however long the ledger. One row per cell
        with ``current`` and ``attempt`` (None when there is none), the batch analyses of each
        (``current_analyses``, ``attempt_analyses``: as in ``history``), and the version's route."""
        if not cells:
            return []
        columns = ("id, kind, version, previous_version, status, message, run_id, dag_id, triggered_by, "
                   "approved_by, started_at, ended_at")
        return self._rows(
            "SELECT k.app, k.environment, to_jsonb(c) AS current, to_jsonb(t) AS attempt, "
            f"{ANALYSES.format(run='c')} AS current_analyses, {ANALYSES.format(run='t')} AS attempt_analyses, "
            "v.special, v.route FROM unnest(CAST(:apps AS text[]), CAST(:envs AS text[])) WITH ORDINALITY "
            "AS k(app, environment, n) "
            f"LEFT JOIN LATERAL (SELECT {columns} FROM gantry_release r WHERE r.app=k.app "
            "AND r.environment=k.environment AND r.status='succeeded' AND r.scope='full' "
            "ORDER BY r.ended_at DESC NULLS LAST LIMIT 1) c ON true "
            f"LEFT JOIN LATERAL (SELECT {columns} FROM gantry_release r WHERE r.app=k.app "
            "AND r.environment=k.environment AND r.status <> 'running' AND r.kind <> 'reconcile' "
            "ORDER BY r.ended_at DESC NULLS LAST LIMIT 1) t ON true "
            "LEFT JOIN gantry_version v ON v.app=k.app AND v.version = c.version ORDER BY k.n",
            apps=[a for a, _ in cells], envs=[e for _, e in cells])

    @staticmethod
    def drift(version: str | None, hosts: list[dict]) -> list[dict]:
        """The hosts seen on another version than ``version``, unhealthy or out of rotation (with
        no version yet, there is nothing to drift from: only unhealthy or out-of-rotation ones)."""
        return [
            {"host": h["host"], "version": h["version"], "healthy": h["healthy"], "in_rotation": h["in_rotation"],
             "observed_at": h["observed_at"].isoformat(timespec="seconds"), "observed_by": h["observed_by"]}
            for h in hosts
            if (version and h["version"] != version) or h["healthy"] is False or h["in_rotation"] is False]

    # -------------------------------------------------------------- versions' routes
    def route(self, app: str, version: str) -> dict | None:
        """The route recorded for a version at its first promotion, if it has been promoted."""
        rows = self._rows("SELECT * FROM gantry_version WHERE app=:a AND version=:v", a=app, v=version)
        return rows[0] if rows else None

    def record_route(self, *, app: str, version: str, special: bool, route: list[str], marked_by: str,
                     environment: str, run_id: str) -> dict:
        """Record a version's route unless it has one; returns the route that holds (the first)."""
        with self.engine().begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO gantry_version (app, version, special, route, marked_by, environment, run_id) "
                "VALUES (:a, :v, :s, :r, :m, :e, :run) ON CONFLICT (app, version) DO NOTHING"),
                {"a": app, "v": version, "s": special, "r": list(route), "m": marked_by, "e": environment,
                 "run": run_id})
        return self.route(app, version)

    def rolled_back(self, app: str, environment: str, version: str) -> dict | None:
        """The rollback that took ``version`` out of the environment, unless someone released it by
        hand since: auto-promotion must not undo a deliberate rollback."""
        rows = self._rows(
            "SELECT * FROM gantry_release r WHERE app=:a AND environment=:e AND kind='rollback' "
            "AND status='succeeded' AND previous_version=:v AND NOT EXISTS (SELECT 1 FROM gantry_release m "
            "WHERE m.app=r.app AND m.environment=r.environment AND m.kind='promote' AND m.version=:v "
            "AND m.status='succeeded' AND NOT m.auto AND m.ended_at > r.ended_at) "
            "ORDER BY ended_at DESC LIMIT 1", a=app, e=environment, v=version)
        return rows[0] if rows else None

    # -------------------------------------------------------------- queue for scheduled windows
    def enqueue(self, *, app: str, environment: str, version: str, queued_by: str | None,
                approved_by: str | None, dag_id: str, run_id: str) -> int:
        """Put an approved version in the queue of the environment's next window (idempotent per run)."""
        with self.engine().begin() as conn:
            return conn.execute(sa.text(
                "INSERT INTO gantry_queue (app, environment, version, queued_by, approved_by, dag_id, run_id) "
                "VALUES (:a, :e, :v, :q, :ab, :d, :r) ON CONFLICT (dag_id, run_id) DO UPDATE SET "
                "approved_by = EXCLUDED.approved_by RETURNING id"),
                {"a": app, "e": environment, "v": version, "q": queued_by, "ab": approved_by, "d": dag_id,
                 "r": run_id}).scalar()

    def take_queued(self, environment: str, release_run_id: str) -> list[dict]:
        """At a window opening: the newest approved version of each app, marked dispatched; older
        approved ones of the same app are superseded. Atomic, so two openings cannot both take one."""
        with self.engine().begin() as conn:
            rows = [dict(r._mapping) for r in conn.execute(sa.text(
                "SELECT * FROM gantry_queue WHERE environment=:e AND status='approved' "
                "ORDER BY app, queued_at DESC, id DESC FOR UPDATE"), {"e": environment})]
            chosen: dict[str, dict] = {}
            for row in rows:
                newest = chosen.setdefault(row["app"], row)
                conn.execute(sa.text(
                    "UPDATE gantry_queue SET status=:s, release_run_id=:rr, decided_at=now() WHERE id=:id"),
                    {"s": "dispatched" if newest is row else "superseded", "rr": release_run_id, "id": row["id"]})
            return list(chosen.values())

    def queue_entry(self, entry_id: int) -> dict | None:
        rows = self._rows("SELECT * FROM gantry_queue WHERE id=:i", i=entry_id)
        return rows[0] if rows else None

    def queue(self, environment: str, limit: int = 50) -> list[dict]:
        return self._rows("SELECT * FROM gantry_queue WHERE environment=:e ORDER BY queued_at DESC LIMIT :n",
                          e=environment, n=limit)

    def waiting(self, environments: list[str] | None = None) -> list[dict]:
        """Approved versions still waiting for their environment's window (every environment's,
        or those listed), oldest first."""
        return self._rows("SELECT * FROM gantry_queue WHERE status='approved' "
                          "AND (CAST(:e AS text[]) IS NULL OR environment = ANY(CAST(:e AS text[]))) "
                          "ORDER BY environment, queued_at", e=environments)

