"""Release windows and freezes: the release waits (deferred, no worker slot) until the
environment's window opens, or is refused, per the window's policy."""
from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any, Sequence

from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowFailException

from gantry.config import load_config

if TYPE_CHECKING:
    from airflow.sdk import Context

WINDOWS_VARIABLE = "gantry_windows"  # JSON {env: window}: operators override the config's windows


class ReleaseWindowSensor(BaseSensorOperator):
    """Holds the release until the environment's window is open (deferred: no worker slot), or
    refuses it, per the window's ``outside`` policy. Freezes close the window. An emergency
    override (a reason is required) skips the window; the reason is in the ledger and the log."""

    template_fields: Sequence[str] = ("override_reason",)
    ui_color = "#e0f0e0"

    def __init__(self, *, environment: str, override_reason: Any = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.environment, self.override_reason = environment, override_reason

    def window(self):
        from airflow.sdk import Variable

        from gantry.windows import ReleaseWindow

        raw = load_config().environment(self.environment).window
        overrides = Variable.get(WINDOWS_VARIABLE, default=None, deserialize_json=True) or {}
        return ReleaseWindow.from_config(overrides.get(self.environment, raw))

    def execute(self, context: Context) -> None:
        self._check(dt.datetime.now(dt.timezone.utc))

    def _check(self, now: dt.datetime) -> None:
        from airflow.providers.standard.triggers.temporal import DateTimeTrigger

        if self.override_reason:
            self.log.warning("release window skipped by emergency override: %s", self.override_reason)
            return
        window = self.window()
        if window.is_open(now):
            self.log.info("the %s release window is open", self.environment)
            return
        frozen = window.frozen(now)
        nxt = window.next_open(now)
        why = (f"{self.environment} is frozen ({frozen[0]}..{frozen[1]})" if frozen
               else f"the {self.environment} release window is closed")
        if window.outside == "refuse" or nxt is None:
            raise AirflowFailException(f"{why}; next window opens {nxt.isoformat() if nxt else 'never'}. "
                                       "Trigger again then, or give an emergency reason.")
        self.log.info("%s; waiting until %s", why, nxt.isoformat())
        self.defer(trigger=DateTimeTrigger(moment=nxt), method_name="execute_complete")

    def execute_complete(self, context: Context, event: Any = None) -> None:
        # A freeze may have been declared while waiting: decide again.
        self._check(dt.datetime.now(dt.timezone.utc))

    def poke(self, context: Context) -> bool:
        return False
