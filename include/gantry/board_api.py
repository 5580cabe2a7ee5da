"""The release board's routes, in the plugin's FastAPI app (``gantry.ledger_api``), so at
``/gantry/board``: authenticated Airflow users only (the app requires one on every route; the
UI's frame sends its session cookie).

    GET /gantry/board                               the page (Airflow's UI shows it as "Gantry")
    GET /gantry/board/data                          the board as JSON, with its HTML (the page polls it)
    GET /gantry/board/history/{app}/{env}[?before=ID&limit=N]
                                                    a cell's history, newest first, page by page
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import HTMLResponse

from gantry import board as b
from gantry.config import load_config

APP_PREFIX = "/gantry"
_ledger_hook = None


def _ledger():
    """One ledger hook (and its connection pool) for the API server's life."""
    global _ledger_hook
    if _ledger_hook is None:
        from gantry import adapters

        _ledger_hook = adapters.ledger()
    return _ledger_hook


def _roots(request: Request) -> tuple[str, str]:
    """(the UI's base path, this app's path): both from where Airflow mounted the app."""
    root = request.scope.get("root_path", "").rstrip("/") or APP_PREFIX
    base = root[: -len(APP_PREFIX)] if root.endswith(APP_PREFIX) else ""
    return base, root


def _readable(request: Request) -> set[str] | None:
    """The DAGs the user may read: runs and approvals of the others are not shown."""
    from airflow.api_fastapi.app import get_auth_manager

    user = getattr(request.state, "gantry_user", None)
    if user is None:
        return None
    return set(get_auth_manager().get_authorized_dag_ids(user=user, method="GET"))


def board_data(request: Request) -> dict[str, Any]:
    config = load_config()
    ledger = _ledger()
    base, _ = _roots(request)
    envs = b.environment_order(config)
    running = ledger.running()
    state = b.read_airflow([(r["dag_id"], r["run_id"]) for r in running], _readable(request))
    return b.build(config, latest=ledger.latest([(a, e) for a in config.apps for e in envs]), hosts=ledger.hosts(),
                   running=running, waiting=ledger.waiting(envs), airflow=state,
                   now=dt.datetime.now(dt.timezone.utc), base=base)


def add_routes(app: FastAPI) -> None:
    from fastapi import Depends

    from airflow.api_fastapi.core_api.security import get_user

    def user(request: Request, who=Depends(get_user)):
        request.state.gantry_user = who
        return who

    @app.get("/board", response_class=HTMLResponse)
    def page(request: Request, who=Depends(user)) -> HTMLResponse:
        base, root = _roots(request)
        data = board_data(request)
        return HTMLResponse(b.render_page(data, base, root, who.get_name()),
                            headers={"Cache-Control": "no-store"})

    @app.get("/board/data")
    def data(request: Request, who=Depends(user)) -> dict:
        base, _ = _roots(request)
        out = board_data(request)
        return {**out, "html": b.render(out, base)}

    @app.get("/board/history/{app_name}/{environment}")
    def history(request: Request, app_name: str, environment: str, before: int | None = Query(None, ge=1),
                limit: int = Query(b.HISTORY_PAGE, ge=1, le=200), who=Depends(user)) -> dict:
        from gantry.ledger_api import _known

        _known(app_name, environment)
        base, _ = _roots(request)
        page = b.history(_ledger().history(app_name, environment, limit + 1, before=before), base, limit)
        return {**page, "html": b.render_history(app_name, environment, page)}
