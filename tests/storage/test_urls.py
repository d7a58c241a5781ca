"""hpo/storage/urls.py: a storage URL is checked before anything opens it, and its password
never reaches the user: masked in URLs, scrubbed from messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpo.errors import HpoError
from hpo.settings import DEFAULT_STORAGE_URL
from hpo.storage.urls import check_storage_url, mask_url, scrub, sqlite_path


@pytest.mark.parametrize(("url", "masked"), [
    ("postgresql+psycopg://me:s3cret@db:5432/hpo", "postgresql+psycopg://me:***@db:5432/hpo"),
    ("postgresql+psycopg://me:p%40ss@db/hpo", "postgresql+psycopg://me:***@db/hpo"),
    ("mysql://me:s3cret@h/db", "mysql://me:***@h/db"),
    # Not a URL SQLAlchemy parses (a port that is not a number): masked all the same.
    ("postgresql+psycopg://me:s3cret@db:port/hpo", "postgresql+psycopg://me:***@db:port/hpo"),
    ("postgresql+psycopg://me@db/hpo", "postgresql+psycopg://me@db/hpo"),  # no password
    ("sqlite:///storage/hpo.db", "sqlite:///storage/hpo.db"),
    # libpq takes the password from the query too.
    ("postgresql+psycopg://me@db/hpo?password=s3cret&sslmode=require",
     "postgresql+psycopg://me@db/hpo?password=***&sslmode=require"),
    ("postgresql+psycopg://me:a@db/hpo?sslmode=require&PASSWORD=b",
     "postgresql+psycopg://me:***@db/hpo?sslmode=require&PASSWORD=***"),
])
def test_mask_url_hides_only_the_password(url: str, masked: str) -> None:
    assert mask_url(url) == masked


@pytest.mark.parametrize(("text", "url", "scrubbed"), [
    ("password authentication failed for s3cret", "postgresql+psycopg://me:s3cret@db/hpo",
     "password authentication failed for ***"),
    # The password as the server spells it, decoded from the URL.
    ("bad password p@ss", "postgresql+psycopg://me:p%40ss@db/hpo", "bad password ***"),
    # Any URL in the text loses its password, even one the given URL cannot parse.
    ("cannot open postgresql://other:pw2@h/db", "not a url", "cannot open postgresql://other:***@h/db"),
    ("nothing secret here", "sqlite:///storage/hpo.db", "nothing secret here"),
])
def test_scrub_removes_the_password_from_any_text(text: str, url: str, scrubbed: str) -> None:
    assert scrub(text, url) == scrubbed


def test_sqlite_path_only_for_sqlite_files() -> None:
    assert sqlite_path("sqlite:///storage/hpo.db") == Path("storage/hpo.db")
    assert sqlite_path("sqlite:////abs/hpo.db") == Path("/abs/hpo.db")
    assert sqlite_path("sqlite://") is None
    assert sqlite_path("postgresql+psycopg://me:pw@db/hpo") is None


def test_a_sqlite_file_in_an_existing_folder_passes(tmp_path: Path) -> None:
    check_storage_url(f"sqlite:///{tmp_path / 'hpo.db'}")
    check_storage_url("postgresql+psycopg://me:s3cret@db:5432/hpo")  # the driver is installed
    assert not (tmp_path / "hpo.db").exists()  # checking opens nothing


@pytest.mark.parametrize(("url", "message"), [
    ("not a url", "Storage URL 'not a url' is malformed: use a SQLAlchemy URL such as"),
    ("postgresql+psycopg://me:s3cret@db:port/hpo",
     "The port 'port' in storage URL 'postgresql+psycopg://me:***@db:port/hpo' is not a port "
     "number (1-65535)"),
    ("foo://me:s3cret@x/db", "Storage URL 'foo://me:***@x/db' names an unknown database 'foo'"),
    ("mysql://me:s3cret@localhost/db", "The database driver 'MySQLdb' for storage URL "
     "'mysql://me:***@localhost/db' is not installed"),
    ("sqlite://", "Storage URL 'sqlite://' is an in-memory SQLite database, which workers "
     "cannot share"),
    ("sqlite:///:memory:", "is an in-memory SQLite database"),
    ("sqlite:////no/such/folder/hpo.db", "The folder '/no/such/folder' for the SQLite database "
     "does not exist: create it, or choose another --storage path."),
])
def test_bad_urls_are_refused_in_one_sentence_without_the_password(url: str,
                                                                   message: str) -> None:
    with pytest.raises(HpoError) as error:
        check_storage_url(url)
    assert message in str(error.value)
    assert "s3cret" not in str(error.value) and "\n" not in str(error.value)


def test_must_exist_refuses_a_missing_database(tmp_path: Path) -> None:
    with pytest.raises(HpoError, match="There is no hpo database at .*missing.db: run 'hpo "
                                       "launch' first"):
        check_storage_url(f"sqlite:///{tmp_path / 'missing.db'}", must_exist=True)
    (tmp_path / "there.db").touch()
    check_storage_url(f"sqlite:///{tmp_path / 'there.db'}", must_exist=True)


def test_the_default_url_creates_its_folder_with_the_database_and_no_other_does(
        tmp_path: Path) -> None:
    # The autouse fixture runs every test in tmp_path, so storage/ is created there. Checking
    # the URL creates nothing (a command that only looks leaves no folder, issue 18); opening
    # it to create the database does.
    from hpo.storage.engine import open_storage

    assert not (tmp_path / "storage").exists()
    check_storage_url(DEFAULT_STORAGE_URL)
    assert not (tmp_path / "storage").exists()
    open_storage(DEFAULT_STORAGE_URL)
    assert (tmp_path / "storage" / "hpo.db").is_file()
    with pytest.raises(HpoError, match="does not exist"):
        check_storage_url("sqlite:///elsewhere/hpo.db")
    assert not (tmp_path / "elsewhere").exists()
