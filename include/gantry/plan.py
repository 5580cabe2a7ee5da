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
BATCH_PLAN_PATTERN = r"^\s*[0-9]+(\.[0-9]+)?%?(\s*,\s*[0-9]+(\.[0-9]+)?%?)*\s*$"
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
    """Fixed-size batches: host positions per batch, in order."""
    if batch_size < 1:
        raise PlanError(f"batch size must be at least 1, got {batch_size}")
    return [list(range(i, min(i + batch_size, host_count))) for i in range(0, host_count, batch_size)]


def _amount(spec: str | int, total: int, what: str) -> int:
    """A count ("3", 3) or a percentage of ``total`` ("25%", rounded up, at least 1)."""
    text = str(spec).strip()
    try:
        if text.endswith("%"):
            pct = float(text[:-1])
            if not 0 < pct <= 100:
                raise ValueError
            return max(1, -(-int(pct * total) // 100))  # ceil without float rounding surprises
        value = int(text)
        if value < 1:
            raise ValueError
        return value
    except ValueError:
        raise PlanError(f"{what} {spec!r} is not a positive count or a percentage in (0, 100]") from None


def parse_batch_plan(spec: str | int | Sequence[str | int], host_count: int) -> list[list[int]]:
    """Batches from a plan.

    - a single count ``N`` (or ``"N"``): fixed batches of N hosts;
    - a list of steps (``"1, 10%, 50%, 100%"`` or ``[1, "10%", "50%", "100%"]``): each step is
      the cumulative number of hosts released once that batch is done, as a count or a
      percentage of all hosts; the first step is the canary. The last step is extended to
      every host, so ``1, 50%`` means canary, half, then the rest. Steps that round to the
      same number of hosts collapse into one batch.
    """
    if isinstance(spec, str) and "," in spec:
        steps = [s for s in (p.strip() for p in spec.split(",")) if s]
    elif isinstance(spec, (list, tuple)):
        steps = list(spec)
    else:
        return plan_batches(host_count, _amount(spec, host_count, "batch size"))
    if not steps:
        raise PlanError("an empty batch plan")
    raw = [_amount(s, host_count, "batch step") for s in steps]
    if any(b < a for a, b in zip(raw, raw[1:])):
        raise PlanError(f"batch plan {steps!r} must not shrink (hosts after each step: {raw})")
    # On few hosts, steps can round to the same count: those collapse ("1, 10%" of 5 is one step).
    targets = sorted({min(t, host_count) for t in raw})
    if targets[-1] < host_count:
        targets.append(host_count)
    batches, done = [], 0
    for t in targets:
        batches.append(list(range(done, t)))
        done = t
    return batches


def check_plan(batches: Sequence[Sequence[int]], host_count: int, max_unavailable: str | int | None) -> int:
    """Refuse a plan that would take more hosts out at once than ``max_unavailable`` allows,
    or that would leave no host in rotation. Returns the bound as a count."""
    largest = max((len(b) for b in batches), default=0)
    if host_count > 1 and largest >= host_count:
        raise PlanError(f"a batch of {largest} would take every one of the {host_count} hosts out of rotation")
    if max_unavailable is None:
        return largest
    bound = _amount(max_unavailable, host_count, "max_unavailable")
    if host_count > 1 and bound >= host_count:
        raise PlanError(f"max_unavailable {max_unavailable!r} = {bound} would allow every host out of rotation")
    if largest > bound:
        raise PlanError(f"a batch of {largest} host(s) exceeds max_unavailable {max_unavailable!r} = {bound} "
                        f"of {host_count}; use smaller steps")
    return bound


def failure_threshold(spec: str | int | None, host_count: int) -> int:
    """How many failed hosts halt the rollout (count or % of hosts; default 1: any failure)."""
    return 1 if spec in (None, "") else _amount(spec, host_count, "failure threshold")


def assign_batches(hosts: Sequence[Host], batches: Sequence[Sequence[int]], **policy) -> list[dict]:
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
            "name": h.name, "address": h.address, "ssh_port": h.ssh_port, "index": i,
            "batch": b, "batches": len(batches), "batch_start": min(batches[b]),
            "after": list(batches[b - 1]) if b > 0 else [],
            **policy,
        })
    return records


# ---------------------------------------------------------------- batch gate
GATE_WAIT, GATE_GO, GATE_FAIL = "wait", "go", "fail"
FAILED_STATES = {"failed", "upstream_failed"}
FINISHED_STATES = {"success", "skipped", "failed", "upstream_failed", "removed"}


def earlier_failures(states: Mapping[int, Mapping[str, str | None]], batch_start: int) -> list[int]:
    """Map indexes of hosts in earlier batches (below ``batch_start``; batches are contiguous)
    with a failed task."""
    return sorted(i for i, tasks in states.items() if i < batch_start and FAILED_STATES & set(tasks.values()))


