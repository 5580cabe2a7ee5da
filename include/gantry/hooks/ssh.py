"""SSH to fleet hosts, with strict host-key checking."""
from __future__ import annotations

from dataclasses import dataclass

import paramiko
from airflow.providers.ssh.hooks.ssh import SSHHook


@dataclass(frozen=True)
class RemoteResult:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


class GantrySSHHook(SSHHook):
    """SSHHook that checks host keys against the ``known_hosts`` file named in the
    connection's extras and refuses unknown or changed keys (never auto-accepts).

    One connection (default ``gantry_ssh``) carries the identity for a whole fleet; the
    host address and port come from the CMDB per host.
    """

    default_conn_name = "gantry_ssh"
    hook_name = "Gantry SSH"

    def __init__(self, ssh_conn_id: str = default_conn_name, remote_host: str = "", port: int | None = None,
                 **kwargs) -> None:
        super().__init__(ssh_conn_id=ssh_conn_id, remote_host=remote_host, port=port, **kwargs)
        extra = self.get_connection(ssh_conn_id).extra_dejson
        self.known_hosts: str | None = extra.get("known_hosts")
        self.extra = extra
        if self.no_host_key_check or self.allow_host_key_change:
            raise ValueError(f"connection {ssh_conn_id}: Gantry requires host-key checking")

    def get_conn(self) -> paramiko.SSHClient:
        if self.client and self.client.get_transport() and self.client.get_transport().is_active():
            return self.client
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        if self.known_hosts:
            client.load_host_keys(self.known_hosts)
        else:
            client.load_system_host_keys()
        client.connect(
            hostname=self.remote_host, port=self.port, username=self.username,
            key_filename=self.key_file, pkey=self.pkey, password=self.password,
            timeout=self.conn_timeout, banner_timeout=self.banner_timeout, auth_timeout=self.auth_timeout,
            look_for_keys=False, allow_agent=False,
        )
        self.client = client
        return client

    def run(self, command: str, timeout: float | None = None) -> RemoteResult:
        code, out, err = self.exec_ssh_client_command(
            self.get_conn(), command, get_pty=False, environment=None, timeout=timeout)
        return RemoteResult(code, out.decode(errors="replace"), err.decode(errors="replace"))

    def close(self) -> None:
        if self.client:
            self.client.close()
            self.client = None
