"""A timetable that runs a DAG whenever an environment's release window opens.

Registered with Airflow by ``plugins/gantry_plugin.py`` (the scheduler must know the class to
deserialize DAGs that use it). The decision of *when* is ``ReleaseWindow.next_opening``, plain
Python; this class only adapts it to Airflow's Timetable protocol. The window comes from the
config at parse time: an operator's ad-hoc override or freeze (Variable ``gantry_windows``) is
applied by the release run itself, whose window sensor checks again before anything moves.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.timetables.base import DagRunInfo, DataInterval, Timetable

from gantry.windows import ReleaseWindow


class ReleaseWindowTimetable(Timetable):
    periodic = True

    def __init__(self, window: dict | None, environment: str = "") -> None:
        self.window_config = dict(window or {})
        self.environment = environment
        self.window = ReleaseWindow.from_config(self.window_config)
        self.description = f"when the {environment} release window opens: {self.window.describe()}"

    @property
    def summary(self) -> str:
        return f"window opens ({self.window.describe()})"

    def serialize(self) -> dict[str, Any]:
        return {"window": self.window_config, "environment": self.environment}

    @classmethod
    def deserialize(cls, data: dict[str, Any]) -> "ReleaseWindowTimetable":
        return cls(data.get("window"), data.get("environment", ""))

    def infer_manual_data_interval(self, *, run_after) -> DataInterval:
        return DataInterval.exact(run_after)

    def next_dagrun_info(self, *, last_automated_data_interval: DataInterval | None, restriction) -> DagRunInfo | None:
        import pendulum

        after = last_automated_data_interval.end if last_automated_data_interval else None
        earliest = restriction.earliest
        if not restriction.catchup:
            # A missed opening is not released late: the next run is the next opening from now.
            now = dt.datetime.now(dt.timezone.utc)
            earliest = now if earliest is None or earliest < now else earliest
        if earliest is not None:
            floor = earliest - dt.timedelta(microseconds=1)  # an opening exactly at `earliest` counts
            after = floor if after is None or after < floor else after
        opening = self.window.next_opening(after or dt.datetime.now(dt.timezone.utc))
        if opening is None or (restriction.latest is not None and opening > restriction.latest):
            return None
        return DagRunInfo.exact(pendulum.instance(opening))
