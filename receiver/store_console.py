"""The store's operator-console section: accounts, sessions, who handles
which incident, escalations, outcomes, the console's timeline and audit
reads.

Owns: the rows the operator console (receiver/console/) and `panic
receiver user` keep, and schema version 5 that makes them. Never decides
anything (the rules are in receiver/users.py and receiver/console/); it
reads and writes rows, each change in one transaction together with its
audit row, its timeline row and its event for the feed.

A mixin of store.SqliteStore: it uses the store's connection, its
transactions (maybe_transaction), its clock and acting(). Plain SQL only
(INSERT ... ON CONFLICT DO NOTHING, conditional UPDATEs checked by their
row count, COUNT, LEFT JOIN), so the PostgreSQL store that comes next
implements the same methods with the same statements, except
changed_since_last_call() (SQLite's PRAGMA data_version; PostgreSQL:
LISTEN/NOTIFY or a counter row).

What "handled" means: an incident has at most one `handling` row, made on
its first console action: who owns it (a claim), when it was first
claimed (time to claim, BS 8484), when it last progressed (any action
after the claim), and its outcome. Closing sets the outcome; re-opening
clears it and counts the re-opening; the history of both stays in
`incident_actions` (the incident's console timeline) and in the audit.

Must stay in sync with: store.py (MIGRATIONS takes CONSOLE_MIGRATION as
version 5, after the location tables of version 4), receiver/users.py
(roles), receiver/console/ (what it shows), docs/console.md (the tables),
docs/receiver.md (schema versions).
"""

import hashlib
import json
from contextlib import AbstractContextManager
from typing import Any, Callable

from receiver.errors import ReceiverError

ROLES = ("operator", "supervisor", "admin")  # each may do what the ones before it may
OUTCOMES = ("genuine", "false_accidental", "false_malicious", "test", "technical_fault")
FALSE_OUTCOMES = ("false_accidental", "false_malicious")

CONSOLE_MIGRATION = """
    CREATE TABLE users (
        name TEXT PRIMARY KEY,
        role TEXT NOT NULL CHECK (role IN ('operator', 'supervisor', 'admin')),
        pw_hash TEXT NOT NULL,
        disabled INTEGER NOT NULL DEFAULT 0,
        created REAL NOT NULL,
        pw_changed REAL NOT NULL,
        failed_logins INTEGER NOT NULL DEFAULT 0,
        locked_until REAL,
        last_login REAL
    );
    CREATE TABLE sessions (
        token_hash TEXT PRIMARY KEY,
        user_name TEXT NOT NULL,
        csrf TEXT NOT NULL,
        created REAL NOT NULL,
        last_seen REAL NOT NULL,
        peer TEXT
    );
    CREATE INDEX sessions_user ON sessions (user_name);
    CREATE TABLE handling (
        incident_id INTEGER PRIMARY KEY,
        owner TEXT,
        claimed_at REAL,
        first_claimed_at REAL,
        progressed_at REAL,
        outcome TEXT CHECK (outcome IS NULL OR outcome IN
            ('genuine', 'false_accidental', 'false_malicious', 'test', 'technical_fault')),
        outcome_at REAL,
        outcome_by TEXT,
        reopened INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE incident_actions (
        id INTEGER PRIMARY KEY,
        incident_id INTEGER NOT NULL,
        time REAL NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        detail TEXT,
        peer TEXT
    );
    CREATE INDEX incident_actions_incident ON incident_actions (incident_id, id);
    CREATE TABLE escalations (
        id INTEGER PRIMARY KEY,
        incident_id INTEGER NOT NULL,
        time REAL NOT NULL,
        force TEXT NOT NULL,
        reference TEXT NOT NULL,
        actor TEXT NOT NULL
    );
    CREATE INDEX escalations_incident ON escalations (incident_id, id);
    CREATE TABLE device_info (
        device_id INTEGER PRIMARY KEY,
        firmware TEXT,
        updated REAL NOT NULL
    );
    ALTER TABLE audit ADD COLUMN peer TEXT;
    ALTER TABLE audit ADD COLUMN incident_id INTEGER
"""

