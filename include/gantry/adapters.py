"""Which implementation serves each interface. Imported lazily by operators at run time."""
from __future__ import annotations

from gantry.config import EnvironmentConfig, GantryConfig
from gantry.interfaces import (
    ArtifactRepository, Cmdb, HostShell, LoadBalancer, MetricsQuery, ReleaseLedger, SchemaMigrations, ServiceRegistry,
    Silencer)


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


def registry(env: EnvironmentConfig, app: str) -> ServiceRegistry:
    """The app's registry in the environment (``registry``): etcd (Connection gantry_registry)
    or ZooKeeper in Dubbo's layout (gantry_zookeeper)."""
    kind = env.registry_of(app)
    if kind == "etcd":
        from gantry.hooks.registry import EtcdRegistryHook
        return EtcdRegistryHook()
    if kind == "zookeeper":
        from gantry.hooks.zookeeper import ZooKeeperRegistryHook
        return ZooKeeperRegistryHook()
    raise ValueError(f"environment {env.name}: unknown registry adapter {kind!r} for {app} (etcd | zookeeper)")


def load_balancer(env: EnvironmentConfig, app: str) -> LoadBalancer:
    """The app's load balancer in the environment (``load_balancer``): nginx over SSH
    (Connection gantry_lb) or HAProxy's runtime API (gantry_haproxy)."""
    kind = env.load_balancer_of(app)
    if kind == "nginx":
        from gantry.hooks.loadbalancer import NginxUpstreamHook
        return NginxUpstreamHook()
    if kind == "haproxy":
        from gantry.hooks.haproxy import HAProxyRuntimeHook
        return HAProxyRuntimeHook()
    raise ValueError(f"environment {env.name}: unknown load balancer adapter {kind!r} for {app} (nginx | haproxy)")


def silencer() -> Silencer:
    from gantry.hooks.monitoring import AlertmanagerHook
    return AlertmanagerHook()


def metrics() -> MetricsQuery:
    """The metrics store release analysis asks: Prometheus' query API (Connection
    gantry_prometheus; extra ``path_prefix`` for Thanos, VictoriaMetrics or Mimir)."""
    from gantry.hooks.prometheus import PrometheusHook
    return PrometheusHook()


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
