"""The oversight console of a running regions.toml, in a real headless browser (issue 21, "Must show").

``topologies/regions.toml`` with its council under approval ``all`` and a console on the oversight role's node
``ops``, as real processes: east's damaged store makes east's image controller propose mitigations, which wait
for an operator. The test opens the link ``fleetplane console RUN`` prints in Debian's chromium, clicks a pending
mitigation's approve button, and finds its redirected grants in the event log after the approval; no redirect of
it before. The same approval without the token is refused (403) and decides nothing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_console_browser import CHROMIUM, DRIVER, _row, browser, wait  # noqa: F401 (fixture)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
ROOT = Path(__file__).resolve().parents[1]


def regions_with_console(tmp_path: Path) -> Path:
    text = (ROOT / "topologies" / "regions.toml").read_text().replace('approval = "none"', 'approval = "all"')
    if 'kind = "workflow.console"' not in text:
        head, sep, rest = text.partition('kind = "workflow.oversight"\n')
        line, nl, rest = rest.partition("\n")  # the oversight actor's params
        text = head + sep + line + nl + '\n[[nodes.actors]]\nname = "console"\nkind = "workflow.console"\n' + rest
    assert text.count('approval = "all"') >= 2, "regions.toml no longer sets the council's approval where expected"
    p = tmp_path / "regions_console.toml"
    p.write_text(text)
    return p


def events(run: Path, kind: str) -> list[dict]:
    out = []
    for f in run.glob("*.events.jsonl"):
        for line in f.read_text().splitlines():
            try:
                e = json.loads(line)
            except ValueError:
                continue  # a line being written
            if e.get("kind") == kind:
                out.append(e)
    return sorted(out, key=lambda e: e["time"])


def test_an_operator_approves_a_mitigation_of_running_regions_in_the_console(browser, tmp_path):  # noqa: F811
    from selenium.webdriver.common.by import By

    topo = regions_with_console(tmp_path)
    out = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, "-m", "topologies.cli", "run", str(topo), "--out", str(out), "-q",
                             "--duration", "240"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        run = wait(lambda: next(iter(out.glob("regions-real-*")), None), "the run directory", 60)
        wait(lambda: (run / "ops.console.json").exists(), "the console's file (the ops node serving it)", 120)
        link = subprocess.run([sys.executable, "-m", "topologies.cli", "console", str(run)], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
        assert link.returncode == 0, link.stderr
        url = link.stdout.strip()
        assert url.startswith("http://127.0.0.1:") and "#token=" in url

        import urllib.error
        import urllib.request

        base = url.partition("#")[0]
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(urllib.request.Request(base + "api/state"), timeout=30)
        assert refused.value.code == 403

        browser.get(url)
        browser.find_element(By.ID, "operator").clear()
        browser.find_element(By.ID, "operator").send_keys("ana")
        row = wait(lambda: next(iter(browser.find_elements(By.CSS_SELECTOR, '#mitigations tr[data-state="pending"]')),
                                None), "a pending mitigation on the page", 120)
        mid = row.get_attribute("data-mitigation")
        assert not [e for e in events(run, "council.redirect") if e["fields"]["mitigation"] == mid], \
            f"{mid} was enforced before anyone approved it"
        forged = urllib.request.Request(base + "api/approve", method="POST", headers={"Content-Type": "application/json"},
                                        data=json.dumps({"mitigation": mid, "operator": "eve"}).encode())
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(forged, timeout=30)
        assert refused.value.code == 403
        row.find_element(By.CSS_SELECTOR, "button.approve").click()
        wait(lambda: browser.find_element(By.TAG_NAME, "body").get_attribute("data-last-action") == "approve:200",
             "the approval's answer")
        decision = wait(lambda: [e for e in events(run, "oversight.decision") if e["fields"]["mitigation"] == mid],
                        "the oversight role's decision in its event log", 30)[0]
        assert decision["fields"]["approve"] is True and decision["fields"]["by"] == "operator:ana", decision
        assert not [e for e in events(run, "oversight.decision") if e["fields"]["by"] == "operator:eve"]
        redirects = wait(lambda: [e for e in events(run, "council.redirect") if e["fields"]["mitigation"] == mid],
                         "redirected servers under the approved mitigation", 60)
        assert redirects, mid
        wait(lambda: _row(browser, mid) is not None and _row(browser, mid).get_attribute("data-state") == "in_force",
             "the mitigation shown in force", 30)
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C: the launcher stops its node processes (by their PIDs)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
