"""Diagnostics console: silence without the key, lock-out, sealed session."""

import binascii
import json

from mpcheck import raises  # noqa: F401  (shared helper module must import)

from firmware import diag as D
from protocol.crypto import Hmac

EK = bytes(range(32))
WRONG = bytes(range(1, 33))


class FakeProvider:
    def __init__(self):
        self.alert = False
        self.tests = []
        self.results = {}
        self.log = ["boot", "gnss fix", "modem registered"]
        self.fail = False

    def status(self):
        if self.fail:
            raise RuntimeError("boom")
        return {
            "firmware": "1.2.3",
            "config": {"device_id": 7, "apn": "internet", "key_hex": "00" * 32, "engineer_key_hex": "11" * 32},
            "button": 1,
            "gnss": {"fix": True, "sats": 7},
            "modem": {"sim": "READY", "reg": 1, "operator": "Op", "csq": 20, "cell": [234, 15, 1, 2, -90]},
            "battery_mv": 3900,
            "flash": "ok",
            "outbox": 0,
            "faults": [],
            "secret": b"\x00",
        }

    def alert_active(self):
        return self.alert

    def send_test(self, now):
        self.tests.append(now)
        return len(self.tests)

    def test_result(self, token):
        return self.results.get(token)

    def events(self):
        return self.log


class Host:
    """Minimal engineer side built from the shared line functions."""

    def __init__(self, key, hn=b"\x42" * 16):
        self.ek = Hmac(key)
        self.hn = hn
        self.sk = None
        self.seq = 0

    def hello(self):
        return D.hello_line(self.ek, self.hn)

    def accept(self, line):
        parts = line.strip().split(b" ")
        assert parts[0] == b"DIAG1"
        dn = binascii.unhexlify(parts[1])
        assert D.accept_tag(self.ek, self.hn, dn) == binascii.unhexlify(parts[2])
        self.sk = Hmac(D.session_key(self.ek, self.hn, dn))

    def cmd(self, name, **kw):
        self.seq += 1
        req = {"seq": self.seq, "cmd": name}
        for k in kw:
            req[k] = kw[k]
        return D.sealed_line(self.sk, D.D_HOST, json.dumps(req).encode())

    def open(self, out):
        body = D.open_line(self.sk, D.D_DEV, out.strip())
        assert body is not None, "response MAC does not verify"
        return json.loads(body)


def _rand(n):
    return b"\x17" * n


def _login(p=None, key=EK, now=0):
    p = p or FakeProvider()
    d = D.Diag(EK, p, rand=_rand)
    h = Host(key)
    out = d.feed(h.hello(), now)
    return d, h, p, out


def test_silent_to_everything_without_key():
    d = D.Diag(EK, FakeProvider(), rand=_rand)
    junk = [b"\r\n", b"AT\r\n", b"help\n", b"\x03\x03\x01\x04", b"\x02\r\n>>> \n", b"DIAG1\n", b"DIAG1 00 00 00 00\n",
            b"x" * 2000 + b"\n", bytes(range(256)), b"status\n"]
    now = 0
    for j in junk:
        assert d.feed(j, now) == b""
        now += 100000
    # a well-formed hello with a wrong key: still nothing
    assert d.feed(Host(WRONG).hello(), now) == b""
    assert not d.active()
    c = d.counters()
    assert c["auth_fail"] == 1 and c["junk"] >= 3 and c["overlong"] == 1
    # a malformed hello counts as a failed attempt too, and is locked out
    assert d.feed(b"DIAG1 00 00\n", now + 100000) == b""
    assert d.counters()["auth_fail"] == 2


def test_correct_hello_answers_with_verifiable_accept():
    d, h, p, out = _login()
    assert out.startswith(b"DIAG1 ") and out.endswith(b"\n")
    h.accept(out)
    assert d.active()


def test_hello_fed_one_byte_at_a_time():
    d = D.Diag(EK, FakeProvider(), rand=_rand)
    h = Host(EK)
    out = b""
    for b in h.hello():
        out += d.feed(bytes([b]), 5)
    h.accept(out)
    r = b""
    for b in h.cmd("status"):
        r += d.feed(bytes([b]), 6)
    assert h.open(r)["ok"] is True


def test_wrong_attempts_lock_out_exponentially():
    d = D.Diag(EK, FakeProvider(), rand=_rand)
    bad = Host(WRONG).hello()
    good = Host(EK).hello()
    assert d.feed(bad, 0) == b""  # fail 1: locked 2 s
    assert d.feed(good, 1999) == b""  # dropped unverified during the lock
    assert d.counters()["locked_drop"] == 1
    assert d.feed(bad, 2000) == b""  # fail 2: locked 4 s
    assert d.feed(good, 5999) == b""
    assert d.feed(bad, 6000) == b""  # fail 3: locked 8 s
    assert d.feed(good, 13999) == b""
    assert d.counters()["lockouts"] == 3
    out = d.feed(good, 14000)
    Host(EK).accept(out)
    assert d.counters()["fails"] == 0


def test_lockout_is_capped_and_survives_restart_via_counters():
    d = D.Diag(EK, FakeProvider(), rand=_rand)
    bad = Host(WRONG).hello()
    now = 0
    for _ in range(30):
        d.feed(bad, now)
        now += D.LOCK_MAX_MS
    fails, lockouts = d.persist_state()
    assert fails == 30 and lockouts == 30
    d2 = D.Diag(EK, FakeProvider(), rand=_rand, fails=fails, lockouts=lockouts)
    assert d2.feed(Host(EK, b"\x01" * 16).hello(), 1000) == b""  # still locked after the restart
    assert d2.feed(Host(EK, b"\x02" * 16).hello(), 1000 + D.LOCK_MAX_MS) != b""


