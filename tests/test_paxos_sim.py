"""Paxos in the deterministic simulator: safety over many seeds and fault schedules, liveness after healing.

Source: shared/seeds/002_97a4443258b93c4d.txt, FIGS. 3A-3B and 6-7 (a minimum
number must accept; without consensus nothing is accepted; accepted values are
transmitted to the other monitors); DESIGN.md protocol 3 and the consensus
invariants: no two different values are chosen for one instance; agreement is
reached once a quorum can talk.

The harness: one simulator node per participant (``m0/paxos``...), each a
``PaxosNode`` wrapped in ``Host``, which carries out ``Persist`` into a per-node
dict (the "disk") *in effect order*, i.e. before the sends that follow it, and
turns an injected ``paxostest.Propose`` into the ``propose`` API call. A crash
loses everything but the disk; a restart builds the node from the disk.
Invariants are judged from the event log (every ``paxos.chosen`` event) and
from every learner's final state. Every assertion names its seed.
"""

from __future__ import annotations

import copy
import json
import random
from collections import defaultdict

from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from actors.simulator import Simulator
from protocols.consensus import PaxosNode, Persist
from transport.codec import message
from transport.sim import LinkSpec, SimNetwork, Uniform

FAULTY = LinkSpec(latency=Uniform(0.001, 0.02), loss=0.2, duplicate=0.1, reorder=0.2,
                  reorder_delay=Uniform(0.01, 0.2))
LOSSY = LinkSpec(latency=Uniform(0.001, 0.05), loss=0.5, duplicate=0.1, reorder=0.3,
                 reorder_delay=Uniform(0.05, 0.5))  # votes mostly lost: proposers must adopt
CLEAN = LinkSpec(latency=Uniform(0.001, 0.005))
SEEDS_5 = 200
SEEDS_7 = 100
LIVENESS_BOUND = 10.0  # virtual seconds from healing until every member knows every proposed instance


@message("paxostest.Propose")
class Propose:
    instance: str
    value: str


class Host:
    """A thin host for one PaxosNode: the Propose command in, every other message passed through."""

    def __init__(self, node: PaxosNode):
        self.node = node
        self.tick_interval = None

    def tick(self, now):
        return self.node.tick(now)

    def handle(self, msg, sender, now):
        if isinstance(msg, Propose):
            return self.node.propose(msg.instance, msg.value, now)
        return self.node.handle(msg, sender, now)


class Cluster:
    def __init__(self, seed: int, n: int, *, link: LinkSpec = FAULTY, quorum: int | None = None,
                 learners: str = "all"):
        self.seed = seed
        self.learners = learners
        self.members = [f"m{i}/paxos" for i in range(n)]
        self.sim = Simulator(seed, SimNetwork(default=link))
        self.disk: dict[str, dict] = {m: {} for m in self.members}
        self.quorum = quorum
        for m in self.members:
            self.sim.add(m, Host(self._node(m)), host=self._persist)
        self.heal_at: float | None = None

    def _node(self, m):
        return PaxosNode(m, self.members, self.sim.rng(m), quorum=self.quorum, durable=copy.deepcopy(self.disk[m]),
                         learners=self.learners)

    def _persist(self, effect, address, sim):
        assert isinstance(effect, Persist), effect
        self.disk[address][effect.key] = copy.deepcopy(effect.data)

    # faults and commands, usable from sim.schedule callbacks
    def crash(self, m):
        self.sim.crash(m)

    def restart(self, m):
        if not self.sim.alive(m):
            self.sim.restart(m, Host(self._node(m)))

    def propose(self, m, instance, value):
        self.sim.send(m, Propose(instance, value))

    def heal_all(self):
        self.sim.heal()
        self.sim.network.default = CLEAN
        for m in self.members:
            self.restart(m)
        self.heal_at = self.sim.now

    def at(self, t, fn, *args):
        self.sim.schedule(t, lambda: fn(*args))

    # judging
    def events(self):
        return self.sim.event_log.events()

    def nodes(self):
        return {m: self.sim.machine(m).node for m in self.members}


