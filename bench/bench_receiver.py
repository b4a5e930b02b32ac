"""Receiver throughput: verified and durably committed frames per second;
and the per-message work of a DC-09 alarm receiver (pysiaalarm) beside
ours, on valid messages only.

The receiver (`panic receiver serve`, SQLite WAL + synchronous=FULL, group
commit) runs as a subprocess pinned to one CPU; the load generator runs in
this process pinned to another CPU (when the machine has two). Many
concurrent TCP connections each send one frame, wait for its ACK, and send
the next, as devices do. A frame counts only when its ACK came back, and
the ACK is sent only after the frame's batch committed. At the end the
store is opened and every frame is checked to be there.

Target: >= 5,000 verified and committed frames/s end to end, the median of
RUNS runs (a fresh store each). Beside it: the `serve` process's user-space
instructions per frame under callgrind (two smaller loads, the difference
divided by the difference in frames; the kernel's share, fsync included,
is not counted), the figure to compare before and after a change when the
machine is busy.

Side by side, per message, in the same process on one CPU, interleaved
(ROUNDS rounds; no target: for information):
  - pysiaalarm (an alarm-receiver library for SIA DC-09 / ADM-CID) on six
    DC-09 lines built here to the standard (CRC-16 over the message, its
    length in the header, a timestamp from now, three of them AES-256-CBC
    encrypted under the account key, as DC-09 allows), each one checked
    first to be one pysiaalarm calls valid (CRC, timestamp, response ACK):
      parse  SIAEvent.from_line(line, accounts) (it computes the CRC and
             decrypts as it parses)
      full   parse + valid_message (CRC compare) + valid_timestamp +
             create_response() (the ACK, encrypted and CRC'd as the
             message was): what a DC-09 receiver must do per message
  - ours on the receiver bench's frames (an ALERT and TRACKs):
      parse  protocol.frame.decode: HMAC-SHA256 verify + AES-CTR + parse
             (a frame is not parsed before it is verified)
      full   decode + the replay-window check and mark + the ACK sealed
             (HMAC + AES-CTR), as receiver/core.py does per frame (the
             store write and commit are the end-to-end figure's part)

Environment: RECEIVER_BENCH_CONNS (default 400), RECEIVER_BENCH_FRAMES
(per connection, default 50).
"""

import asyncio
import datetime
import json
import os
import re
import shutil
import statistics
import struct
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

from protocol import frame as F  # noqa: E402
from protocol import stream  # noqa: E402
from protocol.crypto import DeviceKeys  # noqa: E402
from receiver import masterkey  # noqa: E402
from receiver import store as S  # noqa: E402

import callgrind  # noqa: E402
from verdict import NOT_MEASURED, median_spread, note, verdict  # noqa: E402

CONNS = int(os.environ.get("RECEIVER_BENCH_CONNS", "400"))
PER_CONN = int(os.environ.get("RECEIVER_BENCH_FRAMES", "50"))
WORK = os.path.join(ROOT, "build", "bench-receiver")
T0 = 1_800_000_000
B = "receiver"
RUNS = 5
ROUNDS = 5
TARGET_FPS = 5000
# callgrind loads: connections x frames each (serve's start-up and the
# connections cancel out in the difference)
CG_CONNS, CG_FRAMES = 200, (5, 15)

# DC-09 peer: one account, its AES-256 key as DC-09 gives it (32 characters)
SIA_ACCOUNT = "AAA"
SIA_KEY = "0123456789ABCDEF0123456789ABCDEF"
# (message type, encrypted, content up to the closing ']', without '[')
SIA_MESSAGES = [
    ("SIA-DCS", False, "#AAA|Nri1/BA501]"),
    ("SIA-DCS", False, "#AAA|Nri0/OP001]"),
    ("ADM-CID", False, "#AAA|1130 01 015]"),
    ("SIA-DCS", True, "|Nri1/PA501]"),
    ("SIA-DCS", True, "|Nri1/CL501]"),
    ("ADM-CID", True, "|1120 01 002]"),
]


def pin(cpu):
    try:
        if len(os.sched_getaffinity(0)) > 1:
            os.sched_setaffinity(0, {cpu})
            return True
    except (AttributeError, OSError):
        pass
    return False


