"""The embedding API: a host agent runs ServerActor with its own stage and power callbacks."""

from __future__ import annotations

import random
import threading

from actors import Node, StateMachineActor
from actors.workflow import ServerActor
from protocols.workflow.controller import ResourceController
from protocols.workflow.workflow_controller import WorkflowController
from tests.conftest import wait_for

CATALOGUE = [{"workflow": "boot", "match": {}, "stages": [
    {"name": "image", "resources": ["images"], "expected": 0.05},
    {"name": "config", "needs": ["image"], "expected": 0.01}]}]


def test_server_actors_boot_through_a_resource_controller_with_host_callbacks(nodes):
    node = Node("lab")
    nodes.append(node)
    node.spawn(StateMachineActor, lambda: WorkflowController(CATALOGUE, {"images": {"controller": "lab/images", "proxies": []}}),
               name="workflow")
    node.spawn(StateMachineActor, lambda: ResourceController("images", rng=random.Random(1), limit=3, ttl=5.0, grace=0.0,
                                                             expected=0.05, adaptive=False), name="images")
    stages: list[tuple[str, str]] = []
    power: list[float] = []
    lock = threading.Lock()

    def on_stage(stage, report):
        with lock:
            stages.append((stage.stage, threading.current_thread().name))
        if stage.stage == "image" and len(stages) == 1:
            report(False, "disk hiccup")  # the first attempt fails: the server tries again
        else:
            threading.Timer(0.02, report).start()  # the work runs elsewhere; report from its thread

    for i in range(12):
        node.spawn(ServerActor, "lab/workflow", on_stage=on_stage, on_power=power.append, seed=i,
                   retry_after=0.5, name=f"server{i}")
    done = wait_for(lambda: [e for e in node.events.events() if e["kind"] == "server.state" and e["fields"]["to"] == "done"]
                    if sum(1 for e in node.events.events() if e["kind"] == "server.state" and e["fields"]["to"] == "done") == 12
                    else None, timeout=30, what="12 servers done")
    assert len(done) == 12
    names = [s for s, _ in stages]
    assert names.count("image") == 13 and names.count("config") == 12, "one failed image stage was run again"
    grants = [e for e in node.events.events() if e["kind"] == "admission.grant"]
    assert max(e["fields"]["holders"] for e in grants) <= 3, "never more holders than the limit"


def test_a_wake_agent_actor_hands_a_wake_to_the_embedders_power_on(nodes):
    from actors.workflow import WakeAgentActor
    from protocols.workflow.messages import Wake

    node = Node("bmc")
    nodes.append(node)
    woken: list = []
    node.spawn(WakeAgentActor, "rack1/s1", on_wake=lambda server, resource: woken.append((server, resource)),
               name="bmc")
    node.tell("bmc/bmc", Wake("rack1/s1", "images", 1, 1, 7, "bmc/bmc"))
    node.tell("bmc/bmc", Wake("rack1/s1", "images", 1, 1, 7, "bmc/bmc"))  # resent while it boots: one power-on
    node.tell("bmc/bmc", Wake("rack1/s2", "images", 1, 1, 7, "bmc/bmc"))  # not its machine
    wait_for(lambda: woken, timeout=10, what="the power-on")
    threading.Event().wait(0.3)  # let the duplicate and the foreign Wake be handled too
    assert woken == [("rack1/s1", "images")]
