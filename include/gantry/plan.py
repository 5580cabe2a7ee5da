"""The decisions of a rollout, as plain Python: what to release where, in which batches,
when a batch may start, and what each host's outcome is. No Airflow, no network."""
from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterable, Mapping, Sequence

# The patterns serve the plain-Python checks below and the trigger forms' JSON schema alike
# (gantry.params), so a value the form accepts is one the run accepts. jsonschema matches them
# with Python's re.search, where "$" also matches before a final newline; "(?!\n)" closes that
# gap (in ECMA-262, which the schema standard names, the lookahead changes nothing).
#
# Versions end up in paths and shell commands on hosts: letters, digits, dot, dash,
# underscore and plus only, starting with a letter or digit, never "..".
VERSION_PATTERN = r"^(?!.*\.\.)[0-9A-Za-z][0-9A-Za-z._+-]{0,63}$(?!\n)"
HOST_NAME_PATTERN = r"^[0-9A-Za-z][0-9A-Za-z._-]{0,252}$(?!\n)"
# An amount of hosts: a count (1, 2, ...) or a percentage of the hosts in (0%, 100%]. Zero, a
# leading zero ("05") and anything above 100% mean nothing a rollout can do and are refused.
# Fractions of a percent are kept: "0.5%" of 1,000 hosts is 5 (a percentage rounds up, to at
# least one host).
_COUNT = r"[1-9][0-9]{0,5}"
_PERCENT = r"(?:100(?:\.0+)?|[1-9][0-9]?(?:\.[0-9]+)?|0\.[0-9]*[1-9][0-9]*)%"
_AMOUNT = rf"(?:{_COUNT}|{_PERCENT})"
AMOUNT_PATTERN = rf"^\s*{_AMOUNT}\s*$"
# A batch plan: one amount (fixed batches of that size) or cumulative steps "1, 25%, 100%".
BATCH_PLAN_PATTERN = rf"^\s*{_AMOUNT}(?:\s*,\s*{_AMOUNT})*\s*$"
_VERSION_RE = re.compile(VERSION_PATTERN)
_HOST_RE = re.compile(HOST_NAME_PATTERN)
_AMOUNT_RE = re.compile(AMOUNT_PATTERN)
_SSH_PORT_RE = re.compile(r"[0-9]{1,5}")
AMOUNT_RULE = "a count of hosts (1, 2, ...) or a percentage in (0%, 100%] such as 25% or 0.5%"


class PlanError(ValueError):
    """A request that cannot be planned; raised before anything is touched."""


def validate_version(version: str) -> str:
    if not isinstance(version, str) or not _VERSION_RE.fullmatch(version):
        raise PlanError(f"invalid version {version!r}: up to 64 letters, digits, '.', '_', '+' or '-', "
                        "starting with a letter or digit, without '..' (no spaces or shell metacharacters)")
    return version


def _is_address(text: str) -> bool:
    """An IP address or a DNS name: what SSH, the load balancer's upstream and the health check get."""
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return bool(_HOST_RE.fullmatch(text))


@dataclass(frozen=True)
class Host:
    name: str
    address: str
    ssh_port: int = 22

    @classmethod
    def from_record(cls, record: Mapping) -> "Host":
        """A host from a CMDB record ``{name, address, ssh_port}``. Names and addresses go into SSH
        connections, silences, registry keys and the load balancer's configuration: anything but a
        plain host name or address is refused here, before any host is touched."""
        if not isinstance(record, Mapping):
            raise PlanError(f"CMDB record {record!r} is not a mapping of name, address and ssh_port")
        missing = [key for key in ("name", "address") if record.get(key) in (None, "")]
        if missing:
            raise PlanError(f"CMDB record {dict(record)!r} has no {' and no '.join(missing)}")
        name, address, port = record["name"], record["address"], record.get("ssh_port", 22)
        if isinstance(name, bool) or not isinstance(name, (str, int)) or not _HOST_RE.fullmatch(str(name)):
            raise PlanError(f"CMDB host name {name!r} is not a valid host name: letters, digits, '.', '-' "
                            "and '_' only, starting with a letter or digit (no spaces or shell metacharacters)")
        if not isinstance(address, str) or not _is_address(address):
            raise PlanError(f"CMDB host {name}: address {address!r} is not an IP address or a DNS name")
        if isinstance(port, bool) or not _SSH_PORT_RE.fullmatch(str(port)) or not 0 < int(port) < 65536:
            raise PlanError(f"CMDB host {name}: ssh_port {port!r} is not a TCP port (1-65535)")
        return cls(name=str(name), address=address, ssh_port=int(port))


