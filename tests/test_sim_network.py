"""SimNetwork on its own: latency, loss, duplication, FIFO and reordering, partitions.

The network only decides delivery times (``transmit``) and whether a due
delivery may still arrive (``arrive``); these tests play the driver's part with
a tiny loop. Seeded tests name their seed in every assertion message.
"""

from __future__ import annotations

import heapq
import math
import random

import pytest

from transport.sim import Exponential, Fixed, LinkSpec, Normal, SimNetwork, Uniform

NODES = ["a", "b", "c", "d", "e"]


def net_with(seed: int = 1, **spec) -> SimNetwork:
    return SimNetwork(seed, default=LinkSpec(**spec), nodes=NODES)


def send_many(net: SimNetwork, n: int, src: str = "a", dst: str = "b", gap: float = 0.0001) -> list[tuple[float, int]]:
    """Send n numbered messages src->dst, one every ``gap`` s; return (arrival, number) in arrival order."""
    out = []
    for i in range(n):
        for t in net.transmit(src, dst, i * gap):
            out.append((t, i))
    return sorted(out)  # (time, number): ties keep send order, as the driver's seq does


# -- loss, duplication ------------------------------------------------------------

def test_loss_one_drops_everything_and_zero_drops_nothing():
    net = net_with(loss=1.0)
    assert send_many(net, 200) == []
    assert net.counters()["dropped_loss"] == 200
    assert net.counters()["sent"] == 200

    net = net_with(loss=0.0)
    assert len(send_many(net, 200)) == 200
    assert net.counters()["dropped_loss"] == 0


def test_partial_loss_is_roughly_its_probability():
    for seed in range(3):
        net = net_with(seed, loss=0.3)
        got = len(send_many(net, 2000))
        assert 1200 < got < 1600, f"seed {seed}: {got} of 2000 arrived with loss=0.3"


def test_duplicate_one_doubles_every_message():
    net = net_with(duplicate=1.0)
    arrivals = send_many(net, 100)
    assert len(arrivals) == 200
    assert sorted(i for _, i in arrivals) == sorted(list(range(100)) * 2)
    assert net.counters()["duplicated"] == 100


def test_each_duplicate_gets_its_own_latency_sample():
    net = net_with(7, duplicate=1.0, latency=Uniform(0.0, 1.0))
    pairs = [net.transmit("a", "b", 10.0 * i) for i in range(50)]  # far apart: FIFO never binds
    assert all(len(p) == 2 for p in pairs)
    # the copy is FIFO behind the original: max(its own sample, the original's arrival)
    assert all(p[1] >= p[0] for p in pairs), "seed 7: a copy overtook its original on a FIFO link"
    assert sum(p[0] != p[1] for p in pairs) > 15, "seed 7: duplicate copies share their latency"


# -- FIFO and reordering --------------------------------------------------------------

@pytest.mark.parametrize("seed", range(5))
def test_links_are_fifo_without_reordering_even_with_random_latency(seed):
    net = net_with(seed, latency=Uniform(0.001, 0.05))
    arrivals = send_many(net, 500, gap=0.0005)  # many in flight at once
    order = [i for _, i in arrivals]
    assert order == list(range(500)), f"seed {seed}: link reordered messages with reorder=0"


def test_fifo_state_is_pruned_but_still_binding():
    net = SimNetwork(3, default=LinkSpec(latency=Uniform(0.0, 1.0)), nodes=[f"n{i}" for i in range(300)])
    rng = random.Random(3)
    last: dict[tuple[str, str], float] = {}
    now = 0.0
    for _ in range(30_000):
        now += 0.0002
        s, d = f"n{rng.randrange(300)}", f"n{rng.randrange(300)}"
        (t,) = net.transmit(s, d, now)
        assert t >= last.get((s, d), 0.0), "seed 3: FIFO broken after pruning"
        last[(s, d)] = t
    assert len(net._fifo) < 20_000, "FIFO table is not pruned"


def test_reorder_produces_out_of_order_arrivals_for_some_seed():
    outcomes = {}
    for seed in range(5):
        net = net_with(seed, latency=Uniform(0.001, 0.01), reorder=0.2)
        order = [i for _, i in send_many(net, 300, gap=0.001)]
        inversions = sum(1 for x, y in zip(order, order[1:]) if x > y)
        outcomes[seed] = inversions
        assert net.counters()["reordered"] > 0, f"seed {seed}: nothing picked for reordering"
        assert len(order) == 300, f"seed {seed}: reordering lost or added messages"
    assert any(v > 0 for v in outcomes.values()), f"no out-of-order arrival for seeds 0-4: {outcomes}"


