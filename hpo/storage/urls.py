"""Storage URLs: checking one before anything opens it, and keeping its password out of output.

Every URL hpo prints or logs goes through :func:`mask_url`, and every error message through
:func:`scrub`, so a password in ``--storage`` or ``HPO_STORAGE`` never reaches a terminal or a
log file.
"""

from __future__ import annotations

import re
from pathlib import Path

import sqlalchemy.exc
from sqlalchemy.engine import make_url

from hpo.errors import HpoError
from hpo.settings import DEFAULT_STORAGE_URL

_PASSWORD_IN_URL = re.compile(r"(://[^:/@\s]*:)([^@\s]*)(@)")


def mask_url(url: str) -> str:
    """The URL with its password replaced by ``***``, safe to print or log."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return _PASSWORD_IN_URL.sub(r"\1***\3", url)


def scrub(text: str, url: str) -> str:
    """Remove the URL's password from any text before it reaches the user."""
    try:
        password = make_url(url).password
    except Exception:
        match = _PASSWORD_IN_URL.search(url)
        password = match.group(2) if match else None
    if password:
        text = text.replace(str(password), "***")
    return _PASSWORD_IN_URL.sub(r"\1***\3", text)


def sqlite_path(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    return Path(parsed.database)


def check_storage_url(url: str, *, must_exist: bool = False) -> None:
    """Raise HpoError unless ``url`` names a storage hpo can open with the installed drivers."""
    masked = mask_url(url)
    try:
        parsed = make_url(url)
    except (sqlalchemy.exc.ArgumentError, ValueError):  # ValueError: a port that is no number
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

    if parsed.get_backend_name() == "sqlite":
        path = sqlite_path(url)
        if path is None or str(path) == ":memory:":
            raise HpoError(
                f"Storage URL '{masked}' is an in-memory SQLite database, which workers cannot "
                "share: give a file, e.g. sqlite:///storage/hpo.db."
            )
        if must_exist and not path.exists():
            raise HpoError(
                f"There is no hpo database at {path}: run 'hpo launch' first, or point "
                "--storage (or HPO_STORAGE) at an existing one."
            )
        if not path.parent.exists():
            if url == DEFAULT_STORAGE_URL:
                path.parent.mkdir(parents=True, exist_ok=True)
            else:
                raise HpoError(
                    f"The folder '{path.parent}' for the SQLite database does not exist: create "
                    "it, or choose another --storage path."
                )
