"""The oversight console in a real headless browser (Debian's chromium and chromedriver; issue 21, "Must show").

The page is driven as a person would: open the link ``fleetplane console`` prints (the token in its fragment),
click a mitigation's approve button, see the result. Here the oversight role is a stand-in answering the
console's asks (tests/test_console.py has it); the same page against a running regions.toml is in
tests/test_regions_console.py.
"""

from __future__ import annotations

import shutil
import time

import pytest

from tests.test_console import FakeOversight
from topologies.workflow.console import ConsoleServer

pytestmark = pytest.mark.slow

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    if not (CHROMIUM and DRIVER):
        pytest.skip("Debian's chromium and chromium-driver are not installed (.ci/run installs them)")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--disable-dev-shm-usage"):
        opts.add_argument(a)
    drv = webdriver.Chrome(options=opts, service=Service(DRIVER))
    drv.set_page_load_timeout(30)
    try:
        yield drv
    finally:
        drv.quit()  # stops chromedriver and the browser it started


def wait(cond, what: str, timeout: float = 15.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = cond()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _row(drv, mitigation):
    from selenium.webdriver.common.by import By

    rows = drv.find_elements(By.CSS_SELECTOR, f'#mitigations tr[data-mitigation="{mitigation}"]')
    return rows[0] if rows else None


def test_an_operator_approves_a_pending_mitigation_by_clicking(browser):
    from selenium.webdriver.common.by import By

    fake = FakeOversight()
    srv = ConsoleServer(fake.ask).start()
    try:
        browser.get(f"{srv.url}#token={srv.token}")
        browser.find_element(By.ID, "operator").clear()
        browser.find_element(By.ID, "operator").send_keys("ana")
        row = wait(lambda: _row(browser, "m1"), "the pending mitigation m1 on the page")
        assert row.get_attribute("data-state") == "pending"
        assert "token=" not in browser.current_url, "the token stays in the address bar"
        row.find_element(By.CSS_SELECTOR, "button.approve").click()
        wait(lambda: browser.find_element(By.TAG_NAME, "body").get_attribute("data-last-action") == "approve:200",
             "the approval's answer")
        approvals = [m for m in fake.got if type(m).__name__ == "OversightApprove"]
        assert [(m.mitigation, m.operator) for m in approvals] == [("m1", "ana")]
        assert srv.refused == 0
    finally:
        srv.stop()


def test_without_the_token_the_page_shows_nothing_and_cannot_act(browser):
    from selenium.webdriver.common.by import By

    fake = FakeOversight()
    srv = ConsoleServer(fake.ask).start()
    try:
        browser.get(srv.url)
        browser.find_element(By.ID, "token").send_keys("a-guess")
        browser.find_element(By.ID, "connect").click()
        wait(lambda: "refused" in browser.find_element(By.ID, "status").text, "the refusal on the page")
        assert _row(browser, "m1") is None
        # the page's own code, asked to approve with the wrong token, is refused by the console
        status = browser.execute_async_script(
            "const done = arguments[0]; fetch('/api/approve', {method: 'POST', headers: {'Authorization': "
            "'Bearer a-guess', 'Content-Type': 'application/json'}, body: JSON.stringify({mitigation: 'm1', "
            "operator: 'eve'})}).then(r => done(r.status));")
        assert status == 403
        assert not [m for m in fake.got if type(m).__name__ == "OversightApprove"]
        assert srv.refused >= 2
    finally:
        srv.stop()
