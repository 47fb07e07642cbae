"""Transports: the message codec, the in-memory transport and the simulated network.

Imports pyzmq, msgpack and attrs only; never an actor or a protocol.
"""
