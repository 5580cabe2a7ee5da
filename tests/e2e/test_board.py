"""The release board in Airflow's UI, in a real browser (Debian's Chromium driven by Playwright):
reached from the UI's navigation, it shows what the hosts serve during and after a promotion of
`dev`, follows its links to the run and to the approval page, refreshes itself, and refuses a
request without a session. One promotion (dev, two hosts, a confirmation between its batches:
the cheapest waiting approval) serves every check. Screenshots: $GANTRY_STATE/artifacts/board/."""
from __future__ import annotations

import time
import uuid

import pytest
import requests

from support import fleet_state, wait_for

pytestmark = pytest.mark.e2e
ENV, DAG = "dev", "gantry_promote_dev"
BASELINE = "1.0.0"
UI = "http://127.0.0.1:8080"
WAIT_MS = 60_000


@pytest.fixture(scope="module")
def shots(fleet):
    """Where the screenshots go; their paths are printed at the end of the module."""
    where = fleet.STATE / "artifacts" / "board"
    where.mkdir(parents=True, exist_ok=True)
    taken: list[str] = []

    def shot(page, name: str) -> None:
        path = where / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        taken.append(str(path))

    yield shot
    print("\nboard screenshots:\n" + "\n".join(f"  {p}" for p in taken))


@pytest.fixture(scope="module")
def page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1500, "height": 950})
        page.set_default_timeout(WAIT_MS)
        page.goto(f"{UI}/")
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", "admin")
        page.press("input[name=password]", "Enter")
        page.wait_for_url(lambda url: "/login" not in url and "/auth/" not in url)
        yield page
        browser.close()


@pytest.fixture(scope="module")
def promotion(fleet, airflow):
    """A promotion of dev, parked at its confirmation before the second (last) batch."""
    import artifacts

    fleet.reset(BASELINE, ENV)
    airflow.wait_for_dag(DAG)
    version = f"1.9.{int(time.time()) % 100000}-board{uuid.uuid4().hex[:4]}"
    artifacts.publish_demo(fleet.STATE / "artifacts", version)
    resp = airflow.trigger(DAG, {"app": "demo", "version": version, "batches": "1", "confirm_batches": True,
                                 "auto_promote": False})
    assert resp.status_code == 200, resp.text
    run_id = resp.json()["dag_run_id"]

    def asked():
        assert airflow.run_state(DAG, run_id) not in ("success", "failed"), "the run ended without asking"
        return airflow.pending_approvals(DAG, run_id)

    detail = wait_for(asked, "the confirmation before dev's second batch", timeout=120, interval=0.5)[0]
    return {"version": version, "run_id": run_id, "detail": detail}


def board(page):
    """The board's frame, opened from the UI's navigation."""
    page.goto(f"{UI}/")
    page.get_by_role("link", name="Gantry").first.click()
    page.wait_for_url("**/plugin/gantry/**")
    frame = page.frame_locator("iframe[title=Gantry]")
    frame.locator("table.matrix").wait_for()
    return frame


def test_a_request_without_a_session_is_refused(airflow):
    for path in ("/gantry/board", "/gantry/board/data", "/gantry/board/history/demo/dev"):
        assert requests.get(f"{UI}{path}", timeout=10).status_code == 401, path
        forged = requests.get(f"{UI}{path}", cookies={"_token": "not-a-token"}, timeout=10)
        assert forged.status_code in (401, 403), (path, forged.status_code)
    data = airflow.s.get(f"{UI}/gantry/board/data", timeout=10)
    assert data.status_code == 200 and {"matrix", "in_flight", "approvals", "queue", "html"} <= set(data.json())
    assert airflow.s.get(f"{UI}/gantry/board/history/demo/nowhere", timeout=10).status_code == 404


def test_while_it_runs_the_board_shows_the_batch_the_hosts_and_the_waiting_approval(page, promotion, shots):
    version, run_id = promotion["version"], promotion["run_id"]
    # What the hosts serve now: the first batch released, the second not yet.
    served = fleet_state(env=ENV)["versions"]
    assert served == {"dev-demo-01": version, "dev-demo-02": BASELINE}, served

    frame = board(page)
    flight = frame.locator(f"tr.flight[data-env={ENV}]")
    flight.wait_for()
    text = flight.inner_text()
    assert f"promote {version}" in text and "batch 1 of 2" in text, text
    assert flight.locator("b.released").inner_text() == "1" and flight.locator("b.failed").inner_text() == "0"
    assert flight.locator(".host.released").inner_text() == "dev-demo-01"
    assert flight.locator(".host.waiting").inner_text() == "dev-demo-02"
    cell = frame.locator(f"td.cell[data-app=demo][data-env={ENV}]")
    assert f"promote {version}" in cell.locator(".releasing").inner_text()
    approval = frame.locator(f"tr.approval[data-env={ENV}]")
    assert "start batch 2 of 2" in approval.inner_text()
    assert "any user with access" in approval.inner_text(), "dev names no approvers"
    assert frame.locator("tr.queue[data-env=prod] td.window").inner_text().endswith(
        "(mon,tue,wed,thu 10:00-16:00 Europe/Berlin, 2 freeze(s))")
    # The cell's history, newest first: this run, still running.
    cell.locator("button.hist").click()
    first = frame.locator("#history-rows tr.hist-row").first
    first.wait_for()
    assert version in first.inner_text() and first.locator("td.status").inner_text().startswith("running")
    shots(page, "1-during-the-promotion")


