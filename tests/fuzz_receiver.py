"""Fuzz the receiver's two front ends over real sockets (issue 15).

    python tests/fuzz_receiver.py tcp N [--seed S] [--conc C]
    python tests/fuzz_receiver.py http N [--seed S] [--conc C]

A real receiver Server (core, SQLite store, group commit; short deadlines
and a small per-peer limit, so those paths run too) serves on 127.0.0.1 in
this process; a client process sends it N inputs, C connections at a time,
each input one connection:

  tcp   streams built from whole frames (new, duplicate, forged, of an
        unknown device, downlink types, frames of another protocol),
        random bytes and boundary length prefixes, then mutated (bit flips,
        inserted, deleted and repeated bytes, a length prefix replaced,
        two streams spliced), cut into 1..6 writes, ended by a FIN, a reset
        or a pause. Every byte the receiver sends back must deframe into
        ACKs that verify under a registered device's key.
  http  requests built from an SMS gateway's POSTs (JSON and forms, good
        SMS texts and bad), GET /health, and malformed requests (request
        lines, headers, lengths, chunked bodies, deep JSON, invalid UTF-8,
        many fields), then mutated. Each must get an HTTP/1.1 answer with a
        JSON body and a status from the documented set.

Zero escapes: no exception may reach the event loop's handler, no log
record may carry a traceback, the server's tasks must still run, and at
the end a real device still gets its frame ACKed over TCP and its SMS over
HTTP. Prints the figures and exits 1 on any escape or wrong answer.
`make fuzz` runs both with N = 100,000; tests/test_receiver_fuzz.py runs a
small sample of the same in `make test`.
"""

import argparse
import asyncio
import collections
import hashlib
import json
import logging
import os
import pathlib
import random
import socket
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), HERE]

from protocol import frame as F  # noqa: E402
from protocol import sms, stream  # noqa: E402
from protocol.crypto import DeviceKeys  # noqa: E402
from protocol.errors import ProtocolError  # noqa: E402

DEVICES = (301, 302, 303)
HTTP_CODES = {200, 400, 404, 405, 411, 413, 422, 503}
BOUNDARY_LENGTHS = (0, 1, 2, 30, 31, 32, 100, 285, 286, 287, 288, 0x7FFF, 0xFFFF)


def device_keys(seed):
    """The registered devices' keys, the same in both processes."""
    return {d: hashlib.sha256(b"fuzz-receiver %d %d" % (seed, d)).digest() for d in DEVICES}


# ---------------------------------------------------------------- inputs


