"""Releases at window openings, for each environment with ``scheduled_release`` in
config/gantry.yaml: ``gantry_queue_<env>`` approves a version now and queues it;
``gantry_scheduled_<env>`` runs at every window opening and releases the newest approved one."""
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import DAG, chain

from gantry.config import load_config
from gantry.operators.chain import CheckGatesOperator, EnqueueReleaseOperator, TakeQueuedReleasesOperator
from gantry.params import queue_params
from gantry.rollout import VERSION, approval_task, dag_defaults, dags_to_build
from gantry.timetables import ReleaseWindowTimetable

QUEUE_DOC = """
### Queue an app version for the next **{env}** release window

Checks the gates (verified upstream, soak time) and asks for the approval now; the approved
version waits in the ledger's queue. At the next window opening `gantry_scheduled_{env}`
releases the newest approved version of each app (older queued ones are superseded).
"""

SCHEDULED_DOC = """
### Release what is queued for **{env}**, at each window opening

Scheduled by the release window ({window}). Takes the newest approved queued version of each
app and starts `gantry_promote_{env}` for it; the release run checks the window and gates again.
With nothing queued the run does nothing and says so in the `take_queued` log.
"""

config = load_config()
for env, dag_id in dags_to_build(config, "queue"):  # in a task's process: only its own DAG
    if not env.scheduled_release:
        continue
    with DAG(dag_id=dag_id, description=f"Approve an app version now, release it at the next {env.name} window",
             doc_md=QUEUE_DOC.format(env=env.name), schedule=None, params=queue_params(config),
             tags=["gantry", f"env:{env.name}", "queue"], **dag_defaults(env, "queue")) as queue_dag:
        version = {"app": "{{ params.app }}", "version": VERSION, "environment": env.name}
        approve = [approval_task(env, for_window=True)] if env.approval else []
        chain(CheckGatesOperator(task_id="check_gates", special="{{ params.special }}", retries=0, **version),
              *approve,
              EnqueueReleaseOperator(task_id="enqueue", retries=1, **version,
                                     approval_task_id=approve[0].task_id if approve else None))
    globals()[dag_id] = queue_dag

for env, dag_id in dags_to_build(config, "scheduled"):
    if not env.scheduled_release:
        continue
    timetable = ReleaseWindowTimetable(env.window, env.name)
    with DAG(dag_id=dag_id, description=f"Release the queued versions at each {env.name} window opening",
             doc_md=SCHEDULED_DOC.format(env=env.name, window=timetable.window.describe()), schedule=timetable,
             max_active_runs=1, tags=["gantry", f"env:{env.name}", "scheduled"], **dag_defaults(env, "scheduled")) as scheduled_dag:
        taken = TakeQueuedReleasesOperator(task_id="take_queued", environment=env.name, retries=0)
        TriggerDagRunOperator.partial(
            task_id="start_release", trigger_dag_id=f"gantry_promote_{env.name}", wait_for_completion=False,
            map_index_template="{{ task.conf['app'] }} {{ task.conf['version'] }}",
        ).expand(conf=taken.output)
    globals()[dag_id] = scheduled_dag
