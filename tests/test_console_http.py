"""The console over plain HTTP against a real `panic receiver serve
--console`: what an unauthenticated request sees, the security headers,
sign-in throttling and lockout, CSRF and Origin checks, roles, claims from
two sessions at once, bad input answered and counted, the SSE replay from
Last-Event-ID, an idle session ending, TLS cookies, and the position
estimate (receiver/estimate.py) with its evidence on every view."""

import concurrent.futures
import datetime
import http.client
import json
import os
import re
import ssl
import threading
import time
import urllib.parse

import pytest

from protocol import frame as F

from console_helpers import GNSS, PASSWORD, Rx

CELL_HEADER = "radio,mcc,net,area,cell,unit,lon,lat,range,samples,changeable,created,updated,averageSignal\n"
SERVING = (234, 15, 6699, 30125732, -97)  # a serving cell TLV (AT+CPSI?) the imported set knows
HEADERS = ("Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options", "Referrer-Policy")


class Client:
    """One browser-like session: cookies, no redirects followed."""

    def __init__(self, port, tls=None):
        self.port = port
        self.tls = tls
        self.cookies = {}
        self.csrf = None

    def conn(self):
        if self.tls is not None:
            return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=20, context=self.tls)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)

    def req(self, method, path, form=None, headers=None, raw=None):
        c = self.conn()
        h = {"Cookie": "; ".join("%s=%s" % kv for kv in self.cookies.items())} if self.cookies else {}
        body = raw
        if form is not None:
            body = urllib.parse.urlencode(form).encode()
            h["Content-Type"] = "application/x-www-form-urlencoded"
        h.update(headers or {})
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        data = r.read().decode("utf-8", "replace")
        for k, v in r.getheaders():
            if k.lower() == "set-cookie":
                name, _, rest = v.partition("=")
                val = rest.split(";")[0]
                if "Max-Age=0" in v or val in ('""', ""):
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = val
        c.close()
        m = re.search(r'data-csrf="([^"]+)"', data)
        if m:
            self.csrf = m.group(1)
        r.text = data
        return r

    def login(self, name, password=PASSWORD):
        page = self.req("GET", "/login")
        tok = re.search(r'name="login_csrf" value="([^"]+)"', page.text).group(1)
        return self.req("POST", "/login", {"login_csrf": tok, "next": "/", "name": name, "password": password})

    def post(self, path, form=None, csrf=True):
        f = dict(form or {})
        if csrf:
            f["csrf"] = self.csrf
        return self.req("POST", path, f)


@pytest.fixture(scope="module")
def rx(tmp_path_factory):
    rx = Rx(tmp_path_factory.mktemp("console-http"), "--tiles", "")
    rx.serve(console=False)
    rx.stop()
    for name, role in (("alice", "operator"), ("bob", "operator"), ("sue", "supervisor"), ("adam", "admin")):
        rx.add_user(name, role)
    rx.devs = [rx.add_device(2000 + i) for i in range(7)]
    cells = os.path.join(rx.tmp, "cells.csv")
    with open(cells, "w") as f:
        f.write(CELL_HEADER + "LTE,234,15,6699,30125732,257,-0.1300,51.5050,1500,40,1,1600000000,1700000000,0\n")
    r = rx.panic("locations", "import", "--db", rx.db, cells)
    assert r.returncode == 0, r.stderr
    rx.serve()
    yield rx
    rx.stop()


def signed_in(rx, name):
    c = Client(rx.console_port)
    r = c.login(name)
    assert r.status == 303 and r.getheader("Location") == "/", r.text
    c.req("GET", "/")
    return c


def alarm(rx, i):
    d = rx.devs[i]
    rx.send(d, d.frame(F.ALERT, **GNSS))
    st = rx.store()
    try:
        return max(r["id"] for r in st.incidents() if r["device_id"] == d.id)
    finally:
        st.close()


