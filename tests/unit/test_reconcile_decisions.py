"""The reconciler's decisions about one host (gantry.reconcile.judge)."""
from gantry.reconcile import judge


def seen(**overrides) -> dict:
    return {"host": "h1", "version": "1.1.0", "healthy": True, "in_load_balancer": True, "in_registry": True,
            "silenced": False, **overrides}


def test_a_host_that_matches_the_ledger_needs_nothing():
    f = judge(seen(), "1.1.0", released_before=True)
    assert (f.problems, f.put_back, f.alert) == ([], False, False)


def test_a_healthy_host_left_out_of_rotation_and_silenced_goes_back_without_an_alert():
    f = judge(seen(in_load_balancer=False, in_registry=False, silenced=True), "1.1.0", released_before=True)
    assert f.put_back and not f.alert
    assert f.problems == ["out of rotation (load balancer, registry)", "alerts silenced"]


def test_an_unhealthy_host_out_of_rotation_stays_out_and_a_human_is_told():
    f = judge(seen(healthy=False, in_load_balancer=False), "1.1.0", released_before=True)
    assert not f.put_back and f.alert and "unhealthy" in f.problems


def test_an_unhealthy_host_in_rotation_is_alerted_not_taken_out():
    f = judge(seen(healthy=False), "1.1.0", released_before=True)
    assert (f.put_back, f.alert, f.problems) == (False, True, ["unhealthy"])


def test_drift_is_alerted_and_never_redeployed():
    f = judge(seen(version="1.2.0"), "1.1.0", released_before=True)
    assert (f.put_back, f.alert, f.problems) == (False, True, ["serves 1.2.0, the ledger says 1.1.0"])


def test_a_drifted_host_left_out_goes_back_and_is_alerted():
    f = judge(seen(version="1.2.0", in_load_balancer=False), "1.1.0", released_before=True)
    assert f.put_back and f.alert


def test_a_host_no_release_ever_reached_is_alerted_where_others_were_released():
    f = judge(seen(), "1.1.0", released_before=False, managed=True)
    assert f.alert and f.problems == ["no release ever reached this host"]


def test_hosts_installed_before_any_release_in_their_environment_are_not_drift():
    f = judge(seen(), None, released_before=False, managed=False)
    assert (f.problems, f.alert) == ([], False)
    # ... but a healthy one left out of rotation still goes back.
    assert judge(seen(in_load_balancer=False), None, released_before=False, managed=False).put_back
