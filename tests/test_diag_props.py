"""Property tests of the diagnostics console: any bytes, any chunking."""

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from firmware import diag as D
from host_sim.diagserve import FakeProvider
from protocol.crypto import Hmac

EK = bytes(range(32))
chunks = st.lists(st.binary(min_size=0, max_size=700), max_size=12)
hello_like = st.builds(lambda a, b: b"DIAG1 " + a + b" " + b + b"\n", st.binary(max_size=40), st.binary(max_size=80))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=700), hello_like), max_size=12), st.integers(0, 10**9))
def test_no_key_no_output_no_crash(parts, t0):
    d = D.Diag(EK, FakeProvider(), rand=lambda n: b"\x01" * n)
    now = t0
    for p in parts:
        assert d.feed(p, now) == b""
        now += 7919
    assert not d.active()
    c = d.counters()
    assert c["auth_ok"] == 0


@settings(max_examples=100, deadline=None)
@given(chunks, st.integers(1, 50))
def test_in_session_garbage_never_crashes_and_never_answers_unsealed(parts, cut):
    d = D.Diag(EK, FakeProvider(), rand=lambda n: b"\x02" * n)
    ek = Hmac(EK)
    hn = b"\x03" * 16
    out = d.feed(D.hello_line(ek, hn), 0)
    import binascii

    dn = binascii.unhexlify(out.split(b" ")[1])
    sk = Hmac(D.session_key(ek, hn, dn))
    for p in parts:
        assert d.feed(p, 1) == b""  # nothing is sealed with sk but by us: garbage gets silence
    assert d.feed(b"\n", 2) == b""  # end any partial garbage line
    if d.active():  # fewer than BAD_MAC_LIMIT bad lines: a good line still works, however split
        line = D.sealed_line(sk, D.D_HOST, json.dumps({"seq": 1, "cmd": "status"}).encode())
        r = d.feed(line[:cut], 3) + d.feed(line[cut:], 4)
        body = D.open_line(sk, D.D_DEV, r.strip())
        assert body is not None and json.loads(body)["ok"] is True
