"""Forwarding to an ARC: DC-09 messages per second through the forwarder,
and the time from a device's ALERT to the ARC's ACK, with the primary ARC
receiver up and with it dead.

Everything is real and local: `panic receiver serve` (SQLite WAL +
synchronous=FULL, the forwarder inside it) as a subprocess pinned to one
CPU; pysiaalarm's receiver (SIAClient, an encrypted account) as the ARC,
another process; devices sending ALERT frames over TCP from this process.
An alarm is the device's ALERT frame; it is done when pysiaalarm has
written its ACK to the forwarder (pysiaalarm hands the event to its
callback right after that write; the callback notes CLOCK_MONOTONIC,
which every process shares). The forward queue in the store gives each
DC-09 sequence number's device.

Figures (each the median of ROUNDS rounds, the scenarios interleaved):
  - messages/s: a burst of BURST alerts from as many devices; the
    forwarder sends them one at a time (stop-and-wait, as DC-09 does on
    one connection), each written to the store with its event, each ACK
    marked in the store. Beside it, the peer on equal work at the ARC's
    end: the same encrypted messages from a bare sender (our codec, one
    connection, stop-and-wait, no receiver and no store).
  - latency p50/p99, primary up: PACED alerts at RATE per second.
  - latency p50/p99, primary hung: before each round the primary is
    healthy and in use; then it hangs (takes our messages, never
    answers: the slow way to fail, which costs the ACK timeout, 2 s
    here, before the secondary takes over; alarms raised meanwhile wait
    behind the first); target 1 s + that timeout.

Environment: FORWARD_BENCH_ROUNDS (5), FORWARD_BENCH_BURST (400),
FORWARD_BENCH_PACED (60), FORWARD_BENCH_RATE (20).
"""

import asyncio
import json
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.verdict import median_spread, note, verdict  # noqa: E402
from protocol import frame as F  # noqa: E402
from protocol import stream  # noqa: E402
from protocol.crypto import DeviceKeys  # noqa: E402
from receiver import masterkey  # noqa: E402
from receiver import store as S  # noqa: E402
from receiver.forward import dc09 as D  # noqa: E402

ROUNDS = int(os.environ.get("FORWARD_BENCH_ROUNDS", "5"))
BURST = int(os.environ.get("FORWARD_BENCH_BURST", "400"))
PACED = int(os.environ.get("FORWARD_BENCH_PACED", "60"))
RATE = float(os.environ.get("FORWARD_BENCH_RATE", "20"))
ACK_TIMEOUT = 2.0
WORK = os.path.join(ROOT, "build", "bench-forward")
KEY = "0123456789ABCDEF"  # pysiaalarm's key form: 16 hex characters used as the AES-128 key
T0 = 1_800_000_000


def pin(cpu):
    try:
        if len(os.sched_getaffinity(0)) > 1:
            os.sched_setaffinity(0, {cpu})
    except (AttributeError, OSError):
        pass


# ---------------------------------------------------------------- the ARC (pysiaalarm), as a child process

def arc_main(port):
    import logging

    from pysiaalarm import SIAAccount
    from pysiaalarm.aio import SIAClient

    logging.getLogger("pysiaalarm").setLevel(logging.ERROR)

    async def got(ev):
        if ev.message_type.value != "NULL":
            print("%s %s %.6f" % (ev.account, ev.sequence, time.monotonic()), flush=True)

    async def main():
        client = SIAClient("127.0.0.1", port, [SIAAccount("1234", KEY), SIAAccount("5678", KEY)], got)
        await client.async_start(reuse_address=True)
        print("ready", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


class Arc:
    def __init__(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--arc", str(self.port)],
                                     stdout=subprocess.PIPE, text=True, cwd=ROOT, preexec_fn=lambda: pin(1))
        assert self.proc.stdout.readline().strip() == "ready"
        self.acks = {}  # (account, seq) -> monotonic time of the ACK (the latest, if repeated)
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self):
        for line in self.proc.stdout:
            acct, seq, t = line.split()
            self.acks[(acct, int(seq))] = float(t)

    def close(self):
        self.proc.kill()
        self.proc.wait()