def test_the_board_links_to_the_run_and_to_the_approval_page(page, promotion, shots):
    run_id = promotion["run_id"]
    frame = board(page)
    frame.locator(f"tr.flight[data-env={ENV}] a.run-link").click()
    page.wait_for_url(lambda url: url.endswith(f"/dags/{DAG}/runs/{run_id}") or url.endswith(
        f"/dags/{DAG}/runs/{requests.utils.quote(run_id, safe='')}"))
    page.get_by_text("collect_hosts").first.wait_for()
    shots(page, "2-the-run")

    frame = board(page)
    frame.locator(f"tr.approval[data-env={ENV}] a.approval-link").click()
    page.wait_for_url("**/tasks/host.offline_restart_online/mapped/1/required_actions")
    # Airflow's own page for the answer: the question and its options.
    page.get_by_text("start batch 2 of 2").first.wait_for()
    page.get_by_role("button", name="Approve").first.wait_for()
    shots(page, "3-the-approval-page")


def test_after_it_ends_the_board_refreshes_to_what_every_host_serves(page, promotion, airflow, shots):
    from airflow_api import AirflowAPI

    version, run_id = promotion["version"], promotion["run_id"]
    frame = board(page)  # left open: it must refresh by itself
    answer = AirflowAPI(username="alice", password="alice").respond(DAG, run_id, "host.offline_restart_online", 1,
                                                                   "Approve")
    assert answer.status_code == 200, answer.text
    cell = frame.locator(f"td.cell[data-app=demo][data-env={ENV}]")
    cell.locator(f'.version:text-is("{version}")').wait_for()
    assert airflow.wait_run(DAG, run_id, timeout=120) == "success"
    frame.locator("#no-flights").wait_for()
    frame.locator("#no-approvals").wait_for()
    served = fleet_state(env=ENV)["versions"]
    assert set(served.values()) == {version}, served
    assert cell.get_attribute("data-version") == version
    assert "by admin" in cell.locator(".since").inner_text()
    assert cell.locator(".drift").count() == 0, cell.inner_text()

    # The cell's history: this run first, with its link; older pages on demand.
    cell.locator("button.hist").click()
    first = frame.locator("#history-rows tr.hist-row").first
    first.wait_for()
    assert f"{version}" in first.inner_text() and "succeeded" in first.inner_text()
    assert first.locator("a[data-ui]").get_attribute("href") == (
        f"/dags/{DAG}/runs/{requests.utils.quote(run_id, safe='')}")
    shots(page, "4-after-the-promotion")

    page1 = airflow.s.get(f"{UI}/gantry/board/history/demo/{ENV}", params={"limit": 1}, timeout=10).json()
    assert page1["rows"][0]["version"] == version


def test_history_pages_follow_each_other_without_gaps_or_repeats(fleet):
    """The ledger's history cursor (the board's "older" button), on an environment of this test only."""
    import sqlalchemy as sa

    from gantry.hooks.ledger import LedgerHook

    ledger, env = LedgerHook(), f"itest-board-{uuid.uuid4().hex[:8]}"
    try:
        for i in range(5):
            ledger.claim(app="demo", environment=env, kind="promote", version=f"1.{i}", dag_id="d", run_id=f"{env}-{i}",
                         triggered_by="ci", scope="full", auto=False, override_reason=None, previous_version=None)
            ledger.finish("d", f"{env}-{i}", "succeeded" if i != 3 else "failed", "", [])
        pages, before = [], None
        while True:
            page = ledger.history("demo", env, 2, before=before)
            if not page:
                break
            pages.append([r["version"] for r in page])
            before = page[-1]["id"]
        assert pages == [["1.4", "1.3"], ["1.2", "1.1"], ["1.0"]]
        assert ledger.history("demo", env, 50) == ledger.history("demo", env, 50, before=None)
        (cell,) = ledger.latest([("demo", env)])
        assert (cell["current"]["version"], cell["attempt"]["version"]) == ("1.4", "1.4")
    finally:
        with ledger.engine().begin() as conn:
            conn.execute(sa.text("DELETE FROM gantry_release WHERE environment = :e"), {"e": env})
