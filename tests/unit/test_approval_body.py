"""What an approver reads: the release approval's body, rendered from the gates' evidence with
StrictUndefined, as Airflow renders templates (a missing key is an error, not an empty string)."""
import jinja2

from gantry.rollout import APPROVAL_BODY


class TI:
    def __init__(self, evidence):
        self.evidence = evidence

    def xcom_pull(self, task_ids):
        assert task_ids == "check_gates"
        return self.evidence


def render(evidence, **params):
    # The keys CheckGatesOperator always returns; `upstream` only where there is one.
    evidence = {"running_here": "1.0", "running_here_since": "2026-12-01T10:00:00+00:00", **evidence}
    template = jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(APPROVAL_BODY.replace("gates_task_id", repr("check_gates")))
    return template.render(ti=TI(evidence), params={"app": "demo", "version": "2.0", **params},
                           dag_run=type("Run", (), {"triggering_user_name": "alice"})())


UPSTREAM = {"environment": "beta", "version": "2.0", "since": "2026-12-05T10:00:00+00:00", "run_id": "r1",
            "soaked_minutes": 61.0}


def test_the_body_shows_the_upstream_soak_and_its_analysis():
    body = render({"environment": "prod", "running_here": "1.0", "upstream": {
        **UPSTREAM, "analysis": {"verdict": "PASS", "reason": "score 100.0 >= pass 95"}}})
    assert "**demo 2.0** to **prod**, triggered by alice." in body
    assert "2.0 succeeded in beta on every host" in body
    assert "- Soak analysis in beta: PASS (score 100.0 >= pass 95)" in body


def test_an_analysis_a_human_let_through_says_who():
    body = render({"environment": "prod", "upstream": {**UPSTREAM, "analysis": {
        "verdict": "INCONCLUSIVE", "reason": "no traffic", "accepted_by": "alice"}}})
    assert "- Soak analysis in beta: INCONCLUSIVE (no traffic), let in by alice" in body


def test_without_an_analysis_the_body_says_nothing_of_one():
    assert "Soak analysis" not in render({"environment": "prod", "upstream": UPSTREAM})