def check_safety(cluster: Cluster) -> dict[str, object]:
    """At most one value chosen per instance, from the event log and from every learner's final state."""
    seed = cluster.seed
    chosen: dict[str, set] = defaultdict(set)
    evs = cluster.events()
    for e in evs:
        if e["kind"] == "paxos.chosen":
            chosen[e["fields"]["instance"]].add(json.dumps(e["fields"]["value"], sort_keys=True))
        assert e["kind"] != "paxos.conflict", f"seed={seed}: conflict {e}"
    for m, node in cluster.nodes().items():
        for inst, v in node.chosen_values().items():
            chosen[inst].add(json.dumps(v, sort_keys=True))
    # Ground truth, whatever any learner heard: a value is chosen once a quorum of
    # acceptors has accepted it in one ballot (each acceptor's paxos.accepted event).
    quorum = cluster.quorum or len(cluster.members) // 2 + 1
    voters: dict[tuple, set] = defaultdict(set)
    for e in evs:
        if e["kind"] == "paxos.accepted":
            f = e["fields"]
            key = (f["instance"], json.dumps(f["ballot"], sort_keys=True), json.dumps(f["value"], sort_keys=True))
            voters[key].add(f"{e['node']}/{e['actor']}")
    for (inst, _, value), who in voters.items():
        if len(who) >= quorum:
            chosen[inst].add(value)
    bad = {i: vs for i, vs in chosen.items() if len(vs) > 1}
    assert not bad, f"seed={seed}: two values chosen for one instance: {bad}"
    return {i: json.loads(next(iter(vs))) for i, vs in chosen.items()}


def proposed_instances(cluster):
    return {e["fields"]["instance"] for e in cluster.events()
            if e["kind"] == "paxos.propose" and e["fields"]["outcome"] == "started"}


def check_liveness(cluster: Cluster) -> float:
    """Every proposed instance is known to every member; returns the time from healing to the last learner."""
    seed = cluster.seed
    wanted = proposed_instances(cluster)
    for m, node in cluster.nodes().items():
        missing = wanted - set(node.chosen_values())
        assert not missing, f"seed={seed}: {m} never learned {sorted(missing)} after healing at {cluster.heal_at}"
    last = max((e["time"] for e in cluster.events() if e["kind"] == "paxos.chosen"), default=cluster.heal_at)
    return max(0.0, last - cluster.heal_at)


def random_faults(cluster: Cluster, rng: random.Random, *, until: float, proposers: int, instances: int,
                  crash_rate: float = 0.6, partition_every: float = 1.0):
    """A seeded fault schedule over [0, until): proposals, partitions, crashes and restarts; heal at ``until``."""
    members = cluster.members
    nodes = [m.split("/")[0] for m in members]
    for k in range(instances):
        inst = f"condition/sector-{k}"
        t0 = rng.uniform(0, until * 0.7)
        for who in rng.sample(members, proposers):  # concurrent proposers: within 50 ms of each other
            cluster.at(t0 + rng.uniform(0, 0.05), cluster.propose, who, inst, f"{who.split('/')[0]}:{k}")
    t = 0.0
    while t < until:
        t += rng.expovariate(1 / partition_every)
        if t >= until:
            break
        roll = rng.random()
        if roll < 0.45:
            shuffled = rng.sample(nodes, len(nodes))
            cut = rng.randint(1, len(nodes) - 1)
            cluster.at(t, cluster.sim.partition, [shuffled[:cut], shuffled[cut:]])
        elif roll < 0.6:
            cluster.at(t, cluster.sim.heal)
        elif roll < 0.6 + crash_rate * 0.4:
            m = rng.choice(members)
            cluster.at(t, cluster.crash, m)
            back = t + rng.uniform(0.1, 3.0)
            if back < until:
                cluster.at(back, cluster.restart, m)
    cluster.at(until, cluster.heal_all)


def run_seed(seed, n, *, proposers=3, instances=3, fault_time=8.0, link=FAULTY, learners="all"):
    cluster = Cluster(seed, n, link=link, learners=learners)
    random_faults(cluster, random.Random(f"faults/{seed}"), until=fault_time, proposers=proposers,
                  instances=instances)
    cluster.sim.run(until=fault_time + LIVENESS_BOUND)
    decided = check_safety(cluster)
    took = check_liveness(cluster)
    assert took <= LIVENESS_BOUND
    return cluster, decided, took


