"""A person's path through the Airflow UI in headless Chromium: log in, trigger an erasure dry run, read its note."""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from lakedata import rows
from pyspark.sql import SparkSession

from jobs.core.runs import RunContext
from jobs.lake.tables import init_lake, merge_new_rows
from jobs.orchestration.airflow_local import PROJECT_ROOT
from jobs.orchestration.ui import UiServer, free_port, start_ui

# Debian's Chromium (apt-get install chromium); Playwright never downloads a browser here.
CHROMIUM = Path(os.environ.get("FACELAKE_CHROMIUM", "/usr/bin/chromium"))
# Screenshots of every stage, kept after the run (git-ignored); CI can publish the folder.
ARTIFACTS = Path(os.environ.get("FACELAKE_TEST_ARTIFACTS", PROJECT_ROOT / "test-artifacts")) / "browser"
DAG_ID = "facelake_erasure"
RUN_ID = "browser_dry_run"
# Bounded waits: server start (DB migration + 4 processes on 2 cores), and the run (each task is a
# fresh `facelake` process with its own JVM).
SERVER_TIMEOUT_S = 240.0
RUN_TIMEOUT_S = 420.0
UI_TIMEOUT_MS = 60_000

try:
    from playwright.sync_api import Page, sync_playwright
except ImportError:  # pragma: no cover - the dev extra installs it
    sync_playwright = None

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        sync_playwright is None, reason="playwright is not installed (pip install playwright)"
    ),
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason=f"Chromium not found at {CHROMIUM} (apt-get install chromium, or set FACELAKE_CHROMIUM)",
    ),
]


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiServer]:
    """The same UI as `./dev ui`, in a throw-away AIRFLOW_HOME on a free port; always stopped after."""
    server = start_ui(tmp_path_factory.mktemp("airflow-ui"), free_port())
    try:
        server.wait_healthy(SERVER_TIMEOUT_S)
        server.ensure_pool()
        server.wait_for_dag(DAG_ID)
        yield server
    finally:
        server.stop()


def _task_logs_tail(home: Path, lines: int = 30) -> str:
    parts = []
    for path in sorted(home.glob(f"logs/dag_id={DAG_ID}/**/*.log")):
        text = path.read_text(errors="replace").splitlines()[-lines:]
        parts.append(f"----- {path.relative_to(home)} -----\n" + "\n".join(text))
    return "\n".join(parts)


def _diagnostics(server: UiServer) -> str:
    return f"screenshots: {ARTIFACTS}\n{server.logs_tail()}\n{_task_logs_tail(server.home)}"


