"""Re-imaging through the boot-workflow protocol: a remedial reboot that must re-image the asset.

coldstart.toml plus a boot node (a ``workflow.workflow`` controller with a two-stage
``reimage`` workflow and the ``images`` resource's controller, limit 1); the storage asset's
host runs its re-imaging as a ``protocols.workflow`` server (``workflow_controller``). A
``reimage`` remediation of block-storage: the asset's services go down, its server asks the
workflow controller for its workflow and the images controller for admission before the image
stage, runs both stages, and the asset boots; the manager starts its services again in plan
order. Every failure message names the seed.
"""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from protocols.deps.messages import Remediate
from tests.test_deps_sim import kinds, simulate, verdict
from topologies.checkers import CHECKERS
from topologies.loader import load_topology

ROOT = Path(__file__).resolve().parents[1]
BOOT = '''
[[nodes]]
name = "boot"
[[nodes.actors]]
name = "workflow"
kind = "workflow.workflow"
[nodes.actors.params]
resources = { images = { controller = "boot/images", proxies = [] } }
catalogue = [
  { workflow = "reimage", match = {}, stages = [
      { name = "image", resources = ["images"], expected = 0.5 },
      { name = "config", needs = ["image"], expected = 0.2 } ] },
]
[[nodes.actors]]
name = "images"
kind = "workflow.resource"
params = { resource = "images", limit = 1, ttl = 10.0, grace = 10.0, expected = 0.5 }
'''


@pytest.fixture(scope="module")
def topo(tmp_path_factory):
    path = tmp_path_factory.mktemp("reimage") / "coldstart-reimage.toml"
    path.write_text((ROOT / "topologies" / "coldstart.toml").read_text() + BOOT)
    t = load_topology(path)
    nodes = tuple(attrs.evolve(n, actors=tuple(
        attrs.evolve(a, params={**a.params, "workflow_controller": "boot/workflow",
                                "boot": {"stage_time": 0.4, "stage_sigma": 0.0}}) if n.name in ("r1-stor", "r1-obs")
        else a
        for a in n.actors)) for n in t.nodes)
    return attrs.evolve(t, nodes=nodes)


@pytest.mark.parametrize("seed", [1, 2])
def test_a_reimage_remediation_boots_the_asset_through_the_boot_workflow(topo, seed):
    def setup(sim, factories):
        sim.schedule(12.0, lambda: sim.send("mgr/manager", Remediate("reimage-stor", "reimage", "block-storage")))
    _, events = simulate(topo, seed, 40.0, setup)
    (reboot,) = kinds(events, "deps.reboot")
    assert reboot["fields"]["reimage"] and reboot["fields"]["asset"] == "r1-stor", f"seed {seed}"
    (ri,) = kinds(events, "deps.reimage")
    assert ri["fields"]["via"] == "boot/workflow"
    states = [e["fields"]["to"] for e in kinds(events, "server.state") if e["node"] == "r1-stor"]
    assert states[-1] == "done", f"seed {seed}: the asset's boot workflow: {states}"
    granted = [e for e in events if e["node"] == "boot" and e["kind"] == "admission.grant"]
    assert granted, f"seed {seed}: the images controller admitted the image stage"
    booted = [e for e in kinds(events, "deps.booted") if e["node"] == "r1-stor"]
    assert booted and booted[0]["time"] > granted[0]["time"], f"seed {seed}"
    assert [e for e in kinds(events, "deps.remediation_done") if e["fields"]["id"] == "reimage-stor"], f"seed {seed}"
    assert kinds(events, "deps.asset_event")[0]["fields"]["kind"] == "reimaging"
    for name in ("deps-start-order", "deps-all-up"):
        assert verdict(name, events) == "valid", f"seed {seed}: {CHECKERS[name].check(events).summary}"
    bad = [e for e in events if e["kind"] == "deps.bad_input"]
    assert not bad, f"seed {seed}: {bad[:3]}"


def test_two_assets_reimaged_at_once_take_turns_at_the_image_store(topo):
    """The images controller admits one image stage at a time (limit 1): the second asset waits its turn."""
    def setup(sim, factories):
        sim.schedule(12.0, lambda: [sim.send("mgr/manager", Remediate("ri-stor", "reimage", "block-storage")),
                                    sim.send("mgr/manager", Remediate("ri-obs", "reimage", "logging"))])
    _, events = simulate(topo, 1, 40.0, setup)
    grants = [(e["time"], e["fields"]["server"]) for e in events if e["kind"] == "admission.grant"]
    released = [(e["time"], e["fields"]["server"]) for e in events if e["kind"] == "lease.released"]
    assert len(grants) == 2 and grants[0][1] != grants[1][1], grants
    assert grants[1][0] >= released[0][0], f"the second image stage began after the first ended: {grants} {released}"
    assert [e for e in events if e["kind"] == "admission.deny" and e["fields"]["server"] == grants[1][1]]
    done = {e["fields"]["id"] for e in kinds(events, "deps.remediation_done")}
    assert done == {"ri-stor", "ri-obs"}
    for name in ("deps-start-order", "deps-all-up"):
        assert verdict(name, events) == "valid", CHECKERS[name].check(events).summary
