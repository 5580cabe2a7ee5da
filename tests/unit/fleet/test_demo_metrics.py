"""The demo app's /metrics, and the builds that fail a share of requests or answer slower: the
real package, run as a process on a free loopback port (tests/demo_process.py)."""
import io
import json
import re
import tarfile
import time

import pytest
from demo_process import demo_app, get

import artifacts

SAMPLE = re.compile(r'^(?P<name>[a-z_]+)\{(?P<labels>[^}]*)\} (?P<value>\S+)$')


def scrape(base: str) -> list[tuple[str, dict, float]]:
    """(name, labels, value) of every sample /metrics exposes; checks the text format on the way."""
    status, text = get(f"{base}/metrics")
    assert status == 200 and text.endswith("\n")
    samples, typed = [], set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            typed.add(line.split()[2])
            continue
        if line.startswith("#"):
            continue
        match = SAMPLE.match(line)
        assert match, f"not a Prometheus text-format sample: {line!r}"
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"]))
        samples.append((match["name"], labels, float(match["value"])))
        assert re.sub(r"_(bucket|sum|count)$", "", match["name"]) in typed, f"{line!r} has no # TYPE before it"
    return samples


def value(samples, name, **labels) -> float:
    (found,) = [v for n, ls, v in samples if n == name and all(ls.get(k) == w for k, w in labels.items())]
    return found


def test_requests_are_counted_by_code_with_their_latency_and_probes_are_not(tmp_path):
    with demo_app(tmp_path, "1.3.1", host="beta-demo-01", env="beta") as base:
        assert scrape(base)  # every series exists before the first request
        assert value(scrape(base), "demo_http_requests_total", code="500") == 0
        for _ in range(10):
            assert get(f"{base}/")[0] == 200
        for path in ("/health", "/version", "/metrics", "/health"):
            assert get(f"{base}{path}")[0] == 200
        samples = scrape(base)
    labels = {"app": "demo", "env": "beta", "host": "beta-demo-01", "version": "1.3.1"}
    assert value(samples, "demo_http_requests_total", code="200", **labels) == 10
    assert value(samples, "demo_http_requests_total", code="500", **labels) == 0
    buckets = [(float(ls["le"]), v) for n, ls, v in samples if n == "demo_http_request_duration_seconds_bucket"]
    assert [le for le, _ in buckets] == sorted(le for le, _ in buckets) and buckets[-1] == (float("inf"), 10)
    counts = [v for _, v in buckets]
    assert counts == sorted(counts), "histogram buckets are cumulative"
    assert value(samples, "demo_http_request_duration_seconds_count", **labels) == 10
    assert 0 < value(samples, "demo_http_request_duration_seconds_sum") < 1


def test_the_error_build_fails_its_share_of_requests_while_health_stays_green(tmp_path):
    with demo_app(tmp_path, "1.3.1-errors", error_ratio=0.2) as base:
        codes = [get(f"{base}/")[0] for _ in range(20)]
        assert get(f"{base}/health")[0] == 200
        samples = scrape(base)
    assert codes.count(500) == 4 and codes.count(200) == 16
    assert codes[4] == 500 and codes[:4] == [200] * 4, "failures are spread, not bunched"
    assert value(samples, "demo_http_requests_total", code="500", version="1.3.1-errors") == 4
    assert value(samples, "demo_http_requests_total", code="200") == 16


def test_the_slow_build_adds_latency_and_the_histogram_shows_it(tmp_path):
    with demo_app(tmp_path, "1.3.1-slow", extra_latency_ms=120) as base:
        started = time.monotonic()
        for _ in range(3):
            assert get(f"{base}/")[0] == 200
        elapsed = time.monotonic() - started
        assert get(f"{base}/health")[0] == 200
        samples = scrape(base)
    assert elapsed >= 0.36
    assert value(samples, "demo_http_request_duration_seconds_bucket", le="0.1") == 0
    assert value(samples, "demo_http_request_duration_seconds_bucket", le="0.25") == 3
    assert value(samples, "demo_http_request_duration_seconds_sum") >= 0.36


def release_json(package: bytes) -> dict:
    with tarfile.open(fileobj=io.BytesIO(package)) as tar:
        return json.loads(tar.extractfile("release.json").read())


def test_a_build_carries_its_misbehaviour_only_when_asked():
    assert "error_ratio" not in release_json(artifacts.build_demo_package("1.0.0"))
    assert release_json(artifacts.build_demo_package("1.3.1-errors", error_ratio=0.05))["error_ratio"] == 0.05
    assert release_json(artifacts.build_demo_package("1.3.1-slow", extra_latency_ms=250))["extra_latency_ms"] == 250
    with pytest.raises(ValueError, match="error_ratio 1.5 is a share of requests, between 0 and 1"):
        artifacts.build_demo_package("x", error_ratio=1.5)


def test_the_fleet_publishes_the_analysis_builds_with_the_schema_of_1_2_0():
    import fleetctl

    assert fleetctl.DEMO_BUILDS["1.3.1-errors"]["error_ratio"] > 0
    assert fleetctl.DEMO_BUILDS["1.3.1-slow"]["extra_latency_ms"] > 0 and fleetctl.DEMO_BUILDS["1.3.1"] == {}
    for version in fleetctl.DEMO_BUILDS:
        assert artifacts.MIGRATIONS[version] == artifacts.MIGRATIONS["1.2.0"]


def test_with_a_management_port_a_held_scrape_connection_never_delays_a_graceful_stop(tmp_path):
    """Prometheus keeps its scrape connection open; on the traffic port it would look like a
    request in flight to the drain and hold the app's graceful stop (seen: drain timeouts)."""
    import http.client
    import socket
    import subprocess

    from demo_process import free_port

    metrics_port = free_port()
    with demo_app(tmp_path, "1.3.1", metrics_port=metrics_port) as base:
        assert get(f"{base}/metrics")[0] == 404, "not on the traffic port"
        scraper = http.client.HTTPConnection("127.0.0.1", metrics_port, timeout=5)
        scraper.request("GET", "/metrics")
        answer = scraper.getresponse()
        assert answer.status == 200 and "demo_http_requests_total" in answer.read().decode()
        # The scraper's connection stays open (keep-alive) while the app is told to stop.
        port = int(base.rsplit(":", 1)[1])
        pid = int(subprocess.run(["ss", "-Htlnp", f"sport = :{port}"], capture_output=True, text=True,
                                 check=True).stdout.split("pid=")[1].split(",")[0])
        started = time.monotonic()
        subprocess.run(["kill", "-TERM", str(pid)], check=True)
        while time.monotonic() - started < 5:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            except OSError:
                break
            time.sleep(0.05)
        stopped_in = time.monotonic() - started
        scraper.close()
    assert stopped_in < 2, f"the app took {stopped_in:.1f}s to stop with a scrape connection open"
