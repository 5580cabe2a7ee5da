"""Airflow DAGs: Gantry's promotion and rollback DAG for each environment in config/gantry.yaml, and
for environments released at window openings their queue and scheduled DAGs."""
from gantry.config import load_config
from gantry.dag_factory import build_promotion_dag, build_window_dags

_config = load_config()
for _env in _config.environments.values():
    globals()[f"gantry_promote_{_env.name}"] = build_promotion_dag(_config, _env)
    globals()[f"gantry_rollback_{_env.name}"] = build_promotion_dag(_config, _env, rollback=True)
    if _env.scheduled_release:
        globals()[f"gantry_queue_{_env.name}"], globals()[f"gantry_scheduled_{_env.name}"] = build_window_dags(
            _config, _env)
