"""Release windows and freezes, as plain Python with an injectable clock.

A window is a set of weekdays and daily time ranges in a named time zone; a range may cross
midnight ("22:00-06:00" belongs to the day it starts on). Freezes are dates or date ranges
(inclusive) during which nothing is released, whatever the window says.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class WindowError(ValueError):
    pass


def _time(text: str) -> dt.time:
    try:
        return dt.time.fromisoformat(text.strip())
    except ValueError:
        raise WindowError(f"{text!r} is not a time like 22:00") from None


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise WindowError(f"{text!r} is not a date like 2026-12-24") from None


@dataclass(frozen=True)
class ReleaseWindow:
    timezone: str = "UTC"
    days: tuple[int, ...] = tuple(range(7))              # 0 = Monday
    ranges: tuple[tuple[dt.time, dt.time], ...] = ((dt.time(0), dt.time(0)),)  # 00:00-00:00 = all day
    freezes: tuple[tuple[dt.date, dt.date], ...] = field(default_factory=tuple)
    outside: str = "wait"                                 # wait | refuse

    @classmethod
    def from_config(cls, raw: dict | None) -> "ReleaseWindow":
        if not raw:
            return cls()
        try:
            ZoneInfo(raw.get("timezone", "UTC"))
        except Exception:
            raise WindowError(f"unknown time zone {raw.get('timezone')!r}") from None
        days = tuple(DAYS.index(d.strip().lower()[:3]) for d in raw.get("days", DAYS))
        ranges = []
        for r in raw.get("hours", ["00:00-00:00"]):
            start, _, end = r.partition("-")
            ranges.append((_time(start), _time(end)))
        freezes = []
        for f in raw.get("freeze", []):
            first, _, last = str(f).partition("..")
            freezes.append((_date(first), _date(last or first)))
        outside = raw.get("outside", "wait")
        if outside not in ("wait", "refuse"):
            raise WindowError("outside must be 'wait' or 'refuse'")
        return cls(raw.get("timezone", "UTC"), days, tuple(ranges), tuple(freezes), outside)

    def frozen(self, when: dt.datetime) -> tuple[dt.date, dt.date] | None:
        day = when.astimezone(ZoneInfo(self.timezone)).date()
        return next(((a, b) for a, b in self.freezes if a <= day <= b), None)

    def _in_ranges(self, local: dt.datetime) -> bool:
        t, day = local.time(), local.weekday()
        for start, end in self.ranges:
            if start == end:  # all day
                if day in self.days:
                    return True
            elif start < end:
                if day in self.days and start <= t < end:
                    return True
            else:  # crosses midnight: the part after midnight belongs to the previous day
                if day in self.days and t >= start:
                    return True
                if (day - 1) % 7 in self.days and t < end:
                    return True
        return False

    def is_open(self, when: dt.datetime) -> bool:
        return self.frozen(when) is None and self._in_ranges(when.astimezone(ZoneInfo(self.timezone)))

    def next_open(self, when: dt.datetime, horizon_days: int = 400) -> dt.datetime | None:
        """The first moment at or after ``when`` the window is open (minute resolution)."""
        if self.is_open(when):
            return when
        tz = ZoneInfo(self.timezone)
        local = when.astimezone(tz)
        # Candidates: every range start and every midnight after a freeze, day by day.
        for offset in range(horizon_days + 1):
            day = (local + dt.timedelta(days=offset)).date()
            starts = sorted({s for s, _ in self.ranges} | {dt.time(0)})
            for s in starts:
                candidate = dt.datetime.combine(day, s, tz)
                if candidate >= local and self.is_open(candidate):
                    return candidate.astimezone(dt.timezone.utc)
        return None

    def next_opening(self, after: dt.datetime, horizon_days: int = 400) -> dt.datetime | None:
        """The first moment strictly after ``after`` at which a range of the window starts on an
        allowed, unfrozen day: when a scheduled release runs. An all-day window opens at midnight."""
        tz = ZoneInfo(self.timezone)
        local = after.astimezone(tz)
        for offset in range(horizon_days + 1):
            day = local.date() + dt.timedelta(days=offset)
            if day.weekday() not in self.days:
                continue
            for start in sorted({s for s, _ in self.ranges}):
                candidate = dt.datetime.combine(day, start, tz)
                if candidate > local and self.frozen(candidate) is None:
                    return candidate.astimezone(dt.timezone.utc)
        return None

    def describe(self) -> str:
        days = ",".join(DAYS[d] for d in self.days)
        hours = ", ".join("all day" if a == b else f"{a:%H:%M}-{b:%H:%M}" for a, b in self.ranges)
        return f"{days} {hours} {self.timezone}" + (f", {len(self.freezes)} freeze(s)" if self.freezes else "")

