"""Dependency-aware startup (protocol 2, ``shared/seeds/001_9781712fad791114.txt``).

:mod:`protocols.deps.graph`: the dependency graph, problems and the startup
plan (pure, networkx). :mod:`protocols.deps.sources`: reading dependency
files, systemd unit directories and compose files into a graph.
"""

from protocols.deps.graph import (DepGraph, Dependency, Plan, Problem, Service, Step, Ticket, Workflow, check_plan,
                                  plan, problems)

__all__ = ["DepGraph", "Dependency", "Plan", "Problem", "Service", "Step", "Ticket", "Workflow", "check_plan",
           "plan", "problems"]
