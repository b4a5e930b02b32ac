"""Serve firmware/diag.py on socket://127.0.0.1:PORT, as a board's USB serial.

Owns: a one-client-at-a-time TCP server that feeds every received byte to a
host-side `firmware.diag.Diag` with a monotonic-ms `now`, writes back what it
returns, and calls `poll` when idle; plus `FakeProvider`, a provider with a
settable status and a TEST alert that is "acknowledged" after a delay and
recorded in a registry-like sink (so tools can confirm the receiver saw it).
Used by the tests of tools/field.py and tools/diaglink.py; the simulator
wires the real App's provider the same way.
Stays in sync with: the provider interface in firmware/diag.py and the
status schema in docs/diag.md.
"""

import socket
import threading
import time

from firmware.diag import Diag


def healthy_status(device_id=42):
    """A status dict as a healthy, provisioned unit reports it."""
    return {
        "firmware": "0.1.0 (app-test)",
        "device_id": device_id,
        "config": {"receiver": "arc.example.org:7700", "sms_number": "+447700900123", "apn": "internet",
                   "power_profile": "ready", "wifi_scan": False, "test_enabled": True},
        "board": {"led": 0, "status_pin": 1},
        "button": {"level": 1, "pressed": False},
        "gnss": {"fix": True, "sats": 8, "age_s": 1, "source": "modem"},
        "modem": {"on": True, "sim": "READY", "registered": True, "operator": "Test Net", "csq": 21,
                  "cell": [234, 15, 4660, 1234567, -85], "status_pin": 1, "ri_urc": True, "nmea": 120},
        "battery": {"mv": 3950, "low": False},
        "flash": {"ok": True, "free_kb": 1200},
        "outbox": 0,
        "faults": [],
        "alert_active": False,
    }


class FakeProvider:
    def __init__(self, status=None, ack_after_ms=300, sink=None, acked=True):
        self.st = status or healthy_status()
        self.alert = False
        self.ack_after_ms = ack_after_ms
        self.acked = acked
        self.sink = sink  # callable(device_id, unix time, alert dict) when the "receiver" gets the TEST
        self.tests = {}
        self.log = ["boot", "config loaded", "modem registered", "gnss fix"]

    def status(self):
        return dict(self.st)

    def alert_active(self):
        return self.alert

    def send_test(self, now):
        tok = len(self.tests) + 1
        self.tests[tok] = now
        self.log.append("test alert %d sent" % tok)
        return tok

    def test_result(self, token):
        sent = self.tests.get(token)
        if sent is None:
            return {"acked": False, "error": "unknown token"}
        now = int(time.monotonic() * 1000)
        if now - sent < self.ack_after_ms:
            return None
        if not self.acked:
            return {"acked": False, "error": "no ACK after 3 tries"}
        if self.sink is not None and not getattr(self, "_sunk_%d" % token, False):
            setattr(self, "_sunk_%d" % token, True)
            self.sink(self.st.get("device_id"), int(time.time()), {"test": True, "type": "TEST", "token": token})
        return {"acked": True, "via": "tcp", "rtt_ms": now - sent}

    def events(self):
        return list(self.log)


class DiagServer:
    """firmware.diag.Diag behind a TCP socket (one client at a time)."""

    def __init__(self, engineer_key, provider, diag=None):
        self.diag = diag or Diag(engineer_key, provider)
        self.provider = provider
        self.received = 0
        self.sent = b""  # everything the console ever wrote
        self._stop = threading.Event()
        self._ls = socket.socket()
        self._ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._ls.bind(("127.0.0.1", 0))
        self._ls.listen(1)
        self._ls.settimeout(0.1)
        self.port = self._ls.getsockname()[1]
        self._t = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self):
        return "socket://127.0.0.1:%d" % self.port

    def start(self):
        self._t.start()
        return self

    def _serve(self):
        while not self._stop.is_set():
            try:
                c, _ = self._ls.accept()
            except socket.timeout:
                self.diag.poll(_ms())
                continue
            except OSError:
                return
            c.settimeout(0.05)
            with c:
                while not self._stop.is_set():
                    try:
                        data = c.recv(256)
                    except socket.timeout:
                        self.diag.poll(_ms())
                        continue
                    except OSError:
                        break
                    if not data:
                        break
                    self.received += len(data)
                    out = self.diag.feed(data, _ms())
                    if out:
                        self.sent += out
                        try:
                            c.sendall(out)
                        except OSError:
                            break

    def stop(self):
        self._stop.set()
        self._ls.close()
        self._t.join(2)

    def __enter__(self):
        return self.start()

    def __exit__(self, *a):
        self.stop()


def _ms():
    return int(time.monotonic() * 1000)
