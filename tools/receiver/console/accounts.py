"""Operator accounts and their sessions, in the receiver's SQLite file.

Passwords are hashed with Argon2id (argon2-cffi, its RFC 9106 low-memory profile: 64 MiB,
3 passes); only the hash is kept. Five failed logins in a row lock an account for 15
minutes (the count survives a restart, since it is in the file); an unknown name costs
the same hash as a known one, so the answer's timing does not tell names apart.

A session is a random 256-bit token in a cookie; the file keeps only its sha256, with the
operator, the CSRF token of the session and two expiries (idle and absolute). Logging out,
removing the operator or changing the password ends their sessions.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from safebox.protocol import events

from ..store import Store

ROLES = ("operator", "supervisor")
MAX_FAILURES = 5
LOCK_S = 15 * 60
SESSION_IDLE_S = 30 * 60
SESSION_MAX_S = 12 * 3600
MIN_PASSWORD = 10
_NAME = re.compile(r"^[a-z][a-z0-9._-]{1,31}$")
_HASHER = PasswordHasher()
_DUMMY_HASH = _HASHER.hash("not a password of anyone")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS operators (
    name         TEXT PRIMARY KEY,
    display      TEXT NOT NULL,
    role         TEXT NOT NULL,
    pw_hash      TEXT NOT NULL,
    failures     INTEGER NOT NULL DEFAULT 0,
    locked_until REAL NOT NULL DEFAULT 0,
    added_at     TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    token_sha256 TEXT PRIMARY KEY,
    operator     TEXT NOT NULL,
    csrf         TEXT NOT NULL,
    created_at   REAL NOT NULL,
    seen_at      REAL NOT NULL
);
"""


class AccountError(ValueError):
    """A name, role or password that cannot be used; the message says why."""


@dataclass(frozen=True)
class Operator:
    name: str
    display: str
    role: str


@dataclass(frozen=True)
class Session:
    operator: Operator
    csrf: str
    token: str = ""  # only when just made: the cookie's value


class Accounts:
    def __init__(self, store: Store) -> None:
        self._store = store
        with store._transaction() as db:
            db.executescript(_SCHEMA)

    # -- accounts -------------------------------------------------------------------
    def add(self, name: str, password: str, *, role: str = "operator", display: str | None = None,
            now: float) -> None:
        if not _NAME.match(name):
            raise AccountError(f"operator name {name!r}: 2-32 of a-z, 0-9, '.', '_', '-', starting with a letter")
        if role not in ROLES:
            raise AccountError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        pw_hash = _hash(password)
        with self._store._transaction() as db:
            if db.execute("SELECT 1 FROM operators WHERE name = ?", (name,)).fetchone():
                raise AccountError(f"operator {name!r} exists (to change the password: operator passwd)")
            db.execute("INSERT INTO operators (name, display, role, pw_hash, added_at) VALUES (?, ?, ?, ?, ?)",
                       (name, display or name, role, pw_hash, events.timestamp(now)))

    def remove(self, name: str) -> bool:
        with self._store._transaction() as db:
            db.execute("DELETE FROM sessions WHERE operator = ?", (name,))
            return db.execute("DELETE FROM operators WHERE name = ?", (name,)).rowcount == 1

    def set_password(self, name: str, password: str) -> bool:
        """A new password (and an unlocked account); every session of the operator ends."""
        pw_hash = _hash(password)
        with self._store._transaction() as db:
            done = db.execute("UPDATE operators SET pw_hash = ?, failures = 0, locked_until = 0 WHERE name = ?",
                              (pw_hash, name)).rowcount == 1
            db.execute("DELETE FROM sessions WHERE operator = ?", (name,))
        return done

    def list(self) -> list[Operator]:
        with self._store._transaction() as db:
            rows = db.execute("SELECT name, display, role FROM operators ORDER BY name").fetchall()
        return [Operator(*row) for row in rows]

    def login(self, name: str, password: str, *, now: float) -> Session | str:
        """A new session, or why not: "refused" (unknown name or wrong password: the same
        answer for both) or "locked"."""
        with self._store._transaction() as db:
            row = db.execute("SELECT display, role, pw_hash, failures, locked_until FROM operators WHERE name = ?",
                             (name,)).fetchone()
        if row is None:
            _check(_DUMMY_HASH, password)
            return "refused"
        display, role, pw_hash, failures, locked_until = row
        if locked_until > now:
            return "locked"
        if not _check(pw_hash, password):
            failures += 1
            until = now + LOCK_S if failures >= MAX_FAILURES else 0
            with self._store._transaction() as db:
                db.execute("UPDATE operators SET failures = ?, locked_until = ? WHERE name = ?",
                           (0 if until else failures, until, name))
            return "locked" if until else "refused"
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        with self._store._transaction() as db:
            db.execute("UPDATE operators SET failures = 0, locked_until = 0 WHERE name = ?", (name,))
            if _HASHER.check_needs_rehash(pw_hash):
                db.execute("UPDATE operators SET pw_hash = ? WHERE name = ?", (_HASHER.hash(password), name))
            db.execute("DELETE FROM sessions WHERE seen_at < ? OR created_at < ?",
                       (now - SESSION_IDLE_S, now - SESSION_MAX_S))
            db.execute("INSERT INTO sessions (token_sha256, operator, csrf, created_at, seen_at) "
                       "VALUES (?, ?, ?, ?, ?)", (_digest(token), name, csrf, now, now))
        return Session(Operator(name, display, role), csrf, token)

    # -- sessions -------------------------------------------------------------------
    def session(self, token: str, *, now: float) -> Session | None:
        """The live session of a cookie's token (its idle time restarts), or None."""
        if not token or len(token) > 100:
            return None
        with self._store._transaction() as db:
            row = db.execute("SELECT s.operator, o.display, o.role, s.csrf, s.created_at, s.seen_at "
                             "FROM sessions s JOIN operators o ON o.name = s.operator WHERE s.token_sha256 = ?",
                             (_digest(token),)).fetchone()
            if row is None:
                return None
            name, display, role, csrf, created_at, seen_at = row
            if seen_at < now - SESSION_IDLE_S or created_at < now - SESSION_MAX_S:
                db.execute("DELETE FROM sessions WHERE token_sha256 = ?", (_digest(token),))
                return None
            if now - seen_at > 10:  # no write on every request
                db.execute("UPDATE sessions SET seen_at = ? WHERE token_sha256 = ?", (now, _digest(token)))
        return Session(Operator(name, display, role), csrf)

    def logout(self, token: str) -> None:
        with self._store._transaction() as db:
            db.execute("DELETE FROM sessions WHERE token_sha256 = ?", (_digest(token),))


def _hash(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"a password has at least {MIN_PASSWORD} characters")
    if len(password) > 1024:
        raise AccountError("a password has at most 1024 characters")
    return _HASHER.hash(password)


def _check(pw_hash: str, password: str) -> bool:
    try:
        return _HASHER.verify(pw_hash, password[:1024])
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