def gate_decision(states: Mapping[int, Mapping[str, str | None]], final_task: str,
                  previous: Sequence[int], batch_start: int, threshold: int = 1,
                  on_threshold: str = "halt") -> tuple[str, str]:
    """Decide whether a batch may start.

    ``states`` maps map indexes of this run's hosts to their task states ({task_id: state}).
    Once ``threshold`` hosts of earlier batches have failed, the rollout stops at once (a
    failure does not ripple batch by batch) - or, with ``on_threshold="pause"``, waits for the
    previous batch and goes on to ask a human. Otherwise the batch starts when every host of the
    ``previous`` batch has finished its final task; failures below the threshold are reported
    and the rollout goes on.
    """
    failed = earlier_failures(states, batch_start)
    if len(failed) >= threshold and on_threshold != "pause":
        return GATE_FAIL, (f"{len(failed)} host(s) failed in earlier batches (map index(es) {failed}), "
                           f"failure threshold {threshold} reached: rollout stopped")
    pending = sorted(i for i in previous if states.get(i, {}).get(final_task) not in FINISHED_STATES)
    if pending:
        return GATE_WAIT, f"waiting for map index(es) {pending} of the previous batch"
    if len(failed) >= threshold:
        return GATE_GO, (f"{len(failed)} host(s) failed, failure threshold {threshold} reached: "
                         "a human decides whether the rollout goes on")
    note = f" ({len(failed)} failed host(s) so far, below the threshold of {threshold})" if failed else ""
    return GATE_GO, "previous batch is done" + note


def is_batch_leader(host: Mapping) -> bool:
    """The first host of a batch: it asks the human when the batch needs a go-ahead."""
    return host.get("index", host["batch_start"]) == host["batch_start"]


def human_stops(states: Mapping[int, Mapping[str, str | None]], batch_start: int, prepare_task: str,
                release_task: str) -> list[int]:
    """Earlier hosts a human stopped: staged, then their release skipped (a rejected go-ahead)."""
    return sorted(i for i, tasks in states.items() if i < batch_start and tasks.get(release_task) == "skipped"
                  and tasks.get(prepare_task) == "success")


def batch_gate(host: Mapping, states: Mapping[int, Mapping[str, str | None]], prepare_task: str,
               release_task: str) -> tuple[str, str]:
    """May this host leave rotation now? The first batch goes at once. A later batch goes when
    the previous one is back (``gate_decision``). When the batch needs a human's go-ahead, its
    leader asks and the other hosts of the batch follow once the leader is released."""
    if host["batch"] == 0:
        return GATE_GO, "first batch"
    stopped = human_stops(states, host["batch_start"], prepare_task, release_task)
    if stopped:
        return GATE_FAIL, f"a human stopped the rollout at the batch of map index {stopped[0]}"
    decision = gate_decision(states, release_task, host["after"], host["batch_start"],
                             host.get("threshold", 1), host.get("on_threshold", "halt"))
    if decision[0] != GATE_GO or is_batch_leader(host):
        return decision
    leader = host["batch_start"]
    if needs_confirmation({**host, "index": leader}, states) is None:
        return decision
    state = states.get(leader, {}).get(release_task)
    if state == "success":
        return GATE_GO, f"the batch leader (map index {leader}) was approved and released"
    if state in FAILED_STATES or state == "skipped":
        return GATE_FAIL, f"the batch leader (map index {leader}) was stopped ({state}): rollout stopped"
    return GATE_WAIT, f"waiting for the batch leader (map index {leader}) and its go-ahead"


def needs_confirmation(host: Mapping, states: Mapping[int, Mapping[str, str | None]]) -> str | None:
    """Why the leader of a batch must ask a human before its batch starts, or None."""
    if host["batch"] == 0 or not is_batch_leader(host):
        return None
    failed = earlier_failures(states, host["batch_start"])
    if host.get("on_threshold") == "pause" and len(failed) >= host.get("threshold", 1):
        return (f"{len(failed)} host(s) have failed (map index(es) {failed}), reaching the failure "
                f"threshold of {host.get('threshold', 1)}")
    if host.get("confirm"):
        return f"batch {host['batch']} of {host['batches']} is done"
    return None


def approver(approval: object) -> str | None:
    """Who answered an approval, from the approval task's result (None: nobody, or no approval)."""
    return (approval.get("responded_by_user") or {}).get("name") if isinstance(approval, dict) else None


# ---------------------------------------------------------------- host outcomes
RELEASED = "released"
SKIPPED_UNHEALTHY = "skipped_unhealthy"
NOT_STARTED = "not_started"
NOT_STAGED = "not_staged"  # staging failed: never taken out of rotation
RESTORED = "restored"
ROLLED_BACK = "rolled_back"
LEFT_OUT = "left_out_of_rotation"



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
