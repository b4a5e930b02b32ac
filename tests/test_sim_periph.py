"""PeriphServer (host_sim/periph.py): the host end of the faithful board's
wire, over real sockets on 127.0.0.1, as firmware/board_unix.py connects."""

import select
import socket
import time

import pytest

from host_sim.periph import HELLO_MAX, PeriphServer


@pytest.fixture
def srv():
    s = PeriphServer()
    yield s
    s.close()


def _until(pred, srv, timeout=5.0):
    """Serve srv (accept, hellos, channel bytes) until pred(events) holds."""
    events = []
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        r, _, _ = select.select(srv.sockets(), [], [], 0.05)
        for s in r:
            if s is srv.ls:
                srv.accept()
            elif s in srv.pending:
                named = srv.hello(s)
                if named is not None:
                    events.append(("hello",) + named)
            else:
                got = srv.recv(s)
                if got is not None:
                    events.append(("data",) + got)
        if pred(events):
            return events
    raise AssertionError("timed out; saw %r" % events)


def _connect(srv, data):
    c = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    c.sendall(data)
    return c


def test_a_channel_names_itself_and_keeps_the_bytes_after_its_hello(srv):
    c = _connect(srv, b"ctrl\np led 0 5\n")
    ev = _until(lambda e: e, srv)
    assert ev == [("hello", b"ctrl", b"p led 0 5\n")]
    assert srv.name_of(srv.ch[b"ctrl"]) == b"ctrl"
    c.sendall(b"s 1773524400\n")
    assert _until(lambda e: e, srv) == [("data", b"ctrl", b"s 1773524400\n")]
    c.close()


def test_a_hello_split_over_several_reads_still_names_its_channel(srv):
    c = _connect(srv, b"mo")
    time.sleep(0.05)
    _until(lambda e: srv.pending, srv)  # accepted, hello not whole yet
    c.sendall(b"dem\nAT\r")
    assert _until(lambda e: e, srv) == [("hello", b"modem", b"AT\r")]
    c.close()


def test_host_sends_reach_the_board_and_an_unknown_channel_gets_nothing(srv):
    c = _connect(srv, b"gnss\n")
    _until(lambda e: e, srv)
    assert srv.send(b"gnss", b"$GPRMC\r\n")
    assert c.recv(64) == b"$GPRMC\r\n"
    assert not srv.send(b"modem", b"AT\r")  # not connected
    assert not srv.send(b"gnss", b"")  # nothing to send
    c.close()


def test_a_hello_naming_no_channel_is_closed_and_never_served(srv):
    c = _connect(srv, b"keys\nsecret")
    _until(lambda e: not srv.pending and c.recv(1) == b"", srv)
    assert srv.ch == {}
    c.close()


def test_an_endless_hello_is_cut_to_its_limit_and_never_names_a_channel(srv):
    c = _connect(srv, b"c" * (HELLO_MAX * 4))
    _until(lambda e: srv.pending and all(len(v) == HELLO_MAX for v in srv.pending.values()), srv)
    c.sendall(b"tr\n")  # its line is now 66 bytes of junk: no channel
    _until(lambda e: not srv.pending, srv)
    assert srv.ch == {}
    c.close()


def test_a_second_connection_replaces_the_first_of_its_name(srv):
    a = _connect(srv, b"flash\n")
    _until(lambda e: e, srv)
    b = _connect(srv, b"flash\n")
    _until(lambda e: e, srv)
    assert a.recv(1) == b""  # the old one was closed
    assert srv.send(b"flash", b".")
    assert b.recv(1) == b"."
    a.close()
    b.close()


def test_a_channel_the_board_closes_is_dropped_and_drop_all_forgets_every_one(srv):
    c = _connect(srv, b"ctrl\n")
    m = _connect(srv, b"modem\n")
    _until(lambda e: len(e) == 2, srv)
    c.close()
    _until(lambda e: b"ctrl" not in srv.ch, srv)
    assert not srv.send(b"ctrl", b"v 3900\n")
    srv.ctrl_buf = b"partial"
    srv.drop_all()
    assert srv.ch == {} and srv.pending == {} and srv.ctrl_buf == b""
    assert m.recv(1) == b""
    m.close()
