"""Airflow's FAB auth manager, with approvals assigned to people by name.

Gantry's configuration names an environment's approvers by user name (``approvers: [alice]``),
and so do the HITL requests it writes (``assigned_users: [{"id": "alice", "name": "alice"}]``).
Airflow's default check (``BaseAuthManager.is_authorized_hitl_task``) compares those ids with
``user.get_id()``, which under FAB is the row id in its user table (``"3"``): the same name means
a different id in every database, and an LDAP or OAuth user gets hers only at first login. This
auth manager compares names instead (FAB's ``User.get_name()``: the login name), and is FAB's in
everything else: users, roles, DAG-level permissions, login page, LDAP and OAuth.

Configure it as ``[core] auth_manager = gantry.auth_manager.GantryFabAuthManager`` with Gantry's
``include`` folder on the API server's ``PYTHONPATH``; Airflow and Gantry recognise it as FAB's by
its name (``gantry.access.uses_fab``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.providers.fab.auth_manager.fab_auth_manager import FabAuthManager

if TYPE_CHECKING:
    from airflow.providers.fab.auth_manager.models import User

AUTH_MANAGER = "gantry.auth_manager.GantryFabAuthManager"


def is_assigned(assigned_users: set[str], user_name: str) -> bool:
    """Whether the user called ``user_name`` is one of a request's assignees.

    :param assigned_users: the request's ``assigned_users`` ids, which Gantry writes as names.
    :param user_name: the user's login name.
    """
    return user_name in assigned_users


class GantryFabAuthManager(FabAuthManager):
    """FAB's auth manager; a human-in-the-loop request's assignees are matched by user name."""

    def is_authorized_hitl_task(self, *, assigned_users: set[str], user: User) -> bool:
        """Whether ``user`` is one of the request's assignees.

        :param assigned_users: the ids of the request's ``assigned_users`` (Gantry writes names).
        :param user: the FAB user answering.
        """
        return is_assigned(assigned_users, user.get_name())
