"""Fuzz the USB serial's console path on the real MicroPython VM (issue 15).

    python fuzz/console.py N [--seed S]

The device side (tests/device/stdin_console.py fuzz()) runs in a unix-port
VM from a ROMFS image of the device code with a 96 KB heap
(fuzz/mpconsole.py): firmware/loop.py's serve_console, firmware/diag.py's
Diag and the lock-out kept on flash, over the production console class
(firmware/board_esp32.py _ConsoleStream) reading the VM's real stdin. This
process writes N inputs into that stdin as one stream, each input one of:

  - a genuine hello under the engineer key (fresh nonce), or one replayed;
  - a hello mutated (bit flips, a byte changed, cut, lengthened, hex case,
    nonce length, spacing, another key's tag);
  - a line shaped like a sealed command (JSON with a random tag, JSON that
    is broken or nested deep, a real command sealed under a wrong key);
  - hostile bytes: every invalid UTF-8 form, bytes >= 0x80, NUL, the
    control characters a REPL acts on (Ctrl-A/B/C/D/E) and mpremote's
    raw-REPL entry, CR and LF storms, random bytes;
  - an overlong line (513 to 3,000 bytes), with or without its LF;
  - two earlier inputs spliced;
each ended by a LF most of the time. The stream goes in rounds: this
side waits until the VM has read everything and had a quiet moment (its
clock then jumps past the longest lock-out, so one round's failures do not
silence the next), sends a genuine hello, waits for the accept, derives the
session key from it and sends a burst of sealed lines under that key
(every command with good and bad arguments, the wrong sequence number,
JSON that is broken, nested 200 deep, not an object, or not UTF-8, a
command that is not a string), then ROUND inputs of the kinds above.

Checked: no exception leaves serve_console (an escape ends the run), the
class counts no error and Diag drops no line to an exception, every byte
written is read exactly once and in order (count and SHA-256), no read
returns more than 256 bytes, and every byte the VM writes back is an
accept line that verifies under the engineer key for a genuine hello this
side sent, or a response sealed under the key of a session this side
opened (the console says nothing else, and nothing at all to anyone
without the key). At the end a genuine hello must be answered. Prints the figures (inputs,
bytes, reads, the longest read, Diag's counters, time) and exits 1 on any
failure. `make fuzz` runs N = 200,000; tests/test_console_hardening.py
runs 3,000.
"""

import argparse
import binascii
import hashlib
import hmac
import json
import os
import random
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from firmware import diag as D  # noqa: E402
from fuzz.mpconsole import Image, reports, spawn  # noqa: E402

EK = bytes(range(100, 132))  # tests/device/stdin_console.py EK
OTHER = bytes(range(200, 232))  # a key that is not this device's
ROUND = 1000  # random inputs between two sessions
CTRL = (b"\x01", b"\x02", b"\x03", b"\x04", b"\x05", b"\r\x03\x03", b"\r\x01", b"\x05A\x01", b"\x1b[A")
BAD_UTF8 = (b"\x80", b"\xbf", b"\xc0\xaf", b"\xc3", b"\xc3\x28", b"\xe2\x28\xa1", b"\xe2\x82", b"\xed\xa0\x80",
            b"\xef\xbf\xbe", b"\xf0\x28\x8c\xbc", b"\xf4\x90\x80\x80", b"\xf8\x88\x80\x80\x80", b"\xfe", b"\xff")


def _tag(key, label, data):
    return hmac.new(key, label + data, hashlib.sha256).digest()