def test_without_a_session_only_the_sign_in_page(rx):
    iid = alarm(rx, 0)
    c = Client(rx.console_port)
    for path in ("/", "/devices", "/stats", "/stats.csv", "/audit", "/admin/users", "/incident/%d" % iid,
                 "/incident/%d/summary" % iid, "/person?ref=URN-2000/26"):
        r = c.req("GET", path)
        assert r.status == 303 and r.getheader("Location").startswith("/login?next="), path
        assert "URN" not in r.text
    for path in ("/events", "/queue/rows?ids=%d" % iid, "/incident/%d/map.json" % iid, "/incident/%d/timeline" % iid):
        r = c.req("GET", path)
        assert r.status == 401 and "URN" not in r.text, path
    r = c.req("POST", "/incident/%d/claim" % iid, {"csrf": "x"})
    assert r.status == 401 and "URN" not in r.text and 'action="/login"' in r.text
    login = c.req("GET", "/login")
    assert login.status == 200 and 'action="/login"' in login.text
    for h in HEADERS:
        assert login.getheader(h), h
    csp = login.getheader("Content-Security-Policy")
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert login.getheader("X-Frame-Options") == "DENY" and login.getheader("Cache-Control") == "no-store"
    js = c.req("GET", "/static/console.js")
    assert js.status == 200 and js.getheader("X-Content-Type-Options") == "nosniff"
    cookie = login.getheader("Set-Cookie")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie


def test_sign_in_cookie_wrong_password_and_lockout(rx):
    rx.add_user("carol", "operator")
    c = Client(rx.console_port)
    r = c.login("carol", "not the password at all")
    assert r.status == 401 and "Wrong name or password" in r.text and "panic_session" not in c.cookies
    r = c.login("nobody-here", PASSWORD)
    assert r.status == 401 and "Wrong name or password" in r.text
    for _ in range(4):
        c.login("carol", "still not the password")
    r = c.login("carol", PASSWORD)
    assert r.status == 401 and "locked" in r.text and "panic_session" not in c.cookies
    # an admin's new password lifts the lockout
    assert rx.panic("user", "passwd", "--db", rx.db, "--name", "carol", "--password-stdin",
                    stdin="a brand new passphrase\n").returncode == 0
    r = c.login("carol", "a brand new passphrase")
    assert r.status == 303
    set_cookie = [v for k, v in r.getheaders() if k == "Set-Cookie" and v.startswith("panic_session=")][0]
    assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie and "Path=/" in set_cookie
    # the store keeps only a hash of the token
    st = rx.store()
    try:
        assert c.cookies["panic_session"] not in json.dumps(st.audit_log())
    finally:
        st.close()


def test_csrf_and_origin_are_checked_on_every_change(rx):
    iid = alarm(rx, 1)
    c = signed_in(rx, "alice")
    good = c.csrf
    assert c.post("/incident/%d/claim" % iid, csrf=False).status == 403
    c.csrf = "A" * 43
    r = c.post("/incident/%d/claim" % iid)
    assert r.status == 403 and "security token" in r.text
    c.csrf = good
    r = c.req("POST", "/incident/%d/claim" % iid, {"csrf": good}, headers={"Origin": "http://evil.example"})
    assert r.status == 403
    st = rx.store()
    try:
        assert st.console_incident(iid)["owner"] is None
        assert [a["action"] for a in st.audit_log()].count("csrf refused") >= 2
    finally:
        st.close()
    r = c.post("/incident/%d/claim" % iid)
    assert r.status == 303
    # the token also goes in a header (the page's script)
    r = c.req("POST", "/incident/%d/note" % iid, {"text": "called the person"},
              headers={"X-CSRF-Token": good, "Origin": "http://127.0.0.1:%d" % rx.console_port})
    assert r.status == 303


def test_roles(rx):
    iid = alarm(rx, 2)
    op = signed_in(rx, "bob")
    assert op.req("GET", "/admin/users").status == 403
    r = op.post("/admin/users", {"name": "mallory", "role": "admin", "password": "mallory's passphrase"})
    assert r.status == 403 and "admin role" in r.text
    assert op.req("GET", "/audit").status == 403
    assert op.post("/incident/%d/reopen" % iid, {"reason": "x"}).status == 403
    assert op.post("/incident/%d/listen-in" % iid).status == 403  # not claimed: claim it first
    sue = signed_in(rx, "sue")
    assert sue.req("GET", "/audit").status == 200
    assert sue.req("GET", "/admin/users").status == 403
    r = sue.post("/incident/%d/reassign" % iid, {"to": "bob"})
    assert r.status == 303
    adam = signed_in(rx, "adam")
    r = adam.post("/admin/users", {"name": "dave", "role": "operator", "password": "an operator's passphrase"})
    assert r.status == 303
    assert Client(rx.console_port).login("dave", "an operator's passphrase").status == 303
    st = rx.store()
    try:
        assert st.user_get("mallory") is None and st.user_get("dave")["role"] == "operator"
        assert st.console_incident(iid)["owner"] == "bob"
        forb = [r for r in st.audit_log() if r["action"] == "forbidden"]
        assert forb and forb[-1]["peer"] == "127.0.0.1"
    finally:
        st.close()


