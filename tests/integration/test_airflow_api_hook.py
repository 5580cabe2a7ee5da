"""Gantry's service user on Airflow's real REST API (hooks/airflow_api.py): how a waiting approval
reads its answer. The answers themselves are read in the e2e approval tests."""
from __future__ import annotations

import json
import os

import pytest

from gantry.hooks.airflow_api import AirflowApiHook, AirflowApiUnavailable


def test_the_service_user_may_read_but_not_act(airflow):
    hook = AirflowApiHook()
    session = hook.get_conn()
    assert session.get(f"{hook._base}/api/v2/dags/gantry_promote_dev", timeout=10).status_code == 200
    # A viewer: it cannot trigger a release, unpause a DAG or answer an approval.
    trigger = session.post(f"{hook._base}/api/v2/dags/gantry_promote_dev/dagRuns",
                           json={"logical_date": None, "conf": {"app": "demo", "version": "1.1.0"}}, timeout=10)
    assert trigger.status_code == 403, trigger.text


def test_a_request_that_does_not_exist_is_a_clear_error(airflow):
    with pytest.raises(AirflowApiUnavailable, match="HTTP 404"):
        AirflowApiHook().hitl_detail("gantry_promote_dev", "no-such-run", "approve_release")


def test_a_token_the_api_server_no_longer_accepts_is_renewed_once(airflow):
    hook = AirflowApiHook()
    hook.get_conn().headers["Authorization"] = "Bearer not-a-token"  # as after a JWT secret rotation
    with pytest.raises(AirflowApiUnavailable, match="HTTP 404"):  # past the 403: logged in again
        hook.hitl_detail("gantry_promote_dev", "no-such-run", "approve_release")


def test_a_wrong_password_names_the_connection(airflow, monkeypatch):
    conn = json.loads(os.environ["AIRFLOW_CONN_GANTRY_AIRFLOW"])
    monkeypatch.setenv("AIRFLOW_CONN_GANTRY_AIRFLOW_BAD", json.dumps({**conn, "password": "wrong"}))
    with pytest.raises(AirflowApiUnavailable, match="refused the user 'gantry'.*gantry_airflow_bad"):
        AirflowApiHook("gantry_airflow_bad").get_conn()
