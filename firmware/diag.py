"""Diagnostics console on the USB serial: silent until an engineer proves the key.

Owns: the console's line protocol and session state, sans-I/O. The caller
feeds the bytes read from the USB serial with `now` (monotonic ms) and
writes back whatever bytes `feed`/`poll` return. Theory in docs/diag.md.

Rules:
- Unauthenticated, the console writes NOTHING: no banner, no prompt, no echo,
  no error text, not even for a correct-looking hello with a wrong tag. The
  first byte it ever writes is the answer to a hello whose HMAC (engineer
  key) verifies, and that answer is itself an HMAC the host checks, so a fake
  device cannot pretend to pass either.
- Hello attempts that fail verification lock the console out for an
  exponentially growing time (2 s, 4 s, ... capped at 1 h); during a lock-out
  hellos are dropped unverified. Failures, lock-outs, junk lines, overlong
  lines and bad MACs are counted (`counters()`), never shown unauthenticated.
- A session has its own key (from both nonces); every command and every
  response carries an HMAC under it and a sequence number, so bytes
  injected, replayed or changed on the USB link are dropped.
- Sessions end on `bye`, after IDLE_MS without a valid command, after
  SESSION_MS in total, or after BAD_MAC_LIMIT bad MACs.
- Never blocks, never raises into the caller (a failing provider becomes an
  error response), refuses `test` while an alert is active, and never
  sends key material: status dicts are scrubbed of any field named like a
  key or secret.

The provider (wired by the App; see docs/diag.md) has:
    status() -> dict            what `status` reports (no secrets)
    alert_active() -> bool      a real alert is running
    send_test(now) -> token     start a TEST alert; None if it cannot now
    test_result(token) -> dict|None   None while the round trip is pending
    events() -> list of str     the event log, oldest first

Stays in sync with: tools/diaglink.py (the host half uses the label and line
functions below) and docs/diag.md.
"""

import binascii
import json

from protocol.crypto import Hmac, tags_equal

try:
    from micropython import const  # pyright: ignore[reportAssignmentType]
except ImportError:  # CPython

    def const(x):
        return x


VERSION = "DIAG1"
MAX_LINE = const(512)  # longest line accepted; longer ones are dropped whole
NONCE_LEN = const(16)
TAG_HEX = const(64)
LOCK_BASE_MS = const(2000)
LOCK_MAX_MS = const(3600000)
IDLE_MS = const(120000)
SESSION_MS = const(1800000)
BAD_MAC_LIMIT = const(3)
LOG_PAGE = const(16)  # event-log lines per response
SEEN_NONCES = const(8)  # host nonces remembered (no replay within a boot)
MAX_DEPTH = const(4)  # JSON nesting a request may have; a command is a flat object

L_HELLO = b"diag1 hello "
L_ACCEPT = b"diag1 accept "
L_SESSION = b"diag1 session "
D_HOST = b"H"
D_DEV = b"D"

_SECRET_WORDS = ("key", "secret", "password", "pin_code")


def _hex(b):
    return binascii.hexlify(b).decode()


def _unhex(s):
    try:
        return binascii.unhexlify(s)
    except (ValueError, TypeError):
        return None


# -- line forms shared with the host half (tools/diaglink.py) -------------


def hello_line(ek_mac, hn):
    """The host's hello: DIAG1 <host nonce hex> <HMAC(ek, hello|hn) hex>."""
    return ("%s %s %s\n" % (VERSION, _hex(hn), _hex(ek_mac.digest(L_HELLO, hn)))).encode()


def accept_tag(ek_mac, hn, dn):
    return ek_mac.digest(L_ACCEPT, hn + dn)


def session_key(ek_mac, hn, dn):
    return ek_mac.digest(L_SESSION, hn + dn)


def sealed_line(sk_mac, direction, body):
    """body (JSON text bytes) + space + HMAC(sk, direction|body) hex + LF."""
    return body + b" " + _hex(sk_mac.digest(direction, body)).encode() + b"\n"


def open_line(sk_mac, direction, line):
    """Verify a sealed line; return the JSON body bytes or None."""
    i = line.rfind(b" ")
    if i < 0 or len(line) - i - 1 != TAG_HEX:
        return None
    tag = _unhex(line[i + 1 :])
    if tag is None:
        return None
    body = line[:i]
    if not tags_equal(sk_mac.digest(direction, body), tag):
        return None
    return body