def test_two_sessions_claiming_at_once_exactly_one_wins(rx):
    a, b = signed_in(rx, "alice"), signed_in(rx, "bob")
    for k in range(3, 6):
        iid = alarm(rx, k)
        go = threading.Barrier(2)

        def claim(c, go=go, iid=iid):
            go.wait()
            return c.post("/incident/%d/claim" % iid)

        with concurrent.futures.ThreadPoolExecutor(2) as ex:
            ra, rb = ex.map(claim, (a, b))
        assert sorted([ra.status, rb.status]) == [303, 409], (ra.status, rb.status)
        loser = ra if ra.status == 409 else rb
        winner = "alice" if ra.status == 303 else "bob"
        assert "claimed by %s first" % winner in loser.text


def test_bad_input_is_answered_and_counted(rx):
    iid = alarm(rx, 0)
    c = signed_in(rx, "sue")
    assert c.req("GET", "/incident/abc").status == 400
    assert c.req("GET", "/incident/99999999").status == 404
    assert c.req("GET", "/incident/%d/%s" % (iid, "x" * 5000)).status in (404, 405)
    assert c.req("GET", "/person?ref=").status == 400
    assert c.req("GET", "/events?since=-1").status == 400
    assert c.post("/incident/%d/claim" % iid).status in (303, 409)
    for form, why in (({"seconds": "ten"}, "whole number"), ({"seconds": "70000"}, "0..65535")):
        r = c.post("/incident/%d/track" % iid, form)
        assert r.status == 400 and why in r.text
    assert c.post("/incident/%d/note" % iid, {"text": "x" * 2001}).status == 400
    assert c.post("/incident/%d/note" % iid, {"text": "a\x00b"}).status == 400
    assert c.post("/incident/%d/close" % iid, {"outcome": "maybe"}).status == 400
    assert c.post("/incident/%d/escalate" % iid, {"force": "", "reference": "x"}).status == 400
    big = c.req("POST", "/incident/%d/note" % iid, raw=b"text=" + b"x" * 70000,
                headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert big.status == 413
    assert c.post("/incident/%d/explode" % iid).status == 404
    counters = json.loads(c.req("GET", "/counters").text)
    assert counters["bad request"] >= 8 and counters["form too large"] == 1
    # the console still answers
    assert c.req("GET", "/").status == 200


def test_events_replay_from_last_event_id_then_live(rx):
    c = signed_in(rx, "alice")
    st = rx.store()
    base = st.last_event_id()
    st.close()
    iid = alarm(rx, 4)
    conn = c.conn()
    conn.request("GET", "/events", headers={"Cookie": "panic_session=" + c.cookies["panic_session"],
                                            "Last-Event-ID": str(base)})
    r = conn.getresponse()
    assert r.status == 200 and r.getheader("Content-Type") == "text/event-stream"

    def read_event():
        lines = []
        while True:
            ln = r.readline().decode()
            if ln in ("\n", "\r\n"):
                if any(x.startswith("data:") for x in lines):
                    return lines
                lines = []
                continue
            lines.append(ln.strip())

    ev = read_event()
    assert int(ev[0].split(": ")[1]) > base
    body = json.loads(ev[1][len("data: "):])
    assert body["incident_id"] == iid and body["kind"] in ("alert", "alert_repeat")
    d = rx.devs[4]
    rx.send(d, d.frame(F.ALERT, **GNSS))
    t0 = time.monotonic()
    while True:
        ev = read_event()
        body = json.loads(ev[1][len("data: "):])
        if body["kind"] == "alert_repeat" and body["incident_id"] == iid:
            break
        assert time.monotonic() - t0 < 10
    conn.close()


def test_an_idle_session_ends(rx, tmp_path):
    other = Rx(tmp_path)
    other.db, other.mk = rx.db, rx.mk
    other.console("--session-idle-s", "1", "--tiles", "")
    try:
        c = Client(other.console_port)
        assert c.login("alice").status == 303
        assert c.req("GET", "/").status == 200
        time.sleep(1.6)
        r = c.req("GET", "/")
        assert r.status == 303 and r.getheader("Location").startswith("/login")
        assert c.req("GET", "/events").status == 401
    finally:
        other.stop()


def _self_signed(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    import ipaddress

    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .sign(key, hashes.SHA256()))
    cp, kp = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    with open(cp, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    fd = os.open(kp, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return cp, kp


def test_tls_cookies_are_secure_and_host_only(rx, tmp_path):
    cp, kp = _self_signed(tmp_path)
    other = Rx(tmp_path)
    other.db, other.mk = rx.db, rx.mk
    other.console("--cert", cp, "--key", kp, "--tiles", "")
    try:
        ctx = ssl.create_default_context(cafile=cp)
        c = Client(other.console_port, tls=ctx)
        page = c.req("GET", "/login")
        assert page.getheader("Strict-Transport-Security")
        r = c.login("alice")
        assert r.status == 303
        sc = [v for k, v in r.getheaders() if k == "Set-Cookie" and v.startswith("__Host-panic_session=")]
        assert sc and "Secure" in sc[0] and "HttpOnly" in sc[0] and "SameSite=Strict" in sc[0]
        assert c.req("GET", "/").status == 200
        plain = Client(other.console_port)
        with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
            plain.req("GET", "/login")
    finally:
        other.stop()


def test_random_requests_never_break_the_console(rx):
    """Seeded random requests, signed in and not: odd paths, methods,
    forms, cookies, tokens and bytes. Every one gets a 2xx/3xx/4xx answer
    (never a 500 or a dropped connection) and the console still works."""
    import random

    rnd = random.Random(17)
    iid = alarm(rx, 1)
    good = signed_in(rx, "sue")
    paths = ["/", "/incident/%d" % iid, "/incident/%d/claim" % iid, "/incident/%d/note" % iid,
             "/incident/%d/track" % iid, "/incident/%d/close" % iid, "/incident/%d/summary" % iid,
             "/queue/rows", "/events", "/person", "/stats.csv", "/audit", "/admin/users", "/admin/users/x/passwd",
             "/login", "/logout", "/static/console.js", "/static/../app.py", "/counters"]
    junk = ["", "0", "-1", "99999999999999", "abc", "%00", "\u00e9", "a" * 300, "1,2,3", ",", "../../etc/passwd"]
    statuses = {}
    for _ in range(400):
        c = good if rnd.random() < 0.7 else Client(rx.console_port)
        path = rnd.choice(paths)
        if rnd.random() < 0.4:
            path += rnd.choice(["?ids=", "?since=", "?ref=", "?before=", "?next="]) + urllib.parse.quote(rnd.choice(junk))
        if rnd.random() < 0.2:
            path = path.replace(str(iid), urllib.parse.quote(rnd.choice(junk)) or "x")
        method = rnd.choice(["GET", "POST", "POST", "PUT", "DELETE", "HEAD"])
        form = {rnd.choice(["text", "seconds", "outcome", "force", "reference", "to", "reason", "name", "password",
                            "csrf", "login_csrf"]): rnd.choice(junk) for _ in range(rnd.randint(0, 4))}
        if method == "POST" and c is good and rnd.random() < 0.6:
            form["csrf"] = good.csrf
        headers = {}
        if rnd.random() < 0.2:
            headers["Origin"] = rnd.choice(["null", "http://evil.example", "http://127.0.0.1:%d" % rx.console_port])
        if rnd.random() < 0.1:
            headers["Last-Event-ID"] = rnd.choice(junk)
        if path.startswith("/events") and method == "GET" and c is good:
            continue  # a stream that stays open; tested on its own above
        raw = None
        if rnd.random() < 0.1:
            raw = bytes(rnd.randrange(256) for _ in range(rnd.randint(0, 200)))
            headers["Content-Type"] = rnd.choice(["application/x-www-form-urlencoded", "multipart/form-data",
                                                  "text/plain"])
        r = c.req(method, path, None if raw is not None else (form if method == "POST" else None), headers, raw=raw)
        statuses[r.status] = statuses.get(r.status, 0) + 1
        assert r.status < 500, (method, path, form, r.status, r.text[:200])
        if good.csrf is None or "panic_session" not in good.cookies:  # a random /logout signed it out
            good = signed_in(rx, "sue")
    assert good.req("GET", "/").status == 200
    assert len(statuses) >= 4, statuses


def _placeholder_track(d, seq, t):
    """A TRACK as firmware older than the position rule built it: source
    cell at (0, 0) beside the serving cell (today's encoder refuses it, so
    the body is sealed by hand, as tests/test_location_receiver.py does)."""
    body = F.report_bytes(F.Report(F.SRC_CELL, 1, 1, F.UNKNOWN_U16, F.UNKNOWN_U16, 61, 18,
                                   tlvs=[(F.T_CELL, SERVING)]))
    body = body[:2] + bytes(8) + body[10:]
    return F.encode_raw(d.keys, F.TRACK, d.id, seq, t, body)


def test_the_estimate_its_source_radius_age_and_evidence_on_every_view(rx):
    """A GNSS fix 400 s old, then a TRACK with only the serving cell, then
    a (0, 0) placeholder from older firmware: the fix is stale (over five
    minutes), so where the person is now is the cell resolved by the
    receiver (1,500 m, named as such, with its data set's licence); the fix
    stays beside it as older, finer evidence; the placeholder is counted
    and drawn nowhere. The queue row, the status panel, the map's data and
    the police summary all say so."""
    d = rx.devs[6]
    now = int(time.time())
    rx.send(d, d.frame(F.ALERT, t=now - 400, **dict(GNSS, age=0)))
    rx.send(d, d.frame(F.TRACK, t=now, source=F.SRC_NONE, lat=0, lon=0, accuracy=F.UNKNOWN_U16, age=F.UNKNOWN_U16,
                       battery=60, csq=17, tlvs=[(F.T_CELL, SERVING)]))
    d.seq += 1
    rx.send(d, _placeholder_track(d, d.seq, now + 1))
    st = rx.store()
    try:
        iid = max(r["id"] for r in st.incidents() if r["device_id"] == d.id)
    finally:
        st.close()
    c = signed_in(rx, "sue")

    page = c.req("GET", "/incident/%d" % iid).text
    status = page[page.index('id="position"'):page.index("<dt>battery")]
    assert "51.5050000, -0.1300000" in status
    assert "cell (resolved): by the receiver from the serving cell, not a device fix" in status
    assert "+/-1500 m" in status and "OpenCellID, CC BY-SA 4.0" in status and "STALE" not in status
    assert "older, finer: 51.5007292, -0.1246254 (GNSS fix, +/-8 m" in status
    assert "1 frame(s) carried (0, 0)" in status

    m = json.loads(c.req("GET", "/incident/%d/map.json" % iid).text)
    assert (m["pos"]["lat"], m["pos"]["lon"], m["pos"]["accuracy_m"], m["pos"]["source"]) == (
        51.505, -0.13, 1500, "cell (resolved)")
    assert m["pos"]["age_s"] is not None and m["pos"]["age_s"] < 60
    (fix,) = [e for e in m["evidence"] if e["source"] == "gnss"]
    assert (fix["lat"], fix["accuracy_m"], fix["newer"]) == (51.5007292, 8, False) and fix["age_s"] >= 400
    assert [(p["lat"], p["source"]) for p in m["trail"]] == [(51.5007292, "gnss")]  # no (0, 0), no resolved cell

    row = c.req("GET", "/queue/rows?ids=%d" % iid).text
    assert "51.50500, -0.13000" in row and "cell (resolved) +/-1500 m" in row

    summary = c.req("GET", "/incident/%d/summary" % iid).text
    assert "51.505000, -0.130000" in summary and "within about 1500 m" in summary
    assert "not a device fix" in summary and "OpenCellID, CC BY-SA 4.0" in summary
    assert "older, finer: 51.500729, -0.124625 (GNSS fix, within about 8 m" in summary
    assert "0.000000" not in summary
