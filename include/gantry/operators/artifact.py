"""Step 3, first half: the version exists in the artifact repository and its checksum is readable,
checked once before any host is touched."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from gantry import plan
from gantry.operators.host import app_config as _app_config

if TYPE_CHECKING:
    from airflow.sdk import Context


class VerifyArtifactOperator(BaseOperator):
    """Checks, before any host is touched, that the version exists in the artifact
    repository, its checksum is readable and, for an app without schema migrations, that the
    package matches it. Returns ``{filename, url, sha256}``."""

    template_fields: Sequence[str] = ("app", "version")
    ui_color = "#e8f4fd"

    def __init__(self, *, app: str, version: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.app = app
        self.version = version

    def execute(self, context: Context) -> dict:
        from gantry.adapters import artifact_repository
        from gantry.hooks.artifacts import ArtifactNotFound

        try:
            version = plan.validate_version(self.version)
        except plan.PlanError as exc:
            raise AirflowFailException(str(exc)) from exc
        app = _app_config(self.app)
        filename = app.package_name(version)
        repo = artifact_repository()
        try:
            sha256 = repo.checksum(app.name, version, filename)
            # migrate_database downloads and verifies the package of an app with migrations before
            # any host; for any other app this is the check that keeps a tampered package off them.
            if app.migrations is None:
                repo.verify_package(app.name, version, filename, sha256)
        except ArtifactNotFound as exc:
            raise AirflowFailException(f"{exc}. No host was touched.") from exc
        url = repo.package_url(app.name, version, filename)
        self.log.info("artifact %s sha256=%s at %s", filename, sha256, url)
        return {"filename": filename, "url": url, "sha256": sha256}