# -- safety and liveness over many seeds ----------------------------------------------------------------


def test_five_participants_many_seeds_safe_and_live_after_healing():
    times, contested = [], 0
    for seed in range(SEEDS_5):
        cluster, decided, took = run_seed(seed, 5)
        assert len(decided) == 3, f"seed={seed}: {decided}"
        times.append(took)
        proposals = defaultdict(set)
        for e in cluster.events():
            if e["kind"] == "paxos.propose" and e["fields"]["outcome"] == "started":
                proposals[e["fields"]["instance"]].add(e["fields"]["value"])
        contested += sum(len(v) > 1 for v in proposals.values())
    assert contested > SEEDS_5, f"concurrent proposers with different values were the common case ({contested})"
    times.sort()
    print(f"\n5 participants, {SEEDS_5} seeds, {contested} contested instances: "
          f"learn-after-heal p50={times[len(times) // 2]:.3f}s max={times[-1]:.3f}s")


def test_seven_participants_many_seeds_safe_and_live_after_healing():
    times = []
    for seed in range(1000, 1000 + SEEDS_7):
        _, decided, took = run_seed(seed, 7, proposers=4, instances=2)
        assert len(decided) == 2, f"seed={seed}: {decided}"
        times.append(took)
    times.sort()
    print(f"\n7 participants, {SEEDS_7} seeds: learn-after-heal p50={times[len(times) // 2]:.3f}s max={times[-1]:.3f}s")


def test_distinguished_learner_many_seeds_safe_and_live_after_healing():
    """learners="proposer" (votes to the proposer only, the rest learn from Chosen): same guarantees."""
    for seed in range(500, 500 + SEEDS_7):
        _, decided, took = run_seed(seed, 5, learners="proposer")
        assert len(decided) == 3, f"seed={seed}: {decided}"


def test_crashes_and_restarts_of_acceptors_with_restore_never_break_safety():
    """A crash storm: every few hundred ms some acceptor dies and comes back from its disk."""
    for seed in range(200, 215):
        cluster = Cluster(seed, 5)
        rng = random.Random(seed)
        for k, who in enumerate(cluster.members[:3]):
            cluster.at(0.01 * k, cluster.propose, who, "authority/dc-1", who)
        t = 0.0
        while t < 6.0:
            t += rng.uniform(0.005, 0.3)
            m = rng.choice(cluster.members)
            cluster.at(t, cluster.crash, m)
            cluster.at(t + rng.uniform(0.001, 0.5), cluster.restart, m)
        cluster.at(6.6, cluster.heal_all)
        cluster.sim.run(until=6.6 + LIVENESS_BOUND)
        decided = check_safety(cluster)
        check_liveness(cluster)
        assert decided["authority/dc-1"] in cluster.members[:3], f"seed={seed}: {decided}"
        assert sum(e["kind"] == "sim.restart" for e in cluster.events()) > 10


def test_minority_island_chooses_nothing_and_learns_after_healing():
    """A 2-of-5 island: its proposals never win while cut off; the 3-island decides; healing spreads both."""
    for seed in range(5):
        cluster = Cluster(seed, 5, link=CLEAN)
        sim = cluster.sim
        sim.partition([["m0", "m1"], ["m2", "m3", "m4"]])
        cluster.at(0.1, cluster.propose, "m0/paxos", "condition/rack-7", "powered-off")
        cluster.at(0.2, cluster.propose, "m1/paxos", "condition/rack-7", "needs-repair")
        cluster.at(0.3, cluster.propose, "m3/paxos", "authority/sector-1", "m3/paxos")
        sim.run(until=30.0)
        minority = [e for e in cluster.events() if e["kind"] == "paxos.chosen"
                    and (e["node"] in ("m0", "m1") or e["fields"]["instance"] == "condition/rack-7")]
        assert minority == [], f"seed={seed}: chosen without a quorum: {minority[:3]}"
        nodes = cluster.nodes()
        assert all(nodes[m].chosen("authority/sector-1") for m in cluster.members[2:]), f"seed={seed}"
        retries = sum(e["kind"] == "paxos.retry" for e in cluster.events())
        assert retries >= 4, f"seed={seed}: the minority proposers kept trying ({retries})"
        cluster.heal_all()
        sim.run(until=30.0 + LIVENESS_BOUND)
        decided = check_safety(cluster)
        took = check_liveness(cluster)
        assert set(decided) == {"condition/rack-7", "authority/sector-1"}, f"seed={seed}"
        assert took < LIVENESS_BOUND, f"seed={seed}"