class Inputs:
    """Deterministic inputs for one client process (seed, index)."""

    def __init__(self, seed):
        self.keys = {d: DeviceKeys(k) for d, k in device_keys(seed).items()}
        self.seq = collections.Counter()
        self.sent = collections.defaultdict(list)  # device -> frames already made (for duplicates)

    def _report(self, r):
        src = r.randrange(5)
        tlvs = []
        for _ in range(r.randrange(4)):
            t = r.choice((F.T_CELL, F.T_WIFI, F.T_MOTION, F.T_GNSS, F.T_EVENT, 0x40))
            if t == F.T_CELL:
                tlvs.append((t, (r.randrange(1000), r.randrange(1000), r.randrange(1 << 32), r.randrange(1 << 32),
                                 r.randrange(-140, -40))))
            elif t == F.T_WIFI:
                tlvs.append((t, (r.randbytes(6), r.randrange(-100, 0))))
            elif t == F.T_MOTION:
                tlvs.append((t, (r.randrange(-500, 5000), r.randrange(10000), r.randrange(36000))))
            elif t == F.T_GNSS:
                tlvs.append((t, (r.randrange(30), r.randrange(256))))
            elif t == F.T_EVENT:
                tlvs.append((t, (r.randrange(1, 5), r.randrange(1 << 16))))
            else:
                tlvs.append((t, r.randbytes(r.randrange(20))))
        return F.Report(src, r.randrange(-900000000, 900000001) if src else 0,
                        r.randrange(-1800000000, 1800000001) if src else 0, r.randrange(1 << 16), r.randrange(1 << 16),
                        r.choice((F.UNKNOWN_BATTERY, r.randrange(101))), r.choice((F.UNKNOWN_CSQ, r.randrange(32))),
                        duress=r.random() < 0.1, test=r.random() < 0.3, tlvs=[x for x in tlvs if x[0] != F.T_WIFI][:3])

    def frame(self, r):
        """One frame's bytes: mostly real uplink frames of a registered
        device (new seqs, or one already sent), else forged or foreign."""
        k = r.random()
        dev = r.choice(DEVICES)
        if k < 0.08 and self.sent[dev]:
            return r.choice(self.sent[dev])
        ftype = r.choice((F.ALERT, F.TRACK, F.TRACK, F.CANCEL, F.HEARTBEAT, F.TEST, F.STATUS))
        if k < 0.45:
            self.seq[dev] += 1
            raw = F.encode(self.keys[dev], F.Frame(ftype, dev, self.seq[dev], r.randrange(1 << 32), self._report(r)))
            if len(self.sent[dev]) < 50:
                self.sent[dev].append(raw)
            return raw
        if k < 0.6:  # forged: a registered id under a wrong key
            return F.encode(DeviceKeys(r.randbytes(32)), F.Frame(ftype, dev, r.randrange(1, 1 << 32), 0, self._report(r)))
        if k < 0.7:  # an unknown device
            return F.encode(DeviceKeys(r.randbytes(32)), F.Frame(ftype, r.randrange(1 << 32), 1, 0, self._report(r)))
        if k < 0.78:  # a downlink frame sent up
            return F.encode(self.keys[dev], F.Frame(F.ACK, dev, r.randrange(1, 1 << 32), 0, F.Ack(r.randrange(1 << 32))))
        if k < 0.9:  # the right length, random inside
            return r.randbytes(r.randrange(F.OVERHEAD, F.MAX_FRAME + 1))
        return r.randbytes(r.randrange(0, 320))

    def tcp(self, r):
        """(list of writes, how it ends: "fin" | "rst" | "hold")."""
        parts = []
        for _ in range(r.choice((1, 1, 1, 2, 3, 5))):
            k = r.random()
            if k < 0.8:
                parts.append(stream.pack(self.frame(r)))
            elif k < 0.9:
                n = r.choice(BOUNDARY_LENGTHS)
                parts.append(struct.pack(">H", n) + r.randbytes(r.randrange(0, min(n, 300) + 3)))
            elif k < 0.95:
                parts.append(sms.text_of(self.frame(r)).encode())
            else:
                parts.append(b"POST /sms HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello")
        data = bytearray(b"".join(parts))
        for _ in range(r.choice((0, 0, 0, 1, 1, 2, 3))):
            data = mutate(r, data)
        cuts = sorted(r.sample(range(len(data) + 1), min(len(data) + 1, r.randrange(0, 6))))
        writes, last = [], 0
        for c in cuts + [len(data)]:
            if c > last:
                writes.append(bytes(data[last:c]))
            last = c
        return writes, r.choice(("fin", "fin", "fin", "fin", "rst", "hold"))

    def http(self, r):
        k = r.random()
        if k < 0.35:
            text = sms.text_of(self.frame(r)) if r.random() < 0.8 else r.choice(("PNC1 AAAA", "", "hello", "PNC1 " + "A" * 200))
            sender = r.choice(("+447700900123", "447700900123", "BANK", "", " +44", "+44\n", "x" * 40, "é", "+" + "1" * 32))
            if r.random() < 0.5:
                body = json.dumps({r.choice(("from", "From", "sender", "msisdn")): sender,
                                   r.choice(("text", "Text", "Body", "body", "message")): text}).encode()
                ctype = "application/json"
            else:
                import urllib.parse

                body = urllib.parse.urlencode({r.choice(("from", "From")): sender, r.choice(("text", "Body")): text}).encode()
                ctype = "application/x-www-form-urlencoded"
            req = b"POST /sms HTTP/1.1\r\nHost: rx\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n" % (ctype.encode(), len(body)) + body
        elif k < 0.45:
            req = r.choice((b"GET /health HTTP/1.1\r\n\r\n", b"GET / HTTP/1.1\r\n\r\n", b"PUT /sms HTTP/1.1\r\n\r\n",
                            b"GET /sms?x=1 HTTP/1.0\r\n\r\n", b"DELETE /health HTTP/1.1\r\n\r\n"))
        elif k < 0.55:
            depth = r.choice((5, 9, 50, 2000, 4000))
            o, c = r.choice(((b"[", b"]"), (b"{\"a\":", b"}")))
            body = o * depth + b"1" + c * depth
            req = b"POST /sms HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body
        elif k < 0.65:
            body = r.choice((b"&".join(b"f%d=%d" % (i, i) for i in range(r.randrange(1, 2000))), r.randbytes(r.randrange(200)),
                             b"\xff\xfe" * 20, b'"just a string"', b"[1,2,3]", b"1" * 5000, b"from=%FF&text=%00",
                             b'{"from": 1e999999, "text": null}', b'{"from": "' + b"9" * 4500 + b'"}'))
            ctype = r.choice((b"application/json", b"application/x-www-form-urlencoded", b"text/plain", b"application/json; charset=utf-8"))
            cl = r.choice((len(body), len(body), len(body) + 10, max(0, len(body) - 3), 4097, 10 ** 12))
            req = b"POST /sms HTTP/1.1\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n" % (ctype, cl) + body
        else:
            req = r.choice((
                b"", b"\r\n", b"GARBAGE\r\n\r\n", b"POST /sms\r\n\r\n", b"POST /sms HTTP/1.1\r\nNoColon\r\n\r\n",
                b"POST /sms HTTP/1.1\r\nContent-Length: -1\r\n\r\n", b"POST /sms HTTP/1.1\r\nContent-Length: \xb2\r\n\r\n",
                b"POST /sms HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
                b"POST /sms HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n\r\n",
                b"POST /sms HTTP/1.1\r\n" + b"H: v\r\n" * 1000 + b"\r\n",
                b"GET /health HTTP/1.1\r\n\r\nGET /health HTTP/1.1\r\n\r\n",
                b"POST " + b"/" * 9000 + b" HTTP/1.1\r\n\r\n", r.randbytes(r.randrange(1, 600)),
                b"POST /sms HTTP/1.1\r\nContent-Length: 3\r\n\r\n",  # the body never comes: EOF
            ))
        data = bytearray(req)
        for _ in range(r.choice((0, 0, 0, 1, 1, 2))):
            data = mutate(r, data)
        return bytes(data)


