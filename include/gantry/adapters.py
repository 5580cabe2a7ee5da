"""Which implementation serves each interface. Imported lazily by operators at run time."""
from __future__ import annotations

from gantry.config import EnvironmentConfig, GantryConfig
from gantry.interfaces import (
    ArtifactRepository, Cmdb, HostShell, LoadBalancer, ReleaseLedger, SchemaMigrations, ServiceRegistry, Silencer)


def cmdb(config: GantryConfig, env: EnvironmentConfig) -> Cmdb:
    if env.cmdb == "inventory":
        from gantry.hooks.cmdb import InventoryFileCmdb
        return InventoryFileCmdb(config.inventory_path)
    if env.cmdb == "http":
        from gantry.hooks.cmdb import HttpCmdbHook
        return HttpCmdbHook()
    raise ValueError(f"environment {env.name}: unknown cmdb adapter {env.cmdb!r} (inventory | http)")


def registry() -> ServiceRegistry:
    from gantry.hooks.registry import EtcdRegistryHook
    return EtcdRegistryHook()


def load_balancer() -> LoadBalancer:
    from gantry.hooks.loadbalancer import NginxUpstreamHook
    return NginxUpstreamHook()


def silencer() -> Silencer:
    from gantry.hooks.monitoring import AlertmanagerHook
    return AlertmanagerHook()


def artifact_repository() -> ArtifactRepository:
    from gantry.hooks.artifacts import ArtifactRepositoryHook
    return ArtifactRepositoryHook()


def host_shell(address: str, port: int) -> HostShell:
    from gantry.hooks.ssh import GantrySSHHook
    return GantrySSHHook(remote_host=address, port=port)


def ledger() -> ReleaseLedger:
    from gantry.hooks.ledger import LedgerHook
    return LedgerHook()


def schema_migrations(conn_id: str) -> SchemaMigrations:
    from gantry.hooks.migrations import SchemaMigrationHook
    return SchemaMigrationHook(conn_id)