class Gen:
    """The inputs, from a seed. `signed` holds every host nonce this side
    signed a hello for under the engineer key (the genuine ones, and those
    a mutation may leave intact, e.g. its hex in capitals): an accept must
    answer one of them."""

    def __init__(self, seed):
        self.r = random.Random(seed)
        self.signed = set()
        self.recent = []  # earlier inputs, for splices and replays
        self.genuine = 0

    def hello(self, key=EK, nonce=None):
        hn = nonce if nonce is not None else self.r.randbytes(D.NONCE_LEN)
        if key == EK:
            self.signed.add(hn)
        line = b"DIAG1 " + binascii.hexlify(hn) + b" " + binascii.hexlify(_tag(key, D.L_HELLO, hn))
        return hn, line

    def genuine_hello(self):
        hn, line = self.hello()
        self.genuine += 1
        return line + b"\n"

    def _mutate(self, b):
        r = self.r
        b = bytearray(b)
        for _ in range(r.randrange(1, 4)):
            k = r.randrange(7)
            if k == 0 and b:
                i = r.randrange(len(b))
                b[i] ^= 1 << r.randrange(8)
            elif k == 1 and b:
                b[r.randrange(len(b))] = r.randrange(256)
            elif k == 2 and b:
                del b[r.randrange(len(b)):]
            elif k == 3:
                b[r.randrange(len(b) + 1):0] = r.randbytes(r.randrange(1, 40))
            elif k == 4:
                b = bytearray(bytes(b).upper() if r.random() < 0.5 else bytes(b).replace(b" ", b"  ", 1))
            elif k == 5 and b:
                i = r.randrange(len(b))
                b[i:i] = r.choice(BAD_UTF8 + CTRL)
            else:
                b += r.choice(BAD_UTF8)
        return bytes(b)

    def _sealed_looking(self):
        r = self.r
        cmd = r.choice(["status", "test", "result", "log", "bye", "nope", "", "x" * 300])
        body = json.dumps({"seq": r.choice([1, 2, 0, -1, 2**40, "1", None]), "cmd": cmd}).encode()
        k = r.randrange(5)
        if k == 0:
            body = b"[" * r.randrange(1, 400) + b"]" * r.randrange(0, 400)
        elif k == 1:
            body = body[: r.randrange(len(body))]
        elif k == 2:
            return D.sealed_line(D.Hmac(OTHER), D.D_HOST, body)  # a real command under a wrong key
        tag = r.randbytes(32)
        return body + b" " + binascii.hexlify(tag) + b"\n"

    def session_burst(self, sk):
        """Sealed lines under a live session key: commands with the next
        sequence numbers, and lines whose MAC verifies but whose content is
        wrong in every way Diag must answer (or drop) without raising."""
        r = self.r
        seq = 0
        out = []
        bodies = []
        for _ in range(r.randrange(4, 16)):
            k = r.randrange(9)
            seq += 1
            if k == 0:
                req = {"seq": seq, "cmd": r.choice(["status", "log", "result", "test", "nope"])}
            elif k == 1:
                req = {"seq": seq, "cmd": "log", "start": r.choice([-1, 0, 5, 2**62, "x", None, [1], 1.5])}
            elif k == 2:
                req = {"seq": seq, "cmd": "result", "token": r.choice([None, 1, "t", [1, 2], {"a": 1}])}
            elif k == 3:
                req = {"seq": seq, "cmd": r.choice([1, None, ["status"], {"c": 1}, ""])}
            elif k == 4:
                req = {"seq": r.choice([seq - 1, seq + 5, 0, -1, "1", None]), "cmd": "status"}
                seq -= 1  # not taken: the device still waits for seq
            else:
                seq -= 1
                req = None
            if req is not None:
                body = json.dumps(req).encode()
            elif k == 5:
                body = b"[" * 200 + b"]" * 200
            elif k == 6:
                body = r.choice([b"[1,2]", b'"status"', b"7", b"null", b"{}", b'{"seq":1}'])
            elif k == 7:
                body = b'{"seq": 1, "cmd": "' + b"\xff\xfe" + b'"}'  # not UTF-8
            else:
                body = b"{" * r.randrange(1, 100) + r.randbytes(r.randrange(0, 50)).replace(b"\n", b"")
            bodies.append(body)
            out.append(D.sealed_line(sk, D.D_HOST, body))
        if r.random() < 0.3:
            seq += 1
            out.append(D.sealed_line(sk, D.D_HOST, json.dumps({"seq": seq, "cmd": "bye"}).encode()))
        return b"".join(out)

    def one(self):
        r = self.r
        k = r.random()
        if k < 0.01:
            out = self.genuine_hello()
        elif k < 0.02 and self.signed:
            out = self.hello(nonce=r.choice(sorted(self.signed)))[1] + b"\n"  # a replay
        elif k < 0.22:
            out = self._mutate(self.hello(key=EK if r.random() < 0.7 else OTHER)[1])
        elif k < 0.37:
            out = self._sealed_looking()
        elif k < 0.62:
            parts = [r.choice(BAD_UTF8 + CTRL + (b"\x00", b"\r", b"\n", b"\r\n")) for _ in range(r.randrange(1, 30))]
            out = b"".join(parts)
        elif k < 0.82:
            out = r.randbytes(r.randrange(1, 300))
        elif k < 0.87:
            out = (b"DIAG1 " if r.random() < 0.5 else b"") + r.randbytes(r.randrange(513, 3000)).replace(b"\n", b"")
        elif self.recent:
            a = r.choice(self.recent)
            b = r.choice(self.recent)
            out = self._mutate(a[: r.randrange(len(a) + 1)] + b[r.randrange(len(b) + 1):])
        else:
            out = b"\x03"
        if r.random() < 0.7 and not out.endswith(b"\n"):
            out += b"\n"
        self.recent.append(out)
        if len(self.recent) > 64:
            self.recent.pop(0)
        return out


