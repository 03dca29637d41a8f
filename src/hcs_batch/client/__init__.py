"""Talking to an execution server: the backend seam and its ZeroMQ implementation."""

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