def select_hosts(hosts: Sequence[Host], subset: Iterable[str] | None) -> list[Host]:
    """Keep CMDB order; a requested host the CMDB does not know is an error, not a silent no-op."""
    if not hosts:
        raise PlanError("the CMDB returned no hosts for this app and environment: nothing to release; "
                        "check that the CMDB lists the app's hosts there")
    names = [h.name for h in hosts]
    if len(set(names)) != len(names):
        raise PlanError(f"the CMDB lists a host twice: {sorted({n for n in names if names.count(n) > 1})}; "
                        "fix the CMDB: each host must appear once")
    # Two names for one instance would put it into two batches, or restart it twice at once.
    endpoints = [(h.address, h.ssh_port) for h in hosts]
    shared = sorted({f"{a}:{p}" for a, p in endpoints if endpoints.count((a, p)) > 1})
    if shared:
        raise PlanError(f"the CMDB lists the same address under two host names: {shared}; "
                        "fix the CMDB: each instance must appear once")
    if isinstance(subset, str):
        raise PlanError(f"hosts must be a list of host names, not the text {subset!r}")
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


def validate_amount(spec: str | int, what: str) -> str:
    """``spec`` as text, when it is a count or a percentage (``AMOUNT_PATTERN``)."""
    text = str(spec).strip()
    if isinstance(spec, bool) or not _AMOUNT_RE.match(text):
        raise PlanError(f"{what} {spec!r} is not {AMOUNT_RULE}")
    return text


def _amount(spec: str | int, total: int, what: str) -> int:
    """A count ("3", 3) or a percentage of ``total`` ("25%", rounded up, at least 1)."""
    text = validate_amount(spec, what)
    if text.endswith("%"):  # exact: 33.5% of 3 hosts is 1.005, so 2 hosts, not 1
        return max(1, math.ceil(Fraction(text[:-1]) * total / 100))
    return int(text)


def _steps(spec: str | int | Sequence[str | int]) -> list[str | int] | None:
    """The steps of a cumulative plan, or None for a single batch size."""
    if isinstance(spec, str) and "," in spec:
        steps = [p.strip() for p in spec.split(",")]
        if "" in steps:
            raise PlanError(f"batch plan {spec!r} has an empty step; write it like \"1, 25%, 100%\"")
        return steps
    if isinstance(spec, (list, tuple)):
        if not spec:
            raise PlanError("an empty batch plan")
        return list(spec)
    return None


def validate_batch_plan(spec: str | int | Sequence[str | int]) -> str | int | Sequence[str | int]:
    """Refuse a plan that is wrong whatever the number of hosts: a step that is not an amount,
    or steps that shrink (counts or percentages among themselves; a count against a percentage
    depends on the hosts, and ``parse_batch_plan`` decides it)."""
    steps = _steps(spec)
    if steps is None:
        validate_amount(spec, "batch size")
        return spec
    texts = [validate_amount(s, "batch step") for s in steps]
    for kind in (lambda t: not t.endswith("%"), lambda t: t.endswith("%")):
        values = [Fraction(t.rstrip("%")) for t in texts if kind(t)]
        if any(b < a for a, b in zip(values, values[1:])):
            raise PlanError(f"batch plan {spec!r} must not shrink: each step is the number of hosts "
                            "released once that batch is done, so steps grow, e.g. \"1, 25%, 100%\"")
    return spec


