"""Receiver throughput: verified and durably committed frames per second.

The receiver (`panic receiver serve`, SQLite WAL + synchronous=FULL, group
commit) runs as a subprocess pinned to one CPU; the load generator runs in
this process pinned to another CPU (when the machine has two). Many
concurrent TCP connections each send one frame, wait for its ACK, and send
the next, as devices do. A frame counts only when its ACK came back, and
the ACK is sent only after the frame's batch committed. At the end the
store is opened and every frame is checked to be there.

Side by side, in the same run and on the receiver's CPU: the per-message
parse rate of pysiaalarm (a real alarm-receiver library for SIA DC-09 /
ADM-CID) on sample messages from its own test suite, and the rate of our
own protocol decode alone (verify + decrypt + parse, no I/O).

Environment: RECEIVER_BENCH_CONNS (default 400), RECEIVER_BENCH_FRAMES
(per connection, default 50).
"""

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from protocol import frame as F  # noqa: E402
from protocol import stream  # noqa: E402
from protocol.crypto import DeviceKeys  # noqa: E402
from receiver import masterkey  # noqa: E402
from receiver import store as S  # noqa: E402

CONNS = int(os.environ.get("RECEIVER_BENCH_CONNS", "400"))
PER_CONN = int(os.environ.get("RECEIVER_BENCH_FRAMES", "50"))
WORK = os.path.join(ROOT, "build", "bench-receiver")
T0 = 1_800_000_000

# Sample messages from pysiaalarm's own test cases (tests/test_sia_package_cases.py),
# the unencrypted ones it parses without complaint.
SIA_SAMPLES = [
    '9618004D"SIA-DCS"7960L0#123456[#123456|Nri1CL0^VX FRONTE ^]_22:40:48,04-11-2021',
    '5670004D"SIA-DCS"8070L0#123456[#123456|Nri0KR1^TAST. 001 ^]_13:49:12,04-13-2021',
    'E5D50078"SIA-DCS"6002L0#AAA[|Nri1/CL501][M0026B9E4268B]_14:12:04,09-25-2019',
    'E5D50078"SIA-DCS"6002L0#AAA[|Nri1/CL501]_14:12:04,09-25-2019',
    '90820051"SIA-DCS"4738R0001L0001[#006969|Nri04/OP001NM]',
    'C4160279"SIA-DCS"5268L0#AAA[Nri1/WA000]_08:40:47,07-08-2020',
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


def rate(fn, items, min_time=1.0):
    n = 0
    t0 = time.perf_counter()
    while True:
        for it in items:
            fn(it)
        n += len(items)
        dt = time.perf_counter() - t0
        if dt >= min_time:
            return n / dt


def sia_rate():
    try:
        import logging

        logging.getLogger("pysiaalarm").setLevel(logging.ERROR)
        from pysiaalarm import SIAEvent
    except ImportError:
        return None, "pysiaalarm not installed (pip install pysiaalarm)"

    def parse(line):
        ev = SIAEvent.from_line(line)
        ev.valid_message  # noqa: B018 - CRC check, as a receiver would do
        return ev

    for line in SIA_SAMPLES:
        parse(line)
    return rate(parse, SIA_SAMPLES), "%d sample messages" % len(SIA_SAMPLES)


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


def main():
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    db = os.path.join(WORK, "bench.db")
    mk_file = os.path.join(WORK, "master.key")
    with open(os.open(mk_file, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:  # others may not read a master key
        f.write(masterkey.generate_hex())
    st = S.open_store(db, masterkey.load(mk_file))
    plan = []
    for c in range(CONNS):
        dev = 10_000 + c
        key = os.urandom(32)
        st.add_device(dev, key, "bench %d" % dev)
        keys = DeviceKeys(key)
        rep = F.Report(F.SRC_GNSS, 515007292, -1246254, 5, 1, 80, 20,
                       tlvs=[(F.T_CELL, (234, 15, 0x1A2B, 0x01C2D3E4, -97)), (F.T_GNSS, (9, 11))])
        frames = [F.encode(keys, F.Frame(F.ALERT if i == 0 else F.TRACK, dev, i + 1, T0 + i, rep)) for i in range(PER_CONN)]
        plan.append((keys, frames))
    st.close()

    two = len(os.sched_getaffinity(0)) > 1
    log = open(os.path.join(WORK, "serve.log"), "w")
    prof = ["-m", "cProfile", "-o", os.path.join(WORK, "serve.prof")] if os.environ.get("RECEIVER_BENCH_PROFILE") else []
    proc = subprocess.Popen(
        [sys.executable] + prof + ["-m", "tools.cli", "receiver", "serve", "--db", db, "--listen", "127.0.0.1:0",
         "--http", "127.0.0.1:0", "--master-key-file", mk_file, "--max-conns-per-peer", str(CONNS + 10), "--log-level", "INFO", "--supervise-every", "0"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, preexec_fn=(lambda: pin(0)) if two else None)
    port = http = None
    t_end = time.time() + 20
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
        n, dt, lat = asyncio.run(load(port, plan))
        cpu = proc_cpu(proc.pid) - cpu0
        with urllib.request.urlopen("http://127.0.0.1:%d/health" % http, timeout=10) as r:
            counters = json.loads(r.read())["counters"]
    finally:
        proc.terminate()
        proc.wait(20)
    st = S.open_store(db)
    stored = st.count_frames()
    st.close()
    if stored != n:
        raise SystemExit("only %d of %d ACKed frames are in the store" % (stored, n))
    lat.sort()
    fps = n / dt
    batches = counters.get("batches", 0)
    print("receiver: %d frames over %d concurrent connections, commit (WAL, synchronous=FULL) before every ACK" % (n, CONNS))
    print("  %.0f verified+committed frames/s on one core (%s); target >= 5000/s: %s" % (
        fps, "server pinned to CPU 0, load on CPU 1" if two else "single CPU shared with the load", "met" if fps >= 5000 else "NOT MET"))
    print("  receiver CPU: %.2f s for %d frames = %.0f frames per CPU-second (the one-core figure when the machine is shared)" % (
        cpu, n, n / cpu if cpu else 0))
    print("  %d group commits, %.1f frames per commit; ACK latency p50 %.1f ms, p99 %.1f ms, max %.1f ms" % (
        batches, n / max(1, batches), 1000 * lat[len(lat) // 2], 1000 * lat[int(len(lat) * 0.99)], 1000 * lat[-1]))
    print("  all %d ACKed frames found in the store after shutdown" % stored)

    pin(0)
    keys, frames = plan[0]
    ours = rate(lambda raw: F.decode(keys, raw, F.UPLINK), frames[:20])
    sia, what = sia_rate()
    print("side by side on one core:")
    print("  wearable-panic frame decode alone (HMAC verify + AES-CTR + parse): %.0f frames/s" % ours)
    if sia is None:
        print("  pysiaalarm: %s" % what)
    else:
        print("  pysiaalarm SIAEvent.from_line + CRC check, %s:            %.0f messages/s" % (what, sia))
    print("  receiver end to end (TCP, verify, replay window, SQLite commit, ACK): %.0f frames/s" % fps)


if __name__ == "__main__":
    main()