def flat_enough(body, limit=MAX_DEPTH):
    """True when the JSON text nests at most `limit` deep (brackets inside
    strings not counted). Checked before json.loads: MicroPython's parser
    grows a stack per level, and 200 levels in a 512-byte line ran a 96 KB
    heap out of memory (the console fuzz campaign, fuzz/console.py)."""
    depth = 0
    in_str = False
    esc = False
    for c in body:
        if in_str:
            if esc:
                esc = False
            elif c == 92:  # backslash
                esc = True
            elif c == 34:  # quote
                in_str = False
        elif c == 34:
            in_str = True
        elif c == 91 or c == 123:  # [ {
            depth += 1
            if depth > limit:
                return False
        elif c == 93 or c == 125:  # ] }
            depth -= 1
    return True


def scrub(obj):
    """A copy of obj without any dict field whose name says key/secret."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            lk = str(k).lower()
            hit = False
            for w in _SECRET_WORDS:
                if w in lk:
                    hit = True
                    break
            if not hit:
                out[k] = scrub(v)
        return out
    if isinstance(obj, (list, tuple)):
        return [scrub(v) for v in obj]
    if isinstance(obj, (bytes, bytearray)):
        return None  # raw bytes never leave
    return obj


# -- states ----------------------------------------------------------------
S_SILENT = const(0)
S_SESSION = const(1)


class Diag:
    def __init__(self, engineer_key, provider, rand=None, fails=0, lockouts=0):
        """engineer_key: 32 raw bytes. rand(n) -> n random bytes (default
        os.urandom). fails/lockouts: counters restored from flash, if the App
        keeps them across resets (so a power cycle does not reset the lock)."""
        if rand is None:
            import os

            rand = os.urandom
        self._ek = Hmac(engineer_key)
        self._p = provider
        self._rand = rand
        self._buf = bytearray(MAX_LINE)
        self._n = 0
        self._overlong = False
        self._state = S_SILENT
        self._sk = None
        self._seq = 0
        self._idle_at = 0
        self._end_at = 0
        self._bad_mac = 0
        self._fails = fails
        self._locked_until = None  # lock computed lazily from the first `now`
        self._relock = fails > 0
        self._seen = []
        self.n = {
            "auth_ok": 0,
            "auth_fail": 0,
            "lockouts": lockouts,
            "locked_drop": 0,
            "junk": 0,
            "overlong": 0,
            "bad_mac": 0,
            "replay": 0,
            "provider_errors": 0,
            "sessions_ended": 0,
            "line_errors": 0,
        }

    def __repr__(self):
        return "<Diag %s>" % ("session" if self._state == S_SESSION else "silent")

    # -- queries --------------------------------------------------------
    def active(self):
        """An authenticated session is open."""
        return self._state == S_SESSION

    def counters(self):
        d = dict(self.n)
        d["fails"] = self._fails
        return d

    def persist_state(self):
        """(fails, lockouts) for the App to keep across resets."""
        return self._fails, self.n["lockouts"]

    # -- input ----------------------------------------------------------
    def poll(self, now):
        """Time passes: end an idle or over-long session. Returns b""."""
        if self._state == S_SESSION and (now - self._idle_at >= 0 or now - self._end_at >= 0):
            self._end()
        return b""

    def feed(self, data, now):
        """Bytes from the USB serial; returns the bytes to write back."""
        self.poll(now)
        out = b""
        for c in data:
            if c == 10:  # LF ends a line
                if self._overlong:
                    self._overlong = False
                    self.n["overlong"] += 1
                elif self._n:
                    try:
                        r = self._line(bytes(self._buf[: self._n]), now)
                    except Exception:  # noqa: BLE001 - e.g. MemoryError: drop the line, never raise into the App
                        self.n["line_errors"] += 1
                        r = None
                    if r:
                        out += r
                self._n = 0
            elif c == 13:
                continue
            elif self._overlong:
                continue
            elif self._n >= MAX_LINE:
                self._overlong = True
                self._n = 0
            else:
                self._buf[self._n] = c
                self._n += 1
        return out

    def _line(self, line, now):
        if self._state == S_SESSION:
            return self._command(line, now)
        return self._hello(line, now)

    # -- unauthenticated -------------------------------------------------
    def _locked(self, now):
        if self._relock:  # restored failures: lock from the first `now` we see
            self._relock = False
            self._locked_until = now + self._lock_ms()
        return self._locked_until is not None and now - self._locked_until < 0

    def _lock_ms(self):
        sh = self._fails - 1
        if sh > 20:
            sh = 20
        ms = LOCK_BASE_MS << sh
        return LOCK_MAX_MS if ms > LOCK_MAX_MS else ms

    def _hello(self, line, now):
        parts = line.split(b" ")
        if len(parts) != 3 or parts[0] != VERSION.encode():
            self.n["junk"] += 1
            return b""
        if self._locked(now):
            self.n["locked_drop"] += 1
            return b""
        hn = _unhex(parts[1])
        tag = _unhex(parts[2])
        ok = (
            hn is not None
            and len(hn) == NONCE_LEN
            and tag is not None
            and tags_equal(self._ek.digest(L_HELLO, hn), tag)
        )
        if ok and hn in self._seen:
            self.n["replay"] += 1
            ok = False
        if not ok:
            self._fails += 1
            self.n["auth_fail"] += 1
            self.n["lockouts"] += 1
            self._locked_until = now + self._lock_ms()
            return b""
        self._seen.append(hn)
        if len(self._seen) > SEEN_NONCES:
            self._seen.pop(0)
        self._fails = 0
        self._locked_until = None
        self.n["auth_ok"] += 1
        dn = self._rand(NONCE_LEN)
        self._sk = Hmac(session_key(self._ek, hn, dn))
        self._state = S_SESSION
        self._seq = 0
        self._bad_mac = 0
        self._idle_at = now + IDLE_MS
        self._end_at = now + SESSION_MS
        return ("%s %s %s\n" % (VERSION, _hex(dn), _hex(accept_tag(self._ek, hn, dn)))).encode()

    def _hello_tag_ok(self, line):
        parts = line.split(b" ")
        if len(parts) != 3:
            return False
        hn = _unhex(parts[1])
        tag = _unhex(parts[2])
        if hn is None or tag is None or hn in self._seen:  # a replay must not end a live session
            return False
        return tags_equal(self._ek.digest(L_HELLO, hn), tag)

    def _end(self):
        self._state = S_SILENT
        self._sk = None
        self._seq = 0
        self.n["sessions_ended"] += 1

    # -- authenticated ---------------------------------------------------
    def _command(self, line, now):
        body = open_line(self._sk, D_HOST, line)
        if body is None and line.startswith(b"DIAG1 ") and self._hello_tag_ok(line):
            # The engineer's tool restarted mid-session: a fresh, verified
            # hello replaces the old session (it proves the key).
            self._end()
            return self._hello(line, now)
        if body is None:
            self.n["bad_mac"] += 1
            self._bad_mac += 1
            if self._bad_mac >= BAD_MAC_LIMIT:
                self._end()
            return b""
        try:
            if not flat_enough(body):
                raise ValueError("nested too deep")
            req = json.loads(body)
            seq = req["seq"]
            cmd = req["cmd"]
        except (ValueError, KeyError, TypeError):
            # MAC was right, so the host is the engineer's tool: say so.
            return self._reply({"seq": None, "ok": False, "error": "malformed request"})
        if not isinstance(seq, int) or seq != self._seq + 1:
            self.n["replay"] += 1
            return b""
        self._seq = seq
        self._idle_at = now + IDLE_MS
        try:
            resp = self._run(cmd, req, now)
        except Exception:  # a provider fault must not take the App down
            self.n["provider_errors"] += 1
            resp = {"ok": False, "error": "provider failed"}  # type: dict
        resp["seq"] = seq
        resp["cmd"] = cmd
        out = self._reply(resp)
        if cmd == "bye":
            self._end()
        return out

    def _reply(self, resp):
        body = json.dumps(scrub(resp)).encode()
        return sealed_line(self._sk, D_DEV, body)

    def _run(self, cmd, req, now):
        p = self._p
        if cmd == "status":
            st = p.status()
            st = dict(st) if isinstance(st, dict) else {"value": st}
            st["diag"] = self.counters()
            return {"ok": True, "status": st}
        if cmd == "test":
            if p.alert_active():
                return {"ok": False, "error": "alert active: test refused"}
            tok = p.send_test(now)
            if tok is None:
                return {"ok": False, "error": "busy: try again"}
            return {"ok": True, "token": tok}
        if cmd == "result":
            r = p.test_result(req.get("token"))
            if r is None:
                return {"ok": True, "done": False}
            return {"ok": True, "done": True, "result": r}
        if cmd == "log":
            ev = p.events()
            start = req.get("start", 0)
            if not isinstance(start, int) or start < 0:
                start = 0
            page = ev[start : start + LOG_PAGE]
            return {"ok": True, "events": [str(e) for e in page], "start": start, "total": len(ev)}
        if cmd == "bye":
            return {"ok": True}
        return {"ok": False, "error": "unknown command"}
