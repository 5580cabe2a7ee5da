"""Trigger-form refusals read as sentences (gantry.param_errors): every refusal of the forms'
schemas, as Airflow words it in its 400, becomes one sentence that names the field, what was
given and what is allowed, with no regular expression in it."""
from __future__ import annotations

import pytest
from airflow.sdk.definitions.param import ParamValidationError

from gantry.param_errors import ALLOWED, explain
from test_bad_input import form

BAD = [
    ("version", "1.1.0;rm -rf /"), ("version", "../1.0"), ("version", ""), ("app", "nope"),
    ("hosts", ["a b"]), ("hosts", ["web-1", "web-1"]),
    ("batches", "0"), ("batches", "0%"), ("batches", "1, , 100%"), ("batches", 2),
    ("failure_threshold", "101%"), ("bake_seconds", -1), ("bake_seconds", 86401), ("on_threshold", "stop"),
    ("confirm_batches", "yes"), ("analysis", "yes"), ("emergency_reason", "hotfix"), ("dry_run", "yes"),
    ("approval_timeout_minutes", 0), ("queue_id", 0),
]


def refusal(name, value) -> str:
    """Airflow's 400 detail for a refused trigger param (its ParamsDict.validate wording)."""
    with pytest.raises(ParamValidationError) as exc:
        form(name).resolve(value)
    return f"Invalid input for param {name}: {exc.value}"


@pytest.mark.parametrize("name, value", BAD)
def test_every_refusal_is_one_sentence_naming_the_field_the_value_and_what_is_allowed(name, value):
    detail = refusal(name, value)
    assert "^" in detail or "is not" in detail or "is less" in detail or "is greater" in detail or "too" in detail
    sentence = explain(detail)
    assert sentence and "\n" not in sentence, detail
    assert f"({name})" in sentence
    assert "^" not in sentence and "(?:" not in sentence, "no regular expression"
    shown = repr(value[0] if name == "hosts" and len(set(value)) == len(value) else value) \
        if isinstance(value, (str, list)) else str(value).lower() if isinstance(value, bool) else str(value)
    assert shown in sentence or (name == "hosts" and "more than once" in sentence), sentence


def test_a_batch_plan_refusal_says_what_a_batch_plan_may_be():
    sentence = explain(refusal("batches", "0"))
    assert sentence == f"Batch plan (batches): '0' is not accepted. Allowed: {ALLOWED['batches']}."
    assert "counts from 1" in sentence and "canary first" in sentence


def test_an_unknown_app_lists_the_apps():
    assert explain(refusal("app", "nope")) == "App (app): 'nope' is not accepted. Allowed: one of demo."


def test_anything_else_is_passed_on_untouched():
    assert explain("Dag with dag_id: 'x' has import errors and cannot be triggered") is None
    assert explain("") is None
