"""Which worker ran a task: Airflow records ``[core] hostname_callable`` on every task instance
(and fetches a running task's log from that host). Where each worker has its own machine or
container, that is the machine's name; where several share one machine (the local Celery
demo), each is started with its own ``GANTRY_WORKER_NAME``."""
from __future__ import annotations

import os
import socket


def worker_hostname() -> str:
    return os.environ.get("GANTRY_WORKER_NAME") or socket.getfqdn()
