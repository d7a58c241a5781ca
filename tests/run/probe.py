"""What a spawned worker process finds in its environment, reported back to the test.

A stand-in for hpo.run.supervisor's worker entry point with the same signature, kept in a
module that imports nothing heavy, so that the spawned process starts in well under a second.
"""

from __future__ import annotations

import os
from typing import Any

KEYS = ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def report_environment(spec: Any, slot: Any, restarts: int, state: Any, events: Any,
                       parent_pid: int) -> None:
    """Put the child's real os.environ values of KEYS (None: unset) on the event queue."""
    events.put(("environment", slot.index, {key: os.environ.get(key) for key in KEYS}))
