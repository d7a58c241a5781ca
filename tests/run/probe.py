"""Stand-ins for hpo.run.supervisor's worker entry point, with its signature, in a module that
imports nothing heavy, so that a spawned process starts in well under a second."""

from __future__ import annotations

import os
from typing import Any

from hpo.run.channel import Channel

KEYS = ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def report_environment(spec: Any, slot: Any, restarts: int, state: Any, connection: Any,
                       parent_pid: int) -> None:
    """Send the child's real os.environ values of KEYS (None: unset) to the launcher."""
    Channel(connection).put(("environment", slot.index, {key: os.environ.get(key)
                                                         for key in KEYS}))


def chatter(spec: Any, slot: Any, restarts: int, state: Any, connection: Any,
            parent_pid: int) -> None:
    """Send epoch events without pause, as a worker does, until killed; the second worker of
    a slot (restarts=1) sends one and exits."""
    channel = Channel(connection)
    if restarts:
        channel.emit("trial_started", trial=99)
        return
    while True:
        channel.emit("epoch", trial=0, epoch=1, value=0.5, padding="x" * 4096)
