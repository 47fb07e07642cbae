"""The ping-pong plug-in: the demo protocol's actor kinds and ``fleetplane demo``."""

from __future__ import annotations

from protocols.pingpong import Pinger, Ponger
from topologies.kinds import make_kind
from topologies.pingpong.demo import cmd_demo, setup_demo
from topologies.plugin import Command, Plugin

PLUGIN = Plugin(
    name="pingpong",
    protocols=("protocols.pingpong",),
    kinds=(
        make_kind("pingpong.pinger", Pinger, addresses=("peer",), doc="plays ping-pong rounds against a ponger"),
        make_kind("pingpong.ponger", Ponger, doc="answers every ping"),
    ),
    commands=(Command("demo", "run the built-in ping-pong topology (real nodes, then the simulator)",
                      setup_demo, cmd_demo),),
    doc="the demo protocol: pingers and pongers",
)
