"""What runs where, and the history of an app in an environment, from the release ledger.

    ./gantry ledger status [APP]              what runs where; hosts that differ (drift) below
    ./gantry ledger history APP ENV [--limit N]
    ./gantry ledger queue ENV                 versions approved for the environment's next window
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Callable

from gantry import adapters


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="gantry ledger")
    sub = ap.add_subparsers(dest="command", required=True)
    st = sub.add_parser("status", help="the version of each app running in each environment, and since when")
    st.add_argument("app", nargs="?")
    hi = sub.add_parser("history", help="every release attempt of APP in ENV, newest first")
    hi.add_argument("app")
    hi.add_argument("environment")
    hi.add_argument("--limit", type=int, default=20)
    qu = sub.add_parser("queue", help="versions queued for ENV's release window, newest first")
    qu.add_argument("environment")
    qu.add_argument("--limit", type=int, default=20)
    for p in (st, hi, qu):
        p.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    ledger = adapters.ledger()
    if a.command == "status":
        return _show(ledger.where(a.app), a.json, _status_line)
    if a.command == "queue":
        return _show(ledger.queue(a.environment, a.limit), a.json, lambda r: (
            f"{r['queued_at']:%Y-%m-%d %H:%M:%S} #{r['id']:<5d} {r['app']:12s} {r['version']:18s} "
            f"{r['status']:10s} queued by {r['queued_by'] or '?'}, approved by {r['approved_by'] or '-'}"
            + (f", run {r['release_run_id']}" if r["release_run_id"] else "")))
    return _show(ledger.history(a.app, a.environment, a.limit), a.json, lambda r: (
        f"{r['started_at']:%Y-%m-%d %H:%M:%S} {r['kind']:8s} {r['version'] or '?':18s} "
        f"from {r['previous_version'] or '-':14s} {r['status']:9s} by {r['triggered_by'] or '?'}"
        + (f", approved by {r['approved_by']}" if r["approved_by"] else "")
        + (f", OVERRIDE: {r['override_reason']}" if r["override_reason"] else "")
        + (f" - {r['message']}" if r["message"] else "")
        + (f" [{_route(r)}]" if r.get("route") else "")))


def _route(r: dict) -> str:
    """A version's route: "special: dev -> project -> ..." or "ordinary: dev -> test -> ..."."""
    return f"{'special' if r['special'] else 'ordinary'}: {' -> '.join(r['route'])}"


def _status_line(r: dict) -> str:
    """An environment's version from the ledger, then the last attempt if it did not succeed
    everywhere, then every host seen differing from it (drift)."""
    line = (f"{r['app']:12s} {r['environment']:10s} {r['version'] or '-':20s} "
            + (f"since {r['since']} ({r['by']})" if r["version"] else "no release succeeded on every host")
            + (f" [{_route(r)}]" if r.get("route") else ""))
    if a := r.get("last_attempt"):
        line += f"\n{'':24s} last attempt: {a['kind']} {a['version']} {a['status']} - {a['message']}"
    for h in r["drift"]:
        line += (f"\n{'':24s} DRIFT {h['host']}: serves {h['version'] or '?'}"
                 + ("" if h["healthy"] is not False else ", unhealthy")
                 + ("" if h["in_rotation"] is not False else ", OUT OF ROTATION")
                 + f" (seen {h['observed_at']} by {h['observed_by']})")
    return line


def _show(rows: list[dict], as_json: bool, line: Callable[[dict], str]) -> int:
    """Rows as JSON, or one formatted line each."""
    if as_json or rows:
        print(json.dumps(rows, default=str) if as_json else "\n".join(line(r) for r in rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
