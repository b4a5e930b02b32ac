"""ModemTransport: the transport contract of firmware/transport.py on top of
the modem engine, a UART-like stream and the board's modem pins.

Owns: moving bytes between the stream and the engine, applying the engine's
pin actions to the board, and turning calls into engine requests. Never
blocks: poll(now) reads what the stream has, advances the engine, writes
what it produced and returns ms until it next wants a poll (at once, the
last answer, when it is polled again at the same instant with no byte
come and nothing asked of it since).

    stream: read(n) -> bytes or None (non-blocking), write(b)
    pins:   modem_pwrkey(level) (1 = key pressed, i.e. PWRKEY pulled low at
            the modem; the board maps it to its GPIO polarity); optional
            modem_dtr(level) for UART sleep; optional modem_status() -> 1
            (on), 0 (off) or None (the board has no STATUS line)
    cfg:    apn, receiver_host, receiver_port, optional pin, power_profile
            and any timing of firmware/modem/engine.py DEFAULTS (dict or
            object attributes)

Must stay in sync with: firmware/transport.py (the contract).
"""

from firmware.modem.at import cfg as _cfg
from firmware.modem.engine import Engine, J_SEND, J_SMS, J_CALL, J_HANGUP
from firmware.modem.sim7600 import Sim7600
from firmware.transport import EV_SEND_FAILED, EV_SMS_FAILED
from protocol.frame import MAX_FRAME

_READ = 512


def _valid_number(number):
    if not isinstance(number, str) or not 3 <= len(number) <= 20:
        return False
    for i, c in enumerate(number):
        if not ("0" <= c <= "9" or (c == "+" and i == 0)):
            return False
    return True


def _valid_sms(text):
    if not isinstance(text, str) or not 0 < len(text) <= 160:
        return False
    # over the bytes, not the str: MicroPython interns each 1-char string a
    # str iteration yields, and a new string pool wanted mid-alert in a
    # fragmented heap is a MemoryError (bench/bench_firmware.py found it
    # in the SMS fallback when the qstr count sat at a pool's end)
    for o in text.encode():
        if o < 32 or o > 126:
            return False
    return True


class ModemTransport:
    def __init__(self, stream, pins, cfg, dialect=None):
        self.stream = stream
        self.pins = pins
        host = _cfg(cfg, "receiver_host")
        port = _cfg(cfg, "receiver_port")
        self.engine = Engine(dialect or Sim7600(host, port), cfg)
        self._status = getattr(pins, "modem_status", None)
        # [instant, wait] of the last poll (instant None: not to be skipped).
        # A poll at the same instant with no byte come and nothing asked of
        # the engine since (every call below that changes what it is asked
        # clears the instant) would change nothing: the App polls again
        # after each step for what the step queued, usually nothing. One
        # list, no garbage per poll.
        self.now = [None, 0]

    # ---- driving --------------------------------------------------------

    def poll(self, now):
        m = self.now
        e = self.engine
        data = self.stream.read(_READ)
        if not data and m[0] == now:
            return m[1]
        if self._status is not None:
            e.status = self._status()
        n = 0
        while data:
            e.feed(data, now)
            n += 1
            if n == 8:
                break  # at most 8 reads a poll; the rest at the next
            data = self.stream.read(_READ)
        wait = e.poll(now)
        self._flush()
        m[0] = now if wait > 0 else None  # 0: the engine has more to do now
        m[1] = wait
        return wait

    def _flush(self):
        e = self.engine
        out = e.ch.out
        if out:
            self.stream.write(bytes(out))
            e.ch.out = bytearray()
        if e.actions:
            p = self.pins
            for name, level in e.actions:
                if name == "pwrkey":
                    p.modem_pwrkey(level)
                elif name == "dtr":
                    fn = getattr(p, "modem_dtr", None)
                    if fn is not None:
                        fn(level)
            e.actions = []

    # ---- contract -------------------------------------------------------

    def data_ready(self):
        return self.engine.data_ready()

    def sms_ready(self):
        return self.engine.sms_ready()

    def busy(self):
        return self.engine.busy()

    def send_frame(self, raw, now):
        self.now[0] = None
        if not self.engine.data_ready() or not isinstance(raw, (bytes, bytearray)) or not 0 < len(raw) <= MAX_FRAME:
            return False
        return self.engine.request(J_SEND, bytes(raw))

    def send_sms(self, number, text, now):
        self.now[0] = None
        if not self.engine.sms_ready() or not _valid_number(number) or not _valid_sms(text):
            return False
        return self.engine.request(J_SMS, (number, text))

    def start_call(self, number, now):
        self.now[0] = None
        if not self.engine.sms_ready() or not _valid_number(number):
            return False
        return self.engine.request(J_CALL, number)

    def hang_up(self, now):
        self.now[0] = None
        e = self.engine
        old = e._req
        e._req = (J_HANGUP, None)  # wins over a queued request, which is reported
        if old is not None:
            if old[0] == J_SEND:
                e.events.append((EV_SEND_FAILED, "superseded by hang-up"))
            elif old[0] == J_SMS:
                e.events.append((EV_SMS_FAILED, "superseded by hang-up"))

    def set_receiver(self, host, port):
        self.now[0] = None
        self.engine.retarget(host, port)

    def sleep(self, now):
        self.now[0] = None
        self.engine.want_sleep = True

    def wake(self, now):
        self.now[0] = None
        self.engine.want_sleep = False

    def quiet(self):
        return self.engine.quiet()

    def ri_wake(self, now):
        self.now[0] = None
        self.engine.ri()

    def gnss(self, on, every_s=1):
        """The modem's GNSS on or off, reporting every `every_s` s."""
        self.now[0] = None
        e = self.engine
        e.want_gnss = bool(on)
        e.want_nmea_s = every_s if 1 <= every_s <= 255 else 1

    def nmea(self):
        return self.engine.take_nmea()

    def cell(self):
        return self.engine.cell_v

    def cell_read_at(self):
        return self.engine.cell_at

    def csq(self):
        return self.engine.csq_v

    def events(self):
        return self.engine.take_events()

    def modem_status(self):
        """What the diagnostics console reports about the modem (no I/O:
        the engine's last known view). The engine does not ask for the
        operator name, so "operator" is None."""
        e = self.engine
        sim = e.sim
        cell = e.cell_v
        return {
            "on": bool(e.booted),
            "status_pin": e.status,
            "ri_urc": bool(e.ri_urc),
            "gnss": bool(e.gnss_on),
            "nmea": e.nmea_lines,
            "sim": "READY" if sim == "ready" else ("UNKNOWN" if sim is None else str(sim).upper()),
            "registered": bool(e.cs_reg or e.ps_reg),
            "data": bool(e.data_up),
            "operator": None,
            "csq": e.csq_v,
            "cell": list(cell) if cell else None,
            "asleep": bool(e.asleep),
        }

    def stats(self):
        return self.engine.stats()
