"""Resource-dependent workflows (protocol 1; seed ``shared/seeds/000_6042360d9d71bd38.txt``).

How this works
--------------
Booting servers (:class:`Server`) get a workflow from a
:class:`WorkflowController`; before each resource-dependent stage they ask the
resource's :class:`ResourceController` for access, directly or through a
:class:`Proxy`. The controller grants leases up to an adaptive limit and
directs everyone else to wait as **pending**, **parking** or **dormant** by
predicted wait, waking dormant servers when their turn comes. The arithmetic
(directives, wait prediction, leases, AIMD, history) is in :mod:`.policy`; the
wire messages in :mod:`.messages`. Controllers of interchangeable resources in several workflow groups
form a :class:`Council` (routine 600: redirect load to peers with headroom), overseen by an
:class:`Oversight` role (issue 21; docs/council.md). All four roles are sans-I/O state machines
(``handle(msg, sender, now)`` / ``tick(now)`` returning effects); the server's
host effects are :class:`RunStage`, :class:`AbortStage`, :class:`SetPower`,
:class:`PowerOff` and :class:`PowerOn`.
"""

from protocols.workflow.controller import ControllerState, ResourceController
from protocols.workflow.council import Council, CouncilConfig, MitState
from protocols.workflow.messages import (
    AccessDeny,
    AccessGrant,
    AccessRequest,
    Directive,
    Hello,
    LeaseLost,
    LeaseRenew,
    LeaseRenewed,
    NoWorkflow,
    Provision,
    ProxyBatch,
    ProxyReply,
    Release,
    ReleaseAck,
    ResourceRef,
    ResourceReport,
    StageDone,
    StageFailed,
    StageReport,
    StageSpec,
    StatusPing,
    Wake,
    WaveNotice,
    Workflow,
    WorkflowDone,
)
from protocols.workflow.oversight import Oversight
from protocols.workflow.proxy import Proxy
from protocols.workflow.server import (
    AbortStage,
    PowerOff,
    PowerOn,
    RunStage,
    Server,
    ServerState,
    SetPower,
)
from protocols.workflow.wake import PowerOnMachine, WakeAgent
from protocols.workflow.workflow_controller import WorkflowController

__all__ = [
    "AbortStage",
    "AccessDeny",
    "AccessGrant",
    "AccessRequest",
    "ControllerState",
    "Council",
    "CouncilConfig",
    "MitState",
    "Oversight",
    "Directive",
    "Hello",
    "LeaseLost",
    "LeaseRenew",
    "LeaseRenewed",
    "NoWorkflow",
    "PowerOff",
    "PowerOn",
    "PowerOnMachine",
    "Provision",
    "Proxy",
    "ProxyBatch",
    "ProxyReply",
    "Release",
    "ReleaseAck",
    "ResourceController",
    "ResourceRef",
    "ResourceReport",
    "RunStage",
    "Server",
    "ServerState",
    "SetPower",
    "StageDone",
    "StageFailed",
    "StageReport",
    "StageSpec",
    "StatusPing",
    "Wake",
    "WakeAgent",
    "WaveNotice",
    "Workflow",
    "WorkflowController",
    "WorkflowDone",
]