def mutate(r, data):
    data = bytearray(data)
    k = r.randrange(7)
    n = len(data)
    if k == 0 and n:
        for _ in range(r.randrange(1, 4)):
            data[r.randrange(n)] ^= 1 << r.randrange(8)
    elif k == 1 and n:
        data[r.randrange(n)] = r.choice((0, 0xFF, 0x7F, 0x80, 0x0A, 0x0D, 0x22, 0x5B, 0x7B))
    elif k == 2:
        at = r.randrange(n + 1)
        data[at:at] = r.randbytes(r.randrange(1, 40))
    elif k == 3 and n:
        a = r.randrange(n)
        del data[a : a + r.randrange(1, 40)]
    elif k == 4 and n:
        a = r.randrange(n)
        data[a:a] = data[a : a + r.randrange(1, 60)] * r.randrange(1, 4)
    elif k == 5 and n >= 2:
        a = r.randrange(n - 1)
        data[a : a + 2] = struct.pack(">H", r.choice(BOUNDARY_LENGTHS))
    elif k == 6 and n:
        data = data[: r.randrange(n + 1)]
    return data


# ---------------------------------------------------------------- client process


async def _read_to_eof(reader, timeout):
    got = b""
    async with asyncio.timeout(timeout):
        while True:
            data = await reader.read(65536)
            if not data:
                return got
            got += data


async def _connect(port, stats):
    try:
        return await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        stats["connect failed"] += 1
        return None, None


