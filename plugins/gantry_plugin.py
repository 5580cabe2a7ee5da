"""Gantry's Airflow plugin.

- the release-window timetable, which the scheduler needs to run ``gantry_scheduled_<env>`` at
  each window opening;
- the release ledger's read-only REST view at ``/gantry`` (authenticated Airflow users only).

Every Airflow process loads plugins, every task too; so this module stays light and the REST
app is built on its first request, in the API server. Changing this file needs a restart of
the Airflow components.
"""
from airflow.plugins_manager import AirflowPlugin

from gantry.timetables import ReleaseWindowTimetable


class LedgerApp:
    """ASGI app that builds ``gantry.ledger_api`` (FastAPI) when it is first called."""

    _app = None

    async def __call__(self, scope, receive, send):
        if LedgerApp._app is None:
            from gantry.ledger_api import create_app

            LedgerApp._app = create_app()
        await LedgerApp._app(scope, receive, send)

    def __str__(self) -> str:
        return "gantry.ledger_api:create_app"


class GantryPlugin(AirflowPlugin):
    name = "gantry"
    timetables = [ReleaseWindowTimetable]
    fastapi_apps = [{"app": LedgerApp(), "url_prefix": "/gantry", "name": "Gantry release ledger"}]
