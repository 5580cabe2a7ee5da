"""Benchmark of the registry and load-balancer adapters against the local fleet's real servers.

    GANTRY_STATE=/var/lib/gantry-test .venv/bin/python benchmarks/adapters.py [--rounds 20]

For each adapter, ``rounds`` times, alternating the adapters compared: take one idle instance out
and put it back (``disable`` + ``enable``, the two calls a host's release makes), timing the
round trip and the client's CPU-seconds; then the memory (PSS) of each server's process tree.
etcd vs ZooKeeper use perf-demo-20 and staging-demo-03; nginx vs HAProxy the same hosts' pools.
Nothing else should be using the machine, and no release may run in perf or staging.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "fleet"), str(REPO / "include"), str(REPO / "benchmarks")]
import fleetctl  # noqa: E402
from rollout import component_memory  # noqa: E402


def load_airflow_env() -> None:
    import shlex

    for line in (fleetctl.STATE / "airflow.env").read_text().splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        os.environ.setdefault(key, shlex.split(value)[0] if value else "")


def host(name: str) -> dict:
    return next(h for h in fleetctl.inventory_hosts() if h["name"] == name)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=20)
    a = ap.parse_args()
    import logging

    logging.disable(logging.INFO)  # the hooks log every call at INFO
    load_airflow_env()
    from gantry.hooks.haproxy import HAProxyRuntimeHook
    from gantry.hooks.loadbalancer import NginxUpstreamHook
    from gantry.hooks.registry import EtcdRegistryHook
    from gantry.hooks.zookeeper import ZooKeeperRegistryHook

    etcd_host, zk_host = host("perf-demo-20"), host("staging-demo-03")
    cases = {
        "registry etcd": (EtcdRegistryHook(), lambda r: r.disable("demo", "perf", etcd_host["name"], "bench"),
                          lambda r: r.enable("demo", "perf", etcd_host["name"])),
        "registry zookeeper": (ZooKeeperRegistryHook(),
                               lambda r: r.disable("demo", "staging", zk_host["name"], "bench",
                                                   address=zk_host["address"], port=9000),
                               lambda r: r.enable("demo", "staging", zk_host["name"],
                                                  address=zk_host["address"], port=9000)),
        "load balancer nginx": (NginxUpstreamHook(), lambda lb: lb.disable("demo-perf", etcd_host["address"], 9000),
                                lambda lb: lb.enable("demo-perf", etcd_host["address"], 9000)),
        "load balancer haproxy": (HAProxyRuntimeHook(),
                                  lambda lb: lb.disable("demo-staging", zk_host["address"], 9000),
                                  lambda lb: lb.enable("demo-staging", zk_host["address"], 9000)),
    }
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
    for name, (hook, out, back) in cases.items():  # warm-up: connections, imports
        out(hook), back(hook)
    for _ in range(a.rounds):
        for name, (hook, out, back) in cases.items():
            w0, c0 = time.perf_counter(), time.process_time()
            out(hook)
            back(hook)
            samples[name].append((time.perf_counter() - w0, time.process_time() - c0))
    result = {"rounds": a.rounds, "adapters": {}}
    for name, rows in samples.items():
        walls = sorted(w for w, _ in rows)
        result["adapters"][name] = {
            "out_and_back_ms_median": round(statistics.median(walls) * 1000, 1),
            "out_and_back_ms_p90": round(walls[int(len(walls) * 0.9) - 1] * 1000, 1),
            "client_cpu_ms_median": round(statistics.median(c for _, c in rows) * 1000, 1)}
    result["server_pss_mib"] = {name: round(component_memory((name,)), 1)
                                for name in ("nginx", "haproxy", "etcd", "zookeeper")}
    print(f"{'adapter':24s} {'out+back median':>16s} {'p90':>8s} {'client CPU':>11s}")
    for name, r in result["adapters"].items():
        print(f"{name:24s} {r['out_and_back_ms_median']:>13.1f} ms {r['out_and_back_ms_p90']:>5.1f} ms "
              f"{r['client_cpu_ms_median']:>8.1f} ms")
    print("server memory (PSS, MiB):", result["server_pss_mib"])
    out = REPO / "benchmarks" / "last-run-adapters.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
