"""Reconcile the hosts with the ledger: ``gantry_reconcile``, every few minutes and on demand.
Read top to bottom, it is the on-call engineer's sweep after a release went wrong."""
import datetime as dt
import os

from airflow.sdk import DAG, Param, TriggerRule, get_parsing_context

from gantry.access import reconcile_access_control, when_enforced
from gantry.config import load_config
from gantry.operators.reconcile import (
    HOST_LABEL, RECONCILE_DAG_ID, ObserveFleetOperator, ReconcileHostOperator, ReconcileReportOperator)

DOC = """
### Reconcile the hosts with the ledger

For every app and environment that no release holds: close ledger claims whose run is over
(killed, or marked failed before its report ran), then look at every host - version served,
health, load balancer, registry, silences - and record it (the ledger's "what runs where"
shows hosts that differ). A healthy host left out of rotation or silenced is put back; a host
that needs a human (unhealthy, on another version than the ledger says, never released) fails
its own task (one per host, labelled with its name), is recorded in the ledger and mailed to
the environment's alert list.
"""

# Minutes between scheduled passes; 0 runs it on demand only (the test suite does, so that a
# pass never races the releases under test).
EVERY_MINUTES = float(os.environ.get("GANTRY_RECONCILE_EVERY_MINUTES", "5"))

# In another DAG's task process (Airflow sets its parsing context) this file builds nothing.
if get_parsing_context().dag_id in (None, RECONCILE_DAG_ID):
    with DAG(dag_id=RECONCILE_DAG_ID, description="Put back hosts a dead run left out; record and alert drift",
             doc_md=DOC, schedule=dt.timedelta(minutes=EVERY_MINUTES) if EVERY_MINUTES > 0 else None,
             start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc), catchup=False, max_active_runs=1,
             tags=["gantry", "reconcile"], default_args={"retries": 0, "execution_timeout": dt.timedelta(minutes=10)},
             params={"environments": Param([], type="array", items={"type": "string"}, title="Environments (optional)",
                                           description="Only these environments, one per line. Empty: all.")},
             render_template_as_native_obj=True,
             # Under the FAB auth manager: whoever may roll back somewhere may run the sweep.
             **when_enforced(lambda: reconcile_access_control(load_config()))) as dag:
        observe = ObserveFleetOperator(task_id="observe_hosts", environments="{{ params.environments }}")
        put_back = ReconcileHostOperator.partial(task_id="reconcile_host", map_index_template=HOST_LABEL).expand(
            host=observe.output)
        report = ReconcileReportOperator(task_id="report", trigger_rule=TriggerRule.ALL_DONE,
                                         observe_task_id="observe_hosts", host_task_id="reconcile_host")
        observe >> put_back >> report