def test_replayed_hello_in_same_boot_is_refused():
    d, h, p, out = _login()
    h.accept(out)
    d.feed(h.cmd("bye"), 10)
    assert not d.active()
    assert d.feed(Host(EK).hello(), 20) == b""  # same host nonce again
    assert d.counters()["replay"] == 1


def test_status_is_sealed_and_has_no_secrets():
    d, h, p, out = _login()
    h.accept(out)
    r = d.feed(h.cmd("status"), 10)
    resp = h.open(r)
    assert resp["ok"] and resp["seq"] == 1
    st = resp["status"]
    assert st["firmware"] == "1.2.3" and st["gnss"]["sats"] == 7 and st["modem"]["operator"] == "Op"
    assert "key_hex" not in st["config"] and "engineer_key_hex" not in st["config"]
    assert "secret" not in st
    assert b"00" * 32 not in r and b"11" * 32 not in r
    assert binascii.hexlify(EK) not in r
    assert st["diag"]["auth_ok"] == 1


def test_tampered_or_replayed_command_is_dropped():
    d, h, p, out = _login()
    h.accept(out)
    line = h.cmd("status")
    t = bytearray(line)
    t[10] ^= 1
    assert d.feed(bytes(t), 10) == b""
    assert d.feed(line, 11) != b""
    assert d.feed(line, 12) == b""  # same seq again
    c = d.counters()
    assert c["bad_mac"] == 1 and c["replay"] == 1


def test_bad_macs_end_the_session():
    d, h, p, out = _login()
    h.accept(out)
    for i in range(D.BAD_MAC_LIMIT):
        assert d.feed(b'{"seq":1,"cmd":"status"} ' + b"0" * 64 + b"\n", 10 + i) == b""
    assert not d.active()
    assert d.feed(h.cmd("status"), 20) == b""


def test_session_times_out_when_idle():
    d, h, p, out = _login()
    h.accept(out)
    d.poll(D.IDLE_MS - 1)
    assert d.active()
    d.poll(D.IDLE_MS)
    assert not d.active()
    assert d.feed(h.cmd("status"), D.IDLE_MS + 1) == b""


def test_session_has_a_total_limit():
    d, h, p, out = _login()
    h.accept(out)
    now = 0
    while now < D.SESSION_MS - 60000:
        now += 60000
        assert h.open(d.feed(h.cmd("status"), now))["ok"]
    now = D.SESSION_MS
    assert d.feed(h.cmd("status"), now) == b""
    assert not d.active()


def test_test_alert_round_trip_and_refused_during_alert():
    d, h, p, out = _login()
    h.accept(out)
    p.alert = True
    r = h.open(d.feed(h.cmd("test"), 10))
    assert r["ok"] is False and "alert" in r["error"]
    assert p.tests == []
    p.alert = False
    r = h.open(d.feed(h.cmd("test"), 20))
    assert r["ok"] and r["token"] == 1
    r = h.open(d.feed(h.cmd("result", token=1), 30))
    assert r["ok"] and r["done"] is False
    p.results[1] = {"acked": True, "rtt_ms": 2300}
    r = h.open(d.feed(h.cmd("result", token=1), 40))
    assert r["done"] and r["result"]["acked"] and r["result"]["rtt_ms"] == 2300


def test_log_pages():
    p = FakeProvider()
    p.log = ["event %d" % i for i in range(40)]
    d, h, _, out = _login(p)
    h.accept(out)
    r = h.open(d.feed(h.cmd("log"), 1))
    assert r["total"] == 40 and r["events"][0] == "event 0" and len(r["events"]) == D.LOG_PAGE
    r = h.open(d.feed(h.cmd("log", start=32), 2))
    assert r["events"] == ["event %d" % i for i in range(32, 40)]


def test_provider_fault_becomes_error_response():
    p = FakeProvider()
    p.fail = True
    d, h, _, out = _login(p)
    h.accept(out)
    r = h.open(d.feed(h.cmd("status"), 1))
    assert r["ok"] is False and r["error"] == "provider failed"
    assert d.counters()["provider_errors"] == 1
    assert d.active()


def test_unknown_command_and_bye():
    d, h, p, out = _login()
    h.accept(out)
    assert h.open(d.feed(h.cmd("format"), 1))["error"] == "unknown command"
    r = h.open(d.feed(h.cmd("bye"), 2))
    assert r["ok"]
    assert not d.active()
    assert d.feed(h.cmd("status"), 3) == b""


def test_repr_shows_no_key():
    d = D.Diag(EK, FakeProvider(), rand=_rand)
    assert "0001020304" not in repr(d) and "session" not in repr(d)


def test_fresh_hello_replaces_a_session_left_open():
    d, h, p, out = _login()
    h.accept(out)
    h2 = Host(EK, b"\x55" * 16)
    out2 = d.feed(h2.hello(), 10)
    h2.accept(out2)
    assert h2.open(d.feed(h2.cmd("status"), 11))["ok"]
    assert d.feed(h.cmd("status"), 12) == b""  # the old session is gone


def test_wrong_or_replayed_hello_inside_a_session_is_just_a_bad_line():
    d, h, p, out = _login()
    h.accept(out)
    assert d.feed(Host(WRONG, b"\x66" * 16).hello(), 13) == b""
    assert d.feed(h.hello(), 14) == b""  # replay of the hello that opened this session
    assert d.active() and d.counters()["auth_fail"] == 0 and d.counters()["bad_mac"] == 2
    assert h.open(d.feed(h.cmd("status"), 15))["ok"]
