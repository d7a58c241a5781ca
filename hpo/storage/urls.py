"""Storage URLs: checking one before anything opens it, and keeping its password out of output.

Every URL hpo prints or logs goes through :func:`mask_url`, and every error message through
:func:`scrub`, so a password in ``--storage`` or ``HPO_STORAGE`` never reaches a terminal or a
log file.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple
from urllib.parse import unquote

from hpo.errors import HpoError
from hpo.settings import DEFAULT_STORAGE_URL

# A URL inside any text: "scheme://user:" then everything up to the token's last "@", so a
# password holding "@" or ":" is masked whole.
_PASSWORD_IN_TEXT = re.compile(r"(\b[A-Za-z][\w+.-]*://[^:/@\s'\"]*:)(\S*)(@)")
_PASSWORD_IN_QUERY = re.compile(r"([?&]password=)[^&\s'\"]*", re.IGNORECASE)
_ENCODE_HINT = "percent-encode the user name and password (@ as %40, : as %3A, / as %2F)"


class _Parts(NamedTuple):
    prefix: str  # "scheme://", or the whole text when it is not a URL
    user: str | None  # as written, percent-encoded or not; None: no user
    password: str | None  # as written; None: no password
    rest: str  # host, port, database and query


def _split(url: str) -> _Parts:
    """Split a storage URL by hand: no SQLAlchemy import (it costs most of a read command's
    start), and no trust in the URL being well formed. The user and password end at the *last*
    "@" after "://", so a password with an unencoded "@" or ":" is masked whole rather than
    in part; an "@" in the database name only makes the mask longer."""
    scheme, sep, rest = url.partition("://")
    if not sep or rest.startswith("/"):  # not a URL, or no host part (sqlite:///path)
        return _Parts(url, None, None, "")
    userinfo, at, after = rest.rpartition("@")
    if not at:
        return _Parts(scheme + sep, None, None, rest)
    user, colon, password = userinfo.partition(":")
    return _Parts(scheme + sep, user, password if colon else None, after)


def mask_url(url: str) -> str:
    """The URL with its password replaced by ``***``, safe to print or log."""
    return _masked(url, _split(url))


def _masked(url: str, parts: _Parts) -> str:
    if parts.password is None:
        return _PASSWORD_IN_QUERY.sub(r"\1***", url)
    masked = f"{parts.prefix}{parts.user}:***@{parts.rest}"
    return _PASSWORD_IN_QUERY.sub(r"\1***", masked)


def scrub(text: str, url: str) -> str:
    """Remove the URL's password from any text before it reaches the user."""
    password = _split(url).password
    if password:
        for form in sorted({password, unquote(password)}, key=len, reverse=True):
            text = text.replace(form, "***")
    text = _PASSWORD_IN_TEXT.sub(r"\1***\3", text)
    return _PASSWORD_IN_QUERY.sub(r"\1***", text)


def _port_of(rest: str) -> str | None:
    """The port as written in "host:port/database?query", or None if there is none."""
    hostport = re.split(r"[/?]", rest, maxsplit=1)[0]
    if hostport.startswith("["):  # [IPv6]:port
        _, _, after = hostport.partition("]")
        return after[1:] if after.startswith(":") else None
    _, colon, port = hostport.rpartition(":")
    return port if colon else None


def _check_parts(parts: _Parts, masked: str) -> None:
    """Refuse what SQLAlchemy would parse differently from what the user meant, naming no part
    of the password."""
    if parts.user is not None and "@" in f"{parts.user}:{parts.password or ''}":
        raise HpoError(
            f"The user name or password in storage URL '{masked}' holds an unencoded '@', so "
            f"the URL cannot be read unambiguously: {_ENCODE_HINT}."
        )
    port = _port_of(parts.rest)
    if port is not None and port != "" and (not port.isdigit() or not 0 < int(port) < 65536):
        shown = port if len(port) <= 20 else port[:20] + "…"
        raise HpoError(
            f"The port '{shown}' in storage URL '{masked}' is not a port number (1-65535): "
            "write host:5432, or leave the port out for the default."
        )


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (``sqlite:///relative.db``, ``sqlite:////absolute.db``), read as
    SQLAlchemy reads it but without importing it; None for other databases and ``sqlite://``."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.split("+")[0] != "sqlite" or "/" not in rest:
        return None
    database = unquote(rest.partition("/")[2].partition("?")[0])
    return Path(database) if database else None


def folder_database(path: Path) -> HpoError:
    return HpoError(f"The storage {path} is a folder, not a SQLite database file: point "
                    f"--storage at the file, e.g. sqlite:///{path / 'hpo.db'}.")


def missing_database(path: Path) -> HpoError:
    return HpoError(f"There is no hpo database at {path}: run 'hpo launch' first, or point "
                    "--storage (or HPO_STORAGE) at an existing one.")


@dataclass(frozen=True)
class StorageUrl:
    """A storage URL, checked: what opening it needs, and how to print it."""

    url: str
    masked: str
    backend: str  # "sqlite", "postgresql", ...
    driver: str  # "pysqlite", "psycopg", ...
    sqlite_path: Path | None  # the SQLite file; None for a database server

    @property
    def exists(self) -> bool:
        """False only for a SQLite file not created yet."""
        return self.sqlite_path is None or self.sqlite_path.exists()


def check_storage_url(url: str, *, must_exist: bool = False) -> StorageUrl:
    """``url`` checked and parsed once, or HpoError unless it names a storage hpo can open
    with the installed drivers."""
    import sqlalchemy.exc
    from sqlalchemy.engine import make_url

    parts = _split(url)
    masked = _masked(url, parts)
    _check_parts(parts, masked)
    try:
        parsed = make_url(url)
    except (sqlalchemy.exc.ArgumentError, ValueError):
        raise HpoError(
            f"Storage URL '{masked}' is malformed: use a SQLAlchemy URL such as "
            "sqlite:///storage/hpo.db or postgresql+psycopg://user:password@host:5432/dbname."
        ) from None
    try:
        dialect = parsed.get_dialect()
    except sqlalchemy.exc.NoSuchModuleError:
        raise HpoError(
            f"Storage URL '{masked}' names an unknown database '{parsed.drivername}': "
            "use sqlite:///PATH or postgresql+psycopg://user:password@host:5432/dbname."
        ) from None
    try:
        dialect.import_dbapi()
    except ImportError as error:
        raise HpoError(
            f"The database driver '{error.name or parsed.drivername}' for storage URL "
            f"'{masked}' is not installed: use postgresql+psycopg://… (psycopg 3 comes with hpo) "
            f"or install that driver."
        ) from None
    location = StorageUrl(url, masked, parsed.get_backend_name(), parsed.get_driver_name(),
                          None)
    if location.backend != "sqlite":
        return location
    if not parsed.database or parsed.database == ":memory:":
        raise HpoError(
            f"Storage URL '{masked}' is an in-memory SQLite database, which workers cannot "
            "share: give a file, e.g. sqlite:///storage/hpo.db."
        )
    path = Path(parsed.database)
    if must_exist and not path.exists():
        raise missing_database(path)
    if path.is_dir():
        raise folder_database(path)
    # The default folder (./storage) is made when the database is created (open_storage), not
    # here: a command that only looks must not leave folders behind.
    if not path.parent.exists() and url != DEFAULT_STORAGE_URL:
        raise HpoError(
            f"The folder '{path.parent}' for the SQLite database does not exist: create "
            "it, or choose another --storage path."
        )
    return dataclasses.replace(location, sqlite_path=path)