def proc_cpu(pid):
    """CPU seconds (user + system) a process has used so far."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rate(fn, items, min_time=0.4):
    n = 0
    t0 = time.perf_counter()
    while True:
        for it in items:
            fn(it)
        n += len(items)
        dt = time.perf_counter() - t0
        if dt >= min_time:
            return n / dt


def crc16(text):
    """CRC-16/ARC (poly 0x8005 reflected, init 0): DC-09's message CRC."""
    crc = 0
    for b in text.encode("ascii"):
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def dc09_lines(seq0=1):
    """The six DC-09 messages, timestamped now (UTC), framed as a receiver
    gets them (CRC, 0LLL length, message; the LF and CR stripped)."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    ts = datetime.datetime.now(datetime.timezone.utc).strftime("_%H:%M:%S,%m-%d-%Y")
    out = []
    for i, (kind, enc, content) in enumerate(SIA_MESSAGES):
        data = content + ts
        if enc:
            # pad at the front to whole blocks (DC-09: pad characters, then
            # '|'); AES-CBC with a zero IV, sent as hex
            data = "Q" * (16 - len(data) % 16) + data
            e = Cipher(algorithms.AES(SIA_KEY.encode()), modes.CBC(bytes(16))).encryptor()
            data = (e.update(data.encode()) + e.finalize()).hex().upper()
        msg = '"%s%s"%04dL0#%s[%s' % ("*" if enc else "", kind, seq0 + i, SIA_ACCOUNT, data)
        out.append("%04X%04X%s" % (crc16(msg), len(msg), msg))
    return out


def sia_contenders():
    """(parse, full) callables for one DC-09 line, and the accounts; or
    (None, why) without pysiaalarm."""
    try:
        import logging

        logging.getLogger("pysiaalarm").setLevel(logging.ERROR)
        from pysiaalarm import SIAAccount, SIAEvent
    except ImportError:
        return None, "pysiaalarm not installed (pip install pysiaalarm)"
    accounts = {SIA_ACCOUNT: SIAAccount(SIA_ACCOUNT, SIA_KEY)}

    def parse(line):
        return SIAEvent.from_line(line, accounts)

    def full(line):
        ev = SIAEvent.from_line(line, accounts)
        if not (ev.valid_message and ev.valid_timestamp):
            raise SystemExit("pysiaalarm refused a bench line: %s" % line)
        return ev.create_response()

    return (parse, full), ""


def check_sia_lines(lines, full):
    """Every line is one pysiaalarm calls valid and answers with an ACK."""
    from pysiaalarm import SIAAccount, SIAEvent

    accounts = {SIA_ACCOUNT: SIAAccount(SIA_ACCOUNT, SIA_KEY)}
    for line in lines:
        ev = SIAEvent.from_line(line, accounts)
        resp = full(line)
        if not (ev.valid_message and ev.valid_timestamp and ev.code and b'ACK"' in resp):
            raise SystemExit("not a valid DC-09 line for pysiaalarm (CRC %s, timestamp %s, code %r, response %r): %s"
                             % (ev.valid_message, ev.valid_timestamp, ev.code, resp, line))


def our_contenders(keys, dev):
    """(parse, full) for one of our frames, full as receiver/core.py does
    per frame short of the store: decode, replay window, ACK sealed."""
    from protocol.replay import NEW, ReplayWindow

    ack = struct.Struct(">I").pack
    state = {"w": ReplayWindow(), "down": 0}

    def parse(raw):
        return F.decode(keys, raw, F.UPLINK)

    def full(raw):
        fr = F.decode(keys, raw, F.UPLINK)
        w = state["w"]
        if w.check(fr.seq) == NEW:
            w.mark(fr.seq)
        state["down"] += 1
        return F.encode_raw(keys, F.ACK, dev, state["down"], T0, ack(fr.seq))

    def reset():
        state["w"] = ReplayWindow()

    return parse, full, reset


class Client(asyncio.Protocol):
    """One device: send a frame, wait for its ACK, send the next (a Protocol,
    so the load generator costs little per frame)."""

    def __init__(self, frames, keys, lat, done):
        self.frames, self.keys, self.lat, self.done = frames, keys, lat, done
        self.i = 0
        self.de = stream.Deframer()
        self.t = 0.0

    def connection_made(self, transport):
        self.tr = transport
        self._send()

    def _send(self):
        self.t = time.perf_counter()
        self.tr.write(stream.pack(self.frames[self.i]))

    def data_received(self, data):
        for ack in self.de.feed(data):
            self.lat.append(time.perf_counter() - self.t)
            if self.i % 10 == 0:  # check a sample of ACKs with the device's downlink key
                fr = F.decode(self.keys, ack, F.DOWNLINK)
                assert fr.body.acked_seq == self.i + 1
            self.i += 1
            if self.i == len(self.frames):
                self.tr.close()
                if not self.done.done():
                    self.done.set_result(self.i)
                return
            self._send()

    def connection_lost(self, exc):
        if not self.done.done():
            self.done.set_exception(RuntimeError("receiver closed the connection after %d frames" % self.i))


async def load(port, plan):
    loop = asyncio.get_running_loop()
    lat = []
    dones = []
    t0 = time.perf_counter()
    for keys, frames in plan:
        done = loop.create_future()
        dones.append(done)
        await loop.create_connection(lambda k=keys, f=frames, d=done: Client(f, k, lat, d), "127.0.0.1", port)
    counts = await asyncio.gather(*dones)
    return sum(counts), time.perf_counter() - t0, lat


def make_plan():
    plan = []
    for c in range(CONNS):
        dev = 10_000 + c
        key = os.urandom(32)
        keys = DeviceKeys(key)
        rep = F.Report(F.SRC_GNSS, 515007292, -1246254, 5, 1, 80, 20,
                       tlvs=[(F.T_CELL, (234, 15, 0x1A2B, 0x01C2D3E4, -97)), (F.T_GNSS, (9, 11))])
        frames = [F.encode(keys, F.Frame(F.ALERT if i == 0 else F.TRACK, dev, i + 1, T0 + i, rep))
                  for i in range(PER_CONN)]
        plan.append((dev, key, keys, frames))
    return plan


def serve(plan, conns, per_conn, valgrind_log=None):
    """One end-to-end run on a fresh store: the first `conns` devices send
    `per_conn` frames each. Returns the figures; under callgrind (valgrind_log
    names its log file) also the instructions the serve process executed."""
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    db = os.path.join(WORK, "bench.db")
    mk_file = os.path.join(WORK, "master.key")
    with open(os.open(mk_file, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:  # others may not read a master key
        f.write(masterkey.generate_hex())
    st = S.open_store(db, masterkey.load(mk_file))
    for dev, key, _, _ in plan[:conns]:
        st.add_device(dev, key, "bench %d" % dev)
    st.close()
    load_plan = [(keys, frames[:per_conn]) for _, _, keys, frames in plan[:conns]]

    two = len(os.sched_getaffinity(0)) > 1
    log = open(os.path.join(WORK, "serve.log"), "w")
    prof = ["-m", "cProfile", "-o", os.path.join(WORK, "serve.prof")] if os.environ.get("RECEIVER_BENCH_PROFILE") else []
    pre = []
    if valgrind_log:
        pre = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", "--log-file=" + valgrind_log]
    proc = subprocess.Popen(
        pre + [sys.executable] + prof + ["-m", "tools.cli", "receiver", "serve", "--db", db, "--listen", "127.0.0.1:0",
         "--http", "127.0.0.1:0", "--master-key-file", mk_file, "--max-conns-per-peer", str(CONNS + 10), "--log-level", "INFO", "--supervise-every", "0"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, preexec_fn=(lambda: pin(0)) if two else None)
    port = http = None
    t_end = time.time() + (300 if valgrind_log else 20)
    while time.time() < t_end and (port is None or http is None):
        with open(log.name) as f:
            for line in f:
                if "listening tcp" in line:
                    port = int(line.rsplit(":", 1)[1])
                if "listening http" in line:
                    http = int(line.rsplit(":", 1)[1])
        time.sleep(0.05)
    if port is None or http is None:
        proc.kill()
        raise SystemExit("receiver did not start:\n" + open(log.name).read())
    pin(1)
    try:
        cpu0 = proc_cpu(proc.pid)
        n, dt, lat = asyncio.run(load(port, load_plan))
        cpu = proc_cpu(proc.pid) - cpu0
        with urllib.request.urlopen("http://127.0.0.1:%d/health" % http, timeout=60) as r:
            counters = json.loads(r.read())["counters"]
    finally:
        proc.terminate()
        proc.wait(300 if valgrind_log else 20)
        pin(0)
    st = S.open_store(db)
    stored = st.count_frames()
    st.close()
    if stored != n:
        raise SystemExit("only %d of %d ACKed frames are in the store" % (stored, n))
    lat.sort()
    out = {"n": n, "fps": n / dt, "cpu": cpu, "batches": counters.get("batches", 0), "lat": lat, "two": two}
    if valgrind_log:
        m = re.search(r"Collected : (\d+)", open(valgrind_log).read())
        if not m:
            raise SystemExit("callgrind printed no count for serve: %s" % open(valgrind_log).read()[-1500:])
        out["instr"] = int(m.group(1))
    return out


def serve_instr_per_frame(plan):
    if not callgrind.available():
        return NOT_MEASURED
    got = []
    for per in CG_FRAMES:
        r = serve(plan, CG_CONNS, per, valgrind_log=os.path.join(ROOT, "build", "bench-receiver-callgrind.log"))
        got.append((r["n"], r["instr"]))
    (n1, i1), (n2, i2) = got
    return (i2 - i1) / (n2 - n1)


def side_by_side(plan):
    """Per-message rates, ROUNDS interleaved rounds: {name: [rate, ...]}."""
    dev, _, keys, frames = plan[0]
    ours_parse, ours_full, reset = our_contenders(keys, dev)
    sia, why = sia_contenders()
    runs = {"ours parse": [], "ours full": [], "sia parse": [], "sia full": []}
    if sia is None:
        print("  pysiaalarm: %s" % why)
        del runs["sia parse"], runs["sia full"]
    for r in range(ROUNDS):
        runs["ours parse"].append(rate(ours_parse, frames))
        reset()
        runs["ours full"].append(rate(ours_full, frames))
        if sia is not None:
            lines = dc09_lines(1 + 10 * r)  # timestamped now: inside the account's time band
            check_sia_lines(lines, sia[1])
            runs["sia parse"].append(rate(sia[0], lines))
            runs["sia full"].append(rate(sia[1], lines))
            check_sia_lines(lines, sia[1])  # still valid at the end of the round
    return runs


def main():
    plan = make_plan()
    runs = [serve(plan, CONNS, PER_CONN) for _ in range(RUNS)]
    ipf = serve_instr_per_frame(plan)
    two = runs[0]["two"]
    n = runs[0]["n"]
    print("receiver: %d frames over %d concurrent connections per run, commit (WAL, synchronous=FULL) before every "
          "ACK, %s; all ACKed frames found in the store after each run" % (
              n, CONNS, "server pinned to CPU 0, load on CPU 1" if two else "single CPU shared with the load"))
    m, spread = median_spread([r["fps"] for r in runs])
    verdict(B, "end to end: verified + committed frames/s", m, TARGET_FPS, "frames/s", spread=spread,
            method="median of %d runs, fresh store each" % RUNS)
    if ipf == ipf:
        note(B, "serve process, user-space instructions per frame", ipf, "instr",
             "callgrind, %d connections x %d and x %d frames, difference" % (CG_CONNS, CG_FRAMES[0], CG_FRAMES[1]))
    m, spread = median_spread([r["n"] / r["cpu"] for r in runs if r["cpu"]])
    note(B, "frames per CPU-second of the receiver process", m, "frames/s", "median of %d runs" % RUNS, spread=spread)
    note(B, "frames per group commit", statistics.median([r["n"] / max(1, r["batches"]) for r in runs]), "",
         "median of %d runs" % RUNS)
    note(B, "ACK latency p50", statistics.median([1000 * r["lat"][len(r["lat"]) // 2] for r in runs]), "ms",
         "median of %d runs" % RUNS)
    note(B, "ACK latency p99", statistics.median([1000 * r["lat"][int(len(r["lat"]) * 0.99)] for r in runs]), "ms",
         "median of %d runs" % RUNS)

    print("side by side, per message, one CPU, %d interleaved rounds:" % ROUNDS)
    sbs = side_by_side(plan)
    how = "median of %d interleaved rounds" % ROUNDS
    labels = {
        "ours parse": "ours: decode (HMAC verify + AES-CTR + parse)",
        "ours full": "ours: decode + replay window + ACK sealed",
        "sia parse": "pysiaalarm: from_line (parse, CRC computed, AES-CBC decrypt)",
        "sia full": "pysiaalarm: from_line + CRC check + timestamp check + ACK built",
    }
    for k, v in sbs.items():
        m, spread = median_spread(v)
        note(B, labels[k], m, "messages/s", how + (", 6 valid DC-09 lines (3 encrypted)" if k.startswith("sia")
                                                     else ", the bench's frames"), spread=spread)
    if "sia full" in sbs:
        m, spread = median_spread([a / b for a, b in zip(sbs["ours full"], sbs["sia full"])])
        note(B, "ours / pysiaalarm, the full per-message work", m, "x", how, spread=spread)
        m, spread = median_spread([a / b for a, b in zip(sbs["ours parse"], sbs["sia parse"])])
        note(B, "ours / pysiaalarm, parse only", m, "x", how, spread=spread)


if __name__ == "__main__":
    main()
