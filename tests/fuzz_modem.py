"""Long fuzz run of the modem engine against the emulator (not part of `make test`).

    python tests/fuzz_modem.py [runs] [hypothesis examples]

1. `runs` scenarios (default 300), each with a random mix of every fault the
   emulator and the network model have (garbage, cut lines, coverage that
   comes and goes, loss, jitter, outages, failed opens, short sends, remote
   closes, a hang, noise instead of answers, a spontaneous restart, a SIM missing at first boot), must deliver an ALERT and
   verify its ACK (or, with no data coverage at all, its SMS) within 30 min of
   virtual time. Prints the delivery-time distribution and every failure
   with the seed that replays it.
2. Then runs tests/test_modem_fuzz.py with MODEM_FUZZ_EXAMPLES set (default
   2000). Exits non-zero on any failure.
"""

import os
import random
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), HERE]

from host_sim.network import Network  # noqa: E402
from modem_world import World, alert  # noqa: E402

LIMIT_MS = 30 * 60 * 1000


def scenario(seed):
    r = random.Random(seed)
    faults = {}
    if r.random() < 0.5:
        faults["garbage_p"] = r.uniform(0, 0.25)
    if r.random() < 0.5:
        faults["truncate_p"] = r.uniform(0, 0.12)
    if r.random() < 0.3:
        t, cov = 0, []
        while t < 600000:
            cov.append((t, r.choice(["full", "full", "none", "sms"])))
            t += r.randrange(5000, 90000)
        cov.append((t, "full"))
        faults["coverage"] = cov
    if r.random() < 0.08:
        faults["coverage"] = [(0, "sms")]  # data never comes up: SMS must carry it
    if r.random() < 0.3:
        faults["open_fail"] = r.randrange(1, 4)
    if r.random() < 0.3:
        faults["short_send"] = r.randrange(1, 3)
    if r.random() < 0.2:
        faults["hang_after_cmds"] = r.randrange(3, 40)
    if r.random() < 0.2:
        faults["sim_missing_boots"] = 1
    if r.random() < 0.1:
        faults["reset_at"] = [r.randrange(5000, 90000)]
    if r.random() < 0.1:
        faults["quiet_reset_at"] = [r.randrange(5000, 90000)]
    if r.random() < 0.1:
        faults["babble_at_ms"] = r.randrange(0, 60000)
    if r.random() < 0.3:
        faults["remote_close_at"] = [r.randrange(10000, 60000)]
    if r.random() < 0.2:
        faults["silent_close_at"] = [r.randrange(10000, 60000)]
    if r.random() < 0.3:
        faults["cmd_latency_ms"] = r.randrange(20, 1200)
    if r.random() < 0.2:
        faults["start_on"] = True
    outages = []
    if r.random() < 0.3:
        a = r.randrange(0, 120000)
        outages.append((a, a + r.randrange(1000, 120000)))
    net = Network(seed=seed, up_ms=r.randrange(30, 400), down_ms=r.randrange(30, 400),
                  jitter_ms=r.randrange(0, 500), loss=r.choice([0, 0, 0.05, 0.2, 0.35]), outages=outages)
    return net, faults


def run(seed):
    net, faults = scenario(seed)
    w = World(net=net, seed=seed, **faults)
    w.ep.close_after_reply = random.Random(seed + 1).random() < 0.2  # a server that ACKs, then hangs up
    d = w.deliver(alert(1), limit_ms=LIMIT_MS, sms_after_ms=120000)
    if d.acked_at is not None:
        return d.acked_at, "tcp", faults
    w.rig.run_until(lambda: w.ep.verified, w.rig.now + 60000)
    if w.ep.verified and d.sms_sent_at is not None:
        return d.sms_sent_at, "sms", faults
    return None, "lost", faults


def main(argv):
    runs = int(argv[1]) if len(argv) > 1 else 300
    examples = argv[2] if len(argv) > 2 else "2000"
    times = []
    bad = []
    via = {"tcp": 0, "sms": 0, "lost": 0}
    for seed in range(runs):
        t, how, faults = run(seed)
        via[how] += 1
        if t is None:
            bad.append((seed, faults))
        else:
            times.append(t)
    times.sort()
    if times:
        pct = lambda p: times[min(len(times) - 1, int(p * len(times)))] / 1000.0  # noqa: E731
        print("fuzz_modem: %d scenarios: %d by TCP, %d by SMS, %d lost; delivery s p50 %.1f p90 %.1f max %.1f"
              % (runs, via["tcp"], via["sms"], via["lost"], pct(0.5), pct(0.9), times[-1] / 1000.0))
    for seed, faults in bad:
        print("  LOST seed %d faults %r" % (seed, faults))
    env = dict(os.environ, MODEM_FUZZ_EXAMPLES=examples)
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        os.path.join(HERE, "test_modem_fuzz.py")], env=env)
    return 1 if bad or p.returncode else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