_INC = ("i.id, i.device_id, i.kind, i.state, i.duress, i.opened_at, i.opened_seq, i.opened_by, i.closed_at, "
        "i.closed_seq, i.closed_by, i.updated_at, i.last_seq, i.lat_e7, i.lon_e7, i.source, i.accuracy_m, "
        "i.pos_time, i.pos_note, i.pos_seq, i.evidence, i.battery, i.csq")
_HANDLING = ("h.owner, h.claimed_at, h.first_claimed_at, h.progressed_at, h.outcome, h.outcome_at, h.outcome_by, "
             "COALESCE(h.reopened, 0) AS reopened")
_USER = "name, role, disabled, created, pw_changed, failed_logins, locked_until, last_login"


class UnknownIncident(ReceiverError):
    pass


class UnknownUser(ReceiverError):
    pass


class DuplicateUser(ReceiverError):
    pass


class Conflict(ReceiverError):
    """The incident is not in the state the action needs (owned by someone
    else, closed already, open already): the caller tells the operator."""


def token_hash(token):
    """What the sessions table keeps of a session token: its SHA-256, so
    a copy of the store opens no session."""
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


class ConsoleStore:
    """Methods of store.SqliteStore for the operator console. What they
    use of the store they are mixed into is the StoreSection contract
    (receiver/contracts.py), declared here for the type checker."""

    _clock: Callable[[], float]
    _x: Callable[..., Any]
    _write: Callable[..., Any]
    maybe_transaction: Callable[[], AbstractContextManager[Any]]
    add_event: Callable[[Any], Any]

    # ------------------------------------------------------------ change feed

    def changed_since_last_call(self):
        """True when another connection has committed since the last call
        (the first call answers True). SQLite: PRAGMA data_version, which
        changes only for commits by other connections; the console kicks
        itself after its own writes."""
        dv = self._x("PRAGMA data_version").fetchone()["data_version"]
        seen = getattr(self, "_console_dv", None)
        self._console_dv = dv
        return dv != seen

    def last_event_id(self):
        row = self._x("SELECT MAX(id) AS m FROM events").fetchone()
        return row["m"] or 0

    # The console's live feed follows a cursor, opaque to it: here the event
    # id (one SQLite writer commits ids in order); store_pg.PgStore's is
    # (transaction, id), because two nodes can commit ids out of order.
    # events_raw_after's rows start with the cursor of each event.

    def feed_cursor(self):
        """A cursor after every event committed so far."""
        return self.last_event_id()

    @staticmethod
    def cursor_text(cursor):
        """A cursor as an SSE id (and a page's data-since)."""
        return "%d" % cursor

    @staticmethod
    def cursor_from_text(text):
        """cursor_text's inverse; ValueError for anything else."""
        if not isinstance(text, str) or not text.isascii() or not text.isdigit() or len(text) > 12:
            raise ValueError("not an event id")
        return int(text)

    def events_raw_after(self, after, upto=None, limit=2000):
        """Events with after < id (<= upto), oldest first, their bodies as
        stored (JSON text, not parsed): (cursor, kind, incident_id, body),
        the cursor here being the event id."""
        if upto is None:
            return [(r["id"], r["kind"], r["incident_id"], r["body"]) for r in self._x(
                "SELECT id, kind, incident_id, body FROM events WHERE id > ? ORDER BY id LIMIT ?",
                (after, limit)).fetchall()]
        return [(r["id"], r["kind"], r["incident_id"], r["body"]) for r in self._x(
            "SELECT id, kind, incident_id, body FROM events WHERE id > ? AND id <= ? ORDER BY id LIMIT ?",
            (after, upto, limit)).fetchall()]

    # ------------------------------------------------------------ users

    def user_add(self, name, role, pw_hash, actor=None, peer=None):
        if role not in ROLES:
            raise ReceiverError("role must be one of %s" % ", ".join(ROLES))
        with self.maybe_transaction():
            if self._x("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
                raise DuplicateUser("user %r already exists" % name)
            now = self._clock()
            self._write("INSERT INTO users (name, role, pw_hash, created, pw_changed) VALUES (?, ?, ?, ?, ?)",
                        (name, role, pw_hash, now, now))
            self.console_audit(actor, "user add", detail="%s role=%s" % (name, role), peer=peer)

    def user_get(self, name):
        """The account without its hash, or None."""
        return self._x("SELECT %s FROM users WHERE name = ?" % _USER, (name,)).fetchone()

    def user_hash(self, name):
        row = self._x("SELECT pw_hash FROM users WHERE name = ?", (name,)).fetchone()
        return None if row is None else row["pw_hash"]

    def users(self):
        return self._x("SELECT %s FROM users ORDER BY name" % _USER).fetchall()

    def _user_must(self, name):
        u = self.user_get(name)
        if u is None:
            raise UnknownUser("no user %r" % name)
        return u

    def user_set_disabled(self, name, disabled, actor=None, peer=None):
        """Disable (or enable) an account; disabling ends its sessions.
        Returns False when it already was."""
        with self.maybe_transaction():
            u = self._user_must(name)
            if bool(u["disabled"]) == bool(disabled):
                return False
            self._write("UPDATE users SET disabled = ? WHERE name = ?", (1 if disabled else 0, name))
            if disabled:
                self._write("DELETE FROM sessions WHERE user_name = ?", (name,))
            self.console_audit(actor, "user disable" if disabled else "user enable", detail=name, peer=peer)
            return True

    def user_set_password(self, name, pw_hash, actor=None, peer=None):
        """A new password hash; clears a lockout and ends every session of
        the account."""
        with self.maybe_transaction():
            self._user_must(name)
            self._write("UPDATE users SET pw_hash = ?, pw_changed = ?, failed_logins = 0, locked_until = NULL "
                        "WHERE name = ?", (pw_hash, self._clock(), name))
            self._write("DELETE FROM sessions WHERE user_name = ?", (name,))
            self.console_audit(actor, "user passwd", detail=name, peer=peer)

    def user_login_failed(self, name, now, max_failures, lock_s, peer=None):
        """Count a failed login of an existing account; at max_failures in
        a row it is locked for lock_s. Returns locked_until or None."""
        with self.maybe_transaction():
            u = self.user_get(name)
            if u is None:
                return None
            n = u["failed_logins"] + 1
            until = now + lock_s if n >= max_failures else None
            self._write("UPDATE users SET failed_logins = ?, locked_until = ? WHERE name = ?",
                        (0 if until else n, until if until else u["locked_until"], name))
            self.console_audit(name, "login failed", detail="lockout until %.0f" % until if until else "failure %d" % n,
                               peer=peer)
            return until

    def user_login_ok(self, name, now, peer=None):
        with self.maybe_transaction():
            self._write("UPDATE users SET failed_logins = 0, locked_until = NULL, last_login = ? WHERE name = ?",
                        (now, name))
            self.console_audit(name, "login", peer=peer)

    # ------------------------------------------------------------ sessions

    def session_create(self, token_hash_, user, csrf, now, peer=None):
        with self.maybe_transaction():
            self._write("INSERT INTO sessions (token_hash, user_name, csrf, created, last_seen, peer) "
                        "VALUES (?, ?, ?, ?, ?, ?)", (token_hash_, user, csrf, now, now, peer))

    def session_get(self, token_hash_):
        """The session with its account's role and state, or None."""
        return self._x(
            "SELECT s.token_hash, s.user_name, s.csrf, s.created, s.last_seen, s.peer, u.role, u.disabled "
            "FROM sessions s JOIN users u ON u.name = s.user_name WHERE s.token_hash = ?", (token_hash_,)).fetchone()

    def session_touch(self, token_hash_, now):
        with self.maybe_transaction():
            self._write("UPDATE sessions SET last_seen = ? WHERE token_hash = ?", (now, token_hash_))

    def session_delete(self, token_hash_):
        with self.maybe_transaction():
            self._write("DELETE FROM sessions WHERE token_hash = ?", (token_hash_,))

    def sessions_expire(self, idle_before, created_before):
        """Delete sessions idle since idle_before or made before
        created_before. Returns how many."""
        with self.maybe_transaction():
            cur = self._write("DELETE FROM sessions WHERE last_seen < ? OR created < ?", (idle_before, created_before))
            return cur.rowcount

    # ------------------------------------------------------------ audit

    def console_audit(self, user, action, device_id=None, incident_id=None, detail=None, peer=None):
        """One audit row for a console action: who (the account, beside the
        operating-system account of the process: store.acting), what,
        when, and from where (the browser's address)."""
        from receiver.store import acting

        with self.maybe_transaction():
            self._write("INSERT INTO audit (time, actor, action, device_id, detail, peer, incident_id) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (self._clock(), acting(user), action, device_id, detail, peer, incident_id))

    def audit_page(self, before=None, limit=200):
        """The newest audit rows (older than id `before`), newest first."""
        if before is None:
            return self._x("SELECT * FROM audit ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return self._x("SELECT * FROM audit WHERE id < ? ORDER BY id DESC LIMIT ?", (before, limit)).fetchall()

    # ------------------------------------------------------------ incidents as the console shows them

    def console_queue(self, since):
        """Incidents opened since `since` (Unix s) without an outcome, with
        their device's person reference and their handling."""
        return self._x(
            "SELECT %s, d.person_ref, %s, (SELECT COUNT(*) FROM escalations e WHERE e.incident_id = i.id) "
            "AS escalations FROM incidents i JOIN devices d ON d.device_id = i.device_id "
            "LEFT JOIN handling h ON h.incident_id = i.id WHERE i.opened_at >= ? AND h.outcome IS NULL"
            % (_INC, _HANDLING), (since,)).fetchall()

    def console_incident(self, incident_id):
        """One incident with its person reference and handling, or None."""
        return self._x(
            "SELECT %s, d.person_ref, %s, (SELECT COUNT(*) FROM escalations e WHERE e.incident_id = i.id) "
            "AS escalations FROM incidents i JOIN devices d ON d.device_id = i.device_id "
            "LEFT JOIN handling h ON h.incident_id = i.id WHERE i.id = ?" % (_INC, _HANDLING),
            (incident_id,)).fetchone()

    def incident_frames(self, incident_id, device_id, from_seq, limit=500):
        """The incident's frames, newest first (through the frames'
        (device_id, seq) index: no index on incident_id is kept, it would
        cost every frame an index write)."""
        return self._x(
            "SELECT id, seq, type, frame_time, arrival, transport, peer, decoded FROM frames "
            "WHERE device_id = ? AND seq >= ? AND incident_id = ? ORDER BY seq DESC LIMIT ?",
            (device_id, from_seq or 0, incident_id, limit)).fetchall()

    def incident_actions(self, incident_id):
        return self._x("SELECT * FROM incident_actions WHERE incident_id = ? ORDER BY id", (incident_id,)).fetchall()

    def incident_escalations(self, incident_id):
        return self._x("SELECT * FROM escalations WHERE incident_id = ? ORDER BY id", (incident_id,)).fetchall()

    def incidents_of_person(self, person_ref):
        return self._x(
            "SELECT %s, d.person_ref, %s FROM incidents i JOIN devices d ON d.device_id = i.device_id "
            "LEFT JOIN handling h ON h.incident_id = i.id WHERE d.person_ref = ? ORDER BY i.id DESC"
            % (_INC, _HANDLING), (person_ref,)).fetchall()

    def false_alarm_counts(self, since):
        """{person_ref: false alarms (either false outcome) opened since}."""
        return {r["person_ref"]: r["n"] for r in self._x(
            "SELECT d.person_ref AS person_ref, COUNT(*) AS n FROM incidents i JOIN devices d "
            "ON d.device_id = i.device_id JOIN handling h ON h.incident_id = i.id "
            "WHERE i.opened_at >= ? AND h.outcome IN ('false_accidental', 'false_malicious') GROUP BY d.person_ref",
            (since,)).fetchall()}

    def stats_rows(self, since):
        """Every incident opened since, with its handling (for statistics)."""
        return self._x(
            "SELECT i.id, i.kind, i.opened_at, i.opened_by, i.duress, %s FROM incidents i "
            "LEFT JOIN handling h ON h.incident_id = i.id WHERE i.opened_at >= ? ORDER BY i.id" % _HANDLING,
            (since,)).fetchall()

    def device_firmware(self):
        """{device_id: firmware version} as recorded (set_device_firmware)."""
        return {r["device_id"]: r["firmware"] for r in self._x("SELECT device_id, firmware FROM device_info").fetchall()}

    def set_device_firmware(self, device_id, version, actor=None):
        with self.maybe_transaction():
            self._write("INSERT INTO device_info (device_id, firmware, updated) VALUES (?, ?, ?) "
                        "ON CONFLICT (device_id) DO UPDATE SET firmware = excluded.firmware, updated = excluded.updated",
                        (device_id, version, self._clock()))
            self.console_audit(actor, "device firmware", device_id=device_id, detail=version)

    # ------------------------------------------------------------ handling: claims, notes, escalations, outcomes

    def _incident_must(self, incident_id):
        inc = self.console_incident(incident_id)
        if inc is None:
            raise UnknownIncident("no incident #%d" % incident_id)
        return inc

    def _ensure_handling(self, incident_id):
        self._write("INSERT INTO handling (incident_id) VALUES (?) ON CONFLICT (incident_id) DO NOTHING",
                    (incident_id,))

    def _record(self, inc, user, action, label, detail=None, peer=None, extra=None):
        """The three rows of every console action, in the caller's
        transaction: the incident's timeline, the audit, and an event for
        the feed (what `watch` prints and the console pushes)."""
        now = self._clock()
        self._write("INSERT INTO incident_actions (incident_id, time, actor, action, detail, peer) "
                    "VALUES (?, ?, ?, ?, ?, ?)", (inc["id"], now, user, action, detail, peer))
        self.console_audit(user, action, device_id=inc["device_id"], incident_id=inc["id"], detail=detail, peer=peer)
        ev = {"time": now, "kind": action, "label": label, "device_id": inc["device_id"],
              "person_ref": inc["person_ref"], "incident_id": inc["id"], "incident_kind": inc["kind"],
              "test": inc["kind"] == "test", "actor": user}
        if detail is not None:
            ev["detail"] = detail
        if extra:
            ev.update(extra)
        self.add_event(ev)
        return ev

    def claim(self, incident_id, user, peer=None, force=False):
        """Make `user` the owner. Exactly one of two operators claiming at
        once wins: the claim is a conditional UPDATE (owner still empty,
        or already this user) whose row count says who won. force (a
        supervisor's reassignment) takes it from anyone. Returns
        (won, owner); the loser learns the winner."""
        with self.maybe_transaction():
            inc = self._incident_must(incident_id)
            if inc["outcome"] is not None:
                raise Conflict("incident #%d is closed (%s)" % (incident_id, inc["outcome"]))
            self._ensure_handling(incident_id)
            now = self._clock()
            if force:
                cur = self._write("UPDATE handling SET owner = ?, claimed_at = ?, first_claimed_at = "
                                  "COALESCE(first_claimed_at, ?) WHERE incident_id = ?", (user, now, now, incident_id))
            else:
                cur = self._write("UPDATE handling SET owner = ?, claimed_at = ?, first_claimed_at = "
                                  "COALESCE(first_claimed_at, ?) WHERE incident_id = ? AND (owner IS NULL OR owner = ?)",
                                  (user, now, now, incident_id, user))
            if cur.rowcount != 1:
                owner = self._x("SELECT owner FROM handling WHERE incident_id = ?", (incident_id,)).fetchone()["owner"]
                return False, owner
            return True, user

    def claim_and_record(self, incident_id, user, peer=None, force=False, by=None):
        """claim() plus its timeline, audit and event rows, in one
        transaction. by: the supervisor who reassigned (force)."""
        with self.maybe_transaction():
            before = self._incident_must(incident_id)
            won, owner = self.claim(incident_id, user, peer, force)
            if won and before["owner"] != user:
                inc = self._incident_must(incident_id)
                if force:
                    self._record(inc, by or user, "reassigned", "REASSIGNED to %s by %s" % (user, by or user),
                                 detail="from %s to %s" % (before["owner"] or "nobody", user), peer=peer,
                                 extra={"owner": user})
                else:
                    self._record(inc, user, "claimed", "CLAIMED by %s" % user, peer=peer, extra={"owner": user})
            return won, owner

    def release(self, incident_id, user, peer=None, supervisor=False):
        """Give up a claim (its owner, or a supervisor)."""
        with self.maybe_transaction():
            inc = self._incident_must(incident_id)
            if inc["owner"] is None:
                raise Conflict("incident #%d is not claimed" % incident_id)
            if inc["owner"] != user and not supervisor:
                raise Conflict("incident #%d is %s's" % (incident_id, inc["owner"]))
            self._write("UPDATE handling SET owner = NULL, claimed_at = NULL WHERE incident_id = ?", (incident_id,))
            self._record(inc, user, "released", "RELEASED by %s" % user, detail="was %s's" % inc["owner"], peer=peer,
                         extra={"owner": None})

    def _progress(self, incident_id):
        self._ensure_handling(incident_id)
        self._write("UPDATE handling SET progressed_at = ? WHERE incident_id = ?", (self._clock(), incident_id))

    def add_note(self, incident_id, user, text, peer=None):
        with self.maybe_transaction():
            inc = self._incident_must(incident_id)
            self._progress(incident_id)
            self._record(inc, user, "note", "NOTE by %s" % user, detail=text, peer=peer)

    def record_command(self, incident_id, user, command, value=None, peer=None):
        """The timeline row of a device command queued through
        core.operator_command (which audits the command itself)."""
        with self.maybe_transaction():
            inc = self._incident_must(incident_id)
            self._progress(incident_id)
            detail = command if value is None else "%s %s s" % (command, value)
            self._record(inc, user, "command", "%s queued by %s" % (command.upper().replace("_", " "), user),
                         detail=detail, peer=peer, extra={"command": command, "value": value})

    def escalate(self, incident_id, user, force, reference, peer=None):
        """Police were called: which force or control room, and the
        reference they gave."""
        with self.maybe_transaction():
            inc = self._incident_must(incident_id)
            now = self._clock()
            self._write("INSERT INTO escalations (incident_id, time, force, reference, actor) VALUES (?, ?, ?, ?, ?)",
                        (incident_id, now, force, reference, user))
            self._progress(incident_id)
            self._record(inc, user, "escalated", "ESCALATED to %s by %s" % (force, user),
                         detail="%s, reference %s" % (force, reference), peer=peer,
                         extra={"force": force, "reference": reference})

    def close_incident(self, incident_id, user, outcome, note=None, peer=None):
        """Record the outcome. Conflict if it has one already."""
        if outcome not in OUTCOMES:
            raise ReceiverError("outcome must be one of %s" % ", ".join(OUTCOMES))
        with self.maybe_transaction():
            inc = self._incident_must(incident_id)
            if inc["outcome"] is not None:
                raise Conflict("incident #%d was closed already (%s by %s)" % (incident_id, inc["outcome"],
                                                                              inc["outcome_by"]))
            self._ensure_handling(incident_id)
            now = self._clock()
            cur = self._write("UPDATE handling SET outcome = ?, outcome_at = ?, outcome_by = ?, progressed_at = ? "
                              "WHERE incident_id = ? AND outcome IS NULL", (outcome, now, user, now, incident_id))
            if cur.rowcount != 1:
                raise Conflict("incident #%d was closed already" % incident_id)
            self._record(inc, user, "closed", "CLOSED by %s: %s" % (user, outcome.replace("_", " ")),
                         detail=outcome + (": " + note if note else ""), peer=peer,
                         extra={"outcome": outcome, "note": note})

    def reopen_incident(self, incident_id, user, reason, peer=None):
        with self.maybe_transaction():
            inc = self._incident_must(incident_id)
            if inc["outcome"] is None:
                raise Conflict("incident #%d is open" % incident_id)
            self._write("UPDATE handling SET outcome = NULL, outcome_at = NULL, outcome_by = NULL, "
                        "reopened = reopened + 1 WHERE incident_id = ?", (incident_id,))
            self._record(inc, user, "reopened", "RE-OPENED by %s" % user,
                         detail="was %s; %s" % (inc["outcome"], reason), peer=peer,
                         extra={"previous_outcome": inc["outcome"]})


def event_id_of(cursor):
    """The event id a feed cursor ends at (an id, or (transaction, id))."""
    return cursor if isinstance(cursor, int) else cursor[1]


def event_json_with_id(event_id, body):
    """An event's stored JSON body with its id first (no parse)."""
    if body.startswith("{") and len(body) > 2:
        return '{"event_id":%d,%s' % (event_id, body[1:])
    return json.dumps({"event_id": event_id})
