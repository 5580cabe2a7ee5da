"""No secret the fleet configured appears in any Airflow log file.

Named to run after the other end-to-end tests of the same pytest run, so that it reads the logs of
every promotion, rollback, approval and failure they caused. It only reads.

What counts as a secret is collected from where the fleet configures it, not listed here: the
Airflow settings in ``$GANTRY_STATE/airflow.env`` (fernet key, API secret key, JWT secret, the
metadata database's password), every ``AIRFLOW_CONN_*`` Connection (passwords, secret extras,
and the private key a ``key_file`` names), the UI users' passwords file and every sshd host key
of the fleet. A long secret is searched for as it is. A short one (the local demo passwords equal
their logins, such as ``demo``) would match every mention of the login, so it is searched for
only where it would be a credential: after ``password=``, ``"password": ``, or in a URL's
``user:password@``. Any private-key block or JSON Web Token in a log is a leak whoever owns it.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import urllib.parse
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

# Secrets shorter than this are searched for in a credential context only (see above).
SHORT_SECRET = 12
# Names of settings and Connection extras whose values are secrets.
SECRET_NAME = re.compile(r"(?i)(password|passwd|secret|token|fernet_key|api_key|private_key|key_data|credential)")
ANY_PRIVATE_KEY = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")
ANY_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")


def read_env_file(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = shlex.split(value)[0] if value else ""
    return env


def private_key_fragments(path: Path) -> list[str]:
    """The base64 lines of a private key file: any one of them in a log is part of the key."""
    lines = path.read_text().splitlines()
    body = [line.strip() for line in lines if line.strip() and not line.startswith("-----")]
    return [line for line in body if len(line) >= SHORT_SECRET]


def configured_secrets(state: Path) -> dict[str, str]:
    """{where it is configured: secret}."""
    secrets: dict[str, str] = {}
    env = read_env_file(state / "airflow.env")
    for name, value in env.items():
        if SECRET_NAME.search(name) and not name.endswith("_FILE") and not name.startswith("AIRFLOW_CONN_"):
            secrets[name] = value
    db = urllib.parse.urlsplit(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    if db.password:
        secrets["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN password"] = urllib.parse.unquote(db.password)
    key_files: dict[str, Path] = {}
    for name, value in env.items():
        if not name.startswith("AIRFLOW_CONN_"):
            continue
        conn = json.loads(value) if value.lstrip().startswith("{") else _uri_connection(value)
        if conn.get("password"):
            secrets[f"{name} password"] = conn["password"]
        extra = conn.get("extra") or {}
        extra = json.loads(extra) if isinstance(extra, str) else extra
        for key, item in extra.items():
            if SECRET_NAME.search(key) and isinstance(item, str) and item:
                secrets[f"{name} extra {key}"] = item
        if extra.get("key_file"):
            key_files[f"{name} key_file"] = Path(extra["key_file"])
    passwords_file = Path(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    for user, password in json.loads(passwords_file.read_text()).items():
        secrets[f"Airflow user {user}'s password"] = password
    for name, value in json.loads((state / "airflow-secrets.json").read_text()).items():
        secrets[f"airflow-secrets.json {name}"] = value
    host_keys = sorted(state.glob("hosts/*/etc-ssh/ssh_host_*_key")) + sorted(state.glob("lb/ssh_host_*_key"))
    key_files.update({f"host key {p.relative_to(state)}": p for p in host_keys})
    # A line that two different keys share is the key format's header, not a secret.
    in_files: dict[str, set[Path]] = {}
    for path in set(key_files.values()):
        for fragment in private_key_fragments(path):
            in_files.setdefault(fragment, set()).add(path)
    for where, path in key_files.items():
        for i, fragment in enumerate(private_key_fragments(path)):
            if len(in_files[fragment]) == 1:
                secrets[f"{where} ({path}) line {i + 1}"] = fragment
    return secrets


def _uri_connection(uri: str) -> dict:
    parts = urllib.parse.urlsplit(uri)
    extra = dict(urllib.parse.parse_qsl(parts.query))
    return {"password": urllib.parse.unquote(parts.password or ""), "extra": extra}


def leak_patterns(secrets: dict[str, str]) -> list[tuple[str, re.Pattern]]:
    patterns = [("a private key block", ANY_PRIVATE_KEY), ("a JSON Web Token", ANY_JWT)]
    for where, secret in secrets.items():
        s = re.escape(secret)
        if len(secret) >= SHORT_SECRET:
            patterns.append((where, re.compile(s)))
        else:
            # password=x, password: "x", {"password": "x"} (also JSON-escaped), user:x@host
            patterns.append((where, re.compile(
                rf"(?i)(pass(word)?|passwd|pwd|secret|token)[\s\"'\\]*[:=][\s\"'\\]*{s}(?![\w])"
                rf"|://[^\s/@:]*:{s}@")))
    return patterns


def leaks(text: str, patterns: list[tuple[str, re.Pattern]]) -> list[str]:
    return [where for where, pattern in patterns if pattern.search(text)]


def log_folder() -> Path:
    return Path(os.environ.get("AIRFLOW__LOGGING__BASE_LOG_FOLDER")
                or Path(os.environ["AIRFLOW_HOME"]) / "logs")


def test_the_scanner_finds_each_kind_of_leak():
    """The patterns themselves, on planted text: a scan that matches nothing proves nothing."""
    patterns = leak_patterns({"ledger password": "gantry", "fernet": "p2kI3xT5vJQfW7m0gN8bR4cY1dE6hL9a="})
    assert leaks("connecting to postgresql://gantry:gantry@127.0.0.1:15432/gantry", patterns) == ["ledger password"]
    assert leaks('{"event": "conn", "password": "gantry"}', patterns) == ["ledger password"]
    assert leaks(r'{"event": "extra={\"password\": \"gantry\"}"}', patterns) == ["ledger password"]
    assert leaks("PGPASSWORD=gantry psql", patterns) == ["ledger password"]
    assert leaks("key p2kI3xT5vJQfW7m0gN8bR4cY1dE6hL9a= used", patterns) == ["fernet"]
    assert leaks("-----BEGIN OPENSSH PRIVATE KEY-----", patterns) == ["a private key block"]
    assert leaks("Bearer eyJhbGciOiJIUzUxMiJ9.eyJzdWIiOiJhZG1pbiJ9.c2lnbmF0dXJlc2lnbg", patterns) == [
        "a JSON Web Token"]
    # A login that equals its password is not a leak by itself.
    assert leaks("gantry_promote_test: ledger row for gantry written; password=***", patterns) == []


def test_no_configured_secret_appears_in_any_task_log(airflow):
    import fleetctl

    secrets = configured_secrets(fleetctl.STATE)
    kinds = " ".join(secrets)
    for expected in ("FERNET_KEY", "SECRET_KEY", "JWT_SECRET", "SQL_ALCHEMY_CONN password",
                     "AIRFLOW_CONN_GANTRY_LEDGER password", "AIRFLOW_CONN_GANTRY_SSH key_file", "host key"):
        assert expected in kinds, f"no {expected} among the configured secrets: the collection is broken"
    patterns = leak_patterns(secrets)

    folder = log_folder()
    files = [p for p in folder.rglob("*") if p.is_file()]
    found: dict[str, list[str]] = {}
    scanned_bytes = 0
    for path in files:
        text = path.read_bytes().decode(errors="replace")
        scanned_bytes += len(text)
        hits = leaks(text, patterns)
        if hits:
            found[str(path.relative_to(folder))] = hits
    assert not found, "secrets in Airflow logs:\n" + "\n".join(f"{f}: {', '.join(h)}" for f, h in sorted(found.items()))

    # Not vacuous: the task logs of real promotions were there and were read.
    task_logs = [p for p in files if p.name.startswith("attempt=") and p.stat().st_size > 0]
    promotions = {p.relative_to(folder).parts[0] for p in task_logs
                  if p.relative_to(folder).parts[0].startswith("dag_id=gantry_promote_")}
    host_tasks = [p for p in task_logs if "task_id=host.offline_restart_online" in p.parts]
    assert promotions, f"no gantry_promote_* task log under {folder}: run this after the other e2e tests"
    assert len(task_logs) >= 20 and host_tasks, (
        f"only {len(task_logs)} task logs ({len(host_tasks)} host releases) under {folder}")
    assert scanned_bytes > 100_000, f"only {scanned_bytes} bytes of logs under {folder}"
