"""The peers the forwarding tests talk to, and tests of the peers themselves.

- PysiaArc: pysiaalarm's own receiver (SIAClient with SIAAccount, plain
  and encrypted accounts) in a subprocess, so a test can kill -9 it and
  start it again on the same port; every event it ACKs comes back as one
  JSON line (its parsed fields, CRC and timestamp verdicts, counters).
- OwnArc: a DC-09 receiver on our own decoder (receiver/forward/dc09.py,
  strict), for what pysiaalarm cannot read; it answers as the standard
  says (encrypted ACK to an encrypted message).
- DelayProxy: a TCP proxy that passes our messages at once and holds the
  ARC's answers for `delay` seconds (pysiaalarm always answers at once).
- OsmAndServer: an HTTP server that reads a request the way Traccar's
  OsmAndProtocolDecoder does (query string first, then a form body; id,
  lat, lon, timestamp, accuracy, batt; anything else kept as an
  attribute), answers 200, or 400 for an unknown device id.

Run as a script (`python tests/test_forward_peers.py arc PORT ACCOUNTS_JSON`)
it is the pysiaalarm ARC process.
"""

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


# ---------------------------------------------------------------- pysiaalarm ARC process

def _arc_main(port, accounts_json):
    import dataclasses
    import logging

    from pysiaalarm import SIAAccount
    from pysiaalarm.aio import SIAClient

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    accounts = [SIAAccount(a["account"], a.get("key")) for a in json.loads(accounts_json)]

    async def got(ev):
        xd = [[x.identifier, x.value] for x in (ev.extended_data or [])]
        print(json.dumps({
            "type": str(ev.message_type.value), "encrypted": ev.encrypted, "seq": ev.sequence,
            "account": ev.account, "receiver": ev.receiver, "line": ev.line, "code": ev.code,
            "qualifier": ev.event_qualifier, "event_type": ev.event_type, "ri": ev.ri,
            "crc_ok": ev.msg_crc == ev.calc_crc, "length_ok": int(ev.length, 16) == len(ev.full_message),  # its valid_length reads the hex length as decimal
            "timestamp_ok": ev.valid_timestamp,
            "timestamp": ev.timestamp.isoformat() if ev.timestamp else None, "xdata": xd,
            "response": ev.response.value, "counts": dataclasses.asdict(client.counts),
        }), flush=True)

    async def main():
        global client
        client = SIAClient("127.0.0.1", port, accounts, got)
        await client.async_start(reuse_address=True)
        print(json.dumps({"ready": port}), flush=True)
        parent = os.getppid()
        while os.getppid() == parent:  # the test runner died (killed, timed out): no orphan ARC left listening
            await asyncio.sleep(1)

    asyncio.run(main())


