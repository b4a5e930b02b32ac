"""Operator accounts: names, roles, passwords, and the login rule.

Owns: the rules for account names and passwords, password hashing
(argon2id through argon2-cffi, RFC 9106's second recommended parameter
set: 3 passes over 64 MiB, 4 lanes), what each role may do, and the login
decision (lockout after repeated failures). The rows live in the store
(receiver/store_console.py); `panic receiver user ...` (cli.py) and the
console's admin page both come through here, so both apply the same rules.

Roles are ordered: a supervisor may do all an operator may, an admin all
a supervisor may.
  - operator: sees the queue and incidents, claims, works the incidents
    it owns (notes, device commands, escalation, outcome)
  - supervisor: also reassigns and releases anyone's claims, works any
    incident, re-opens closed ones, reads the audit log
  - admin: also manages accounts

Never logs or returns a password or a hash; a wrong name and a wrong
password get the same answer.

Must stay in sync with: store_console.py (ROLES, columns), docs/console.md
(roles and the security settings).
"""

import argon2

from receiver.errors import ReceiverError
from receiver.store_console import ROLES

MIN_PASSWORD = 12
MAX_PASSWORD = 256
NAME_MAX = 32
LOCKOUT_FAILURES = 5   # failed logins in a row that lock an account
LOCKOUT_S = 15 * 60    # for this long (an admin's `user passwd` lifts it)

# RFC 9106 section 4, second recommended option (argon2-cffi's default
# profile): argon2id, t=3, m=64 MiB, p=4, 16-byte salt, 32-byte tag.
_HASHER = argon2.PasswordHasher(time_cost=3, memory_cost=65536, parallelism=4, hash_len=32, salt_len=16,
                                type=argon2.Type.ID)
# A hash to verify against when the account does not exist, so that a
# wrong name costs the same time as a wrong password.
_DUMMY = _HASHER.hash("not a password of anyone's")


class UserError(ReceiverError):
    """A name, role or password that breaks the rules."""


def rank(role):
    return ROLES.index(role) if role in ROLES else -1


def may(role, needed):
    """True when `role` may do what `needed` may."""
    return rank(role) >= rank(needed) >= 0


def name_problem(name):
    if not isinstance(name, str) or not 1 <= len(name) <= NAME_MAX:
        return "a user name is 1 to %d characters" % NAME_MAX
    if not all(c.isascii() and (c.isalnum() or c in "._-") for c in name) or not name[0].isalnum():
        return "a user name is ASCII letters, digits and . _ - (starting with a letter or digit)"
    return None


def password_problem(password, name=None):
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        return "a password has at least %d characters" % MIN_PASSWORD
    if len(password) > MAX_PASSWORD:
        return "a password has at most %d characters" % MAX_PASSWORD
    if name and name.lower() in password.lower():
        return "a password must not contain the user name"
    if len(set(password)) < 5:
        return "a password needs more than a few different characters"
    return None


def hash_password(password):
    return _HASHER.hash(password)


def verify_password(stored_hash, password):
    """True when the password matches; never raises on a wrong one."""
    try:
        return _HASHER.verify(stored_hash or _DUMMY, password) and stored_hash is not None
    except (argon2.exceptions.VerifyMismatchError, argon2.exceptions.InvalidHashError,
            argon2.exceptions.VerificationError):
        return False


def new_account_problem(name, role, password):
    why = name_problem(name)
    if why is None and role not in ROLES:
        why = "role must be one of %s" % ", ".join(ROLES)
    if why is None:
        why = password_problem(password, name)
    return why


def add(store, name, role, password, actor=None, peer=None):
    why = new_account_problem(name, role, password)
    if why is not None:
        raise UserError(why)
    store.user_add(name, role, hash_password(password), actor=actor, peer=peer)


def set_password(store, name, password, actor=None, peer=None):
    why = password_problem(password, name)
    if why is not None:
        raise UserError(why)
    store.user_set_password(name, hash_password(password), actor=actor, peer=peer)


# Login verdicts
OK = "ok"
BAD = "bad"          # wrong name or password (the same answer for both)
LOCKED = "locked"    # too many failures: wait, or an admin resets the password
DISABLED = "disabled"


def precheck(user, now):
    """The verdict before the password is checked (None: check it). A
    locked or disabled account is refused whatever the password."""
    if user is None:
        return BAD
    if user["disabled"]:
        return DISABLED
    if user["locked_until"] is not None and user["locked_until"] > now:
        return LOCKED
    return None


def login(store, name, password, now, peer=None):
    """(verdict, user row or None). Counts a failure against an existing
    account; LOCKOUT_FAILURES in a row lock it for LOCKOUT_S. A wrong name
    costs one hash check like a wrong password. (The console does the
    same in three steps, so that the hash check runs off its store
    thread: receiver/console/app.py.)"""
    user = store.user_get(name) if name_problem(name) is None else None
    pre = precheck(user, now)
    ok = verify_password(store.user_hash(name) if pre is None else None, password or "")
    if pre is not None:
        return pre, None
    if not ok:
        until = store.user_login_failed(name, now, LOCKOUT_FAILURES, LOCKOUT_S, peer=peer)
        return (LOCKED if until else BAD), None
    store.user_login_ok(name, now, peer=peer)
    return OK, store.user_get(name)
