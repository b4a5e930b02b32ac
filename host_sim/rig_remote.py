"""The far end when the receiver runs elsewhere: a real `panic receiver
serve`, reached over TCP and, where the receiver offers it, its SMS gateway
endpoint over HTTP (POST /sms). Two users:

- the faithful rig (host_sim/faithful.py, real time): the device's own
  connections are the modem emulator's real sockets to the receiver's
  address; RemoteReceiver posts the emulator's SMS;
- the virtual-time runner (host_sim/runner.py, `far_end=`): VirtualFarEnd
  stands where the in-process SimReceiver would. The network between the
  modem and the receiver stays the model's (latency, loss, outages in
  virtual time); each frame that crosses it is sent to the receiver on one
  real connection and the runner waits, in wall time and at most
  ACK_WAIT_S, for the ACK that names it, so the receiver's own verdict
  decides what the device hears. A receiver that says nothing (a frame it
  rejected) is a frame without an answer, as on the air. Virtual time runs
  ahead of the receiver's clock: it sees a whole scenario in seconds, with
  arrival times of its own and frame times of the device's.

Owns: reaching that receiver (checked once before a run, so a wrong
address is one clear line, not a device that retries for an hour), posting
SMS in order on one worker thread so the rig never stalls on HTTP, and what
a run may conclude from outside the receiver: a frame counts as stored
when an ACK that verifies under the device key names its seq, by TCP or as
the SMS reply in the HTTP answer (the receiver ACKs only after its commit:
docs/receiver.md, "Theory of operation").

DeviceFlash: the simulated device's flash kept between runs, so a second
run against the same receiver is the same device going on (its seqs
continue above every one the receiver has seen, an undelivered alert is
still queued), as a real device keeps its flash across a power cycle. A
fresh flash would start its seqs at 1 again, and the receiver would ACK
the new ALERT as a duplicate of an old frame and raise nothing.

Never does: open the receiver's store, queue operator commands (`panic
receiver command` does that), or hold a key: the rig verifies ACKs.
A scenario's [[receiver_down]] window is the network failing to reach it
(the rig points the modem at a refusing port meanwhile); its SMS are held
and posted when the window ends, as the in-process receiver holds them.

Stays in sync with: receiver/server.py (the /sms and /health answers, the
u16 framing), host_sim/faithful.py (Rig), host_sim/runner.py (SimReceiver's
interface, which VirtualFarEnd has).
"""

import json
import os
import queue
import shutil
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from protocol import frame as F
from protocol import sms as PS
from protocol.crypto import DeviceKeys
from protocol.errors import ProtocolError
from protocol.stream import Deframer, pack

CHECK_TIMEOUT_S = 3.0
POST_TIMEOUT_S = 10.0
ACK_WAIT_S = 3.0  # wall seconds a frame waits for its ACK (a receiver commits in tens of ms)


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