async def _tcp_one(port, writes, end, keys, stats):
    reader, writer = await _connect(port, stats)
    if writer is None:
        return
    got = b""
    try:
        for w in writes:
            writer.write(w)
            await writer.drain()
        if end == "rst":
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            stats["ended by reset"] += 1
            return
        if end == "hold":
            await asyncio.sleep(0.05)
        writer.write_eof()
        got = await _read_to_eof(reader, 5)
    except TimeoutError:
        stats["no close within 5 s"] += 1
    except OSError:
        stats["reset by the receiver"] += 1
    finally:
        writer.transport.abort()
    if got:
        stats["answered"] += 1
        de = stream.Deframer()
        try:
            frames = de.feed(got)
        except ProtocolError:
            frames = None
        if frames is None or de.pending() or de.broken:
            stats["BAD: answer is not whole frames"] += 1
            return
        for raw in frames:
            try:
                dev = struct.unpack(">I", raw[2:6])[0]
                fr = F.decode(keys[dev], raw, F.DOWNLINK)
                assert fr.ftype == F.ACK
            except (KeyError, ProtocolError, AssertionError, struct.error):
                stats["BAD: answer does not verify as an ACK"] += 1
                return
            stats["ACKs verified"] += 1


async def _http_one(port, req, stats):
    reader, writer = await _connect(port, stats)
    if writer is None:
        return
    got = b""
    try:
        writer.write(req)
        await writer.drain()
        writer.write_eof()
        got = await _read_to_eof(reader, 15)
    except TimeoutError:
        stats["BAD: no answer within 15 s"] += 1
        return
    except OSError:
        pass  # the receiver may answer and close before it has read all we sent
    finally:
        writer.transport.abort()
    head, _, body = got.partition(b"\r\n\r\n")
    parts = head.split(b" ", 2)
    try:
        code = int(parts[1]) if parts[0] == b"HTTP/1.1" and len(parts) == 3 else None
        json.loads(body)
    except (ValueError, IndexError):
        code = None
    if code is None:
        stats["BAD: not an HTTP/1.1 answer with a JSON body"] += 1
    elif code not in HTTP_CODES:
        stats["BAD: status %d" % code] += 1
    else:
        stats["status %d" % code] += 1


async def _client(kind, port, n, seed, conc, start):
    gen = Inputs(seed)
    keys = gen.keys
    stats = collections.Counter()
    sem = asyncio.Semaphore(conc)
    tasks = set()
    for i in range(start, start + n):
        r = random.Random(seed * 1_000_003 + i)
        await sem.acquire()
        if kind == "tcp":
            writes, end = gen.tcp(r)
            coro = _tcp_one(port, writes, end, keys, stats)
        else:
            coro = _http_one(port, gen.http(r), stats)
        t = asyncio.create_task(coro)
        tasks.add(t)
        t.add_done_callback(lambda t_: (tasks.discard(t_), sem.release()))
        stats["inputs"] += 1
    await asyncio.gather(*tasks)
    return stats


def client_main(kind, port, n, seed, conc, start):
    stats = asyncio.run(_client(kind, port, n, seed, conc, start))
    print(json.dumps(dict(stats)))


# ---------------------------------------------------------------- the run


class _Escapes(logging.Handler):
    def __init__(self):
        logging.Handler.__init__(self, logging.DEBUG)
        self.records = []
        self.lines = 0

    def emit(self, record):
        self.lines += 1
        if record.exc_info or record.levelno >= logging.ERROR:
            self.records.append(self.format(record))