def _shot(page: Page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _open_section(page: Page, title: str, field: str) -> None:
    """Expand the trigger form's section ``title`` (one open at a time) and wait for ``field`` to show."""
    header = page.get_by_role("button", name=title, exact=True)
    if header.get_attribute("aria-expanded") != "true":
        header.click()
    page.locator(field).wait_for(state="visible")


def _choose(page: Page, param: str, shown: str | re.Pattern[str], value: str) -> None:
    """Pick an enum Param's option by its shown text (a react-select, not a native <select>)."""
    page.locator(f"#element_{param}").click()
    page.get_by_role("option", name=shown).click()
    chosen = page.locator(f"input[name=element_{param}]").input_value()
    assert chosen == value, f"{param}: chose {chosen!r}, wanted {value!r}"


def _wait_for_final_state(page: Page, server: UiServer, run_path: str) -> str:
    """Watch the run's state badge in the UI (reloading now and then) until it is final."""
    badge = page.locator("[data-testid=header-card] [data-testid=state-badge]")
    deadline = time.monotonic() + RUN_TIMEOUT_S
    next_reload = time.monotonic() + 20
    while time.monotonic() < deadline:
        if badge.count():
            state = badge.first.inner_text().strip().lower()
            if state in {"success", "failed"}:
                return state
        if server.exited():
            break
        if time.monotonic() > next_reload:
            # The UI polls while a run is active; a reload covers a poll that stalled.
            page.goto(server.url + run_path)
            next_reload = time.monotonic() + 20
        page.wait_for_timeout(2000)
    _shot(page, "99-timeout")
    pytest.fail(f"run {RUN_ID} not final after {RUN_TIMEOUT_S:.0f} s\n{_diagnostics(server)}")


def _wait_for_note(page: Page, timeout: float = 60.0) -> None:
    """Reload the run's page until its header shows a note instead of the "Add a note..." placeholder."""
    deadline = time.monotonic() + timeout
    while True:
        page.reload()
        page.locator("[data-testid=header-card] [data-testid=state-badge]").wait_for()
        page.get_by_role("button", name="Edit note", exact=True).first.wait_for()
        if not page.get_by_text("Add a note...", exact=True).count():
            return
        if time.monotonic() > deadline:
            pytest.fail(f"the run's page shows no note after {timeout:.0f} s")
        page.wait_for_timeout(3000)


def test_erasure_dry_run_through_the_browser(ui: UiServer, spark: SparkSession, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    init_lake(spark, str(lake))
    # Six images, every other one tagged UK: the dry run must find exactly those three.
    ids = [hashlib.sha256(f"browser image {i}".encode()).hexdigest() for i in range(6)]
    images = [
        {"image_id": v, "canonical_id": v, "jurisdiction_tags": ["uk"] if i % 2 == 0 else []}
        for i, v in enumerate(ids)
    ]
    merge_new_rows(spark, str(lake), "images", rows(spark, "images", images), RunContext("ingest"))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("*.png"):
        old.unlink()
    run_path = f"/dags/{DAG_ID}/runs/{RUN_ID}"
    form = {"ticket": "DPO-1234", "requested_by": "browser-test", "lake": str(lake)}

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(UI_TIMEOUT_MS)
            try:
                # Log in with the login `./dev ui` prints.
                server_url = ui.url
                page.goto(server_url)
                page.locator("input[name=username]").fill(ui.user)
                page.locator("input[name=password]").fill(ui.password)
                _shot(page, "01-login")
                page.get_by_role("button", name="Sign in").click()
                page.wait_for_url(re.compile(r"^(?!.*/auth/login)"))

                # The erasure DAG's page, then its trigger form.
                page.goto(f"{server_url}/dags/{DAG_ID}")
                trigger = page.locator("[data-testid=trigger-dag-button]")
                trigger.wait_for()
                _shot(page, "02-dag")
                trigger.click()
                submit = page.locator("[data-testid=trigger-dag-submit]")
                submit.wait_for()
                _shot(page, "03-form-empty")

                # A dry run of the defaults (the UK), with the required ticket and requester.
                _open_section(page, "Request", "#element_mode")
                _choose(page, "mode", re.compile("^Dry run"), "dry_run")
                _shot(page, "04-form-request")
                _open_section(page, "Authority", "#element_ticket")
                page.locator("#element_ticket").fill(form["ticket"])
                page.locator("#element_requested_by").fill(form["requested_by"])
                _open_section(page, "Advanced", "#element_lake")
                page.locator("#element_lake").fill(form["lake"])
                # A known run id, so that the run's page is known before it exists.
                _open_section(page, "Advanced Options", "input[name=dagRunId]")
                page.locator("input[name=dagRunId]").fill(RUN_ID)
                _shot(page, "05-form-filled")
                assert submit.is_enabled(), "the trigger button stays disabled: the form is invalid"
                submit.click()
                page.wait_for_url(re.compile(re.escape(run_path)))
                _shot(page, "06-run-started")

                state = _wait_for_final_state(page, ui, run_path)
                _shot(page, "07-run-final")
                assert state == "success", f"run {RUN_ID} ended {state}"

                # The note, as a person reads it: the header's note button opens the full note. The
                # scheduler writes it as the run ends; the page may have fetched the run just before.
                _wait_for_note(page)
                page.get_by_role("button", name="Edit note", exact=True).first.click()
                dialog = page.get_by_role("dialog").filter(has_text="Dag Run Note")
                dialog.wait_for()
                page.wait_for_timeout(500)  # the dialog fades in: let the screenshot show it whole
                _shot(page, "08-note")
                shown = dialog.inner_text()
            except Exception as error:
                # What the page showed, its DOM, and the servers' and tasks' logs: enough to debug a CI run.
                _shot(page, "99-failure")
                (ARTIFACTS / "99-failure.html").write_text(page.content())
                pytest.fail(f"{type(error).__name__}: {error}\n{_diagnostics(ui)}")
        finally:
            browser.close()

    run = ui.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{RUN_ID}")
    assert isinstance(run, dict)
    assert run["state"] == "success"
    # What was typed into the form is what the run got.
    assert {key: run["conf"].get(key) for key in form} == form
    assert run["conf"].get("mode") == "dry_run"
    note = run["note"] or ""
    assert note.strip(), f"the run has no note\n{_diagnostics(ui)}"
    # The dialog renders the note's Markdown: every word of the note is on screen.
    assert "dry_run" in shown
    assert re.search(r"\bimages 3\b", note), note  # the three UK images planned, none of the others
    words = re.findall(r"[A-Za-z0-9_./-]{3,}", re.sub(r"\]\([^)]*\)", "]", note))
    missing = [word for word in words if word not in shown]
    assert not missing, f"note words not shown in the UI: {missing[:10]}\nshown: {shown!r}\nnote: {note!r}"
    # Nothing the UI flags on this DAG (an asset conflict, a missing pool) or on any DAG file.
    warnings = ui.api("GET", f"/api/v2/dagWarnings?dag_id={DAG_ID}")
    assert isinstance(warnings, dict)
    assert warnings["dag_warnings"] == [], [w["message"] for w in warnings["dag_warnings"]]
    errors = ui.api("GET", "/api/v2/importErrors")
    assert isinstance(errors, dict)
    assert errors["import_errors"] == [], [e["filename"] for e in errors["import_errors"]]


def _pool_slots(pool: str, slots: int) -> dict[str, object]:
    # The API validates a patch as a whole pool (name, slots, include_deferred); the mask applies slots only.
    return {"pool": pool, "slots": slots, "include_deferred": False}


def test_an_erasure_waits_for_the_lake_pool_rather_than_failing(
    ui: UiServer, spark: SparkSession, tmp_path: Path
) -> None:
    """The real scheduler with the lake pool taken (as while the nightly run writes): the erasure's
    first task waits, the run stays running, nothing fails; once the slot is free the run succeeds."""
    from jobs.orchestration.runner import LAKE_POOL

    lake = tmp_path / "lake"
    init_lake(spark, str(lake))
    run_id = "waits_for_the_pool"
    conf = {"ticket": "DPO-POOL-1", "requested_by": "pool-test", "lake": str(lake), "mode": "dry_run"}
    # No slot at all stands for "the nightly run holds the one slot": the scheduler sees the same thing.
    ui.api("PATCH", f"/api/v2/pools/{LAKE_POOL}?update_mask=slots", _pool_slots(LAKE_POOL, 0))
    try:
        ui.api("PATCH", f"/api/v2/dags/{DAG_ID}", {"is_paused": False})
        ui.api(
            "POST",
            f"/api/v2/dags/{DAG_ID}/dagRuns",
            {"dag_run_id": run_id, "logical_date": None, "conf": conf},
        )
        plan_path = f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/plan"
        seen: set[str | None] = set()
        deadline = time.monotonic() + 25  # several scheduler loops (5 s each)
        while time.monotonic() < deadline:
            plan = ui.api("GET", plan_path)
            assert isinstance(plan, dict)
            seen.add(plan["state"])
            time.sleep(3)
        run = ui.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}")
        assert isinstance(run, dict)
        # Waiting for a slot: scheduled (or not yet), never running, failed or queued for a retry.
        assert seen <= {None, "scheduled"} and "scheduled" in seen, seen
        assert run["state"] in {"queued", "running"}, run["state"]
    finally:
        ui.api("PATCH", f"/api/v2/pools/{LAKE_POOL}?update_mask=slots", _pool_slots(LAKE_POOL, 1))
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        run = ui.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}")
        assert isinstance(run, dict)
        if run["state"] in {"success", "failed"}:
            break
        time.sleep(5)
    assert run["state"] == "success", f"{run['state']}\n{_diagnostics(ui)}"