class Result:
    def __init__(self):
        self.inputs = 0
        self.bytes_sent = 0
        self.bytes_read = 0
        self.digest_ok = False
        self.passes = 0
        self.max_read = 0
        self.max_read_us = 0
        self.errors = None
        self.line_errors = None
        self.load_failures = None
        self.escapes = []
        self.line_error_kinds = []
        self.accepts = 0
        self.responses = 0
        self.sessions = 0
        self.final_accept = False
        self.unexpected_output = []
        self.genuine = 0
        self.diag = {}
        self.seconds = 0.0

    def ok(self):
        return (not self.escapes and self.errors == 0 and self.line_errors == 0 and self.load_failures == 0
                and self.bytes_read == self.bytes_sent and self.digest_ok and 0 < self.max_read <= 256
                and not self.unexpected_output and self.final_accept)

    def __repr__(self):
        return "<Result %s>" % ", ".join("%s=%r" % kv for kv in sorted(vars(self).items()) if kv[0] != "diag")


class _Vm:
    """The VM running stdin_console.fuzz(), with its two output pipes read
    by threads: stderr as report lines (progress `P <bytes>` included)."""

    def __init__(self, image):
        self.p = spawn(image, "fuzz(report_progress=True)")
        self.err = []
        self.progress = 0
        self.out = bytearray()
        self.cv = threading.Condition()
        self.threads = [threading.Thread(target=self._err, daemon=True), threading.Thread(target=self._out, daemon=True)]
        for t in self.threads:
            t.start()

    def _err(self):
        for raw in self.p.stderr:
            line = raw.decode("utf-8", "replace").strip()
            with self.cv:
                if line.startswith("P "):
                    self.progress = int(line[2:])
                else:
                    self.err.append(line)
                self.cv.notify_all()
        with self.cv:
            self.err.append(None)
            self.cv.notify_all()

    def _out(self):
        while True:
            b = self.p.stdout.read1(4096)
            if not b:
                return
            with self.cv:
                self.out.extend(b)
                self.cv.notify_all()

    def accept_for(self, hn, start, timeout=5):
        """The device nonce of the accept that answers host nonce hn,
        among the complete lines written from `start` on; None if none
        came within timeout."""
        ek = D.Hmac(EK)

        def found():
            for line in bytes(self.out[start:]).split(b"\n")[:-1]:
                p = line.split(b" ")
                if len(p) != 3 or p[0] != b"DIAG1":
                    continue
                try:
                    dn, tag = binascii.unhexlify(p[1]), binascii.unhexlify(p[2])
                except (binascii.Error, ValueError):
                    continue
                if hmac.compare_digest(D.accept_tag(ek, hn, dn), tag):
                    return dn
            return None

        got = []
        self.wait_for(lambda: got.append(found()) or got[-1] is not None, timeout)
        return got[-1] if got else None

    def wait_for(self, pred, timeout):
        end = time.monotonic() + timeout
        with self.cv:
            while not pred():
                left = end - time.monotonic()
                if left <= 0 or (self.err and self.err[-1] is None):
                    return pred()
                self.cv.wait(left)
            return True


def _check_output(out, gen, res):
    """Every line the VM wrote must be an accept for a genuine hello, or a
    response sealed under the key of a session one of those opened."""
    ek = D.Hmac(EK)
    keys = []
    for line in bytes(out).split(b"\n"):
        if not line:
            continue
        parts = line.split(b" ")
        hn = None
        if len(parts) == 3 and parts[0] == b"DIAG1":
            try:
                dn = binascii.unhexlify(parts[1])
                tag = binascii.unhexlify(parts[2])
            except (binascii.Error, ValueError):
                dn = tag = None
            if dn is not None and len(dn) == D.NONCE_LEN:
                for h in gen.signed:
                    if hmac.compare_digest(D.accept_tag(ek, h, dn), tag):
                        hn = h
                        break
        if hn is not None:
            res.accepts += 1
            keys.append(D.Hmac(D.session_key(ek, hn, dn)))
        elif any(D.open_line(sk, D.D_DEV, line) is not None for sk in keys[-4:]):
            res.responses += 1
        else:
            res.unexpected_output.append(line[:200])


