"""A scriptable transport for tests and the simulator (device-safe).

Owns: a model of "the network" as the outbox sees it through the transport
contract (firmware/transport.py). Never interprets frames: the `deliver`
callback (a fake receiver) does, and returns the downlink bytes it would
send back.

Script it by setting attributes:
    data_up / sms_up        data path / SMS usable (refuse data, allow SMS)
    drop_frames = n         the next n uplink frames vanish after "sent"
    drop_acks = n           the next n downlink replies are lost
    fail_sends = n          the next n send_frame() calls end in send_failed
    fail_sms = n            the next n SMS end in sms_failed
    latency_ms              delay of every event after the request
    board                   if set, sleep()/wake() drive its modem pins
    cell_info, csq_val      what cell() and csq() answer
    deliver(raw, now) -> bytes|None        fake receiver for frames
    deliver_sms(number, text, now) -> None fake receiver for SMS
    refused = {(host, port), ...}  receivers that refuse connections: a
                            send to one ends in send_failed "open: error 4"
    silent = {(host, port), ...}   receivers that take frames and never answer
    target                  where set_receiver() pointed it (None: never)
and inject(raw, now) puts any bytes (forged, garbage) on the downlink.
Everything transmitted is logged: `sent` (now, raw), `sms` (now, number,
text), `calls` (now, number), `hangups`.
"""

from firmware.transport import EV_CALL, EV_FRAME, EV_LINK, EV_SEND_FAILED, EV_SENT, EV_SMS_FAILED, EV_SMS_SENT


class FakeTransport:
    # failover scripting, at class level until a test sets it: the whole-App
    # tests run at the edge of a 96 KB heap and most never use it
    target = None
    refused = ()
    silent = ()
    sent_to = None  # after set_receiver(): the target of each entry of `sent`

    def __init__(self, deliver=None, deliver_sms=None, latency_ms=0):
        self.deliver = deliver
        self.deliver_sms = deliver_sms
        self.latency_ms = latency_ms
        self.data_up = True
        self.sms_up = True
        self.drop_frames = 0
        self.drop_acks = 0
        self.fail_sends = 0
        self.fail_sms = 0
        self.cell_info = (234, 15, 0x1A2B, 0x01234567, -95)
        self.csq_val = 20
        self.sent = []
        self.sms = []
        self.calls = []
        self.hangups = 0
        self.asleep = False
        self.board = None  # set it to drive the modem pins as a modem engine would
        self._busy_until = None
        self._queue = []  # (due, event)
        self._ready = []
        self._sms_ref = 0

    # ---------------------------------------------------------- contract
    def poll(self, now):
        keep = []
        for due, ev in self._queue:
            if now - due >= 0:
                self._ready.append(ev)
            else:
                keep.append((due, ev))
        self._queue = keep
        if self._busy_until is not None and now - self._busy_until >= 0:
            self._busy_until = None
        if self._queue:
            return max(0, min(d for d, _ in self._queue) - now)
        return 60000

    def data_ready(self):
        return self.data_up

    def sms_ready(self):
        return self.sms_up

    def busy(self):
        return self._busy_until is not None

    def _later(self, now, ev, extra=0):
        self._queue.append((now + self.latency_ms + extra, ev))

    def _hold(self, now):
        if self.latency_ms:
            self._busy_until = now + self.latency_ms

    def send_frame(self, raw, now):
        if not self.data_up or self.busy():
            return False
        raw = bytes(raw)
        self._hold(now)
        if self.fail_sends > 0:
            self.fail_sends -= 1
            self._later(now, (EV_SEND_FAILED, "scripted failure"))
            return True
        if self.target in self.refused:
            self._later(now, (EV_SEND_FAILED, "open: error 4"))
            return True
        self.sent.append((now, raw))
        if self.sent_to is not None:
            self.sent_to.append(self.target)
        self._later(now, (EV_SENT, len(raw)))
        if self.target in self.silent:
            return True
        if self.drop_frames > 0:
            self.drop_frames -= 1
            return True
        reply = self.deliver(raw, now) if self.deliver is not None else None
        if reply:
            if self.drop_acks > 0:
                self.drop_acks -= 1
            else:
                self._later(now, (EV_FRAME, bytes(reply)), self.latency_ms)
        return True

    def send_sms(self, number, text, now):
        if not self.sms_up or self.busy():
            return False
        self._hold(now)
        if self.fail_sms > 0:
            self.fail_sms -= 1
            self._later(now, (EV_SMS_FAILED, "scripted failure"))
            return True
        self._sms_ref += 1
        self.sms.append((now, number, text))
        if self.deliver_sms is not None:
            self.deliver_sms(number, text, now)
        self._later(now, (EV_SMS_SENT, self._sms_ref))
        return True

    def set_receiver(self, host, port):
        self.target = (host, port)
        if self.sent_to is None:
            self.sent_to = [None] * len(self.sent)

    def start_call(self, number, now):
        if self.busy():
            return False
        self.calls.append((now, number))
        self._later(now, (EV_CALL, "dialling"))
        self._later(now, (EV_CALL, "active"), 1)
        return True

    def hang_up(self, now):
        self.hangups += 1
        self._later(now, (EV_CALL, "ended"))

    def sleep(self, now):
        self.asleep = True
        if self.board is not None:  # like a modem engine: DTR high lets it sleep
            self.board.modem_dtr(1)

    def wake(self, now):
        self.asleep = False
        if self.board is not None:
            self.board.modem_dtr(0)

    def quiet(self):
        return not self.busy() and not self._queue

    def cell(self):
        return self.cell_info

    def csq(self):
        return self.csq_val

    def events(self):
        out = self._ready
        self._ready = []
        return out

    # ---------------------------------------------------------- scripting
    def inject(self, raw, now):
        """Put any bytes on the downlink, as if the network sent them."""
        self._queue.append((now, (EV_FRAME, raw)))

    def set_link(self, up, now):
        self.data_up = up
        self._queue.append((now, (EV_LINK, up)))