def test_fixed_latency_is_fifo_by_construction():
    net = net_with(latency=Fixed(0.01))
    assert [i for _, i in send_many(net, 100)] == list(range(100))
    assert net.transmit("a", "b", 5.0) == (5.01,)


# -- latency distributions ---------------------------------------------------------------

@pytest.mark.parametrize(
    "dist",
    [Fixed(0.002), Uniform(0.001, 0.005), Exponential(0.01, base=0.002), Normal(0.003, 0.002), Normal(0.0, 0.0)],
    ids=repr,
)
def test_latency_samples_stay_in_bounds(dist):
    rng = random.Random(11)
    lo, hi = dist.bounds()
    samples = [dist.sample(rng) for _ in range(5000)]
    assert all(lo <= s <= hi for s in samples), f"seed 11: {dist!r} sampled outside [{lo}, {hi}]"
    assert all(s >= 0 for s in samples)


def test_normal_is_clipped_at_zero_and_exponential_has_its_mean():
    rng = random.Random(5)
    assert min(Normal(0.001, 0.01).sample(rng) for _ in range(2000)) == 0.0
    mean = sum(Exponential(0.01, base=0.005).sample(rng) for _ in range(20000)) / 20000
    assert math.isclose(mean, 0.015, rel_tol=0.05), f"seed 5: mean {mean}"


def test_default_link_latency_is_uniform_1_to_5_ms():
    net = SimNetwork(2, nodes=NODES)
    times = [net.transmit("a", b, 10.0 * i)[0] - 10.0 * i for i, b in enumerate(["b", "c", "d"] * 100)]
    assert all(0.001 <= d <= 0.005 + 1e-12 for d in times), "seed 2"


def test_same_node_messages_use_the_local_spec():
    net = SimNetwork(1, nodes=NODES, default=LinkSpec(loss=1.0))
    assert net.transmit("a", "a", 1.0) == (1.0,)  # local: reliable, instant by default
    net = SimNetwork(1, nodes=NODES, local=LinkSpec(latency=Fixed(0.0005)))
    assert net.transmit("a", "a", 1.0) == (1.0005,)


def test_set_link_overrides_the_default_per_direction():
    net = SimNetwork(1, nodes=NODES)
    net.set_link("a", "b", LinkSpec(loss=1.0))
    assert net.transmit("a", "b", 0.0) == ()
    assert len(net.transmit("b", "a", 0.0)) == 1
    net.set_link("c", "d", LinkSpec(latency=Fixed(1.0)), both=True)
    assert net.transmit("c", "d", 0.0) == (1.0,) and net.transmit("d", "c", 0.0) == (1.0,)
    net.clear_link("a", "b")
    assert len(net.transmit("a", "b", 0.0)) == 1


def test_same_seed_same_decisions_different_seed_different():
    def run(seed):
        net = net_with(seed, loss=0.2, duplicate=0.1, reorder=0.1)
        return send_many(net, 300)
    assert run(4) == run(4)
    assert run(4) != run(5)


# -- partitions ------------------------------------------------------------------------

def test_partition_islands_with_named_and_unnamed_nodes():
    net = SimNetwork(1, nodes=NODES)
    net.partition([{"a", "b"}, {"c"}])  # d and e form the extra island
    reach = {(s, d) for s in NODES for d in NODES if net.can_reach(s, d)}
    expected = {(s, d) for group in ({"a", "b"}, {"c"}, {"d", "e"}) for s in group for d in group}
    assert reach == expected
    assert net.transmit("a", "c", 0.0) == ()
    assert net.transmit("d", "a", 0.0) == ()
    assert len(net.transmit("a", "b", 0.0)) == 1
    assert len(net.transmit("d", "e", 0.0)) == 1
    assert net.counters()["dropped_partition"] == 2
    assert net.unnamed() == {"d", "e"}


def test_a_new_partition_replaces_the_old_one():
    net = SimNetwork(1, nodes=NODES)
    net.partition([{"a"}])
    net.partition([{"b"}])
    assert net.can_reach("a", "c") and not net.can_reach("b", "a")


