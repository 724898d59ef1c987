"""A handler for the receiver's RPC pattern that answers like the tutorial's rpc_server.py (plain-text numbers)."""

from tutorial_clients import fib as _fib


def fib(delivery) -> str:
    """The request body is a number as text; the reply is fib(n) as text."""
    return str(_fib(int(delivery.body)))


def slow_fib(delivery) -> str:
    """fib, after 3 s of work: long enough to kill the responder in the middle of a request."""
    import time

    time.sleep(3)
    return fib(delivery)


def refuse(delivery) -> str:
    """Fail every request: the caller gets the reason at once."""
    raise ValueError(f"cannot answer {delivery.body!r}")


def oversized(delivery) -> str:
    """A reply over the limited broker's max_message_size (see conftest)."""
    from support import MAX_MESSAGE_SIZE

    return "x" * (MAX_MESSAGE_SIZE + 1000)


def thread_name(delivery) -> str:
    """The name of the thread the handler runs on (--inline-handler: the connection's, MainThread)."""
    import threading

    return threading.current_thread().name


def slow_above_20(delivery) -> str:
    """fib, after 3 s of work for n above 20: quick calls first, then one to restart the broker in the middle of."""
    import time

    if int(delivery.body) > 20:
        print(f"working on {int(delivery.body)}", flush=True)
        time.sleep(3)
    return fib(delivery)
