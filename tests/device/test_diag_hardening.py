"""The console path never raises into the App (issue 15): a line Diag
cannot process is dropped and counted, a request nested deeper than a
command can be is refused before it is parsed, and a console that cannot
be loaded leaves the loop pass alone and is tried again later."""

import json

from firmware import diag as D
from firmware import loop as M
from protocol.crypto import Hmac
from stdin_console import _Provider as Provider  # the console's stand-in App (status, test, events)

EK = bytes(range(32))


def _session(d):
    ek = Hmac(EK)
    hn = b"\x42" * 16
    acc = d.feed(D.hello_line(ek, hn), 0)
    dn = D._unhex(acc.split(b" ")[1])
    return Hmac(D.session_key(ek, hn, dn))


def test_a_request_nested_deeper_than_a_command_is_refused_unparsed():
    d = D.Diag(EK, Provider())
    sk = _session(d)
    out = d.feed(D.sealed_line(sk, D.D_HOST, b"[" * 200 + b"]" * 200), 10)
    body = D.open_line(sk, D.D_DEV, out.strip())
    assert json.loads(body)["error"] == "malformed request"
    # brackets inside a string do not count, and a real command still runs
    out = d.feed(D.sealed_line(sk, D.D_HOST, b'{"seq": 1, "cmd": "log", "x": "[[[[[[[[["}'), 20)
    assert json.loads(D.open_line(sk, D.D_DEV, out.strip()))["ok"] is True
    assert d.counters()["line_errors"] == 0


def test_flat_enough_counts_only_brackets_outside_strings():
    assert D.flat_enough(b'{"a": [1, {"b": [2]}]}')
    assert not D.flat_enough(b'{"a": [1, {"b": [[[2]]]}]}')
    assert D.flat_enough(b'{"a": "[[[[[[\\"[[[[["}')
    assert D.flat_enough(b"")


class Exploding(D.Diag):
    """A Diag whose line handling fails once, as a MemoryError would."""

    def __init__(self, *a, **k):
        D.Diag.__init__(self, *a, **k)
        self.boom = 1

    def _line(self, line, now):
        if self.boom:
            self.boom -= 1
            raise MemoryError("memory allocation failed")
        return D.Diag._line(self, line, now)


def test_a_line_that_raises_is_dropped_and_counted_and_the_next_line_is_served():
    d = Exploding(EK, Provider())
    ek = Hmac(EK)
    out = d.feed(b"junk that raises\n" + D.hello_line(ek, b"\x07" * 16), 0)
    assert out.startswith(b"DIAG1 ")  # the hello after it was answered
    assert d.counters()["line_errors"] == 1


class _Board:
    def __init__(self, data):
        self.data = [data]
        self.written = []

        class C:
            def read(_self, n):
                return self.data.pop(0) if self.data else None

            def write(_self, b):
                self.written.append(b)
                return len(b)

        self.console = C()


class _Unloadable:
    """firmware.loop.LazyConsole whose import of firmware.diag fails."""

    def __init__(self):
        self.diag = None
        self.load_failures = 0
        self.retry_at = None
        self.loads = 0

    def load(self):
        self.loads += 1
        raise MemoryError("memory allocation failed")

    def persist_state(self):
        return None


def test_a_console_that_cannot_load_never_raises_into_the_loop_and_is_tried_again_later():
    from firmware.fs import MemFs

    con = _Unloadable()
    board = _Board(b"hello?\n")
    fs = MemFs()
    assert M.serve_console(con, board, fs, 1000, None) is None  # no exception
    assert con.load_failures == 1 and con.loads == 1
    board.data = [b"more\n"]  # more bytes within LOAD_RETRY_MS: not even tried
    M.serve_console(con, board, fs, 1000 + M.LOAD_RETRY_MS - 1, None)
    assert con.loads == 1
    board.data = [b"again\n"]
    M.serve_console(con, board, fs, 1000 + M.LOAD_RETRY_MS, None)
    assert con.loads == 2 and con.load_failures == 2
    assert board.written == []