class PysiaArc:
    """pysiaalarm's receiver in its own process. accounts: [{"account":
    "1234", "key": "16 hex chars" or None}]."""

    def __init__(self, accounts, port=None, log=None):
        self.accounts = accounts
        self.log = log if log is not None else subprocess.DEVNULL  # a file for its warnings
        self.port = port or free_port()
        self.proc = None
        self.events = []
        self._lock = threading.Lock()
        self._reader = None

    def start(self):
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "arc", str(self.port),
                                      json.dumps(self.accounts)], stdout=subprocess.PIPE, stderr=self.log,
                                     cwd=ROOT, text=True)
        line = self.proc.stdout.readline()
        assert json.loads(line) == {"ready": self.port}, line
        self._reader = threading.Thread(target=self._read, args=(self.proc,), daemon=True)
        self._reader.start()
        return self

    def _read(self, proc):
        for line in proc.stdout:
            with self._lock:
                self.events.append(json.loads(line))

    def kill(self):
        """kill -9: every connection to it is reset."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self._reader.join(5)
            self.proc = None

    def stop(self):
        self.kill()

    def got(self):
        with self._lock:
            return list(self.events)

    def wait_for(self, pred, timeout=30.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            evs = self.got()
            if pred(evs):
                return evs
            time.sleep(0.05)
        raise AssertionError("timed out; the ARC got %d event(s): %s" % (len(self.got()), self.got()[-5:]))

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


# ---------------------------------------------------------------- threads with an event loop

class _LoopThread:
    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self._t = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._t.start()

    def call(self, coro, timeout=10):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _listen(self, port=0):
        """Serve self._conn on 127.0.0.1:port (0: any free port); the port."""
        self.server = await asyncio.start_server(self._conn, "127.0.0.1", port, reuse_address=True)
        return self.server.sockets[0].getsockname()[1]

    async def _stop(self):
        self.server.close()

    async def _cancel_all(self):
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def close(self):
        if getattr(self, "server", None) is not None:
            self.call(self._stop())
        self.call(self._cancel_all())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._t.join(5)
        self.loop.close()


class OwnArc(_LoopThread):
    """A DC-09 receiver on our strict decoder. key: AES key bytes or None.
    answer: "ACK" or "DUH". Records (Message, raw bytes) of each message."""

    def __init__(self, key=None, answer="ACK"):
        super().__init__()
        self.key = key
        self.answer = answer
        self.got = []
        self.errors = []
        self.port = self.call(self._listen())

    async def _conn(self, reader, writer):
        from receiver.forward import dc09 as D

        try:
            while True:
                raw = await reader.readuntil(b"\r")
                try:
                    msg, _ = D.decode(raw, self.key, strict=True)
                except D.Dc09Garbage as e:
                    self.errors.append((e.reason, raw))
                    writer.write(D.nak(time.time()))
                    continue
                self.got.append((msg, raw))
                kind = D.ACK if msg.token == D.NULL else self.answer
                writer.write(D.answer(kind, msg, self.key if msg.encrypted else None, time.time()))
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    def events(self):
        return [m for m, _ in self.got if m.token != "NULL"]


class DelayProxy(_LoopThread):
    """127.0.0.1:port -> target; answers held `delay` seconds (settable)."""

    def __init__(self, target_port, delay=0.0):
        super().__init__()
        self.target_port = target_port
        self.delay = delay
        self.port = self.call(self._listen())

    async def _conn(self, cr, cw):
        try:
            ur, uw = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            cw.close()
            return

        async def up():
            while data := await cr.read(4096):
                uw.write(data)
            uw.close()

        async def down():
            while data := await ur.read(4096):
                await asyncio.sleep(self.delay)
                if cw.is_closing():
                    break
                cw.write(data)
            cw.close()

        await asyncio.gather(up(), down(), return_exceptions=True)


class OsmAndServer(_LoopThread):
    """Reads requests as Traccar's OsmAndProtocolDecoder does; `known`:
    the device identifiers it has (others get 400, as there)."""

    def __init__(self, known, port=0):
        super().__init__()
        self.known = set(known)
        self.positions = []
        self.requests = []
        self.port = self.call(self._listen(port))

    async def _conn(self, reader, writer):
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ")
            hdrs = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:] if x)}
            body = await reader.readexactly(int(hdrs.get("content-length", "0")))
            self.requests.append((method, target))
            # QueryStringDecoder(request.uri()); if that has no parameters, the body
            params = urllib.parse.parse_qs(urllib.parse.urlsplit(target).query, keep_blank_values=True)
            if not params:
                params = urllib.parse.parse_qs(body.decode("ascii"), keep_blank_values=True)
            pos = {"attributes": {}}
            status = 200
            for k, vs in params.items():
                for v in vs:
                    if k in ("id", "deviceid"):
                        if v not in self.known:
                            status = 400
                        pos["device"] = v
                    elif k == "valid":
                        pos["valid"] = v in ("true", "1")
                    elif k == "timestamp":
                        t = int(v)
                        pos["time"] = t * 1000 if t < 2**31 - 1 else t
                    elif k in ("lat", "lon", "accuracy", "altitude", "speed", "bearing"):
                        pos[k] = float(v)
                    elif k == "batt":
                        pos["batteryLevel"] = float(v)
                    else:
                        try:
                            pos["attributes"][k] = float(v)
                        except ValueError:
                            pos["attributes"][k] = v
            if "device" not in pos:
                status = 400
            if status == 200:
                self.positions.append(pos)
            writer.write(b"HTTP/1.1 %d X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n" % status)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()


# ---------------------------------------------------------------- the peers' own tests

def test_delay_proxy_holds_answers_and_passes_messages_at_once():
    async def echo(r, w):
        while data := await r.read(100):
            w.write(data)

    lt = _LoopThread()
    srv = lt.call(asyncio.start_server(echo, "127.0.0.1", 0))
    px = DelayProxy(srv.sockets[0].getsockname()[1], delay=0.3)
    try:
        s = socket.create_connection(("127.0.0.1", px.port), timeout=5)
        t0 = time.monotonic()
        s.sendall(b"hello\r")
        assert s.recv(100) == b"hello\r"
        assert time.monotonic() - t0 >= 0.3
        s.close()
    finally:
        px.close()
        lt.close()


def test_pysiaalarm_arc_process_acks_a_message_and_reports_it():
    from receiver.forward import dc09 as D

    with PysiaArc([{"account": "1234"}]) as arc:
        m = D.Message(D.ADM_CID, 7, "1234", D.adm_cid("1234", 1, 601, 0, 0), (), "1", "0")
        s = socket.create_connection(("127.0.0.1", arc.port), timeout=5)
        s.sendall(D.encode(m, None, time.time()))
        ans = D.read_answer(s.recv(1000), m, None, time.time())
        assert ans.kind == D.ACK
        ev = arc.wait_for(lambda e: e)[0]
        assert (ev["seq"], ev["code"], ev["crc_ok"], ev["timestamp_ok"]) == ("0007", "RX", True, True)
        s.close()


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "arc":
    _arc_main(int(sys.argv[2]), sys.argv[3])
