"""A copy of a request already told dormant grants nothing (issue 16: ``no-grant-while-dormant`` said invalid in a
real ``fleetplane chaos topologies/boot_storm.toml --nemesis kill --target ctl`` run: 37 grants, 9 s after the
servers went dormant, to requests a proxy resent to the restarted controller).

A proxy remembers a server's :class:`AccessRequest` and resends it, with its original stamp, until an answer
comes back; a controller killed before its answer left, or an answer crossing a resend, gives the controller a
copy of a request it has already answered "dormant". The server is powered off by then. The controller used to
take any request from a dormant waiter as "it is awake: it asked" and grant it (from a reserved slot, or a free
one). Now a request no newer (by the server's own stamp) than the one the dormant directive answered is a
copy: the controller says dormant again (so the proxy stops resending) and grants nothing; a request the woken
server sends is newer, and is granted. A controller restarted from its record knows the stamp it had heard.
"""

from __future__ import annotations

import copy
import random

from protocols.core import Emit, Persist, Send
from protocols.workflow import AccessDeny, AccessGrant, AccessRequest, Directive, ProxyBatch, Release, ResourceController

PX = "px0/proxy"


def ctl(durable=None, tick=True, **kw) -> ResourceController:
    args = {"limit": 1, "grace": 0.0, "expected": 30.0, "wake_ahead": 0.0, "pending_max": 1.0, "parking_max": 2.0}
    args.update(kw)
    c = ResourceController("img", rng=random.Random(len(str(durable))), durable=durable, **args)
    if tick:
        c.tick(0.0)
    return c


def req(i, stamp, seq=1, boot=1, slept=0) -> AccessRequest:
    """``slept``: the server's dormant spells so far (a woken server asks with one more than when told dormant)."""
    return AccessRequest(f"s{i}/server", "img", boot, seq, "image", 0, 30.0, "", stamp, slept=slept)


def grants(fx):
    out = [e.msg for e in fx if isinstance(e, Send) and isinstance(e.msg, AccessGrant)]
    for e in fx:
        if isinstance(e, Send) and type(e.msg).__name__ == "ProxyReply":
            out += [x for x in e.msg.items if isinstance(x, AccessGrant)]
    return out


def denies(fx):
    out = [e.msg for e in fx if isinstance(e, Send) and isinstance(e.msg, AccessDeny)]
    for e in fx:
        if isinstance(e, Send) and type(e.msg).__name__ == "ProxyReply":
            out += [x for x in e.msg.items if isinstance(x, AccessDeny)]
    return out


def _dormant_s2(c):
    g = grants(c.handle(req(1, 0.0), "s1/server", 0.0))[0]
    (d,) = denies(c.handle(ProxyBatch(PX, 1, (req(2, 0.5),)), PX, 0.5))
    assert d.directive is Directive.DORMANT
    return g


def test_a_resent_copy_of_a_request_told_dormant_is_not_granted_from_the_slot_reserved_for_it():
    c = ctl()
    g = _dormant_s2(c)
    c.handle(Release("s1/server", "img", 1, g.lease, g.epoch, "image", "ok", 30.0), "s1/server", 30.0)
    assert "s2/server" in c.reserved  # woken into a reserved slot; powered off still
    fx = c.handle(ProxyBatch(PX, 2, (req(2, 0.5),)), PX, 31.0)  # the proxy resends the old request
    assert not grants(fx), "granted to a server that is powered off"
    (d,) = denies(fx)
    assert d.directive is Directive.DORMANT  # the proxy has its answer and stops resending
    assert "s2/server" in c.reserved and c.reserved["s2/server"].mode is Directive.DORMANT
    fx = c.handle(ProxyBatch(PX, 3, (req(2, 40.0, slept=1),)), PX, 40.0)  # the woken server asks: its next spell
    assert [x.server for x in grants(fx)] == ["s2/server"]


