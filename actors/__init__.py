"""fleetplane's runtime on pykka: nodes, actors, timers, supervision, death watch.

``from actors import Node, Actor`` is the embedding API; see README.md.
"""

from actors.clock import Clock, RealClock, VirtualClock
from actors.eventlog import EventLog, read_events
from actors.messages import Terminated
from actors.node import Actor, AskTimeout, DeadLetterError, Node, NodeStopped
from actors.statemachine import StateMachineActor, UnhandledEffect
from actors.supervision import NEVER, RestartPolicy

__all__ = [
    "NEVER",
    "Actor",
    "AskTimeout",
    "Clock",
    "DeadLetterError",
    "EventLog",
    "Node",
    "NodeStopped",
    "RealClock",
    "RestartPolicy",
    "StateMachineActor",
    "Terminated",
    "UnhandledEffect",
    "VirtualClock",
    "read_events",
]
