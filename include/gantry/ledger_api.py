"""Read-only REST view of the release ledger, mounted in Airflow's API server by the plugin
at ``/gantry``. Every route requires an authenticated Airflow user (the same JWT as Airflow's
own API: ``Authorization: Bearer`` or the UI's session cookie); plugin apps are not protected
by Airflow unless they ask for it.

    GET /gantry/ledger/status[?app=APP]          what version runs in each environment, since when,
                                                 the last attempt if it did not succeed everywhere,
                                                 and the hosts seen on anything else (drift)
    GET /gantry/ledger/history/{app}/{env}       every release attempt, newest first
    GET /gantry/ledger/queue/{env}               versions queued for the environment's window

The release board's page and its data are routes of the same app (``gantry.board_api``).
"""
from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI, Query

from gantry.config import ConfigError, load_config


def _ledger():
    from gantry import adapters

    return adapters.ledger()


def _known(app: str | None = None, environment: str | None = None) -> None:
    from fastapi import HTTPException

    config = load_config()
    try:
        if app is not None:
            config.app(app)
        if environment is not None:
            config.environment(environment)
    except ConfigError as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from None


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}


def create_app() -> FastAPI:
    from airflow.api_fastapi.core_api.security import get_user

    app = FastAPI(title="Gantry release ledger", dependencies=[Depends(get_user)])

    @app.get("/ledger/status")
    def status(app_name: str | None = Query(None, alias="app")) -> list[dict]:
        _known(app=app_name)
        return _ledger().where(app_name)

    @app.get("/ledger/history/{app_name}/{environment}")
    def history(app_name: str, environment: str, limit: int = Query(50, ge=1, le=1000)) -> list[dict]:
        _known(app_name, environment)
        return [_jsonable(r) for r in _ledger().history(app_name, environment, limit)]

    @app.get("/ledger/queue/{environment}")
    def queue(environment: str, limit: int = Query(50, ge=1, le=1000)) -> list[dict]:
        _known(environment=environment)
        return [_jsonable(r) for r in _ledger().queue(environment, limit)]

    from gantry.board_api import add_routes

    add_routes(app)
    return app
