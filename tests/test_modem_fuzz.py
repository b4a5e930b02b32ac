"""Fuzz: random bytes and random interleavings of valid URCs never crash or
wedge the modem engine; after the garbage a normal exchange still works.

MODEM_FUZZ_EXAMPLES sets hypothesis' max_examples (default kept small for
`make test`; tests/fuzz_modem.py runs long)."""

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware.modem.at import AtChannel
from firmware.modem.engine import Engine
from firmware.modem.sim7600 import Sim7600 as Dialect
from modem_world import World, alert

N = int(os.environ.get("MODEM_FUZZ_EXAMPLES", "25"))
SET = settings(max_examples=N, deadline=None, suppress_health_check=[HealthCheck.too_slow])

URCS = [
    b"RDY", b"+CPIN: READY", b"+CPIN: NOT READY", b"SMS DONE", b"PB DONE", b"+CIPRXGET: 1,0",
    b"+IPCLOSE: 0,1", b"+IPCLOSE: 0,2", b"+CIPEVENT: NETWORK CLOSED UNEXPECTEDLY", b'+CMTI: "SM",3',
    b"VOICE CALL: BEGIN", b"VOICE CALL: END: 000003", b"NO CARRIER", b"RING", b"+CSQ: 12,99", b"OK", b"ERROR",
    b"+NETOPEN: 0", b"+NETOPEN: 1", b"+CIPOPEN: 0,0", b"+CIPSEND: 0,10,10", b"+CME ERROR: 14", b"> ",
    b"+CPSI: LTE,Online,234-15,0x1A2B,1,2,B,3,5,5,-1,-900,-5,1", b"+CREG: 0,1", b"+CGREG: 0,0",
]


@SET
@given(st.binary(max_size=600), st.integers(min_value=1, max_value=64))
def test_channel_survives_random_bytes_then_answers(data, chunk):
    seen = []
    ch = AtChannel(seen.append)
    ch.send("AT+CSQ", ("OK", "ERROR"), ("+CSQ:",), 1000, 0)
    for i in range(0, len(data), chunk):
        ch.feed(data[i : i + chunk], 1)
    ch.check(2000)
    assert ch.result is not None  # ended one way or another: never wedged
    ch.send("AT", ("OK", "ERROR"), (), 1000, 3000)
    ch.feed(b"\r\n\r\nOK\r\n", 3001)
    # a partial line left by the garbage may swallow the first line end only
    assert ch.result == (0, "OK")


# Bytes the channel treats specially, often; the rest printable or not.
_AT_BYTES = st.lists(st.one_of(st.sampled_from(b"\r\n> \x00\xff"), st.integers(32, 126), st.integers(0, 255)),
                     max_size=300).map(bytes)


def _channel_after(data, cuts, prompt, max_line):
    """What a channel shows after `data`, delivered in pieces cut at `cuts`."""
    urcs = []
    ch = AtChannel(urcs.append, max_line=max_line)
    ch.send("AT+CIPSEND=0,5", ("OK", "ERROR"), ("+CSQ:",), 1000, 0, prompt=prompt)
    at = 0
    for c in sorted(set(cuts)) + [len(data)]:
        ch.feed(data[at:c], 1)
        at = max(at, c)
    return (urcs, ch.result, ch.infos, bytes(ch._buf), ch.rejected, ch.overflow, ch.stray, ch.echoes,
            ch.rx_lines, ch._dropping, ch._bad)


@SET
@given(_AT_BYTES, st.lists(st.integers(0, 300), max_size=12), st.booleans(), st.integers(4, 40))
def test_any_split_of_the_stream_gives_the_same_lines(data, cuts, prompt, max_line):
    """The UART hands over bytes in whatever pieces its FIFO and timeout
    make: whole, cut anywhere, or one at a time, the lines, the prompt, the
    rejections and the over-long lines come out the same."""
    whole = _channel_after(data, [], prompt, max_line)
    assert _channel_after(data, [c for c in cuts if c < len(data)], prompt, max_line) == whole
    assert _channel_after(data, list(range(len(data))), prompt, max_line) == whole


@SET
@given(st.lists(st.tuples(st.integers(0, 5000), st.binary(max_size=80)), max_size=30))
def test_engine_survives_random_bytes_at_random_times(chunks):
    e = Engine(Dialect("192.0.2.1", 5000), {"apn": "x"})
    now = 0
    for dt, data in chunks:
        now += dt
        e.feed(data, now)
        e.poll(now)
        e.ch.out = bytearray()
    e.poll(now + 100000)
    assert e._job is not None or e._cycle_at > now  # it keeps trying to reach the modem


@SET
@given(st.binary(min_size=1, max_size=400), st.integers(0, 3))
def test_garbage_mid_session_then_an_alert_still_gets_through(garbage, where):
    w = World(start_on=True)
    w.rig.run_until(w.t.data_ready, 60000)
    w.rig.run_until(lambda: False, w.rig.now + where * 700)
    w.t.engine.feed(garbage, w.rig.now)
    d = w.deliver(alert(1), limit_ms=w.rig.now + 300000)
    w.assert_delivered(d)


class _Injector:
    """Wraps the emulator's read() to slip URC lines between its chunks."""

    def __init__(self, emu, plan):
        self.emu = emu
        self.plan = sorted(plan)
        self._read = emu.read

    def read(self, now):
        data = self._read(now)
        extra = b""
        while self.plan and self.plan[0][0] <= now:
            extra += b"\r\n" + self.plan.pop(0)[1] + b"\r\n"
        return extra + data if extra and data else (data or extra)


@SET
@given(st.lists(st.tuples(st.integers(0, 40000), st.sampled_from(URCS)), max_size=8), st.integers(0, 2**16))
def test_random_valid_urcs_interleaved_never_stop_delivery(plan, seed):
    w = World(seed=seed)
    inj = _Injector(w.emu, plan)
    w.emu.read = inj.read
    d = w.deliver(alert(1), limit_ms=900000)
    w.assert_delivered(d)
