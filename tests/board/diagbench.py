"""Board-side bench app for the tool tests (runs on the MicroPython unix port).

Not firmware: a stand-in for the App, so `panic field selftest` can be
tested end to end against the flashed release on a real MicroPython VM. It
loads the release named by /manifest.json, reads /data/config.json with
the release's own validator (firmware/config.py, as the App's boot does),
serves firmware/diag.py on stdin/stdout (the board's USB serial), and sends
a real protocol v1 TEST frame to the configured receivers when asked, in
their order until one ACKs (a stand-in for firmware/failover.py: one try
each), waiting for an authenticated ACK. Blocking is fine here; the App
must not block.
"""

import json
import sys
import time

with open("/manifest.json") as f:
    MANIFEST = json.loads(f.read())
sys.path.insert(0, "/" + MANIFEST["app"])

import binascii  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402

from firmware import config as C  # noqa: E402
from firmware.diag import Diag  # noqa: E402
from protocol import frame as F  # noqa: E402
from protocol import stream  # noqa: E402
from protocol.crypto import DeviceKeys  # noqa: E402

with open("/data/config.json") as f:
    TEXT = f.read()
CFG = json.loads(TEXT)
VALID = C.parse(TEXT)  # the receivers and SMS numbers as the firmware reads them
assert VALID.usable and not VALID.errors, VALID.errors


class BenchProvider:
    def __init__(self):
        self.keys = DeviceKeys(binascii.unhexlify(CFG["key_hex"]))
        self.seq = 0
        self.results = {}
        self.log = ["boot", "config loaded for device %d" % CFG["device_id"]]

    def status(self):
        st = os.statvfs("/")
        return {
            "firmware": "%s (%s)" % (MANIFEST["version"], MANIFEST["app"]),
            "device_id": CFG["device_id"],
            "config": {
                "receiver": "%s:%d" % (VALID.receiver_host, VALID.receiver_port),
                "sms_number": VALID.sms_number,
                "apn": CFG["apn"],
                "power_profile": CFG["power_profile"],
                "test_enabled": CFG["test_enabled"],
            },
            "button": {"level": 1, "pressed": False},
            "board": {"led": 0, "status_pin": 1},  # as the App reports a T-SIM7600E (diagprov._board)
            "gnss": {"fix": True, "sats": 9, "age_s": 0},
            "modem": {"on": True, "sim": "READY", "registered": True, "operator": "Bench", "csq": 25, "cell": [234, 15, 1, 2, -80]},
            "battery": {"mv": 4000, "low": False},
            "flash": {"ok": True, "free_kb": st[0] * st[4] // 1024},
            "outbox": 0,
            "faults": [],
            "alert_active": False,
        }

    def alert_active(self):
        return False

    def send_test(self, now):
        self.seq += 1
        tok = self.seq
        t0 = time.ticks_ms()
        rep = F.Report(source=F.SRC_GNSS, lat=515000000, lon=-1000000, csq=25, test=True)
        raw = F.encode(self.keys, F.Frame(F.TEST, CFG["device_id"], tok, int(time.time()), rep))
        res = {"acked": False, "error": "no ACK"}
        for host, port in VALID.receivers or [(VALID.receiver_host, VALID.receiver_port)]:
            res = self._try(host, port, raw, tok, t0)
            if res["acked"]:
                break
        self.results[tok] = res
        self.log.append("test %d: %s" % (tok, "acked" if res["acked"] else "failed"))
        return tok

    def _try(self, host, port, raw, tok, t0):
        res = {"acked": False, "error": "no ACK"}
        s = socket.socket()
        try:
            ai = socket.getaddrinfo(host, port)[0][-1]
            s.connect(ai)
            s.send(stream.pack(raw))
            d = stream.Deframer()
            frames = []
            while not frames:
                b = s.recv(300)
                if not b:
                    break
                frames = d.feed(b)
            for fr in frames:
                ack = F.decode(self.keys, fr, expect=F.DOWNLINK)
                if ack.body.acked_seq == tok:
                    res = {"acked": True, "via": "tcp", "rtt_ms": time.ticks_diff(time.ticks_ms(), t0)}
        except Exception as e:
            res = {"acked": False, "error": "tcp: %r" % (e,)}
        s.close()
        return res

    def test_result(self, token):
        return self.results.get(token)

    def events(self):
        return self.log


def main():
    d = Diag(binascii.unhexlify(CFG["engineer_key_hex"]), BenchProvider())
    rd = sys.stdin.buffer
    wr = sys.stdout.buffer
    while True:
        b = rd.read(1)
        if not b:
            return
        out = d.feed(b, time.ticks_ms())
        if out:
            wr.write(out)
            try:
                wr.flush()
            except AttributeError:
                pass


main()
