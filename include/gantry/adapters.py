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
    if env.cmdb == "netbox":
        from gantry.hooks.cmdb import NetBoxCmdbHook
        return NetBoxCmdbHook()
    raise ValueError(f"environment {env.name}: unknown cmdb adapter {env.cmdb!r} (inventory | http | netbox)")


def registry(env: EnvironmentConfig) -> ServiceRegistry:
    """The environment's ``registry``: etcd (Connection gantry_registry) or ZooKeeper in
    Dubbo's layout (gantry_zookeeper)."""
    if env.registry == "etcd":
        from gantry.hooks.registry import EtcdRegistryHook
        return EtcdRegistryHook()
    if env.registry == "zookeeper":
        from gantry.hooks.zookeeper import ZooKeeperRegistryHook
        return ZooKeeperRegistryHook()
    raise ValueError(f"environment {env.name}: unknown registry adapter {env.registry!r} (etcd | zookeeper)")


def load_balancer(env: EnvironmentConfig) -> LoadBalancer:
    """The environment's ``load_balancer``: nginx over SSH (Connection gantry_lb) or HAProxy's
    runtime API (gantry_haproxy)."""
    if env.load_balancer == "nginx":
        from gantry.hooks.loadbalancer import NginxUpstreamHook
        return NginxUpstreamHook()
    if env.load_balancer == "haproxy":
        from gantry.hooks.haproxy import HAProxyRuntimeHook
        return HAProxyRuntimeHook()
    raise ValueError(f"environment {env.name}: unknown load balancer adapter {env.load_balancer!r} (nginx | haproxy)")


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
