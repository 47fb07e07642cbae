"""Shared helpers for the runtime tests.

Actor tests run real pykka threads, so some waiting is unavoidable: `wait_for`
polls a condition with a deadline (never asserting how long it took). Time
that the code under test reads comes from a VirtualClock wherever it matters.
"""

from __future__ import annotations

import threading
from typing import Callable

import pytest


def wait_for(pred: Callable[[], object], timeout: float = 5.0, what: str = "condition") -> object:
    """Poll ``pred`` until it is truthy; fail the test if ``timeout`` passes first."""
    ev = threading.Event()
    waited = 0.0
    step = 0.002
    while True:
        value = pred()
        if value:
            return value
        if waited >= timeout:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        ev.wait(step)
        waited += step
        step = min(step * 2, 0.05)


@pytest.fixture
def nodes():
    """Collects Nodes made by a test and shuts them all down afterwards."""
    made = []
    yield made
    for n in made:
        n.shutdown()


# --------------------------------------------------------------------------
# The slow tier: real processes, whole chaos runs, large seeded simulations.
# `pytest -m "not slow"` leaves them out for quick feedback; CI runs everything.
# --------------------------------------------------------------------------

SLOW_MODULES = {
    "test_rack_topology",       # racks.toml: simulated chaos of 144 actors and multi-process runs
    "test_boot_storm_topology",  # 1,000 servers as processes and in the simulator
    "test_edge_topology",       # 21 processes
    "test_launcher",            # every test starts node processes
    "test_multiprocess",        # node processes killed and restarted
    "test_hostile_transport",   # attacks on real node processes (issue 14)
    "test_wire_doc",            # a raw client against a real node process
    "test_readme_commands",     # every README command, real runs included
    "test_rack_sim",            # 102 seeded simulations of monitor fleets
    "test_workload_client",     # the workload service as 6 node processes, used by WorkloadClient and the CLI
    "test_deps_topology",       # coldstart.toml: 8 processes, one killed mid-start
}
SLOW_TESTS = {
    "test_without_admission_control_the_same_store_collapses",  # a simulated storm of failing transfers
    "test_remediation_scenarios_across_many_seeds",  # 10 rack remediation scenarios x 8 more seeds
    "test_boot_storm_recovers_within_a_second_of_a_2s_controller_isolation",  # two simulated boot storms
    "test_kill_and_pause_real_processes_and_recover",
    "test_partition_real_processes_through_the_fault_hooks",
    "test_chaos_cli_rejects_bad_arguments",            # one CLI process per case
    "test_chaos_cli_says_which_declared_checker_did_not_judge",
    "test_boot_storm_1000_servers_capacity_50",
    "test_proxy_aggregation_cuts_controller_inbound_messages_10x",
    "test_limit_rises_to_the_capacity_with_headroom_and_falls_when_latency_sags",
    "test_demo_exits_zero_and_leaves_event_logs",
    "test_readme_embedding_examples_run_when_pasted",
    "test_fleetplane_run_works_from_any_directory",
    "test_attack_watch_spray_is_refused_counted_and_memory_stays_flat",  # test_hostile_node: a node process
    "test_attack_flood_of_asks_whose_replies_dead_letter_does_not_delay_a_legit_ask",
    "test_attack_fault_control_from_a_stranger_is_refused_and_the_control_node_still_works",
    "test_attack_fault_control_is_off_without_the_option",
    "test_sigterm_stops_a_node_process_cleanly_with_an_actor_stuck_in_its_handler",
    "test_real_processes_survive_sigkill",             # test_workload_topology: 7 node processes, SIGKILL
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = item.module.__name__.rpartition(".")[2] if item.module else ""
        if module in SLOW_MODULES or item.originalname in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)