def test_one_way_cut_blocks_only_one_direction():
    net = SimNetwork(1, nodes=NODES)
    net.cut("a", "b")
    assert not net.can_reach("a", "b") and net.can_reach("b", "a")
    assert net.transmit("a", "b", 0.0) == ()
    assert len(net.transmit("b", "a", 0.0)) == 1
    assert net.can_reach("a", "c")


def test_heal_restores_every_link():
    net = SimNetwork(1, nodes=NODES)
    net.partition([{"a"}, {"b"}])
    net.cut("c", "d")
    net.heal()
    assert all(net.can_reach(s, d) for s in NODES for d in NODES)
    assert not net.blocked and net.islands() == [] and net.cuts() == set()


def test_a_message_in_flight_when_a_partition_starts_is_not_delivered():
    net = SimNetwork(1, nodes=NODES, default=LinkSpec(latency=Fixed(1.0)))
    queue = [(t, i, "a", "b") for i, t in enumerate(net.transmit("a", "b", 0.0))]
    queue += [(t, 10 + i, "c", "d") for i, t in enumerate(net.transmit("c", "d", 0.0))]
    net.partition([{"a"}, {"b"}])  # at t=0.5, while both are in flight; c, d share the extra island
    delivered = []
    heapq.heapify(queue)
    while queue:
        _, _, s, d = heapq.heappop(queue)
        if net.arrive(s, d):
            delivered.append((s, d))
    assert delivered == [("c", "d")]
    assert net.counters()["dropped_partition"] == 1 and net.counters()["delivered"] == 1


def test_a_message_sent_during_a_partition_stays_dropped_after_heal():
    net = SimNetwork(1, nodes=NODES)
    net.cut("a", "b")
    assert net.transmit("a", "b", 0.0) == ()
    net.heal()
    assert len(net.transmit("a", "b", 0.0)) == 1


# -- bad configuration --------------------------------------------------------------

@pytest.mark.parametrize(
    "make",
    [
        lambda: Fixed(-0.1),
        lambda: Uniform(-1.0, 1.0),
        lambda: Uniform(0.5, 0.1),
        lambda: Exponential(-1.0),
        lambda: Exponential(0.1, base=-1.0),
        lambda: Normal(-0.01, 0.1),
        lambda: Normal(0.01, -0.1),
        lambda: Fixed(float("nan")),
        lambda: Fixed(float("inf")),
        lambda: LinkSpec(loss=1.5),
        lambda: LinkSpec(duplicate=-0.1),
        lambda: LinkSpec(reorder=2),
        lambda: LinkSpec(loss=True),
        lambda: LinkSpec(latency=0.003),
        lambda: SimNetwork(seed="seven"),
        lambda: SimNetwork(1, default=0.5),
        lambda: SimNetwork(1, nodes=["a/b"]),
        lambda: SimNetwork(1, nodes=[""]),
    ],
)
def test_bad_configuration_raises_value_error(make):
    with pytest.raises(ValueError):
        make()


def test_partition_and_cut_reject_unknown_or_misused_nodes():
    net = SimNetwork(1, nodes=NODES)
    with pytest.raises(ValueError, match="unknown node 'zz'"):
        net.partition([{"a"}, {"zz"}])
    with pytest.raises(ValueError, match="two islands"):
        net.partition([{"a", "b"}, {"b"}])
    with pytest.raises(ValueError, match="set of node names"):
        net.partition(["ab", "cd"])  # strings are not islands
    with pytest.raises(ValueError, match="unknown node"):
        net.cut("a", "zz")
    with pytest.raises(ValueError, match="itself"):
        net.cut("a", "a")
    with pytest.raises(ValueError, match="unknown node"):
        net.set_link("a", "zz", LinkSpec())
    assert not net.blocked, "a rejected partition must not take effect"


def test_time_must_not_go_backwards_and_a_seed_is_needed():
    net = SimNetwork(1, nodes=NODES)
    net.transmit("a", "b", 5.0)
    with pytest.raises(ValueError, match="backwards"):
        net.transmit("a", "b", 4.0)
    with pytest.raises(ValueError, match="no seed"):
        SimNetwork(nodes=NODES).transmit("a", "b", 0.0)
    net = SimNetwork(3)
    with pytest.raises(ValueError, match="already seeded"):
        net.seed = 4