class HangProxy:
    """The primary ARC receiver as the forwarder sees it: passes both ways
    while `hung` is false; while true it takes our messages and never
    answers (a receiver that accepts and hangs: the slow way to fail)."""

    def __init__(self, target_port):
        self.target_port = target_port
        self.hung = False
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.port = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)

    async def _start(self):
        self.server = await asyncio.start_server(self._conn, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _conn(self, cr, cw):
        ur, uw = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def pipe(r, w, answers):
            try:
                while data := await r.read(4096):
                    if not (answers and self.hung):
                        w.write(data)
            except ConnectionError:
                pass
            w.close()

        await asyncio.gather(pipe(cr, uw, False), pipe(ur, cw, True))

    def close(self):
        self.loop.call_soon_threadsafe(self.loop.stop)


# ---------------------------------------------------------------- a receiver with a forward target

class Serve:
    def __init__(self, name, account, paths, devices, failback_s=3600):
        self.account = account
        self.dir = os.path.join(WORK, name)
        os.makedirs(self.dir)
        self.db = os.path.join(self.dir, "rx.db")
        self.mk = os.path.join(self.dir, "master.key")
        with os.fdopen(os.open(self.mk, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            f.write(masterkey.generate_hex())  # serve refuses a key others can read
        with open(os.path.join(self.dir, "arc.key"), "w") as f:
            f.write(KEY)
        st = S.open_store(self.db, masterkey.load(self.mk))
        for dev, key in devices:
            st.add_device(dev, key, "bench %d" % dev)
        st.close()
        args = ["forward", "add", "--db", self.db, "--name", "arc", "--account", account, "--receiver", "1",
                "--key-file", os.path.join(self.dir, "arc.key"), "--key-encoding", "ascii",
                "--ack-timeout-s", str(ACK_TIMEOUT), "--poll-s", "3600", "--failback-s", str(failback_s)]
        for p in paths:
            args += ["--arc", "127.0.0.1:%d" % p]
        subprocess.run([sys.executable, "-m", "tools.cli", "receiver"] + args, cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL)
        self.log = open(os.path.join(self.dir, "serve.log"), "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tools.cli", "receiver", "serve", "--db", self.db, "--listen", "127.0.0.1:0",
             "--master-key-file", self.mk, "--supervise-every", "0", "--max-conns-per-peer", "2000"],
            cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT, preexec_fn=lambda: pin(0))
        self.port = None
        end = time.time() + 20
        while self.port is None and time.time() < end:
            with open(self.log.name) as f:
                for line in f:
                    if "listening tcp" in line:
                        self.port = int(line.rsplit(":", 1)[1])
            time.sleep(0.05)
        if self.port is None:
            raise SystemExit("serve did not start:\n" + open(self.log.name).read())

    def seq_of(self):
        """{DC-09 seq: device id} of every message queued so far."""
        st = S.open_store(self.db)
        try:
            return {r["seq"]: r["device_id"] for r in st.forward_queue_rows()}
        finally:
            st.close()

    def close(self):
        self.proc.terminate()
        self.proc.wait(20)
        self.log.close()


async def send_alerts(port, devs, rate=None):
    """Each device sends one ALERT and waits for the receiver's ACK;
    {device id: monotonic time the frame was written}."""
    sent = {}

    async def one(dev, keys):
        r, w = await asyncio.open_connection("127.0.0.1", port)
        raw = F.encode(keys, F.Frame(F.ALERT, dev, 1, T0, F.Report(F.SRC_GNSS, 515007292, -1246254, 5, 1, 80, 20)))
        sent[dev] = time.monotonic()
        w.write(stream.pack(raw))
        de = stream.Deframer()
        while not de.feed(await r.read(512)):
            pass
        w.close()

    tasks = []
    start = time.monotonic()
    for i, (dev, keys) in enumerate(devs):
        if rate:  # paced: one alarm every 1/rate s, each on its own connection
            await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
            tasks.append(asyncio.create_task(one(dev, keys)))
        else:
            tasks.append(one(dev, keys))
    await asyncio.gather(*tasks)
    return sent


def wait_acked(arc, serve, n_before, n, timeout=120):
    end = time.time() + timeout
    while time.time() < end:
        seqs = serve.seq_of()
        if len(seqs) >= n_before + n and all((serve.account, q) in arc.acks for q in list(seqs)[n_before:]):
            return seqs
        time.sleep(0.05)
    raise SystemExit("the ARC did not ACK every alarm in %d s" % timeout)


def latencies(arc, serve, seqs, sent, n_before):
    dev_seq = {d: q for q, d in list(seqs.items())[n_before:]}
    return [arc.acks[(serve.account, dev_seq[d])] - t for d, t in sent.items()]


def paced(arc, serve, batch):
    """Latencies (s) of one alarm per device in `batch`, RATE per second."""
    n0 = len(serve.seq_of())
    sent = asyncio.run(send_alerts(serve.port, batch, RATE))
    seqs = wait_acked(arc, serve, n0, len(batch))
    return latencies(arc, serve, seqs, sent, n0)


def bare_sender_rate(arc_port, n):
    """The peer on equal work at the ARC's end: n encrypted ADM-CID
    messages on one connection, stop-and-wait, nothing stored."""
    key = KEY.encode()
    s = socket.create_connection(("127.0.0.1", arc_port))
    t0 = time.perf_counter()
    for i in range(n):
        m = D.Message(D.SIA_DCS, 5000 + i % 4000, "1234", D.sia_dcs("1234", "PA", 0),
                      ("X-0.124625", "Y51.500729", "IALERT device 1 gnss +/-5 m"), "1", "0")
        s.sendall(D.encode(m, key, time.time()))
        buf = b""
        while not buf.endswith(b"\r"):
            buf += s.recv(1000)
        assert D.read_answer(buf, m, key, time.time()).kind == D.ACK
    dt = time.perf_counter() - t0
    s.close()
    return n / dt


def pctl(xs, p):
    """Nearest-rank percentile (p99 of 60 samples is the largest)."""
    xs = sorted(xs)
    return xs[max(0, math.ceil(p / 100 * len(xs)) - 1)]


def main():
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    pin(1)
    need = ROUNDS * (BURST + PACED)
    keys = {10_000 + i: os.urandom(32) for i in range(need + ROUNDS * PACED)}
    devs = [(d, DeviceKeys(k)) for d, k in keys.items()]
    arc = Arc()
    primary = HangProxy(arc.port)
    up = Serve("up", "1234", [arc.port], keys.items())
    down = Serve("down", "5678", [primary.port, arc.port], keys.items(), failback_s=0.5)
    rates, bare, lat_up, lat_down = [], [], [], []
    p99_up, p99_down = [], []
    at = 0
    try:
        for rnd in range(ROUNDS):
            # throughput: a burst through `up`
            batch = devs[at:at + BURST]
            at += BURST
            n0 = len(up.seq_of())
            t0 = time.monotonic()
            asyncio.run(send_alerts(up.port, batch))
            seqs = wait_acked(arc, up, n0, BURST)
            t_last = max(arc.acks[("1234", q)] for q in list(seqs)[n0:])
            rates.append(BURST / (t_last - t0))
            bare.append(bare_sender_rate(arc.port, BURST))
            # latency, primary up
            ls = paced(arc, up, devs[at:at + PACED])
            at += PACED
            lat_up += ls
            p99_up.append(pctl(ls, 99))
            # latency, primary hung: it is healthy (and in use again) until the round starts
            primary.hung = False
            time.sleep(2.0)  # fail-back: a NULL poll to the primary is ACKed
            primary.hung = True
            ls = paced(arc, down, devs[at:at + PACED])
            at += PACED
            lat_down += ls
            p99_down.append(pctl(ls, 99))
            print("  round %d: %.0f msg/s (bare sender %.0f), p99 up %.0f ms, p99 primary hung %.0f ms" % (
                rnd + 1, rates[-1], bare[-1], p99_up[-1] * 1000, p99_down[-1] * 1000), flush=True)
    finally:
        up.close()
        down.close()
        arc.close()
        primary.close()
    method = "median of %d interleaved rounds; serve on CPU 0, pysiaalarm and the devices on CPU 1" % ROUNDS
    r, rs = median_spread(rates)
    verdict("forward", "DC-09 messages/s through the forwarder (encrypted, stored, ACKed)", r, 100, "msg/s",
            spread=rs, method=method)
    b, bs = median_spread(bare)
    note("forward", "peer on equal work at the ARC: bare sender, one connection, nothing stored", b, "msg/s",
         method="%s; forwarder/bare = %.2f" % (method, r / b))
    m, ms = median_spread(p99_up)
    note("forward", "alarm -> ARC ACK p50, primary up", statistics.median(lat_up) * 1000, "ms",
         method="%d alarms at %g/s per round" % (PACED, RATE))
    verdict("forward", "alarm -> ARC ACK p99, primary up", m * 1000, 1000, "ms", higher_is_better=False,
            spread=(ms[0] * 1000, ms[1] * 1000), method=method)
    m, ms = median_spread(p99_down)
    note("forward", "alarm -> ARC ACK p50, primary hung", statistics.median(lat_down) * 1000, "ms",
         method="%d alarms at %g/s per round" % (PACED, RATE))
    verdict("forward", "alarm -> ARC ACK p99, primary hung (failover costs the %g s ACK timeout)" % ACK_TIMEOUT,
            m * 1000, (1 + ACK_TIMEOUT) * 1000, "ms", higher_is_better=False, spread=(ms[0] * 1000, ms[1] * 1000),
            method=method)
    with open(os.path.join(WORK, "result.json"), "w") as f:
        json.dump({"rates": rates, "bare": bare, "p99_up": p99_up, "p99_down": p99_down}, f)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--arc":
        arc_main(int(sys.argv[2]))
    else:
        print("== bench_forward: DC-09 forwarding to pysiaalarm's receiver ==")
        main()
