"""Gantry's Airflow plugin.

- trigger-form refusals of Gantry's DAGs as sentences (``gantry.param_errors``);
- the release-window timetable, which the scheduler needs to run ``gantry_scheduled_<env>`` at
  each window opening;
- the release ledger's read-only REST view at ``/gantry`` (authenticated Airflow users only);
- the release board, ``/gantry/board``, shown in Airflow's UI as the "Gantry" entry of its
  navigation (an external view: the UI frames the page, which the same app serves).

Every Airflow process loads plugins, every task too; so this module stays light and the REST
app is built on its first request, in the API server. Changing this file needs a restart of
the Airflow components.
"""
from airflow.plugins_manager import AirflowPlugin

from gantry.timetables import ReleaseWindowTimetable


# The navigation entry's icon: a small release matrix.
BOARD_ICON = ("data:image/svg+xml;utf8,<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16' fill='%23718096'>"
              "<rect x='1' y='1' width='6' height='6' rx='1'/><rect x='9' y='1' width='6' height='6' rx='1'/>"
              "<rect x='1' y='9' width='6' height='6' rx='1'/><rect x='9' y='9' width='6' height='6' rx='1' "
              "fill='%2338a169'/></svg>")


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


class ParamRefusals:
    """Imports ``gantry.param_errors_middleware`` when the API server builds its middleware."""

    def __new__(cls, app):
        from gantry.param_errors_middleware import ParamRefusalMiddleware

        return ParamRefusalMiddleware(app)


class GantryPlugin(AirflowPlugin):
    name = "gantry"
    timetables = [ReleaseWindowTimetable]
    fastapi_apps = [{"app": LedgerApp(), "url_prefix": "/gantry", "name": "Gantry release ledger"}]
    # A trigger refused for a param says so in a sentence, not in jsonschema's regular expressions.
    fastapi_root_middlewares = [{"middleware": ParamRefusals, "name": "Gantry trigger-form refusals"}]
    external_views = [{"name": "Gantry", "href": "/gantry/board", "destination": "nav", "url_route": "gantry",
                       "nav_top_level": True, "icon": BOARD_ICON}]
