"""Control-plane protocols as pure state machines (sans-I/O).

Each subpackage holds one protocol's messages and state machines. Nothing here
opens a socket, starts a thread, sleeps, reads a clock or uses the global random
source: time arrives as ``now``, randomness as an injected ``random.Random``.
"""
