"""``fleetplane deps plan``: real systemd units (Debian 12's, copied), a compose file, a dependency file.

The systemd units in ``tests/data/deps/systemd/`` are copied unchanged from
this machine's ``/lib/systemd/system`` (Debian 12: packages systemd, dbus,
postgresql-common); the ``*.wants/`` folders hold empty files named like the
symlinks Debian ships there. Every malformed input names its file and line
and exits 2.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from protocols.deps.graph import check_plan, plan
from topologies.cli import main
from topologies.deps.sources import SourceError, load

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "deps"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(["deps", "plan", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


# -- systemd ----------------------------------------------------------------------


def test_debian_units_are_read_with_their_edges():
    g, what = load(DATA / "systemd")
    assert what == "systemd" and len(g.services) >= 50
    deps = {(d.service, d.on): d for d in g.dependencies()}
    # systemd-journald.service: Requires=systemd-journald.socket, After=... syslog.socket, Before=sysinit.target
    assert deps[("systemd-journald.service", "systemd-journald.socket")].kind == "hard"
    assert deps[("sysinit.target", "systemd-journald.service")].kind == "conditional"  # sysinit.target.wants/
    assert deps[("systemd-journald.service", "systemd-journald-dev-log.socket")].kind == "order"
    # implicit default dependencies of a service: Requires=sysinit.target, After=basic.target
    assert deps[("dbus.service", "sysinit.target")].kind == "hard"
    assert deps[("dbus.service", "basic.target")].kind == "order"
    assert "DefaultDependencies=no" not in deps[("dbus.service", "sysinit.target")].where
    assert ("systemd-journald.service", "sysinit.target") not in deps  # DefaultDependencies=no
    assert deps[("systemd-journald.service", "systemd-journald.socket")].where.endswith("systemd-journald.service:14")
    assert "syslog.socket" in g.external()


def test_debian_units_plan_in_boot_order(capsys):
    g, _ = load(DATA / "systemd")
    p = plan(g)
    assert check_plan(g, p) == []
    wave = {x: i for i, w in enumerate(p.waves) for x in w}
    where = {m: wave[grp] for grp, ms in p.groups.items() for m in ms}
    where.update({x: i for x, i in wave.items() if x in g.services})
    assert where["systemd-journald.socket"] < where["systemd-journald.service"] < where["sysinit.target"] \
        < where["basic.target"] < where["dbus.service"] < where["multi-user.target"] < where["graphical.target"]
    # the Wants=X + Before=X pairs systemd resolves by ignoring the Wants: deferred, never a ticket
    assert not p.tickets and p.workflows
    assert all(w.rule == "defer-conditional" and w.restarted == () for w in p.workflows)
    rc, out, err = run(capsys, str(DATA / "systemd"))
    assert rc == 0 and not err
    for section in ("waves (", "cycles (", "remedial workflow (defer-conditional)", "critical path (",
                    "failure-domain risks: none", "plan: every service planned"):
        assert section in out, section
    assert "cycle:systemd-timesyncd.service+time-set.target" in out


def test_malformed_unit_file_names_file_and_line(tmp_path, capsys):
    d = tmp_path / "units"
    d.mkdir()
    shutil.copy(DATA / "systemd" / "dbus.service", d)
    (d / "broken.service").write_text("[Unit]\nDescription=x\nRequires=dbus.service\nthis is not a setting\n")
    rc, out, err = run(capsys, str(d))
    assert rc == 2 and out == ""
    assert f"{d / 'broken.service'}:4: expected KEY=VALUE" in err
    (d / "broken.service").write_text("Requires=dbus.service\n")
    rc, _, err = run(capsys, str(d))
    assert rc == 2 and "broken.service:1: assignment outside a section" in err
    (d / "broken.service").write_text("[Unit]\nAfter=a.service \\\n  b.service\nWants=bad/name\n")
    rc, _, err = run(capsys, str(d))
    assert rc == 2 and "broken.service:4: Wants: 'bad/name' is not a unit name" in err


# -- compose ------------------------------------------------------------------------


def test_compose_file_plan(capsys):
    g, what = load(DATA / "compose.yaml")
    assert what == "compose"
    deps = {(d.service, d.on): d for d in g.dependencies()}
    assert deps[("api", "db")].kind == "hard" and deps[("api", "db")].function == "service_healthy"
    assert deps[("api", "search")].kind == "conditional" and deps[("api", "search")].condition == "compose:optional"
    assert deps[("worker", "cache")].kind == "hard"
    assert g.services["search"].bootstrap and g.services["search"].start_time == 4.0
    rc, out, _ = run(capsys, str(DATA / "compose.yaml"))
    assert rc == 0
    assert "   1. cache, db\n   2. migrate\n   3. cycle:api+search\n   4. web, worker\n" in out
    assert "without waiting on api -> search (conditional)" in out


def test_compose_required_cycle_gets_a_bootstrap_start_and_json_form_works(tmp_path, capsys):
    text = (DATA / "compose.yaml").read_text().replace("        required: false\n", "")
    f = tmp_path / "compose.yaml"
    f.write_text(text)
    rc, out, _ = run(capsys, str(f), "--format", "json")
    data = json.loads(out)
    assert rc == 0 and data["read_as"] == "compose" and data["ok"]
    (w,) = data["plan"]["workflows"]
    assert w["rule"] == "bootstrap" and w["bootstrap"] == ["search"] and w["waived"] == [["search", "api"]]
    # the JSON form of the same compose file
    import yaml
    j = tmp_path / "compose.json"
    j.write_text(json.dumps(yaml.safe_load(text), indent=2))
    rc, out2, _ = run(capsys, str(j), "--format", "json")
    assert rc == 0 and json.loads(out2)["plan"] == data["plan"]


def test_malformed_compose_names_line(tmp_path, capsys):
    f = tmp_path / "compose.yaml"
    f.write_text("services:\n  a:\n    image: x\n  b:\n    depends_on:\n      a:\n        condition: service_ready\n")
    rc, _, err = run(capsys, str(f))
    assert rc == 2 and f"{f}:6: depends_on.a: condition 'service_ready' is not one of" in err
    f.write_text("services:\n  a:\n    depends_on: [nope]\n")
    rc, _, err = run(capsys, str(f))
    assert rc == 2 and f"{f}:3: service 'a' depends on 'nope', which is not a service" in err
    f.write_text("services:\n  a:\n    image: [x\n")
    rc, _, err = run(capsys, str(f))
    assert rc == 2 and f"{f}:4: not valid YAML" in err


# -- dependency files ------------------------------------------------------------------


def test_dependency_file_plan_with_workflows_risks_and_svg(tmp_path, capsys):
    svg = tmp_path / "dc.svg"
    rc, out, _ = run(capsys, str(DATA / "datacenter.toml"), "--svg", str(svg))
    assert rc == 0
    assert "start dns in bootstrap mode" in out and "start metadata-db in bootstrap mode" in out
    assert "steps: start-bootstrap:dns, start:access-control, restart:dns" in out
    assert "r1-fd1: losing r1-fd1 takes down cloud-manager and everything that could restart it (deps-manager)" in out
    assert "cross-region: access-control in r1 hard-depends on identity in r2" in out
    assert "priority-inversion: dns (priority 10) hard-depends on access-control (priority 9)" in out
    assert "conditional-cycle: a cycle of hard dependencies appears when 'region r2 isolated' holds; " \
           "remediation to arm: start dns, identity in bootstrap mode" in out
    assert "critical path (22 s, 9 steps): start:dns-r2 -> start:identity" in out
    s = svg.read_text()
    assert s.startswith("<svg") and s.rstrip().endswith("</svg>")
    assert "cycle:access-control+dns" in s and "dns [B]" in s and s.count("<rect") > 11
    import xml.dom.minidom
    xml.dom.minidom.parseString(s)  # well-formed


def test_active_condition_and_unbreakable_cycle_exit_1(tmp_path, capsys):
    rc, out, _ = run(capsys, str(DATA / "datacenter.toml"), "--format", "json")
    uses = {(d["service"], d["on"]): d["function"] for d in json.loads(out)["dependencies"]}
    assert uses[("dns", "access-control")] == "credentials to load its zones" and uses[("dns", "dhcp")] == "an address"
    rc, out, _ = run(capsys, str(DATA / "datacenter.toml"), "--condition", "region r2 isolated")
    assert rc == 0 and "conditions holding: region r2 isolated" in out and "start dns, identity in bootstrap" in out
    f = tmp_path / "dc.toml"
    f.write_text((DATA / "datacenter.toml").read_text().replace("bootstrap = true", "bootstrap = false"))
    rc, out, _ = run(capsys, str(f))
    assert rc == 1
    assert "UNBREAKABLE: no member declares a bootstrap mode" in out
    assert "work ticket for an operator; blocked: access-control, block-storage, cloud-manager, dns," in out
    assert "plan: 7 service(s) blocked by 2 ticket(s)" in out


@pytest.mark.parametrize("text,line,problem", [
    ("[services.a]\nhard = [\"b\"\n", 2, "not valid TOML"),
    ("[services.a]\npriority = 1\nstart = 2\n", 3, "service 'a': unknown key 'start'"),
    ("[services.a]\nbootstrap = \"yes\"\n", 2, "service 'a': bootstrap has the wrong type (str)"),
    ("[services.a]\n\n[services.b]\nasset = \"nowhere\"\n", 4, "service 'b': asset 'nowhere' is not in [assets]"),
    ("[services.a]\nconditional = [1]\n", 2, "conditional must map each dependency to its condition"),
    ("[services.a]\n[[operator]]\nservice = \"a\"\non = \"b\"\nkind = \"soft\"\n", 2, "kind 'soft' is not one of"),
    ("[servics.a]\n", 1, "unknown top-level key 'servics'"),
])
def test_malformed_dependency_file_names_file_line_and_problem(tmp_path, capsys, text, line, problem):
    f = tmp_path / "deps.toml"
    f.write_text(text)
    rc, out, err = run(capsys, str(f))
    assert rc == 2 and out == ""
    assert err.startswith(f"fleetplane deps: {f}:{line}: ") and problem in err, err


def test_malformed_json_dependency_file_and_missing_source(tmp_path, capsys):
    f = tmp_path / "deps.json"
    f.write_text('{"services": {\n  "a": {"hard": ["b"]},\n  "b": {"priority": "high"}\n}}\n')
    rc, _, err = run(capsys, str(f))
    assert rc == 2 and f"{f}:3: service 'b': priority has the wrong type" in err
    f.write_text('{"services": {\n  "a": {,}\n}}\n')
    rc, _, err = run(capsys, str(f))
    assert rc == 2 and f"{f}:2: not valid JSON" in err
    rc, _, err = run(capsys, str(tmp_path / "nothing.toml"))
    assert rc == 2 and "no such file or directory" in err
    with pytest.raises(SourceError):
        load(tmp_path)  # an empty directory: no unit files


def test_the_fleetplane_command_runs_as_a_process():
    r = subprocess.run([sys.executable, "-m", "topologies.cli", "deps", "plan", str(DATA / "compose.yaml"),
                        "--format", "json"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["counts"]["services"] == 7


@pytest.mark.skipif(not Path("/lib/systemd/system").is_dir(), reason="no /lib/systemd/system on this machine")
def test_this_machines_whole_systemd_folder_reads_and_plans(capsys):
    """Every unit this machine ships (templates with %i specifiers included) reads and plans (Debian 12
    here: 219 units, 9 cycle groups, no ticket; another distribution may have a cycle no rule breaks: exit 1)."""
    rc, out, err = run(capsys, "/lib/systemd/system")
    assert rc in (0, 1) and not err, err
    assert "waves (" in out and "critical path (" in out and out.rstrip().splitlines()[-1].startswith("plan: ")


def test_a_topology_file_is_planned_as_its_agents_will_report_it(capsys):
    rc, out, _ = run(capsys, str(ROOT / "topologies" / "coldstart.toml"))
    assert rc == 0 and "(topology): 14 services" in out
    assert "cycle:access-control+dns" in out and "cycle:block-storage+metadata-db" in out
    assert "r1-b: losing r1-b takes down program-execution and everything that could restart it (cloud-manager)" in out
    rc, out, err = run(capsys, str(ROOT / "topologies" / "pingpong.toml"))
    assert rc == 2 and "a topology without deps.agent actors" in err


def test_operator_commands_without_a_running_manager_exit_2(tmp_path, capsys):
    from topologies.cli import main
    assert main(["deps", "condition", "region r2 isolated", "--holds", "--run", str(tmp_path)]) == 2
    assert "topology.json" in capsys.readouterr().err
    (tmp_path / "topology.json").write_text('{"nodes": [{"name": "a", "port": 1, "actors": [{"name": "x", '
                                            '"kind": "deps.agent"}]}]}')
    assert main(["deps", "override", "dns", "dhcp", "--run", str(tmp_path)]) == 2
    assert "has no deps.manager actor" in capsys.readouterr().err
    assert main(["deps", "remediate", "r", "restart", "dns", "--when", "conditional", "--run", str(tmp_path)]) == 2
    assert "--when conditional needs --condition" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["deps", "condition", "region r2 isolated", "--holds", "--run", "RUN"],
                                  ["task", "--run", "RUN", "--tenant", "t", "--token", "x", "status", "t-1"]])
def test_an_operator_command_run_in_process_leaves_an_embedded_node_s_warning_alone(tmp_path, capsys, argv):
    """``fleetplane deps ...`` and ``fleetplane task ...`` quiet "runs in the clear" for their own client node;
    called in a host's process (or a test's), they must not leave it quiet for the host's next node. They did:
    test_start_failures' embedded-node warning failed under ``-n 2`` whenever this file ran first in its worker."""
    from loguru import logger

    from actors import Node
    from transport.zmq import ZmqTransport

    assert main([str(tmp_path) if a == "RUN" else a for a in argv]) == 2  # no run there: refused before any client node starts
    capsys.readouterr()
    said: list = []
    sink = logger.add(lambda m: said.append(m.record), level="DEBUG")
    try:
        with Node("east", transport=ZmqTransport()):
            pass
    finally:
        logger.remove(sink)
    assert [r["level"].name for r in said if "runs in the clear" in r["message"]] == ["WARNING"]
