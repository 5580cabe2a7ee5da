"""The artifact repository over HTTP: ``<app>/<version>/<file>`` and ``<file>.sha256``."""
from __future__ import annotations

import hashlib
import re

import requests
from airflow.providers.http.hooks.http import HttpHook


class ArtifactNotFound(LookupError):
    """The version or its checksum is not in the repository: deterministic, never retried."""


class ArtifactRepositoryHook(HttpHook):
    conn_name_attr = "artifacts_conn_id"
    default_conn_name = "gantry_artifacts"
    conn_type = "http"
    hook_name = "Gantry artifact repository"

    def __init__(self, artifacts_conn_id: str = default_conn_name, **kwargs) -> None:
        super().__init__(method="GET", http_conn_id=artifacts_conn_id, **kwargs)
        # Hosts may reach the repository under another address than the workers do.
        self.host_base_url = self.get_connection(artifacts_conn_id).extra_dejson.get("host_base_url")

    def _get(self, endpoint: str, method: str = "GET", stream: bool = False) -> requests.Response:
        self.method = method
        return self.run(endpoint, extra_options={"timeout": 10, "check_response": False, "stream": stream})

    def checksum(self, app: str, version: str, filename: str) -> str:
        package = self._get(f"/{app}/{version}/{filename}", method="HEAD")
        if package.status_code == 404:
            raise ArtifactNotFound(f"{app} {version}: {filename} is not in the artifact repository")
        package.raise_for_status()
        resp = self._get(f"/{app}/{version}/{filename}.sha256")
        if resp.status_code == 404:
            raise ArtifactNotFound(f"{app} {version}: {filename}.sha256 is missing; refusing an unverifiable package")
        resp.raise_for_status()
        # As sha256sum writes it: the digest, optionally followed by blanks and the file name.
        match = re.fullmatch(r"([0-9a-fA-F]{64})(?:\s+\*?\S.*)?", resp.text.strip())
        if not match:
            raise ArtifactNotFound(f"{app} {version}: {filename}.sha256 is not a sha256 checksum (64 hex digits, "
                                   f"as sha256sum writes them): {resp.text[:100]!r}; republish the checksum")
        return match.group(1).lower()

    def verify_package(self, app: str, version: str, filename: str, sha256: str) -> None:
        """Hash the package as it streams in, without keeping it: a package that does not match its
        checksum is refused here, on the worker, instead of by each host."""
        resp = self._get(f"/{app}/{version}/{filename}", stream=True)
        with resp:
            if resp.status_code == 404:
                raise ArtifactNotFound(f"{app} {version}: {filename} is not in the artifact repository")
            resp.raise_for_status()
            digest = hashlib.sha256()
            for chunk in resp.iter_content(chunk_size=1 << 20):
                digest.update(chunk)
        if digest.hexdigest() != sha256:
            raise ArtifactNotFound(f"{app} {version}: sha256 mismatch for {filename}: expected {sha256}, got "
                                   f"{digest.hexdigest()}; the package is not the one its checksum was made for")

    def download(self, app: str, version: str, filename: str, sha256: str) -> bytes:
        """The package, verified against ``sha256`` (for work done on the worker, e.g. migrations)."""
        resp = self._get(f"/{app}/{version}/{filename}")
        if resp.status_code == 404:
            raise ArtifactNotFound(f"{app} {version}: {filename} is not in the artifact repository")
        resp.raise_for_status()
        actual = hashlib.sha256(resp.content).hexdigest()
        if actual != sha256:
            raise ArtifactNotFound(f"{app} {version}: sha256 mismatch for {filename}: expected {sha256}, got {actual}")
        return resp.content

    def package_url(self, app: str, version: str, filename: str) -> str:
        if self.base_url is None or not self.base_url:
            self.get_conn()
        base = (self.host_base_url or self.base_url).rstrip("/")
        return f"{base}/{app}/{version}/{filename}"
