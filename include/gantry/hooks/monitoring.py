"""Prometheus Alertmanager silences (API v2) for hosts taken down on purpose.

A silence matches the labels ``app``, ``env`` and ``host``; it is created by ``gantry``
and ends by itself after ``minutes`` so a crashed run cannot mute a host for ever.
"""
from __future__ import annotations

import datetime as dt
import json

from airflow.providers.http.hooks.http import HttpHook

CREATED_BY = "gantry"


class AlertmanagerHook(HttpHook):
    conn_name_attr = "alertmanager_conn_id"
    default_conn_name = "gantry_alertmanager"
    conn_type = "http"
    hook_name = "Gantry Alertmanager"

    def __init__(self, alertmanager_conn_id: str = default_conn_name, **kwargs) -> None:
        super().__init__(method="GET", http_conn_id=alertmanager_conn_id, **kwargs)

    def _request(self, method: str, endpoint: str, **kwargs):
        self.method = method
        return self.run(endpoint, extra_options={"timeout": 5}, **kwargs)

    @staticmethod
    def _matchers(app: str, environment: str, host: str | None) -> list[dict]:
        labels = {"app": app, "env": environment, **({"host": host} if host else {})}
        return [{"name": k, "value": v, "isRegex": False, "isEqual": True} for k, v in labels.items()]

    def active(self, app: str, environment: str, host: str | None = None) -> list[dict]:
        filters = [f'{m["name"]}="{m["value"]}"' for m in self._matchers(app, environment, host)]
        silences = self._request("GET", "/api/v2/silences", data={"filter": filters}).json()
        return [s for s in silences if s["status"]["state"] == "active" and s.get("createdBy") == CREATED_BY]

    def alerts(self, app: str, environment: str) -> list[dict]:
        """Every alert Alertmanager holds for the app in the environment, silenced and inhibited
        ones included (``GET /api/v2/alerts``): ``analysis.blocking_alerts`` decides which stop a
        rollout, and must see who silenced what."""
        filters = [f'{m["name"]}="{m["value"]}"' for m in self._matchers(app, environment, None)]
        return self._request("GET", "/api/v2/alerts", data={"filter": filters, "active": "true", "silenced": "true",
                                                             "inhibited": "true", "unprocessed": "true"}).json()

    def silence(self, app: str, environment: str, host: str, *, minutes: int, comment: str) -> str:
        existing = [s for s in self.active(app, environment, host)
                    if {m["name"] for m in s["matchers"]} == {"app", "env", "host"}]
        if existing:  # a retried step reuses its silence
            return existing[0]["id"]
        now = dt.datetime.now(dt.timezone.utc)
        body = {
            "matchers": self._matchers(app, environment, host),
            "startsAt": now.isoformat(), "endsAt": (now + dt.timedelta(minutes=minutes)).isoformat(),
            "createdBy": CREATED_BY, "comment": comment,
        }
        return self._request("POST", "/api/v2/silences", data=json.dumps(body),
                             headers={"Content-Type": "application/json"}).json()["silenceID"]

    def unsilence(self, app: str, environment: str, host: str) -> int:
        silences = [s for s in self.active(app, environment, host)
                    if any(m["name"] == "host" and m["value"] == host for m in s["matchers"])]
        for s in silences:
            self._request("DELETE", f"/api/v2/silence/{s['id']}")
        return len(silences)
