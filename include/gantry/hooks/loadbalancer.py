"""nginx (open source) as the layer-7 load balancer, driven over SSH on the LB box.

Open-source nginx has no runtime API: an app's pool lives in an included upstream file
(``<upstream_dir>/<pool>.conf``, pool = ``<app>-<env>`` by default, one ``server ADDR:PORT;`` line per member). Taking a member
out marks it ``down``, validates with ``nginx -t`` and reloads gracefully (old workers finish
their requests). A lock serialises concurrent edits from hosts of the same batch; a failed
validation restores the previous file.
"""
from __future__ import annotations

import re
from shlex import quote

from airflow.sdk.exceptions import AirflowException

from gantry.hooks.ssh import GantrySSHHook


class NginxUpstreamHook(GantrySSHHook):
    default_conn_name = "gantry_lb"
    hook_name = "Gantry nginx load balancer"

    def __init__(self, ssh_conn_id: str = default_conn_name, **kwargs) -> None:
        super().__init__(ssh_conn_id=ssh_conn_id, **kwargs)
        self.nginx_conf = self.extra["nginx_conf"]
        self.upstream_dir = self.extra["upstream_dir"]
        self.nginx_bin = self.extra.get("nginx_bin", "nginx")

    def _file(self, pool: str) -> str:
        if not re.match(r"^[A-Za-z0-9_-]+$", pool):
            raise ValueError(f"invalid pool name {pool!r}")
        return f"{self.upstream_dir}/{pool}.conf"

    def set_member(self, pool: str, address: str, port: int, enabled: bool) -> bool:
        """Returns True when the pool changed (and nginx was reloaded)."""
        member = f"{address}:{int(port)}"
        f = quote(self._file(pool))
        pattern = re.escape(member).replace("/", r"\/")
        want = "" if enabled else " down"
        state = "enabled" if enabled else "down"
        # Every value is a shell word of its own (quoted), and messages go through printf with a
        # fixed format: an address from the CMDB never becomes part of a command.
        member_q, pool_q = quote(member), quote(pool)
        is_member = quote(f"^[[:space:]]*server {pattern}( down)?;")
        is_wanted = quote(f"^[[:space:]]*server {pattern}{want};")
        edit = quote(f"s/^([[:space:]]*server {pattern})( down)?;/\\1{want};/")
        script = f"""set -eu
exec 9>{f}.lock
flock -w 30 9
grep -Eq {is_member} {f} || {{ printf '%s is not a member of upstream %s\\n' {member_q} {pool_q} >&2; exit 3; }}
if grep -Eq {is_wanted} {f}; then printf '%s already %s in %s\\n' {member_q} {state} {pool_q}; exit 0; fi
cp {f} {f}.previous
sed -E -i {edit} {f}
if ! {self.nginx_bin} -t -q -c {quote(self.nginx_conf)}; then cp {f}.previous {f}; echo "nginx -t failed; pool restored" >&2; exit 4; fi
{self.nginx_bin} -s reload -c {quote(self.nginx_conf)}
printf 'CHANGED: %s %s in %s; nginx reloaded\\n' {member_q} {state} {pool_q}"""
        result = self.run(script, timeout=60)
        if not result.ok:
            raise AirflowException(f"nginx pool change failed ({result.exit_code}): {result.stderr.strip()}")
        return "CHANGED:" in result.stdout

    # LoadBalancer
    def disable(self, pool: str, address: str, port: int) -> bool:
        return self.set_member(pool, address, port, enabled=False)

    def enable(self, pool: str, address: str, port: int) -> bool:
        return self.set_member(pool, address, port, enabled=True)

    def members(self, pool: str) -> dict[str, bool]:
        result = self.run(f"cat {quote(self._file(pool))}", timeout=30)
        if not result.ok:
            raise AirflowException(f"cannot read upstream {pool}: {result.stderr.strip()}")
        return parse_upstream(result.stdout)


def parse_upstream(text: str) -> dict[str, bool]:
    """{"addr:port": enabled} from an upstream file."""
    members = {}
    for m in re.finditer(r"^\s*server\s+(\S+?)(\s+down)?\s*;", text, re.M):
        members[m.group(1)] = not m.group(2)
    return members