def test_quorum_of_four_out_of_five_needs_four():
    """A configured minimum number (4 of 5): 3 reachable members are not enough."""
    cluster = Cluster(7, 5, link=CLEAN, quorum=4)
    cluster.sim.partition([["m0", "m1", "m2"], ["m3", "m4"]])
    cluster.at(0.1, cluster.propose, "m0/paxos", "x", "v")
    cluster.sim.run(until=20.0)
    assert not any(e["kind"] == "paxos.chosen" for e in cluster.events())
    cluster.heal_all()
    cluster.sim.run(until=30.0)
    assert check_safety(cluster) == {"x": "v"}
    check_liveness(cluster)


def test_one_seed_is_one_run():
    a, _, _ = run_seed(11, 5)
    b, _, _ = run_seed(11, 5)
    assert a.sim.event_log.lines() == b.sim.event_log.lines()


# -- hypothesis: random fault schedules ------------------------------------------------------------------


OP = st.one_of(
    st.tuples(st.just("partition"), st.floats(0, 6), st.lists(st.integers(0, 6), min_size=1, max_size=4, unique=True)),
    st.tuples(st.just("heal"), st.floats(0, 6), st.just([])),
    st.tuples(st.just("crash"), st.floats(0, 6), st.lists(st.integers(0, 6), min_size=1, max_size=3, unique=True)),
    st.tuples(st.just("restart"), st.floats(0, 6), st.lists(st.integers(0, 6), min_size=1, max_size=3, unique=True)),
    st.tuples(st.just("propose"), st.floats(0, 6), st.lists(st.integers(0, 6), min_size=1, max_size=3, unique=True)),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31), n=st.sampled_from([5, 7]), ops=st.lists(OP, max_size=25),
       loss=st.sampled_from([0.0, 0.1, 0.3]), dup=st.sampled_from([0.0, 0.2]),
       learners=st.sampled_from(["all", "proposer"]))
def test_random_fault_schedules_keep_safety_and_heal_to_agreement(seed, n, ops, loss, dup, learners):
    note(f"seed={seed} n={n} loss={loss} dup={dup} learners={learners} ops={ops}")
    link = LinkSpec(latency=Uniform(0.001, 0.02), loss=loss, duplicate=dup, reorder=0.2,
                    reorder_delay=Uniform(0.01, 0.1))
    cluster = Cluster(seed, n, link=link, learners=learners)
    members = cluster.members
    cluster.at(0.0, cluster.propose, members[0], "authority/dc-1", "m0")
    for kind, t, who in ops:
        picked = [members[i % n] for i in who]
        if kind == "partition":
            cluster.at(t, cluster.sim.partition, [[m.split("/")[0] for m in picked]])
        elif kind == "heal":
            cluster.at(t, cluster.sim.heal)
        elif kind == "crash":
            for m in picked:
                cluster.at(t, cluster.crash, m)
        elif kind == "restart":
            for m in picked:
                cluster.at(t, cluster.restart, m)
        else:
            for k, m in enumerate(picked):
                cluster.at(t, cluster.propose, m, f"condition/g{k % 2}", m.split("/")[0])
    cluster.at(6.5, cluster.heal_all)
    cluster.sim.run(until=6.5 + LIVENESS_BOUND)
    try:
        check_safety(cluster)
        check_liveness(cluster)
    except AssertionError as e:
        raise AssertionError(f"{e}\n  (hypothesis case: seed={seed} n={n} loss={loss} dup={dup} ops={ops})") from None
