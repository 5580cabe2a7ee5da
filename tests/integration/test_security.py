"""Host keys, against a real sshd of the test's own: a host whose key changed, or that
``known_hosts`` does not list, is refused before Gantry authenticates or runs anything.

The sshd runs on a free port of 127.0.0.1 with the same configuration as the fleet's hosts
(``fleetctl.SSHD_CONFIG``), a host key and a client key generated here, so the test neither
needs nor touches the fleet.
"""
from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import paramiko
import pytest

import fleetctl

SSHD = "/usr/sbin/sshd"
ADDRESS = "127.0.0.1"
CONN_ID = "gantry_ssh_security_test"


def keygen(path: Path) -> str:
    """A new ed25519 key pair at ``path``; returns the public key's "type base64" part."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(path)],
                   check=True, capture_output=True, timeout=30)
    return " ".join(path.with_suffix(".pub").read_text().split()[:2])


def free_port() -> int:
    with socket.socket() as s:
        s.bind((ADDRESS, 0))
        return s.getsockname()[1]


class ThrowawaySSHD:
    """One sshd on ``ADDRESS:port`` with the host key it is given; stopped on ``stop``."""

    def __init__(self, workdir: Path, port: int, host_key: Path, authorized_keys: Path) -> None:
        self.port = port
        self.log = workdir / f"sshd-{host_key.name}.log"
        config = workdir / f"sshd_config-{host_key.name}"
        # StrictModes off: the authorized_keys file lives under /tmp, which is world-writable.
        config.write_text(fleetctl.SSHD_CONFIG.format(
            address=ADDRESS, port=port, host_key=host_key, authorized_keys=authorized_keys) + "StrictModes no\n")
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # sshd's privilege separation directory
        self._log_file = self.log.open("ab")
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdin=subprocess.DEVNULL,
                                     stdout=self._log_file, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited with {self.proc.returncode}: {self.log.read_text()}")
            try:
                socket.create_connection((ADDRESS, port), timeout=0.5).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"sshd did not listen on {ADDRESS}:{port} within 10 s: {self.log.read_text()}")
                time.sleep(0.05)

    def accepted_logins(self) -> int:
        return self.log.read_text().count("Accepted publickey")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log_file.close()


@pytest.fixture
def keys(tmp_path):
    """The client identity, the host key the client has recorded, and another host key."""
    client = tmp_path / "id_ed25519"
    authorized = tmp_path / "authorized_keys"
    authorized.write_text(keygen(client) + "\n")
    recorded, other = tmp_path / "ssh_host_ed25519_key", tmp_path / "other_host_ed25519_key"
    return {"client": client, "authorized": authorized, "recorded": recorded, "recorded_pub": keygen(recorded),
            "other": other, "other_pub": keygen(other)}


@pytest.fixture
def sshd_with(tmp_path, keys):
    """Starts a throwaway sshd with the given host key on one port, for the test's duration."""
    port = free_port()
    started: list[ThrowawaySSHD] = []

    def start(host_key: Path) -> ThrowawaySSHD:
        for running in started:
            running.stop()
        started.append(ThrowawaySSHD(tmp_path, port, host_key, keys["authorized"]))
        return started[-1]

    yield start
    for running in started:
        running.stop()


def hook(monkeypatch, tmp_path, keys, port: int, known_hosts_lines: list[str], **extra):
    from gantry.hooks.ssh import GantrySSHHook

    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("".join(f"{line}\n" for line in known_hosts_lines))
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps({
        "conn_type": "ssh", "login": "root",
        "extra": {"key_file": str(keys["client"]), "known_hosts": str(known_hosts), "conn_timeout": 5, **extra}}))
    return GantrySSHHook(CONN_ID, remote_host=ADDRESS, port=port)


def test_the_recorded_host_key_connects(monkeypatch, tmp_path, keys, sshd_with):
    sshd = sshd_with(keys["recorded"])
    ssh = hook(monkeypatch, tmp_path, keys, sshd.port, [f"[{ADDRESS}]:{sshd.port} {keys['recorded_pub']}"])
    try:
        assert ssh.run("echo reached", timeout=10).stdout == "reached\n"
    finally:
        ssh.close()
    assert sshd.accepted_logins() == 1


def test_a_host_whose_key_changed_is_refused(monkeypatch, tmp_path, keys, sshd_with):
    """The host answered with the recorded key, then comes back with another one (reinstalled,
    or someone in the middle): Gantry refuses it before authenticating."""
    recorded_line = f"[{ADDRESS}]:{{port}} {keys['recorded_pub']}"
    sshd = sshd_with(keys["recorded"])
    first = hook(monkeypatch, tmp_path, keys, sshd.port, [recorded_line.format(port=sshd.port)])
    try:
        assert first.run("true", timeout=10).ok
    finally:
        first.close()
    changed = sshd_with(keys["other"])
    assert changed.port == sshd.port
    again = hook(monkeypatch, tmp_path, keys, changed.port, [recorded_line.format(port=changed.port)])
    ran = tmp_path / "ran"
    with pytest.raises(paramiko.BadHostKeyException) as refused:
        again.run(f"touch {ran}", timeout=10)
    assert not ran.exists()
    assert refused.value.key.get_base64() == keys["other_pub"].split()[1]
    assert refused.value.expected_key.get_base64() == keys["recorded_pub"].split()[1]
    assert changed.accepted_logins() == 0, "refused before authenticating: no command could run"


@pytest.mark.parametrize("known", ["nothing", "the address on another port", "another address"])
def test_a_host_known_hosts_does_not_list_is_refused(monkeypatch, tmp_path, keys, sshd_with, known):
    """Unknown hosts are never accepted on first use, not even with the key they really have."""
    sshd = sshd_with(keys["recorded"])
    lines = {"nothing": [],
             "the address on another port": [f"{ADDRESS} {keys['recorded_pub']}",
                                             f"[{ADDRESS}]:{sshd.port + 1} {keys['recorded_pub']}"],
             "another address": [f"[127.0.0.2]:{sshd.port} {keys['recorded_pub']}"]}[known]
    ssh = hook(monkeypatch, tmp_path, keys, sshd.port, lines)
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        ssh.run("true", timeout=10)
    assert sshd.accepted_logins() == 0
    assert (tmp_path / "known_hosts").read_text() == "".join(f"{line}\n" for line in lines), \
        "the unknown key was not written to known_hosts"


@pytest.mark.parametrize("extra", [{"no_host_key_check": True}, {"allow_host_key_change": True}])
def test_a_connection_that_skips_host_key_checks_is_refused(monkeypatch, tmp_path, keys, extra):
    with pytest.raises(ValueError, match="requires host-key checking"):
        hook(monkeypatch, tmp_path, keys, free_port(), [], **extra)
