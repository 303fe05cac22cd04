"""The contract's protocol entry point, `greeter.dispatch.Dispatcher` (greeter/protocol/dispatch.py)."""

from greeter.protocol.dispatch import Dispatcher, InvalidRequest, Reply, UnknownFunction

__all__ = ["Dispatcher", "InvalidRequest", "Reply", "UnknownFunction"]
