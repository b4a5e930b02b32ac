"""The faithful rig's far end when the receiver runs elsewhere: a real
`panic receiver serve`, reached over TCP by the device's own connections
(the modem emulator's real sockets) and, where the receiver offers it, its
SMS gateway endpoint over HTTP (POST /sms), where the emulator's SMS go.

Owns: reaching that receiver (checked once before a run, so a wrong
address is one clear line, not a device that retries for an hour), posting
SMS in order on one worker thread so the rig never stalls on HTTP, and what
a run may conclude from outside the receiver: a frame counts as stored
when an ACK that verifies under the device key names its seq, by TCP or as
the SMS reply in the HTTP answer (the receiver ACKs only after its commit:
docs/receiver.md, "Theory of operation").

Never does: open the receiver's store, queue operator commands (`panic
receiver command` does that), or hold a key: the rig verifies ACKs.
A scenario's [[receiver_down]] window is the network failing to reach it
(the rig points the modem at a refusing port meanwhile); its SMS are held
and posted when the window ends, as the in-process receiver holds them.

Stays in sync with: receiver/server.py (the /sms and /health answers),
host_sim/faithful.py (Rig, which calls it).
"""

import json
import queue
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request

CHECK_TIMEOUT_S = 3.0
POST_TIMEOUT_S = 10.0


class Unreachable(Exception):
    """The receiver did not answer at the address given (the message says how)."""


def _reason(e):
    if isinstance(e, urllib.error.URLError) and not isinstance(e, urllib.error.HTTPError):
        e = e.reason
    if isinstance(e, socket.timeout):
        return "no answer within %.0f s" % CHECK_TIMEOUT_S
    return getattr(e, "strerror", None) or str(e)


class RemoteReceiver:
    """tcp: (host, port) of `serve --listen`; http: (host, port) of `serve
    --http`, or None (SMS from the device then reach no receiver: each is
    counted in `sms_unsent`)."""

    def __init__(self, tcp, http=None):
        self.tcp = (tcp[0], int(tcp[1]))
        self.http = None if http is None else (http[0], int(http[1]))
        self.sms_unsent = 0
        self._q = queue.Queue()
        self._t = None

    def __repr__(self):
        return "<RemoteReceiver tcp %s:%d%s>" % (self.tcp + ((" http %s:%d" % self.http) if self.http else "",))

    def check(self):
        """Raise Unreachable unless the receiver accepts a TCP connection
        (and, with http, answers GET /health)."""
        try:
            with socket.create_connection(self.tcp, timeout=CHECK_TIMEOUT_S):
                pass
        except OSError as e:
            raise Unreachable("no receiver at %s:%d (%s): is `panic receiver serve --listen %s:%d` running?" % (
                self.tcp + (_reason(e),) + self.tcp)) from None
        if self.http is not None:
            url = "http://%s:%d/health" % self.http
            try:
                with urllib.request.urlopen(url, timeout=CHECK_TIMEOUT_S) as r:
                    ok = r.status == 200 and json.loads(r.read(4096) or b"{}").get("status") == "ok"
            except (OSError, ValueError) as e:
                raise Unreachable("no SMS endpoint at http://%s:%d (%s): is `serve` running with --http %s:%d?" % (
                    self.http + (_reason(e),) + self.http)) from None
            if not ok:
                raise Unreachable("http://%s:%d/health did not answer as `panic receiver serve` does" % self.http)

    # -- SMS over HTTP ------------------------------------------------------------
    def post_sms(self, sender, text, on_answer):
        """Post one SMS to /sms, in order, off the caller's thread; then
        on_answer(status, reply, why) from the worker thread: status is the
        receiver's ("accepted", "duplicate", "rejected" ...) or None when
        it was not reached; reply the ACK as SMS text, or None."""
        if self.http is None:
            self.sms_unsent += 1
            on_answer(None, None, "the receiver has no SMS endpoint here (no --sms-http)")
            return
        if self._t is None:
            self._t = threading.Thread(target=self._worker, daemon=True)
            self._t.start()
        self._q.put((sender, text, on_answer))

    def _worker(self):
        while True:
            item = self._q.get()
            if item is None:
                return
            sender, text, on_answer = item
            on_answer(*self._post(sender, text))

    def _post(self, sender, text):
        body = urllib.parse.urlencode({"from": sender, "text": text}).encode()
        req = urllib.request.Request("http://%s:%d/sms" % self.http, data=body, method="POST",
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
        try:
            with urllib.request.urlopen(req, timeout=POST_TIMEOUT_S) as r:
                ans = json.loads(r.read(65536))
        except urllib.error.HTTPError as e:  # 4xx/5xx still carry the receiver's JSON answer
            try:
                ans = json.loads(e.read(65536))
            except ValueError:
                ans = {}
            return ans.get("status") or "http %d" % e.code, None, ans.get("reason") or ans.get("error") or "HTTP %d" % e.code
        except (OSError, ValueError) as e:
            self.sms_unsent += 1
            return None, None, "SMS endpoint: %s" % _reason(e)
        reply = ans.get("reply") if isinstance(ans, dict) else None
        return ans.get("status") if isinstance(ans, dict) else None, reply if isinstance(reply, str) else None, ""

    def close(self):
        if self._t is not None:
            self._q.put(None)
            self._t.join(POST_TIMEOUT_S + 1)
            self._t = None
