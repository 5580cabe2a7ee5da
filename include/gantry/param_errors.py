"""Trigger-form refusals as sentences a release engineer reads: what was given, what is allowed.

Airflow validates a run's params with JSON Schema when it is triggered and answers 400 with
jsonschema's own text (``'0' does not match '^\\s*(?:[1-9][0-9]{0,5}|…'``), in the REST API and in
the UI's trigger form alike. ``explain`` turns that text into one sentence per refused field;
the plugin's middleware (``gantry.param_errors_middleware``) puts it in the 400 of a Gantry DAG.
Plain Python: no Airflow.
"""
from __future__ import annotations

import ast
import re

# What each field of Gantry's trigger forms accepts, in words (the schema's patterns in gantry.plan).
ALLOWED = {
    "app": "one of the apps in config/gantry.yaml",
    "version": ("1 to 64 letters, digits, '.', '_', '+' or '-', starting with a letter or digit, "
                "with no '..' (e.g. 1.2.0 or 2.0.0-rc1)"),
    "hosts": ("CMDB host names, one per line: letters, digits, '.', '_' or '-', starting with a letter "
              "or digit, each at most once"),
    "batches": ("a batch size (\"2\") or cumulative steps, canary first (\"1, 25%, 100%\"): counts from 1, "
                "percentages above 0% and up to 100%"),
    "failure_threshold": "a number of hosts from 1 (\"2\") or a percentage above 0% and up to 100% (\"10%\")",
    "bake_seconds": "a whole number of seconds from 0 to 86400",
    "settle_seconds": "a whole number of seconds from 0 to 3600",
    "confirm_batches": "true or false",
    "analysis": "true or false",
    "on_threshold": "halt or pause",
    "emergency_reason": "a reason of 10 to 500 characters that someone can read later",
    "dry_run": "true or false",
    "auto_promote": "true or false",
    "special": "true or false",
    "approval_timeout_minutes": "a number of minutes above 0, at most the environment's deadline",
    "queue_id": "a queue entry number from 1 (set by Gantry's window runs)",
}

_REFUSAL = re.compile(r"^Invalid input for param (?P<name>\w+): (?P<message>.*?)\n\nFailed validating "
                      r"'(?P<keyword>\w+)' in schema(?P<where>[^:]*):\n(?P<schema>.*?)\n\nOn instance[^:]*:\n"
                      r"(?P<value>.*)$", re.S)


def explain(detail: str) -> str | None:
    """One sentence for Airflow's refusal of a trigger-form field, or None when ``detail`` is not
    one (then it is passed on as it is).

    :param detail: the ``detail`` of Airflow's 400 answer to a trigger.
    """
    m = _REFUSAL.match(detail.strip())
    if not m:
        return None
    name, keyword = m["name"], m["keyword"]
    try:
        schema = ast.literal_eval(m["schema"].strip())
        value = ast.literal_eval(m["value"].strip())
    except (ValueError, SyntaxError):
        schema, value = {}, m["value"].strip()
    title = (schema.get("title") if isinstance(schema, dict) else None) or name.replace("_", " ").capitalize()
    title = re.sub(r"\s*\(optional\)$", "", title)
    given = "nothing" if value is None else repr(value) if isinstance(value, str) else str(value).lower() \
        if isinstance(value, bool) else str(value)
    allowed = ALLOWED.get(name)
    if keyword == "enum" and isinstance(schema, dict) and schema.get("enum"):
        allowed = "one of " + ", ".join(str(v) for v in schema["enum"] if v is not None)
    if keyword == "uniqueItems":
        return f"{title} ({name}) names a host more than once: {given}. Give each host at most once."
    if name == "hosts" and m["where"]:
        return f"{title} ({name}): {given} is not a host name. Allowed: {allowed}."
    if allowed is None:  # a field this table does not know: jsonschema's own first line
        return f"{title} ({name}): {m['message']}."
    return f"{title} ({name}): {given} is not accepted. Allowed: {allowed}."
