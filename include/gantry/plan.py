"""The decisions of a rollout, as plain Python: what to release where, in which batches,
when a batch may start, and what each host's outcome is. No Airflow, no network."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

# Versions end up in paths and shell commands on hosts: letters, digits, dot, dash,
# underscore and plus only, starting with a letter or digit.
VERSION_PATTERN = r"^[0-9A-Za-z][0-9A-Za-z._+-]{0,63}$"
HOST_NAME_PATTERN = r"^[0-9A-Za-z][0-9A-Za-z._-]{0,252}$"
_VERSION_RE = re.compile(VERSION_PATTERN)
_HOST_RE = re.compile(HOST_NAME_PATTERN)


class PlanError(ValueError):
    """A request that cannot be planned; raised before anything is touched."""


def validate_version(version: str) -> str:
    if not isinstance(version, str) or not _VERSION_RE.match(version) or ".." in version:
        raise PlanError(f"invalid version {version!r}: must match {VERSION_PATTERN} without '..'")
    return version


@dataclass(frozen=True)
class Host:
    name: str
    address: str
    ssh_port: int = 22

    @classmethod
    def from_record(cls, record: Mapping) -> "Host":
        name = str(record["name"])
        if not _HOST_RE.match(name):
            raise PlanError(f"CMDB host name {name!r} is not a valid host name")
        return cls(name=name, address=str(record["address"]), ssh_port=int(record.get("ssh_port", 22)))


def select_hosts(hosts: Sequence[Host], subset: Iterable[str] | None) -> list[Host]:
    """Keep CMDB order; a requested host the CMDB does not know is an error, not a silent no-op."""
    if not hosts:
        raise PlanError("the CMDB returned no hosts for this app and environment")
    names = [h.name for h in hosts]
    if len(set(names)) != len(names):
        raise PlanError(f"the CMDB lists a host twice: {sorted(n for n in names if names.count(n) > 1)}")
    wanted = list(subset or [])
    if not wanted:
        return list(hosts)
    unknown = sorted(set(wanted) - set(names))
    if unknown:
        raise PlanError(f"hosts not in the CMDB for this app/environment: {unknown}")
    return [h for h in hosts if h.name in set(wanted)]


def plan_batches(host_count: int, batch_size: int) -> list[list[int]]:
    """Host positions per batch, in order. The shape (a list of index lists) also fits
    canary-first and percentage plans."""
    if batch_size < 1:
        raise PlanError(f"batch size must be at least 1, got {batch_size}")
    return [list(range(i, min(i + batch_size, host_count))) for i in range(0, host_count, batch_size)]


def assign_batches(hosts: Sequence[Host], batches: Sequence[Sequence[int]]) -> list[dict]:
    """One record per host, in map-index order: the host, its batch, and which map indexes
    (the previous batch) must be done before it may start. Batches must be contiguous,
    ascending ranges of map indexes (the gate relies on it)."""
    flat = [i for members in batches for i in members]
    if flat != list(range(len(hosts))):
        raise PlanError("batches must cover every host once, as contiguous ranges in order")
    batch_of = {i: b for b, members in enumerate(batches) for i in members}
    records = []
    for i, h in enumerate(hosts):
        b = batch_of[i]
        records.append({
            "name": h.name, "address": h.address, "ssh_port": h.ssh_port,
            "batch": b, "batches": len(batches), "batch_start": min(batches[b]),
            "after": list(batches[b - 1]) if b > 0 else [],
        })
    return records


# ---------------------------------------------------------------- batch gate
GATE_WAIT, GATE_GO, GATE_FAIL = "wait", "go", "fail"
FAILED_STATES = {"failed", "upstream_failed"}
FINISHED_STATES = {"success", "skipped", "failed", "upstream_failed", "removed"}


def gate_decision(states: Mapping[int, Mapping[str, str | None]], final_task: str,
                  previous: Sequence[int], batch_start: int) -> tuple[str, str]:
    """Decide whether a batch may start.

    ``states`` maps map indexes of this run's hosts to their task states ({task_id: state}).
    Any failure in an earlier batch (map index below ``batch_start``; batches are contiguous)
    stops the rollout at once, so a failure does not have to ripple batch by batch. Otherwise
    the batch starts when every host of the ``previous`` batch has finished its final task.
    """
    failed = sorted(i for i, tasks in states.items() if i < batch_start and FAILED_STATES & set(tasks.values()))
    if failed:
        return GATE_FAIL, f"an earlier batch failed on map index(es) {failed}: rollout stopped"
    pending = sorted(i for i in previous if states.get(i, {}).get(final_task) not in FINISHED_STATES)
    if pending:
        return GATE_WAIT, f"waiting for map index(es) {pending} of the previous batch"
    return GATE_GO, "previous batch is back in rotation"


# ---------------------------------------------------------------- host outcomes
RELEASED = "released"
SKIPPED_UNHEALTHY = "skipped_unhealthy"
NOT_STARTED = "not_started"
NOT_DRAINED = "not_drained"
RESTORED = "restored"
ROLLED_BACK = "rolled_back"
LEFT_OUT = "left_out_of_rotation"

OK_OUTCOMES = {RELEASED, SKIPPED_UNHEALTHY, NOT_DRAINED, NOT_STARTED}


def run_verdict(outcomes: Sequence[Mapping]) -> tuple[bool, str]:
    """The run succeeds when every host was released or deliberately skipped as unhealthy."""
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o["outcome"]] = counts.get(o["outcome"], 0) + 1
    bad = [o for o in outcomes if o["outcome"] not in (RELEASED, SKIPPED_UNHEALTHY)]
    summary = ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))
    return (not bad and bool(outcomes)), summary


def render_plan(app: str, environment: str, version: str, records: Sequence[Mapping], steps: Sequence[str]) -> str:
    """The exact per-host plan, as a dry run prints it."""
    lines = [f"Release plan: {app} {version} -> {environment}, {len(records)} host(s), "
             f"{records[0]['batches'] if records else 0} batch(es)"]
    for r in records:
        lines.append(f"  batch {r['batch'] + 1}: {r['name']} ({r['address']}:{r['ssh_port']})"
                     + (f", after map index(es) {r['after']}" if r["after"] else ", first"))
        lines.extend(f"      {n}. {s}" for n, s in enumerate(steps, 1))
    return "\n".join(lines)
