"""The reconciler: the hosts' real state against the ledger, while no release holds them.

``ObserveFleetOperator`` closes ledger claims whose Airflow run is over (killed, or marked
failed by hand, before its report could run), then looks at every host of every app and
environment that no release holds - version served, health, load-balancer and registry
membership, silences - and records it. Hosts that need something get one
``ReconcileHostOperator`` each (mapped, labelled with the host name): a healthy host left out of
rotation or silenced is put back; anything a human must decide (unhealthy, drift) fails that
host's task with the reason. ``ReconcileReportOperator`` writes what was found and done into the
ledger and mails the environment's alert list. The decisions are ``gantry.reconcile.judge``.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Sequence

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from gantry.config import AppConfig, EnvironmentConfig, load_config

if TYPE_CHECKING:
    from airflow.sdk import Context

    from gantry.plan import Host

RECONCILE_DAG_ID = "gantry_reconcile"
# Ledger claims of the reconciler: one per app and environment it acts on, "<run id>#<app>/<env>".
CLAIM_SEPARATOR = "#"
LIVE_RUN_STATES = {"queued", "running"}
HOST_LABEL = "{{ task.host['name'] }}"  # map index label of the per-host task


def _probe(app: AppConfig, host: Host) -> dict[str, Any]:
    """Process, health and version served, over SSH (as the release's own health check). A
    host SSH cannot reach is asked over HTTP, as the load balancer would: an app that serves
    its health check goes back in rotation even while its sshd is down."""
    from gantry import adapters, remote
    from gantry.operators.host import HostOperator

    shell = adapters.host_shell(host.address, host.ssh_port)
    try:
        result = shell.run(remote.probe_script(app, host.address, served=True), timeout=app.timeouts.command)
    except Exception as exc:  # noqa: BLE001 - an unreachable host is a finding, not a crash
        return {**_probe_http(app, host), "ssh": f"unreachable: {type(exc).__name__}: {exc}"}
    finally:
        shell.close()
    probe = remote.parse_probe(result.stdout) if result.ok else {}
    return {"healthy": HostOperator.is_healthy(probe),
            "version": probe.get("served") or probe.get("current") or None,
            "probe": probe or result.stderr.strip()}


def _probe_http(app: AppConfig, host: Host) -> dict[str, Any]:
    import requests

    base = f"http://{host.address}:{int(app.port)}"
    try:
        healthy = requests.get(base + app.health_path, timeout=3).status_code == 200
        version = requests.get(base + app.version_path, timeout=3).text.strip() if app.version_path else None
    except requests.RequestException as exc:
        return {"healthy": False, "version": None, "probe": f"http: {type(exc).__name__}"}
    return {"healthy": healthy, "version": version or None, "probe": "over http (ssh unreachable)"}


def observe_hosts(app: AppConfig, env: EnvironmentConfig, hosts: Sequence[Host]) -> list[dict]:
    """Every host's real state: one load-balancer read and one silence query for the pool, a
    registry read and an SSH probe per host (in parallel)."""
    from gantry import adapters

    members = adapters.load_balancer(env, app.name).members(env.pool(app.name))
    silenced = {m["value"] for s in adapters.silencer().active(app.name, env.name)
                for m in s.get("matchers", []) if m["name"] == "host"}
    registry = adapters.registry(env, app.name)

    def one(host: Host) -> dict:
        return {"host": host.name, "address": host.address, "ssh_port": host.ssh_port,
                "in_load_balancer": members.get(f"{host.address}:{app.port}"),
                "in_registry": registry.is_enabled(app.name, env.name, host.name, address=host.address, port=app.port),
                "silenced": host.name in silenced, **_probe(app, host)}

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(one, hosts))


def _summary(findings: Sequence[dict]) -> str:
    return "; ".join(f"{f['host']}: {', '.join(f['problems'])}" for f in findings if f["problems"])


class ObserveFleetOperator(BaseOperator):
    """Closes abandoned ledger claims, observes every host no release holds, records what it
    saw, and returns the hosts that need something (put back, or a human). ``environments``
    limits the pass (empty: all)."""

    template_fields: Sequence[str] = ("environments",)
    ui_color = "#eef5e8"

    def __init__(self, *, environments: Any = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.environments = environments

    def execute(self, context: Context) -> list[dict]:
        from gantry import adapters, reconcile
        from gantry.hooks.ledger import ReleaseInProgress

        config, ledger = load_config(), adapters.ledger()
        self.close_abandoned_claims(ledger, config)
        held = {(r["app"], r["environment"]): r for r in ledger.running()}
        todo: list[dict] = []
        for env in config.environments.values():
            if self.environments and env.name not in self.environments:
                continue
            for app in config.apps.values():
                hosts = adapters.cmdb(config, env).hosts(app.name, env.name)
                if not hosts:
                    continue
                if claim := held.get((app.name, env.name)):
                    self.log.info("%s in %s: held by %s %s (run %s); not touched", app.name, env.name,
                                  claim["kind"], claim["version"], claim["run_id"])
                    continue
                current = ledger.current(app.name, env.name)
                believed = current[0].version if current else None
                released = ledger.released_hosts(app.name, env.name)
                observed = observe_hosts(app, env, hosts)
                findings = [reconcile.judge(o, believed, o["host"] in released, managed=bool(released)).as_dict()
                            for o in observed]
                for o, f in zip(observed, findings):
                    self.log.info("::group::%s/%s/%s: %s", app.name, env.name, o["host"],
                                  ", ".join(f["problems"]) or "ok")
                    self.log.info("observed: %s", o)
                    self.log.info("::endgroup::")
                ledger.observe(app.name, env.name, [
                    {"host": o["host"], "version": o["version"], "healthy": o["healthy"],
                     "in_rotation": o["in_load_balancer"] is not False and o["in_registry"] is not False,
                     "silenced": o["silenced"], "note": ", ".join(f["problems"]) or "ok"}
                    for o, f in zip(observed, findings)], observed_by=f"reconcile {context['run_id']}")
                needy = [(o, f) for o, f in zip(observed, findings) if f["problems"]]
                if not needy:
                    self.log.info("%s in %s: %d host(s) match the ledger (%s)", app.name, env.name, len(hosts),
                                  believed)
                    continue
                summary = _summary(findings)
                last = ledger.last_reconcile(app.name, env.name)
                alerts = _summary([f for _, f in needy if f["alert"]])
                if (not any(f["put_back"] for _, f in needy) and last
                        and _summary([r for r in last["hosts"] or [] if r.get("alert")]) == alerts):
                    # Alert fatigue helps nobody: the same findings are recorded and mailed once.
                    self.log.warning("%s in %s: unchanged since %s (already alerted): %s", app.name, env.name,
                                     last["started_at"], alerts)
                    continue
                entry = {"app": app.name, "environment": env.name, "kind": "reconcile", "version": believed,
                         "dag_id": RECONCILE_DAG_ID, "run_id": f"{context['run_id']}{CLAIM_SEPARATOR}{app.name}/"
                         f"{env.name}", "triggered_by": "gantry-reconciler"}
                if not any(f["put_back"] for _, f in needy):
                    # Nothing to change: recorded without holding the environment, so a release
                    # triggered meanwhile is not kept waiting for an alert.
                    ledger.record(**entry, status="reconciled", message=summary,
                                  hosts=[{**f, "done": []} for _, f in needy])
                    self.log.warning("%s in %s: %s", app.name, env.name, summary)
                    todo.extend(self._records(app.name, env.name, believed, released, needy, claimed=False))
                    continue
                try:  # it will put hosts back: hold the environment so that no release moves them meanwhile
                    ledger.claim(**entry, scope="full", auto=True, override_reason=None, previous_version=believed)
                except ReleaseInProgress as exc:  # a release started meanwhile: it owns the hosts now
                    self.log.info("%s in %s: %s; not touched", app.name, env.name, exc)
                    continue
                self.log.warning("%s in %s: %s", app.name, env.name, summary)
                todo.extend(self._records(app.name, env.name, believed, released, needy, claimed=True))
        return todo

    @staticmethod
    def _records(app: str, environment: str, believed: str | None, released: set[str], needy: list,
                 claimed: bool) -> list[dict]:
        """One record per host for ``reconcile_host``; ``claimed``: the report closes the claim."""
        return [{"app": app, "environment": environment, "name": o["host"], "address": o["address"],
                 "ssh_port": o["ssh_port"], "believed": believed, "released_before": o["host"] in released,
                 "managed": bool(released), "claimed": claimed, "finding": f} for o, f in needy]

    def close_abandoned_claims(self, ledger, config) -> None:
        """A claim whose Airflow run is over will never be finished by its report: close it, so
        the environment is free and its hosts are looked at."""
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

        for claim in ledger.running():
            if claim["environment"] not in config.environments or claim["app"] not in config.apps:
                continue  # not ours to judge
            run_id = claim["run_id"].split(CLAIM_SEPARATOR)[0]
            try:
                state = RuntimeTaskInstance.get_dagrun_state(dag_id=claim["dag_id"], run_id=run_id)
                state = getattr(state, "value", state)  # the enum's text: "failed", not "DagRunState.FAILED"
            except Exception as exc:  # noqa: BLE001 - a run Airflow no longer knows is over too
                self.log.warning("run %s of %s: %s", run_id, claim["dag_id"], exc)
                state = "unknown to Airflow"
            if state in LIVE_RUN_STATES:
                continue
            if ledger.abandon(claim["dag_id"], claim["run_id"],
                              f"the run ended ({state}) without reporting; closed by the reconciler"):
                self.log.warning("closed the abandoned %s of %s %s in %s (run %s, %s)", claim["kind"], claim["app"],
                                 claim["version"], claim["environment"], run_id, state)


class ReconcileHostOperator(BaseOperator):
    """One host that needs something: looks again, puts it back in rotation when it is healthy
    (registry, load balancer, silences), and fails with the reason when a human must decide."""

    template_fields: Sequence[str] = ("host",)
    ui_color = "#eef5e8"

    def __init__(self, *, host: Any, **kwargs) -> None:
        kwargs.setdefault("map_index_template", HOST_LABEL)
        super().__init__(**kwargs)
        self.host = host

    def execute(self, context: Context) -> dict:
        from gantry import adapters, reconcile
        from gantry.plan import Host

        h, config = self.host, load_config()
        app, env = config.app(h["app"]), config.environment(h["environment"])
        target = Host(h["name"], h["address"], int(h["ssh_port"]))
        observed = observe_hosts(app, env, [target])[0]
        finding = reconcile.judge(observed, h["believed"], h["released_before"], h["managed"])
        self.log.info("%s/%s/%s now: %s", app.name, env.name, target.name, observed)
        done = []
        if finding.put_back and not h.get("claimed", True):
            # Observed as needing only a human; it changed since, without the environment held.
            self.log.warning("%s now needs putting back; the next pass does it", target.name)
        elif finding.put_back:
            adapters.registry(env, app.name).enable(app.name, env.name, target.name, address=target.address, port=app.port)
            done.append("enabled in the registry")
            adapters.load_balancer(env, app.name).enable(env.pool(app.name), target.address, app.port)
            done.append(f"back in upstream {env.pool(app.name)}")
            expired = adapters.silencer().unsilence(app.name, env.name, target.name)
            done.append(f"{expired} silence(s) expired")
            after = observe_hosts(app, env, [target])[0]
            if after["in_load_balancer"] is False or after["in_registry"] is False or after["silenced"]:
                raise AirflowFailException(f"{target.name}: could not be put back: {after}")
            self.log.info("%s put back in rotation: %s", target.name, "; ".join(done))
            adapters.ledger().observe(app.name, env.name, [
                {"host": target.name, "version": after["version"], "healthy": after["healthy"], "in_rotation": True,
                 "silenced": False, "note": "put back in rotation"}], observed_by=f"reconcile {context['run_id']}")
        result = {**finding.as_dict(), "app": app.name, "environment": env.name, "done": done}
        context["ti"].xcom_push(key="result", value=result)
        if finding.alert:
            raise AirflowFailException(f"{target.name} needs a human: {', '.join(finding.problems)}"
                                       + (f" ({'; '.join(done)})" if done else ""))
        return result


class ReconcileReportOperator(BaseOperator):
    """Writes each acted-on environment's findings into the ledger (closing the reconciler's
    claim) and mails the environment's alert list when a human must look; it fails then, so the
    run is red while a host needs a human."""

    ui_color = "#eef5e8"

    def __init__(self, *, observe_task_id: str, host_task_id: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.observe_task_id, self.host_task_id = observe_task_id, host_task_id

    def execute(self, context: Context) -> dict:
        from gantry import adapters
        from gantry.operators.report import as_list

        ti = context["ti"]
        todo = ti.xcom_pull(task_ids=self.observe_task_id) or []
        results = {(r["app"], r["environment"], r["host"]): r
                   for r in as_list(ti.xcom_pull(task_ids=self.host_task_id, key="result"))}
        by_env: dict[tuple[str, str], list[dict]] = {}
        for t in todo:
            r = results.get((t["app"], t["environment"], t["name"])) or {
                **t["finding"], "done": [], "note": "its reconcile task recorded nothing"}
            by_env.setdefault((t["app"], t["environment"]), []).append(r)
        config, ledger = load_config(), adapters.ledger()
        for (app, env), rows in by_env.items():
            message = _summary(rows)
            ledger.finish(RECONCILE_DAG_ID, f"{context['run_id']}{CLAIM_SEPARATOR}{app}/{env}", "reconciled",
                          message, rows)
            self.log.info("%s in %s: %s", app, env, message)
            for r in rows:
                self.log.info("  %s: %s%s", r["host"], ", ".join(r["problems"]),
                              f" -> {'; '.join(r['done'])}" if r.get("done") else "")
            alerts = [r for r in rows if r.get("alert")]
            if alerts and config.environment(env).notify:
                self._mail(config.environment(env).notify, app, env, alerts, context["run_id"])
        waiting = [f"{app}/{env}/{r['host']}" for (app, env), rows in by_env.items() for r in rows if r.get("alert")]
        if waiting:  # the run is red while a host needs a human, as is each such host's own task
            raise AirflowFailException(f"{len(waiting)} host(s) need a human: {', '.join(waiting)}")
        return {f"{app}/{env}": rows for (app, env), rows in by_env.items()}

    def _mail(self, to: Sequence[str], app: str, env: str, alerts: Sequence[dict], run_id: str) -> None:
        from airflow.providers.smtp.hooks.smtp import SmtpHook

        from gantry.notify import SMTP_CONN_ID

        items = "".join(f"<li>{r['host']}: {', '.join(r['problems'])}</li>" for r in alerts)
        try:
            with SmtpHook(smtp_conn_id=SMTP_CONN_ID) as smtp:
                smtp.send_email_smtp(to=list(to), subject=f"[gantry] {env}: {app} needs a human ({len(alerts)} host(s))",
                                     html_content=f"<p>The reconciler found (run <code>{run_id}</code>):</p>"
                                                  f"<ul>{items}</ul>")
        except Exception as exc:  # noqa: BLE001 - the ledger and the failed host tasks still say it
            self.log.error("could not mail %s: %s", to, exc)
