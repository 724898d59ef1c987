"""A handler for the receiver's RPC pattern that answers like the tutorial's rpc_server.py (plain-text numbers)."""

from tutorial_clients import fib as _fib


def fib(delivery) -> str:
    """The request body is a number as text; the reply is fib(n) as text."""
    return str(_fib(int(delivery.body)))