def run(n, seed=1, image=None, out=None):
    """Send n inputs; return a Result."""
    own = None
    if image is None:
        own = Image()
        image = own.path
    gen = Gen(seed)
    res = Result()
    h = hashlib.sha256()
    t0 = time.monotonic()
    vm = _Vm(image)

    def send(data):
        h.update(data)
        res.bytes_sent += len(data)
        try:
            vm.p.stdin.write(data)
            vm.p.stdin.flush()
        except BrokenPipeError:
            return False
        return True

    try:
        sent = 0
        while sent < n:
            total = res.bytes_sent
            if not vm.wait_for(lambda t=total: vm.progress >= t, 600):
                break  # the VM stopped reading (an escape ends it)
            # a session: the hello alone on a quiet port, its accept, a burst under its key
            at = len(vm.out)
            hello = gen.genuine_hello()
            sent += 1
            if not send(b"\n" + hello):
                break
            hn = binascii.unhexlify(hello.split(b" ")[1])
            dn = vm.accept_for(hn, at)
            if dn is not None:
                res.sessions += 1
                sent += 1
                if not send(gen.session_burst(D.Hmac(D.session_key(D.Hmac(EK), hn, dn))) + b"\n"):
                    break
            chunk = [gen.one() for _ in range(min(ROUND, max(0, n - sent)))]
            sent += len(chunk)
            if chunk and not send(b"".join(chunk)):
                break
            if out is not None and sent // 20000 != (sent - len(chunk) - 2) // 20000:
                out("%d inputs, %d bytes" % (sent, res.bytes_sent))
        res.inputs = sent
        # liveness: a genuine hello after everything gets its answer
        vm.wait_for(lambda t=res.bytes_sent: vm.progress >= t, 600)
        at = len(vm.out)
        last = gen.genuine_hello()
        send(b"\n" + last)  # the LF ends whatever line the stream left open
        res.final_accept = vm.accept_for(binascii.unhexlify(last.split(b" ")[1]), at) is not None
        try:
            vm.p.stdin.close()
        except BrokenPipeError:
            pass  # the VM is gone (an escape): its reports say why
        vm.p.wait(300)
        for t in vm.threads:
            t.join(30)
    finally:
        if vm.p.poll() is None:
            vm.p.kill()
        if own is not None:
            own.close()
    res.seconds = time.monotonic() - t0
    res.genuine = gen.genuine
    for tag, f in reports("\n".join(x for x in vm.err if x)):
        if tag == "ESCAPE":
            res.escapes.append(" ".join(f))
        elif tag == "LINE_ERROR":
            res.line_error_kinds.append(" ".join(f))
        elif tag == "END":
            res.bytes_read = int(f[0])
            res.passes = int(f[1])
            res.max_read = int(f[2])
            res.max_read_us = int(f[3])
            res.errors = int(f[4])
            res.line_errors = int(f[5])
            res.load_failures = int(f[6])
            res.digest_ok = f[7] == h.hexdigest()
        elif tag == "DIAG":
            res.diag = dict(kv.split("=") for kv in f)
    _check_output(vm.out, gen, res)
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("n", type=int, help="inputs to send")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args(argv)
    res = run(a.n, seed=a.seed, out=lambda s: print("  " + s, file=sys.stderr, flush=True))
    print("console fuzz (MicroPython %s, production _ConsoleStream + serve_console + Diag, 96 KB heap):"
          % "unix port")
    print("  inputs %d (genuine hellos %d), bytes %d sent, %d read, stream intact: %s"
          % (res.inputs, res.genuine, res.bytes_sent, res.bytes_read, res.digest_ok))
    print("  passes %d, most bytes in one read %d, longest read %d us" % (res.passes, res.max_read, res.max_read_us))
    print("  escapes %d, class errors %s, lines dropped by an exception %s, console load failures %s"
          % (len(res.escapes), res.errors, res.line_errors, res.load_failures))
    print("  answers: %d accepts, %d sealed responses in %d sessions, all genuine: %s; final hello answered: %s"
          % (res.accepts, res.responses, res.sessions, not res.unexpected_output, res.final_accept))
    print("  Diag counters: " + ", ".join("%s %s" % kv for kv in sorted(res.diag.items())))
    print("  %.0f s" % res.seconds)
    for e in res.escapes[:5]:
        print("ESCAPE " + e)
    for e in res.line_error_kinds[:5]:
        print("LINE ERROR " + e)
    for u in res.unexpected_output[:5]:
        print("UNEXPECTED OUTPUT %r" % u)
    ok = res.ok()
    print("console fuzz: %s" % ("PASS" if ok else "FAIL"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