def run(kind, n, seed=1, conc=32, out=print, workdir=None):
    """Fuzz one front end with n inputs; returns the figures (a dict).
    figures["escapes"] lists every escaped exception (empty: none)."""
    from receiver import core, masterkey
    from receiver import store as S
    from receiver.server import Limits
    from recv_helpers import ServerThread, store_path

    base = workdir or ("/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None)
    tmp = tempfile.TemporaryDirectory(dir=base, prefix="fuzz-receiver-")
    st = S.open_store(store_path(pathlib.Path(tmp.name), "rx.db"), masterkey.MasterKey(os.urandom(32)))
    keys = device_keys(seed)
    for d, k in keys.items():
        st.add_device(d, k, "URN-FUZZ-%d" % d)
    rx = core.Receiver(st)
    lim = Limits(idle_timeout=1.0, frame_deadline=0.3, auth_deadline=0.6, write_timeout=1.0, max_conns_per_peer=28,
                 max_conns=512, max_batch=64, http_deadline=2.0)
    caught = []
    esc = _Escapes()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(esc)
    root.setLevel(logging.INFO)
    srv = ServerThread(rx, lim, http=(kind == "http"))
    srv.loop.set_exception_handler(lambda loop, ctx: caught.append("%s: %r" % (ctx.get("message"), ctx.get("exception"))))
    t0 = time.monotonic()
    try:
        with srv:
            port = srv.http_port if kind == "http" else srv.port
            p = subprocess.run([sys.executable, os.path.abspath(__file__), "client", kind, str(port), str(n), str(seed),
                                str(conc), "0"], capture_output=True, text=True, timeout=3600)
            wall = time.monotonic() - t0
            if p.returncode != 0:
                raise RuntimeError("fuzz client failed:\n" + p.stderr[-3000:])
            stats = collections.Counter(json.loads(p.stdout.strip().splitlines()[-1]))
            alive = srv.server.tasks_alive()
            canary = _canary(kind, srv, keys)
            counters = srv.counters()
    finally:
        root.removeHandler(esc)
        root.setLevel(old_level)
        st.close()
        tmp.cleanup()
    bad = {k: v for k, v in stats.items() if k.startswith("BAD")}
    escapes = caught + esc.records + ([] if alive else ["a server task ended"]) + ([] if canary else ["canary not served"])
    fig = {"kind": kind, "inputs": stats["inputs"], "wall_s": round(wall, 1), "inputs_per_s": round(stats["inputs"] / wall),
           "escapes": escapes, "bad_answers": bad, "client": dict(stats), "receiver": counters, "log_lines": esc.lines}
    out("fuzz %s: %d inputs in %.1f s (%d/s), %d escaped exceptions, %d wrong answers, %d log lines" % (
        kind, fig["inputs"], wall, fig["inputs_per_s"], len(escapes), sum(bad.values()), esc.lines))
    out("  client: %s" % json.dumps(dict(sorted(stats.items()))))
    out("  receiver: %s" % json.dumps({k: v for k, v in sorted(counters.items()) if v}))
    for e in escapes[:10]:
        out("  ESCAPED: %s" % (e.splitlines()[-1] if e else e))
    return fig


def _canary(kind, srv, keys):
    """A real device is still served: a new frame over TCP, or an SMS."""
    dev = DEVICES[0]
    dk = DeviceKeys(keys[dev])
    raw = F.encode(dk, F.Frame(F.ALERT, dev, 10_000_000, int(time.time()), F.Report()))
    if kind == "tcp":
        from recv_helpers import send_recv

        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
            ack = send_recv(s, raw, stream.Deframer())
        return ack is not None and F.decode(dk, ack, F.DOWNLINK).body.acked_seq == 10_000_000
    body = json.dumps({"from": "+447700900123", "text": sms.text_of(raw)}).encode()
    with socket.create_connection(("127.0.0.1", srv.http_port), timeout=5) as s:
        s.sendall(b"POST /sms HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        s.shutdown(socket.SHUT_WR)
        got = b""
        while True:
            data = s.recv(4096)
            if not data:
                break
            got += data
    head, _, body = got.partition(b"\r\n\r\n")
    return head.startswith(b"HTTP/1.1 200 ") and json.loads(body)["status"] == "accepted"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "client":
        kind, port, n, seed, conc, start = argv[1], int(argv[2]), int(argv[3]), int(argv[4]), int(argv[5]), int(argv[6])
        client_main(kind, port, n, seed, conc, start)
        return 0
    ap = argparse.ArgumentParser(description="fuzz the receiver's TCP or HTTP front end")
    ap.add_argument("kind", choices=("tcp", "http"))
    ap.add_argument("n", type=int)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--conc", type=int, default=32)
    a = ap.parse_args(argv)
    fig = run(a.kind, a.n, a.seed, a.conc)
    return 1 if fig["escapes"] or fig["bad_answers"] else 0


if __name__ == "__main__":
    sys.exit(main())
