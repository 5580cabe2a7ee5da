"""Alerts through Airflow notifiers (SMTP, Connection ``gantry_smtp``): a run failed, a run
succeeded, a human is waiting to be asked. Built at parse time, sent by Airflow."""
from __future__ import annotations

from typing import Sequence

SMTP_CONN_ID = "gantry_smtp"



def _run_html(outcome: str, environment: str) -> str:
    return ("<p>{{ dag.dag_id }}: <b>{{ params.app }} {{ params.version or '' }}</b> " + outcome + ".</p>"
            "<p>Run <code>{{ run_id }}</code>, triggered by {{ dag_run.triggering_user_name or 'Gantry' }}. "
            "Per-host results: the run's <code>report</code> task and <code>./gantry ledger history "
            "{{ params.app }} " + environment + "</code>.</p>")


def run_notifiers(environment: str, to: Sequence[str]) -> dict:
    """``on_failure_callback`` / ``on_success_callback`` for a promotion or rollback DAG."""
    if not to:
        return {}
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    def notifier(outcome: str) -> SmtpNotifier:
        return SmtpNotifier(
            to=list(to), smtp_conn_id=SMTP_CONN_ID,
            subject=f"[gantry] {environment}: {{{{ params.app }}}} {{{{ params.version or '' }}}} {outcome}",
            html_content=_run_html(outcome, environment))

    return {"on_failure_callback": [notifier("FAILED")], "on_success_callback": [notifier("succeeded")]}


def approval_notifiers(environment: str, to: Sequence[str]) -> list:
    """Told when a release waits for a human (the approval's own page has the details)."""
    if not to:
        return []
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    return [SmtpNotifier(
        to=list(to), smtp_conn_id=SMTP_CONN_ID,
        subject=f"[gantry] {environment}: approval needed for {{{{ params.app }}}} {{{{ params.version or '' }}}}",
        html_content="<p>{{ task.subject }}</p><p>Answer in the Airflow UI: Required Actions, run "
                     "<code>{{ run_id }}</code>.</p>")]
