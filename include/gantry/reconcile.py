"""What the reconciler decides about one host, as plain Python: compare what the host really
is (version served, health, load-balancer and registry membership, silences) with what the
ledger says, and choose to leave it, put it back in rotation, or alert a human."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping


@dataclass(frozen=True)
class Finding:
    host: str
    problems: list[str] = field(default_factory=list)
    put_back: bool = False  # back into the registry and load balancer, silences expired
    alert: bool = False  # a human must look

    def as_dict(self) -> dict:
        return {"host": self.host, "problems": self.problems, "put_back": self.put_back, "alert": self.alert}


def judge(observed: Mapping, believed_version: str | None, released_before: bool, managed: bool = True) -> Finding:
    """``observed``: ``{host, version, healthy, in_load_balancer, in_registry, silenced}``.
    ``believed_version``: the ledger's version for the environment (None: no release succeeded
    on every host there). ``released_before``: some release recorded this host. ``managed``:
    some release reached a host of this app in this environment - before the first one there is
    nothing to drift from (hosts installed before Gantry are not alerted until then).

    A healthy host that is out of rotation or silenced while no release holds the environment
    was left so by a run that died: it goes back (on whatever release it runs - a rolling
    release mixes versions anyway, and capacity matters more). An unhealthy one stays out and a
    human is told: putting a broken host in rotation would fail requests. Drift (another version
    than the ledger's, or a host no release ever reached) is recorded and alerted, never "fixed"
    by redeploying: which version is right is a human's call."""
    problems: list[str] = []
    out = [what for what, inside in (("load balancer", observed["in_load_balancer"]),
                                     ("registry", observed["in_registry"])) if inside is False]
    if out:
        problems.append("out of rotation (" + ", ".join(out) + ")")
    if observed["silenced"]:
        problems.append("alerts silenced")
    healthy = bool(observed["healthy"])
    drift = []
    if not healthy:
        drift.append("unhealthy")
    if not managed:
        pass
    elif not released_before:
        drift.append("no release ever reached this host")
    elif believed_version and observed["version"] != believed_version:
        drift.append(f"serves {observed['version']}, the ledger says {believed_version}")
    put_back = healthy and bool(out or observed["silenced"])
    return Finding(observed["host"], problems + drift, put_back=put_back, alert=bool(drift))
