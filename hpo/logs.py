"""Where log records go: hpo's and Optuna's alike reach the root logger, whose one handler is a
terminal's (the CLI) or the queue a worker process sends to its launcher."""

from __future__ import annotations

import logging
import logging.handlers
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console


def to_console(console: Console, level: int = logging.INFO) -> None:
    """Show log records on ``console`` (the CLI's stderr)."""
    from rich.logging import RichHandler

    root = logging.getLogger()
    if not any(isinstance(h, RichHandler) for h in root.handlers):
        handler = RichHandler(console=console, show_path=False, markup=False,
                              rich_tracebacks=False)
        handler.addFilter(_printable)
        root.handlers[:] = [handler]
    root.setLevel(level)
    _optuna_through_root()


def _printable(record: logging.LogRecord) -> bool:
    """Escape unprintable characters in the message: log lines quote names from storage."""
    from hpo.plain import printable

    record.msg, record.args = printable(record.getMessage()), None
    return True


def to_queue(queue: Any, level: int = logging.INFO) -> None:
    """Send log records to ``queue`` (a worker process's, read by its launcher)."""
    root = logging.getLogger()
    root.handlers[:] = [logging.handlers.QueueHandler(queue)]
    root.setLevel(level)
    _optuna_through_root()


def _optuna_through_root() -> None:
    """Optuna logs through its own handler by default, and chattily: keep its warnings and
    worse, through the root logger's handler."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.logging.disable_default_handler()
    optuna.logging.enable_propagation()