def test_a_resent_copy_of_a_request_told_dormant_is_not_granted_a_free_slot():
    c = ctl(wake_retry=1000.0)
    g = _dormant_s2(c)
    c.limit = 2  # a slot frees for it without a reservation
    fx = c.handle(ProxyBatch(PX, 2, (req(2, 0.5),)), PX, 5.0)
    assert [x.server for x in grants(fx)] == [], "granted to a server that is powered off"
    c.handle(Release("s1/server", "img", 1, g.lease, g.epoch, "image", "ok", 30.0), "s1/server", 30.0)


def test_a_controller_restarted_from_its_record_does_not_grant_a_copy_either():
    disk: dict = {}
    c = ctl(durable={}, tick=False)

    def keep(fx):
        for e in fx:
            if isinstance(e, Persist):
                disk[e.key] = copy.deepcopy(e.data)
        return fx
    keep(c.tick(0.0))
    keep(c.handle(req(1, 0.0), "s1/server", 0.0))
    fx = keep(c.handle(ProxyBatch(PX, 1, (req(2, 0.5),)), PX, 0.5))
    assert denies(fx)[0].directive is Directive.DORMANT
    assert "meta" in disk and disk["s/s2/server"]["wait"][7] == "dormant"
    new = ctl(durable=copy.deepcopy(disk))  # killed and restarted: s1 still holds, s2 waits dormant
    assert new.restored is not None
    fx = new.handle(ProxyBatch(PX, 2, (req(2, 0.5),)), PX, 3.0)  # the proxy resends to the new incarnation
    assert not grants(fx), "granted to a server that is powered off"
    assert [d.directive for d in denies(fx)] == [Directive.DORMANT]
    new.limit = 2
    fx = new.handle(ProxyBatch(PX, 3, (req(2, 0.5),)), PX, 4.0)
    assert not grants(fx), "granted to a server that is powered off"
    fx = new.handle(ProxyBatch(PX, 4, (req(2, 9.0, slept=1),)), PX, 9.0)  # awake now (woken, or by its alarm)
    assert [x.server for x in grants(fx)] == ["s2/server"]
    assert not [e for e in fx if isinstance(e, Emit) and e.kind == "controller.ignored"
                and e.fields.get("server") == "s2/server"]


def test_a_later_attempt_of_the_request_told_dormant_sent_before_the_server_obeyed_is_a_copy_too():
    """The CI run of fleetplane chaos boot_storm --nemesis kill --target ctl (seed 3) that was still invalid: the
    restarted controller told s2 dormant in answer to a direct attempt of its request (stamp 5.7); a later attempt
    of the same request, sent through the proxy before s2 got that answer (stamp 6.7), reached the controller 2.5 s
    later and was taken as "awake: it asked" - parked, then granted while s2 was powered off (41 such grants). Stamps
    cannot tell it: they are newer. What tells it: the server counts its dormant spells (AccessRequest.slept), and a
    request of the spell the directive answered is a copy; the woken server's requests are of the next spell."""
    c = ctl(wake_retry=1000.0)
    g = grants(c.handle(req(1, 0.0), "s1/server", 0.0))[0]
    (d,) = denies(c.handle(req(2, 5.7), "s2/server", 7.9))  # a direct attempt
    assert d.directive is Directive.DORMANT
    c.limit = 2  # a slot frees for it
    late = AccessRequest("s2/server", "img", 1, 1, "image", 0, 30.0, "", 6.7, attempt=4)  # via the proxy, sent earlier
    fx = c.handle(ProxyBatch(PX, 1, (late,)), PX, 10.4)
    assert not grants(fx), "granted to a server that is powered off"
    assert [x.directive for x in denies(fx)] == [Directive.DORMANT]
    awake = AccessRequest("s2/server", "img", 1, 1, "image", 0, 30.0, "", 17.9, slept=1)  # woken by its alarm
    fx = c.handle(ProxyBatch(PX, 2, (awake,)), PX, 18.0)
    assert [x.server for x in grants(fx)] == ["s2/server"]
    c.handle(Release("s1/server", "img", 1, g.lease, g.epoch, "image", "ok", 30.0), "s1/server", 30.0)
