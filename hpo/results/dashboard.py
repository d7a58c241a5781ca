"""Serving optuna-dashboard on the storage every other command uses, with the artifact store.

optuna-dashboard has no authentication and its API can delete studies, so it listens on
127.0.0.1 unless told otherwise, and says so loudly when it is.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
import threading
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from hpo.errors import HpoError

if TYPE_CHECKING:
    from hpo.storage.retry import ResilientStorage

log = logging.getLogger(__name__)

NO_AUTH_WARNING = (
    "optuna-dashboard has no authentication and its API can delete studies: anyone who can "
    "reach {host}:{port} can read and change every study in this storage. Keep it on "
    "127.0.0.1 (the default) or behind an authenticating proxy."
)


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # one line per request is noise
        pass


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def create_server(storage: str | ResilientStorage, *, host: str = "127.0.0.1",
                  port: int = 8080, artifact_dir: str | Path | None = None) -> WSGIServer:
    """Bind the dashboard's server on ``storage`` (a URL, or a launch's open storage), not
    yet serving. HpoError if the port is taken."""
    import optuna_dashboard

    from hpo.storage.engine import open_storage
    from hpo.train.checkpoints import artifact_store

    if not is_loopback(host):
        log.warning(NO_AUTH_WARNING.format(host=host, port=port))
    if isinstance(storage, str):
        storage = open_storage(storage, must_exist=True)
    store = artifact_store(artifact_dir) if artifact_dir else None
    app = optuna_dashboard.wsgi(storage, artifact_store=store)
    try:
        return make_server(host, port, app, server_class=_ThreadingServer,
                           handler_class=_QuietHandler)
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise HpoError(f"Port {port} on {host} is already in use: pass --port with a free "
                           "port, or stop what is using it.") from None
        if isinstance(error, socket.gaierror) or error.errno == errno.EADDRNOTAVAIL:
            raise HpoError(f"Cannot listen on {host}:{port} ({error.strerror}): pass --host "
                           "with an address of this machine, e.g. 127.0.0.1.") from None
        raise


def check_port(host: str, port: int) -> None:
    """HpoError now if the dashboard could not listen on host:port later, so a launch with
    --dashboard is refused before it writes anything."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise HpoError(f"Port {port} on {host} is already in use: pass --dashboard-port "
                           "with a free port, or stop what is using it.") from None
        raise HpoError(f"Cannot listen on {host}:{port} ({error.strerror}): pass "
                       "--dashboard-port with a free port above 1023.") from None


def url_of(server: WSGIServer) -> str:
    host, port = server.server_address[:2]
    host = host.decode() if isinstance(host, bytes) else str(host)
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    return f"http://{shown}:{port}/"


def start_in_background(storage: str | ResilientStorage, *, host: str = "127.0.0.1",
                        port: int = 8080, artifact_dir: str | Path | None = None) -> str:
    """Serve the dashboard from a daemon thread of this process; returns its URL."""
    server = create_server(storage, host=host, port=port, artifact_dir=artifact_dir)
    threading.Thread(target=server.serve_forever, name="hpo-dashboard", daemon=True).start()
    return url_of(server)
