"""The trigger forms of Gantry's DAGs: JSON-schema params, validated by Airflow when a run is
triggered (a bad value is a 400 and no run starts)."""
from __future__ import annotations

from airflow.sdk import Param

from gantry.config import EnvironmentConfig, GantryConfig
from gantry.plan import AMOUNT_PATTERN, BATCH_PLAN_PATTERN, HOST_NAME_PATTERN, VERSION_PATTERN

# Ten characters once leading and trailing blanks are set aside: a reason someone can read later.
REASON_PATTERN = r"\S[\s\S]{8,}\S"


def app_param(config: GantryConfig) -> Param:
    apps = sorted(config.apps)
    return Param(apps[0], type="string", enum=apps, title="App", description="The app to release.")


def version_param() -> Param:
    return Param("", type="string", pattern=VERSION_PATTERN, title="Version",
                 description="Version in the artifact repository, e.g. 1.1.0.")


def rollout_params(config: GantryConfig, env: EnvironmentConfig) -> dict[str, Param]:
    """What every release run of an environment takes: the app, a host subset, and overrides of
    the environment's rollout policy."""
    return {
        "app": app_param(config),
        "hosts": Param([], type="array", items={"type": "string", "pattern": HOST_NAME_PATTERN}, uniqueItems=True,
                       title="Hosts (optional)",
                       description="Release only these CMDB hosts, one per line. Empty: all hosts."),
        "batches": Param(None, type=["null", "string"], pattern=BATCH_PLAN_PATTERN, title="Batch plan (optional)",
                         description="A batch size (\"2\") or cumulative steps, canary first "
                                     "(\"1, 25%, 100%\"); counts from 1, percentages above 0 and up to "
                                     f"100%. Default for {env.name}: {env.batches}."),
        "failure_threshold": Param(None, type=["null", "string"], pattern=AMOUNT_PATTERN,
                                   title="Failure threshold (optional)",
                                   description="Failed hosts (count or %) that halt the rollout. "
                                               f"Default for {env.name}: {env.failure_threshold or 1}."),
        "bake_seconds": Param(None, type=["null", "integer"], minimum=0, maximum=86400,
                              title="Bake time between batches, s (optional)",
                              description=f"Default for {env.name}: {env.bake_seconds:g}."),
        "settle_seconds": Param(None, type=["null", "integer"], minimum=0, maximum=3600,
                                title="Settle time per host, s (optional)",
                                description="How long a host's new release must stay healthy back in rotation "
                                            f"before it counts. Default for {env.name}: {env.settle_seconds:g}."),
        "analysis": Param(None, type=["null", "boolean"], title="Analysis after each batch (optional)",
                          description="Measure each batch against the hosts still on the previous version "
                                      "before the next batch goes (it replaces the bake time); false: none. "
                                      f"Default for {env.name}: "
                                      f"{bool(env.analysis is not None and env.analysis.enabled)}."),
        "confirm_batches": Param(None, type=["null", "boolean"], title="Confirm each batch (optional)",
                                 description="A human approves before each batch after the first. "
                                             f"Default for {env.name}: {env.confirm_between_batches}."),
        "on_threshold": Param(None, type=["null", "string"], enum=[None, "halt", "pause"],
                              title="When the failure threshold is reached (optional)",
                              description=f"halt, or pause and ask a human. Default for {env.name}: "
                                          f"{env.on_threshold}."),
        "emergency_reason": Param(None, type=["null", "string"], minLength=10, maxLength=500, pattern=REASON_PATTERN,
                                  title="Emergency override reason (optional)",
                                  description="Release outside the window or during a freeze. The reason is "
                                              "recorded in the ledger and shown in the run."),
        "dry_run": Param(False, type="boolean", title="Dry run",
                         description="Log the exact per-host plan; touch nothing."),
    }


def special_param() -> Param:
    return Param(None, type=["null", "boolean"], title="Special version (optional)",
                 description="A special version passes every optional environment of the chain (project, beta); "
                             "an ordinary one skips them. Fixed at the version's first promotion; empty: as "
                             "recorded then, or by the app's special_versions rule.")


def promotion_params(config: GantryConfig, env: EnvironmentConfig) -> dict[str, Param]:
    params = {
        "version": version_param(),
        "special": special_param(),
        **rollout_params(config, env),
        "auto_promote": Param(None, type=["null", "boolean"], title="Auto-promote on success (optional)",
                              description=f"Start the next environment's promotion after success here; "
                                          f"passed along the chain. Default for {env.name}: {env.auto_promote}."),
        "auto": Param(False, type="boolean", title="Started by auto-promotion",
                      description="Set by Gantry when a success upstream started this run."),
        "queue_id": Param(None, type=["null", "integer"], minimum=1, title="Queue entry",
                          description="Set by the scheduled window run: the approved queue entry released "
                                      "(its approval is checked in the ledger)."),
    }
    if env.approval:
        params["approval_timeout_minutes"] = Param(
            None, type=["null", "number"], exclusiveMinimum=0, maximum=env.approval_timeout_minutes,
            title="Approval deadline, minutes (optional)",
            description=f"Without an answer by then the run ends untouched. Default and maximum for {env.name}: "
                        f"{env.approval_timeout_minutes:g}.")
    return params


def rollback_params(config: GantryConfig, env: EnvironmentConfig) -> dict[str, Param]:
    return {
        "version": Param(None, type=["null", "string"], pattern=VERSION_PATTERN, title="Version (optional)",
                         description="Version to return to. Empty: the previous version on the hosts."),
        **rollout_params(config, env),
    }


def queue_params(config: GantryConfig) -> dict[str, Param]:
    return {"app": app_param(config), "version": version_param(), "special": special_param(),
            "auto": Param(False, type="boolean", title="Started by auto-promotion")}
