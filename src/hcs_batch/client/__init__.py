"""Talking to an execution server over ZeroMQ: the implementation of the backend seam (:mod:`hcs_batch.backend`)."""

from ..backend import ConnectionLost, EventGap, ExecutionBackend, StreamItem
from .connection import ServerConnection, open_connection

__all__ = [
    "ConnectionLost",
    "EventGap",
    "ExecutionBackend",
    "ServerConnection",
    "StreamItem",
    "open_connection",
]