def parse_batch_plan(spec: str | int | Sequence[str | int], host_count: int) -> list[list[int]]:
    """Batches from a plan.

    - a single count ``N`` (or ``"N"``): fixed batches of N hosts;
    - a list of steps (``"1, 10%, 50%, 100%"`` or ``[1, "10%", "50%", "100%"]``): each step is
      the cumulative number of hosts released once that batch is done, as a count or a
      percentage of all hosts; the first step is the canary. The last step is extended to
      every host, so ``1, 50%`` means canary, half, then the rest. Steps that round to the
      same number of hosts collapse into one batch.
    """
    steps = _steps(spec)
    if steps is None:
        return plan_batches(host_count, _amount(spec, host_count, "batch size"))
    raw = [_amount(s, host_count, "batch step") for s in steps]
    if any(b < a for a, b in zip(raw, raw[1:])):
        raise PlanError(f"batch plan {steps!r} must not shrink (hosts after each step on {host_count} "
                        f"host(s): {raw}); each step is the number of hosts released once it is done")
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
    # The leader decides for its batch when a human must confirm it or an analysis of the
    # previous batch must pass first; the others follow once it is released.
    if needs_confirmation({**host, "index": leader}, states) is None and not host.get("analysis_seconds"):
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
UNREACHABLE = "unreachable"  # SSH failed mid-release: state unknown, the reconciler takes over



# The ledger's verdict on a release run.
SUCCEEDED, PARTIAL, FAILED = "succeeded", "partial", "failed"
# Outcomes that mean "this host was deliberately left as it was", not that something broke.
LEFT_AS_IT_WAS = (SKIPPED_UNHEALTHY,)


def run_verdict(outcomes: Sequence[Mapping], cmdb_hosts: Sequence[str] | None = None) -> tuple[str, str, list[str]]:
    """The run's status, a summary, and the CMDB hosts that did not get the version.

    ``succeeded`` only when every host the CMDB lists (``cmdb_hosts``; default: the planned
    ones) was released: only then does the environment run the version, verified for the next
    one. ``partial`` when every planned host was released or deliberately left as it was
    (unhealthy before the release) but some CMDB host did not get the version (skipped, or not
    in a ``hosts`` subset). ``failed`` when a host failed, or when no host was released at all.
    """
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o["outcome"]] = counts.get(o["outcome"], 0) + 1
    summary = ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))
    released = {o["host"] for o in outcomes if o["outcome"] == RELEASED}
    everyone = list(cmdb_hosts) if cmdb_hosts is not None else [o["host"] for o in outcomes]
    missing = [h for h in everyone if h not in released]
    if not released or any(o["outcome"] not in (RELEASED, *LEFT_AS_IT_WAS) for o in outcomes):
        return FAILED, summary or "no host was released", missing
    return (PARTIAL if missing else SUCCEEDED), summary, missing


def render_plan(app: str, environment: str, version: str, records: Sequence[Mapping], steps: Sequence[str]) -> str:
    """The exact per-host plan, as a dry run prints it."""
    lines = [f"Release plan: {app} {version} -> {environment}, {len(records)} host(s), "
             f"{records[0]['batches'] if records else 0} batch(es)"]
    for r in records:
        lines.append(f"  batch {r['batch'] + 1}: {r['name']} ({r['address']}:{r['ssh_port']})"
                     + (f", after map index(es) {r['after']}" if r["after"] else ", first"))
        if r["batch"] > 0 and is_batch_leader(r) and r.get("analysis"):
            lines.append(f"      before it: {r['analysis']}")
        lines.extend(f"      {n}. {s}" for n, s in enumerate(steps, 1))
    return "\n".join(lines)


def version_is_special(app: str, version: str, recorded: Mapping | None, requested: bool | None,
                       matches_rule: bool) -> tuple[bool, str]:
    """Whether a version is special (its route passes the optional environments), and why.

    A version's route is fixed at its first promotion: by the run's ``special`` param when it
    is given, else by the app's ``special_versions`` rule. Later runs follow the recorded
    route; one asking for the other route is refused rather than let a special version skip
    an optional environment (or an ordinary one be held to it) halfway along the chain.
    """
    if recorded is not None:
        if requested is not None and requested != recorded["special"]:
            kind = "a special" if recorded["special"] else "an ordinary"
            raise PlanError(f"{app} {version} was recorded as {kind} version at its first promotion "
                            f"({recorded['environment']}, run {recorded['run_id']}); its route "
                            f"({' -> '.join(recorded['route'])}) cannot change. Leave `special` empty.")
        return recorded["special"], f"recorded at its first promotion ({recorded['environment']})"
    if requested is not None:
        return requested, "marked by this run's special param"
    if matches_rule:
        return True, "matches the app's special_versions rule"
    return False, "ordinary: not marked special"
