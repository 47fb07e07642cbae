"""The plug-ins: one line per protocol, the only place the core learns their names.

Each entry is a folder ``topologies/<name>/`` whose ``__init__`` defines
``PLUGIN`` (:class:`topologies.plugin.Plugin`): its actor kinds, checkers,
report sections and commands. Adding a protocol is a folder in ``protocols/``,
a folder here, and one line below.
"""

PLUGINS: tuple[str, ...] = (
    "pingpong",
    "workflow",
    "rack",
    "edge",
    "workload",
    "deps",
)
