"""Gantry: graceful, in-place releases of services to fleets of hosts, on Apache Airflow."""
