"""Health of a freshly started release: process up, HTTP health 200, serving the version."""
from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk import BaseSensorOperator

from gantry.operators.release import HostStepOperator

if TYPE_CHECKING:
    from airflow.sdk import Context


class AppHealthSensor(HostStepOperator, BaseSensorOperator):
    """Pokes the host over SSH. Poke mode on purpose: each wait is seconds long, and
    reschedule mode is unreliable under the Airflow 3.3 scheduler (apache/airflow#71172).
    The timeout is the app's configured startup timeout; timing out is not retried:
    BringOnlineOperator then rolls the host back."""

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("mode", "poke")
        kwargs.setdefault("poke_interval", 0.5)
        super().__init__(**kwargs)

    def execute(self, context: Context) -> None:
        self.timeout = self.app_config.timeouts.startup
        super().execute(context)

    def poke(self, context: Context) -> bool:
        probe = self.probe(expect_version=self.version)
        self.log.info("probe: %s", probe)
        return self.is_healthy(probe, self.version)
