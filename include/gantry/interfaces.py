"""One small interface per kind of external system Gantry talks to.

Operators depend on these, not on a product: etcd, nginx, Alertmanager and the
inventory file are the implementations that ship and run in the local fleet.
"""
from __future__ import annotations

from typing import Protocol, Sequence

from gantry.plan import Host


class Cmdb(Protocol):
    def hosts(self, app: str, environment: str) -> Sequence[Host]: ...


class ServiceRegistry(Protocol):
    """RPC service registry. Disabling must survive the instance's own re-registration."""

    def disable(self, app: str, environment: str, host: str, reason: str) -> None: ...
    def enable(self, app: str, environment: str, host: str) -> None: ...
    def is_enabled(self, app: str, environment: str, host: str) -> bool: ...
    def routable(self, app: str, environment: str) -> dict[str, dict]: ...


class LoadBalancer(Protocol):
    """Layer-7 load balancer: the pool of an app in one environment."""

    def disable(self, pool: str, address: str, port: int) -> bool: ...
    def enable(self, pool: str, address: str, port: int) -> bool: ...
    def members(self, pool: str) -> dict[str, bool]: ...


class Silencer(Protocol):
    """Monitoring: mute a host's alerts while it is deliberately down."""

    def silence(self, app: str, environment: str, host: str, *, minutes: int, comment: str) -> str: ...
    def unsilence(self, app: str, environment: str, host: str) -> int: ...
    def active(self, app: str, environment: str, host: str | None = None) -> list[dict]: ...


class ArtifactRepository(Protocol):
    def checksum(self, app: str, version: str, filename: str) -> str: ...
    def package_url(self, app: str, version: str, filename: str) -> str: ...
