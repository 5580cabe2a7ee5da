"""`./gantry up`'s demo release run again on a used install: it says plainly what it does not do."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "scripts"))
import demo  # noqa: E402


class Ledger:
    def __init__(self, test_version):
        self.rows = [{"environment": "dev", "version": "9.0.0"}, {"environment": "test", "version": test_version}]

    def get(self, url, params=None, timeout=None):
        rows = self.rows

        class Resp:
            def raise_for_status(self):
                pass

            def json(self):
                return rows
        return Resp()


def api(test_version):
    return type("API", (), {"s": Ledger(test_version)})()


@pytest.mark.parametrize("current, why", [
    (None, None),
    ("1.0.0", None),
    ("1.1.0", "test already runs demo 1.1.0; not releasing it again"),
    ("1.2.0", "test already runs demo 1.2.0, newer than 1.1.0; not releasing 1.1.0 (a downgrade"),
    ("1.10.0", "newer than 1.1.0"),
    ("1.1.0-rc1", None),
])
def test_the_demo_release_is_skipped_with_a_reason_when_test_runs_it_or_newer(monkeypatch, current, why):
    monkeypatch.setattr(demo, "VERSION", "1.1.0")
    got = demo.already_there(api(current))
    assert (got is None) if why is None else (why in got), got
