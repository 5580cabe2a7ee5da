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
