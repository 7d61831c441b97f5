"""Where a study lives: an SQLite file by default, or any database Optuna's RDB storage speaks.

SQLite needs no server and survives a kill (each trial's state is committed as it changes), so
a stopped search resumes from the file. `postgresql://` lets several processes or machines
work on one study: Optuna's RDBStorage is the coordination (row locks when a worker takes a
trial), nothing home-made. Database errors become one line that names the database with its
password hidden, and say what to do; bad input (an unreachable server, a locked file, a
missing driver) is a StorageError, which the command reports with exit code 2.
"""

from __future__ import annotations

import importlib.util
import re
import time
from pathlib import Path

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

SQLITE_TIMEOUT_S = 5  # how long a writer waits for SQLite's lock before we call it locked
CONNECT_TIMEOUT_S = 10  # how long a database server may take to answer


class StorageError(ValueError):
    """The storage cannot be used as given (exit 2): the message names it and the fix."""


def storage_url(given: str | None, out: Path) -> str:
    """The SQLAlchemy URL: OUT/search.db by default; postgresql:// gets the psycopg 3 driver
    (the one the [search] extra installs) unless the URL names a driver itself."""
    if not given:
        return f"sqlite:///{(out / 'search.db').resolve()}"
    url = given.strip()
    if "://" not in url:  # a bare path means an SQLite file
        return f"sqlite:///{Path(url).expanduser().resolve()}"
    for bare in ("postgresql://", "postgres://"):
        if url.startswith(bare) and importlib.util.find_spec("psycopg") is not None:
            return "postgresql+psycopg://" + url[len(bare):]
    return url


def _password(url: str) -> str | None:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).password
    except Exception:  # not a URL SQLAlchemy parses: nothing to hide beyond the regex below
        return None


def redact(url: str) -> str:
    """The URL with its password hidden (SQLAlchemy's own rendering where it parses)."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def scrub(text: str, url: str) -> str:
    """A driver's message with the URL's password (and the URL) never in it."""
    secret = _password(url)
    text = " ".join(str(text).split())
    if secret:
        text = text.replace(secret, "***")
    return text.replace(url, redact(url))


def _driver_line(exc: BaseException, url: str) -> str:
    orig = getattr(exc, "orig", None) or exc
    first = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    first = re.sub(r"\(Background on this error at: [^)]*\)", "", first)
    return scrub(first, url)[:300]


def describe_error(exc: BaseException, url: str) -> str:
    """One line for a database error: what failed, where, and what to do."""
    where = redact(url)
    why = _driver_line(exc, url)
    low = why.lower()
    if "database is locked" in low:
        return (f"{where} is locked by another process (SQLite lets one process write at a time): "
                "stop the other search, or share one study through --storage postgresql://...")
    if url.startswith("sqlite") and ("unable to open" in low or "readonly" in low):
        return f"cannot write the SQLite file of {where}: {why}; give --storage a writable path"
    return f"cannot use the study database {where}: {why}"


def open_storage(url: str, heartbeat_s: int) -> RDBStorage:
    """Optuna's RDB storage with heartbeats: a worker that stops beating for 2 heartbeats is
    presumed dead, its trial marked failed and queued again with the same parameters."""
    try:
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
    except Exception as exc:
        raise StorageError(f"--storage {redact(url)} is not a database URL ({exc}); expected e.g. "
                           "sqlite:///path/search.db or postgresql://user:password@host:5432/db") from None
    connect_args: dict = {}
    if parsed.get_backend_name() == "sqlite":
        connect_args["timeout"] = SQLITE_TIMEOUT_S
        if parsed.database:
            folder = Path(parsed.database).expanduser().parent
            if not folder.is_dir():
                raise StorageError(f"the folder of {redact(url)} does not exist")
    elif parsed.get_backend_name() == "postgresql":
        connect_args["connect_timeout"] = CONNECT_TIMEOUT_S
    try:
        for attempt in range(3):
            try:
                return RDBStorage(url, engine_kwargs={"connect_args": connect_args},
                                  heartbeat_interval=heartbeat_s, grace_period=2 * heartbeat_s,
                                  heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback())
            except Exception as exc:
                # workers starting together on a fresh database race to create Optuna's tables
                # (PostgreSQL: a duplicate key in pg_type); the loser finds them made a moment later
                if attempt == 2 or not _is_creation_race(exc):
                    raise
                time.sleep(0.5 + attempt)
        raise AssertionError("unreachable")
    except ModuleNotFoundError as exc:
        raise StorageError(f"no database driver for {redact(url)} ({exc.name} is not installed): "
                           "pip install 'pspnet-rt[search]'") from None
    except Exception as exc:  # SQLAlchemy/driver errors: connection refused, locked, bad credentials
        if _is_db_error(exc):
            raise StorageError(describe_error(exc, url)) from None
        raise


def _is_creation_race(exc: BaseException) -> bool:
    import sqlalchemy.exc

    text = str(exc).lower()
    return isinstance(exc, (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError)) and (
        "already exists" in text or "duplicate key" in text)


def _is_db_error(exc: BaseException) -> bool:
    import sqlalchemy.exc

    return isinstance(exc, (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError))