class VirtualFarEnd:
    """The runner's far end (SimReceiver's interface) for a receiver that
    runs elsewhere: built by Runner as far_end(runner, device_id, key);
    give it with functools.partial(VirtualFarEnd, remote=RemoteReceiver(...))."""

    def __init__(self, run, device_id, key, remote, carried=()):
        self.run = run
        self.device_id = device_id
        self.keys = DeviceKeys(key)
        self.remote = remote
        self.carried = set(carried)  # seqs queued on the flash by an earlier run: the receiver may hold them already
        self.up = True
        self.held_sms = []
        self.events = []  # the receiver's events stay at the receiver (panic receiver watch)
        self.proven = set()
        self._sock = None
        self._deframer = Deframer()  # a fresh one with each connection

    # -- the emulator's endpoint interface (host_sim/modem.py, tcp.py ModelTcp)
    def on_tcp_frame(self, raw, now):
        if not self.up:
            return []
        try:
            _, _, seq = F.peek(raw)
        except ProtocolError:
            seq = None
        replies = self._exchange(bytes(raw), seq)
        self._record(raw, "tcp", replies)
        return replies

    def on_sms(self, sender, text, now):
        if not self.up:
            self.held_sms.append((sender, text))
            return None
        self._sms(sender, text)
        return None

    def _sms(self, sender, text):
        try:
            raw = PS.from_sms(text)
        except ProtocolError:
            raw = None
        if self.remote.http is None:
            self.remote.sms_unsent += 1
            return
        status, reply, why = self.remote._post(sender, text)
        replies = []
        if reply:
            try:
                replies = [PS.from_sms(reply)]
            except ProtocolError:
                pass
        if raw is not None:
            self._record(raw, "sms", replies)
        if status is not None and status not in ("accepted", "duplicate"):  # None: counted in sms_unsent
            self.run.rec.event(self.run.clock.now, "receiver_note", "SMS not stored: %s" % (why or status))

    def set_up(self, up):
        self.up = up
        if up:
            held, self.held_sms = self.held_sms, []
            for sender, text in held:
                self._sms(sender, text)

    def tick(self):
        pass  # supervision runs at the receiver, on its own clock

    def operator(self, command, value):
        self.run.rec.event(self.run.clock.now, "receiver_note", "operator command %s not sent: the receiver is at "
                           "%s:%d (panic receiver command)" % ((command,) + self.remote.tcp))

    def close(self):
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
            self._sock = None

    # -- one real connection, reopened when the receiver closes it
    def _exchange(self, raw, seq):
        """Send one frame; return the downlink frames read until the ACK
        naming seq came (or ACK_WAIT_S passed, or the receiver closed)."""
        out = []
        for attempt in (0, 1):  # a connection the receiver closed since the last frame: open a new one, once
            if self._sock is None:
                try:
                    self._sock = socket.create_connection(self.remote.tcp, timeout=CHECK_TIMEOUT_S)
                except OSError:
                    return out
                self._deframer = Deframer()
            try:
                self._sock.sendall(pack(raw))
            except OSError:
                self.close()
                continue
            end = time.monotonic() + ACK_WAIT_S
            while True:
                left = end - time.monotonic()
                if left <= 0:
                    return out
                self._sock.settimeout(left)
                try:
                    data = self._sock.recv(4096)
                except socket.timeout:
                    return out
                except OSError:
                    data = b""
                if not data:
                    self.close()
                    if out or attempt:
                        return out
                    break  # closed before answering: this frame may not have been read; once more
                try:
                    frames = self._deframer.feed(data)
                except ProtocolError:
                    self.close()
                    return out
                for d in frames:
                    out.append(d)
                    if self._acked(d) == seq:
                        return out
        return out

    def _acked(self, raw):
        try:
            fr = F.decode(self.keys, raw, F.DOWNLINK)
        except ProtocolError:
            return None
        return fr.body.acked_seq if isinstance(fr.body, F.Ack) else None

    def _record(self, raw, path, replies):
        """As SimReceiver records: the frame received (proven by an ACK
        that verifies and names it) and raised once, the ACKs built."""
        rec, t = self.run.rec, self.run.clock.now
        try:
            ftype, dev, seq = F.peek(raw)
            name = F.TYPE_NAMES.get(ftype, "?")
        except ProtocolError:
            return
        acked = [a for a in (self._acked(r) for r in replies) if a is not None]
        if seq not in acked:
            return
        carried = seq in self.carried
        rec.frame(t, "up", "received", name, seq, dev, path, len(raw),
                  note="acked by the receiver" + (", queued by an earlier run" if carried else ""))
        if seq not in self.proven and not carried:
            self.proven.add(seq)
            try:
                duress = bool(getattr(F.decode(self.keys, raw, F.UPLINK).body, "duress", False))
            except ProtocolError:
                duress = False
            rec.raise_(t, dev, seq, name, duress)
        for r in replies:
            try:
                _, ddev, dseq = F.peek(r)
            except ProtocolError:
                continue
            rec.frame(t, "down", "built", "ACK", dseq, ddev, path, len(r), acked_seq=self._acked(r))


class DeviceFlash:
    """The device's flash between runs: DIR/flash (mode 0700: in virtual
    time its config.json holds the device key). Virtual time runs on it in
    place (Runner(flash_root=DIR)); a faithful run copies it onto the
    board's /data before the VM starts and back after it stopped. The
    config is the scenario's each run, never carried over."""

    CONFIG = "config.json"

    def __init__(self, path):
        self.path = os.path.abspath(path)
        self.data = os.path.join(self.path, "flash")

    def prepare(self):
        """Create it if new (raises OSError naming the path if it cannot be)."""
        os.makedirs(self.data, mode=0o700, exist_ok=True)
        os.chmod(self.path, 0o700)

    def queued(self):
        """Seqs still in the outbox (files "o" + 8 hex digits, firmware/outbox.py):
        frames an earlier run left undelivered (or sent by SMS, whose ACK
        never reaches the device), which the device sends again at boot."""
        out = set()
        for n in self.files(self.data):
            if len(n) == 9 and n[0] == "o":
                try:
                    out.add(int(n[1:], 16))
                except ValueError:
                    pass
        return out

    def files(self, folder):
        return sorted(n for n in os.listdir(folder) if n != self.CONFIG and os.path.isfile(os.path.join(folder, n)))

    def copy_to(self, board_data):
        """Onto a faithful board's /data folder, before the VM starts."""
        os.makedirs(board_data, exist_ok=True)
        for n in self.files(self.data):
            shutil.copyfile(os.path.join(self.data, n), os.path.join(board_data, n))

    def copy_from(self, board_data):
        """Back from the board's /data once the VM has stopped: what it
        holds now is the device's flash."""
        if not os.path.isdir(board_data):
            return
        for n in self.files(self.data):
            os.remove(os.path.join(self.data, n))
        for n in self.files(board_data):
            shutil.copyfile(os.path.join(board_data, n), os.path.join(self.data, n))
