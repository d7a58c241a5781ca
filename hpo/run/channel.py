"""A worker process's line to its launcher: its events and log records, over a pipe of its own.

A queue shared by all workers holds a lock while one of them writes; a worker killed in that
moment (SIGKILL, the OOM killer) leaves it locked, and every other worker then hangs on its next
event and on exit. Each worker writing to a pipe only it writes to can damage nothing but its
own pipe, which the launcher drops with it. Imports nothing heavy: test probes use it too.
"""

from __future__ import annotations

import threading
from multiprocessing.connection import Connection
from typing import Any


class Channel:
    """The writing end, in the worker process; safe to use from several of its threads."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self._lock = threading.Lock()

    def put(self, item: Any) -> None:
        with self._lock:
            self.connection.send(item)

    put_nowait = put  # what logging.handlers.QueueHandler calls

    def emit(self, kind: str, **fields: Any) -> None:
        """An event for the launcher (hpo.run.worker.Events)."""
        self.put(("event", kind, fields))


def receive(connection: Connection) -> list[Any]:
    """Everything ``connection`` holds now, without waiting. EOFError once its worker is gone
    and everything it sent has been read, or when it died in the middle of a message."""
    items = []
    while connection.poll():
        items.append(connection.recv())
    return items
