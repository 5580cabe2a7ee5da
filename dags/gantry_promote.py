"""Airflow DAGs: Gantry's promotion and rollback DAG for each environment in config/gantry.yaml."""
from gantry.config import load_config
from gantry.dag_factory import build_promotion_dag

_config = load_config()
for _env in _config.environments.values():
    globals()[f"gantry_promote_{_env.name}"] = build_promotion_dag(_config, _env)
    globals()[f"gantry_rollback_{_env.name}"] = build_promotion_dag(_config, _env, rollback=True)
