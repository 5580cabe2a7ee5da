import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from gantry.windows import ReleaseWindow, WindowError

BERLIN = ZoneInfo("Europe/Berlin")


def at(y, m, d, hh, mm=0, tz=BERLIN):
    return dt.datetime(y, m, d, hh, mm, tzinfo=tz)


NIGHTS = ReleaseWindow.from_config({"timezone": "Europe/Berlin", "days": ["mon", "tue", "wed", "thu"],
                                    "hours": ["22:00-06:00"], "freeze": ["2026-12-24..2026-12-26"]})


def test_ranges_cross_midnight_and_belong_to_the_day_they_start():
    assert NIGHTS.is_open(at(2026, 11, 23, 23))       # Monday 23:00
    assert NIGHTS.is_open(at(2026, 11, 24, 5, 59))    # Tuesday early: Monday's night
    assert not NIGHTS.is_open(at(2026, 11, 24, 6))    # closes at 06:00
    assert NIGHTS.is_open(at(2026, 11, 27, 3))        # Friday 03:00: Thursday's night
    assert not NIGHTS.is_open(at(2026, 11, 27, 23))   # Friday night is not a window
    assert not NIGHTS.is_open(at(2026, 11, 23, 3))    # Monday 03:00 is Sunday's night


def test_time_zone_is_respected():
    # 21:30 UTC on a Monday in winter is 22:30 in Berlin.
    assert NIGHTS.is_open(dt.datetime(2026, 11, 23, 21, 30, tzinfo=dt.timezone.utc))
    assert not NIGHTS.is_open(dt.datetime(2026, 11, 23, 20, 30, tzinfo=dt.timezone.utc))


def test_next_open():
    friday_noon = at(2026, 11, 27, 12)
    assert NIGHTS.next_open(friday_noon) == at(2026, 11, 30, 22).astimezone(dt.timezone.utc)
    inside = at(2026, 11, 24, 1)
    assert NIGHTS.next_open(inside) == inside


def test_freezes_override_windows():
    assert NIGHTS.frozen(at(2026, 12, 24, 23)) == (dt.date(2026, 12, 24), dt.date(2026, 12, 26))
    assert not NIGHTS.is_open(at(2026, 12, 24, 23))  # a Thursday night, but frozen
    # The 25th and 26th are Fri/Sat; the next open window is Monday 28th 22:00.
    assert NIGHTS.next_open(at(2026, 12, 24, 23)) == at(2026, 12, 28, 22).astimezone(dt.timezone.utc)


def test_default_window_is_always_open():
    assert ReleaseWindow.from_config(None).is_open(dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc))


@pytest.mark.parametrize("raw", [{"timezone": "Mars/Base"}, {"hours": ["25:00-01:00"]}, {"freeze": ["xmas"]},
                                 {"outside": "maybe"}])
def test_bad_windows_are_refused(raw):
    with pytest.raises(WindowError):
        ReleaseWindow.from_config(raw)


# ------------------------------------------------ window openings: when a scheduled release runs
def utc(*args):
    return at(*args).astimezone(dt.timezone.utc)


def test_openings_are_range_starts_on_allowed_unfrozen_days_strictly_after():
    assert NIGHTS.next_opening(at(2026, 11, 23, 12)) == utc(2026, 11, 23, 22)      # Monday noon -> tonight
    assert NIGHTS.next_opening(at(2026, 11, 23, 22)) == utc(2026, 11, 24, 22)      # strictly after
    assert NIGHTS.next_opening(at(2026, 11, 26, 23)) == utc(2026, 11, 30, 22)      # Thu night -> next Monday
    # Dec 24 (Thu) is frozen: after Wednesday's opening comes Monday the 28th.
    assert NIGHTS.next_opening(at(2026, 12, 23, 22)) == utc(2026, 12, 28, 22)
    all_day = ReleaseWindow.from_config({"timezone": "UTC", "days": ["sat"]})
    assert all_day.next_opening(dt.datetime(2026, 11, 26, 9, tzinfo=dt.timezone.utc)) == \
        dt.datetime(2026, 11, 28, 0, tzinfo=dt.timezone.utc)
    never = ReleaseWindow.from_config({"timezone": "UTC", "days": ["mon"], "freeze": ["2026-01-01..2099-01-01"]})
    assert never.next_opening(dt.datetime(2026, 11, 26, tzinfo=dt.timezone.utc), horizon_days=30) is None


def test_summer_time_moves_the_opening_in_utc():
    day = ReleaseWindow.from_config({"timezone": "Europe/Berlin", "hours": ["10:00-16:00"]})
    assert day.next_opening(at(2026, 3, 28, 12)) == dt.datetime(2026, 3, 29, 8, tzinfo=dt.timezone.utc)  # CEST
    assert day.next_opening(at(2026, 3, 27, 12)) == dt.datetime(2026, 3, 28, 9, tzinfo=dt.timezone.utc)  # CET


def test_window_timetable_schedules_at_openings_and_survives_serialization():
    from airflow.timetables.base import DataInterval, TimeRestriction

    from gantry.timetables import ReleaseWindowTimetable

    raw = {"timezone": "Europe/Berlin", "days": ["mon", "tue", "wed", "thu"], "hours": ["22:00-06:00"],
           "freeze": ["2026-12-24..2026-12-26"]}
    table = ReleaseWindowTimetable.deserialize(ReleaseWindowTimetable(raw, "prod").serialize())
    assert table.serialize() == {"window": raw, "environment": "prod"}
    # After the run of Wednesday 23 Dec's opening, the freeze skips to Monday 28 Dec.
    last = DataInterval.exact(utc(2026, 12, 23, 22))
    info = table.next_dagrun_info(last_automated_data_interval=last,
                                  restriction=TimeRestriction(earliest=utc(2026, 12, 1, 0), latest=None, catchup=True))
    assert info.run_after == utc(2026, 12, 28, 22) and info.data_interval.start == info.run_after
    # An opening exactly at the earliest allowed moment counts; a `latest` before the next one ends it.
    first = table.next_dagrun_info(last_automated_data_interval=None,
                                   restriction=TimeRestriction(earliest=utc(2026, 12, 21, 22), latest=None, catchup=True))
    assert first.run_after == utc(2026, 12, 21, 22)
    assert table.next_dagrun_info(last_automated_data_interval=last, restriction=TimeRestriction(
        earliest=None, latest=utc(2026, 12, 27, 0), catchup=True)) is None
    # Without catchup a missed opening is not released late: the next one is after now.
    now = dt.datetime.now(dt.timezone.utc)
    upcoming = table.next_dagrun_info(last_automated_data_interval=DataInterval.exact(utc(2026, 1, 5, 22)),
                                      restriction=TimeRestriction(earliest=None, latest=None, catchup=False))
    assert upcoming.run_after > now and upcoming.run_after == table.window.next_opening(now)
