"""Airflow DAGs: one Gantry promotion DAG per environment configured in config/gantry.yaml."""
from gantry.config import load_config
from gantry.dag_factory import build_promotion_dag

_config = load_config()
for _env in _config.environments.values():
    globals()[f"gantry_promote_{_env.name}"] = build_promotion_dag(_config, _env)
