"""Store and forward of sealed uplink frames until an authenticated ACK.

Owns: the queue of frames waiting for an ACK, their flash copies ("o<seq
hex>" files), retry timing, priorities, TRACK/HEARTBEAT coalescing, the
size bound and its drop policy, and the SMS fallback of each entry. Never
builds a frame (the alert controller does), never talks to a modem except
through the transport interface (firmware/transport.py), never blocks.

Rules:
- An entry of a PERSISTED type (ALERT, CANCEL, TEST) is written to flash
  atomically in add(), before it can be transmitted (if the flash itself
  fails, the entry is still sent and the failure counted: a failing flash
  must not silence an alert). Its file is the sealed
  frame itself, so after a reset it is re-sent byte for byte (same seq: the
  receiver ACKs the duplicate and never raises it twice). TRACK, STATUS and
  HEARTBEAT live in RAM only: each is superseded within one period and the
  controller makes a fresh one after a reset.
- Retry: each transmission sets the next try to backoff(attempts): base *
  2^(n-1) capped at max, with "equal jitter" (half fixed, half random), so
  many devices behind one failed cell do not retry in step.
- Only an ACK whose tag verifies with the downlink key and whose acked_seq
  names a waiting entry removes it. Anything else (garbage, forged, a valid
  ACK for another seq) is counted and changes nothing: an unauthenticated
  byte never stops a retry.
- Priority (lower first): 0 ALERT and CANCEL, 1 TRACK, 2 STATUS and TEST,
  3 HEARTBEAT; within one priority, lower seq first (so a CANCEL never
  overtakes its ALERT). STATUS (battery, faults) and TEST (an engineer's
  bench check) never delay a person's location.
- Coalescing: a new TRACK replaces every older waiting TRACK (a stale
  position is worth nothing once a newer one exists); same for HEARTBEAT.
  A replaced TRACK that was already transmitted is remembered (last 4
  seqs) so the ACK naming it still carries its operator commands, and a
  pending SMS fallback passes to the newer TRACK with its due time.
- Bound: at most `limit` entries. When full, drop the oldest HEARTBEAT,
  then the oldest STATUS or TEST, then the oldest TRACK; if the new entry is
  lower priority than everything queued, it is the one dropped. ALERT and
  CANCEL are never dropped: they are admitted above the limit (the alert
  controller makes at most one of each per alert, so they cannot grow
  without a person pressing the button).
- SMS fallback: an entry added with sms=True that has no ACK `sms_after`
  ms after it was added is sent once as an SMS (protocol.sms.to_sms; the
  controller orders TLVs with sms_order so the short form is a prefix);
  data retries go on until the ACK. A failed SMS is retried after backoff.
- SMS numbers: with more than one configured (sms_numbers), the number in
  use follows the failover rule of firmware/failover.py: a failed SMS
  moves to the next number; an entry whose SMS went but which still has no
  ACK sms_after ms later goes again by SMS, to the next number (at most
  once per number: the same frame, same seq, so the centre raises it
  once whichever gateway delivers it); back to the first after
  failover_return_s.
- retry_now(): after the App moved to another receiver, every waiting
  entry is due at once (the same frame goes to the other node without
  waiting out a back-off meant for the dead one).

Must stay in sync with: firmware/transport.py (events), firmware/alert.py
(which types ask for SMS), docs/firmware.md (drop policy, write budget, and
the per-type table that tests/test_docs_firmware.py checks).
"""

from protocol import frame as F
from protocol.errors import ProtocolError

from firmware.transport import EV_SEND_FAILED, EV_SMS_FAILED, EV_SMS_SENT

try:
    from micropython import const  # pyright: ignore[reportAssignmentType]
except ImportError:  # CPython

    def const(x):
        return x


P_CRITICAL = const(0)
P_TRACK = const(1)
P_STATUS = const(2)
P_HEARTBEAT = const(3)

PRIORITY = {
    F.ALERT: P_CRITICAL,
    F.CANCEL: P_CRITICAL,
    F.TRACK: P_TRACK,
    F.STATUS: P_STATUS,
    F.TEST: P_STATUS,
    F.HEARTBEAT: P_HEARTBEAT,
}
PERSISTED = (F.ALERT, F.CANCEL, F.TEST)
COALESCED = (F.TRACK, F.HEARTBEAT)
LIMIT = const(12)
_RECENT = const(4)
_RECHECK_MS = const(1000)  # due but the transport is busy: its job ends soon
# due but no path (no data link, no SMS): whatever opens one (registration,
# the data path) happens in the transport, polled in the same App step that
# then pumps, so this is only a backstop; at 1 s an alert in a coverage gap
# woke the device every second for nothing
_BLOCKED_MS = const(10000)
_MAX_SENDS_PER_PUMP = const(4)

SMS_NO = const(0)
SMS_WAIT = const(1)
SMS_FLIGHT = const(2)
SMS_DONE = const(3)


def entry_name(seq):
    return "o%08x" % seq


class Entry:
    def __init__(self, ftype, seq, raw, now, sms_at):
        self.ftype = ftype
        self.seq = seq
        self.raw = raw
        self.prio = PRIORITY.get(ftype, P_STATUS)
        self.created = now
        self.attempts = 0
        self.next_try = now
        self.sms = SMS_WAIT if sms_at >= 0 else SMS_NO
        self.sms_at = sms_at
        self.sms_n = 0  # SMS sent for it (one per number at most)

    def __repr__(self):
        return "<Entry %s seq=%d tries=%d>" % (F.TYPE_NAMES.get(self.ftype, "?"), self.seq, self.attempts)


class Outbox:
    def __init__(self, fs, keys, transport, sms_number="", backoff_base_ms=4000, backoff_max_ms=60000,
                 sms_after_ms=20000, limit=LIMIT, rand=None, device_id=None, sms_return_ms=600000):
        """sms_number: one number (str), or the list of them in order of
        preference (config sms_numbers)."""
        self.device_id = device_id
        self.fs = fs
        self.keys = keys
        self.transport = transport
        nums = [n for n in ([sms_number] if isinstance(sms_number, str) else sms_number) if n]
        self.sms_number = nums[0] if nums else ""  # the one in use
        # the failover rule over the numbers, holding them (its ack timeout is
        # unused: an SMS gets its "no ACK" from the entry's own sms_after).
        # One attribute: this object's dict is at a size step of the heap.
        self.sms_fo = None
        if len(nums) > 1:
            from firmware.failover import Failover  # only a device with two or more numbers loads it

            self.sms_fo = Failover(len(nums), 0, sms_return_ms, nums)
        self.base = backoff_base_ms
        self.max = backoff_max_ms
        self.sms_after = sms_after_ms
        self.limit = limit
        self.rand = rand if rand is not None else _default_rand
        self.entries = []  # times compare by subtraction: `now` never wraps (firmware/loop.py)
        self.recent = []  # seqs of transmitted TRACKs that were coalesced away
        self._sms_entry = None
        # counters (for STATUS and the diagnostics console)
        self.rejected = 0  # downlink bytes that did not verify or parse
        self.unmatched = 0  # verified ACKs naming nothing we wait on
        self.dropped = 0
        self.corrupt = 0  # flash entries that did not verify at load
        self.flash_errors = 0  # persisted entries whose flash write failed
        self.sends = 0
        self.sms_sent = 0
        self.high_down = -1  # highest downlink seq accepted

    # ------------------------------------------------------------ loading
    def load(self, now):
        """Reload persisted entries after a reset. Returns the highest seq
        seen in any entry file (0 if none). A file that does not verify is
        left in place (it may still be evidence) and counted in corrupt."""
        high = 0
        for name in sorted(self.fs.listdir()):
            if len(name) != 9 or name[0] != "o":
                continue
            try:
                seq = int(name[1:], 16)
            except ValueError:
                continue
            if seq > high:
                high = seq
            raw = self.fs.read(name)
            try:
                fr = F.decode(self.keys, raw, F.UPLINK)
                if fr.seq != seq:
                    raise ValueError("name and seq differ")
            except (ProtocolError, ValueError, TypeError):
                self.corrupt += 1
                continue
            if self.find(seq) is None:
                sms_at = now + self.sms_after if fr.ftype in (F.ALERT, F.CANCEL) else -1
                self.entries.append(Entry(fr.ftype, seq, raw, now, sms_at))
        return high

    # ------------------------------------------------------------ queueing
    def find(self, seq):
        for e in self.entries:
            if e.seq == seq:
                return e
        return None

    def count(self, ftype=None):
        if ftype is None:
            return len(self.entries)
        return sum(1 for e in self.entries if e.ftype == ftype)

    def add(self, ftype, seq, raw, now, sms=False):
        """Queue a sealed frame. Persisted types are on flash when this
        returns. Returns the Entry, or None if the bound dropped it."""
        e = Entry(ftype, seq, raw, now, now + self.sms_after if sms else -1)
        if ftype in COALESCED:
            for old in [x for x in self.entries if x.ftype == ftype]:
                if old.sms == SMS_WAIT and (e.sms != SMS_WAIT or old.sms_at - e.sms_at < 0):
                    e.sms, e.sms_at = SMS_WAIT, old.sms_at  # keep the replaced one's SMS due time
                self._discard(old, True)
        if len(self.entries) >= self.limit:
            victim = self._victim(e.prio if e.prio != P_CRITICAL else P_TRACK)
            if victim is not None:
                self._discard(victim, False)
                self.dropped += 1
            elif e.prio != P_CRITICAL:
                self.dropped += 1
                return None
        if ftype in PERSISTED:
            try:
                self.fs.write_atomic(entry_name(seq), raw)
            except OSError:
                # flash full or failing: sending without the flash copy beats
                # not sending at all (it is then lost only if a reset comes too)
                self.flash_errors += 1
        self.entries.append(e)
        return e

    def _victim(self, min_prio):
        """Oldest entry of the least important priority >= min_prio; never
        a critical one."""
        best = None
        for e in self.entries:
            if e.prio == P_CRITICAL or e.prio < min_prio:
                continue
            if best is None or e.prio > best.prio or (e.prio == best.prio and e.seq < best.seq):
                best = e
        return best

    def _discard(self, e, remember):
        if remember and e.attempts:
            self.recent.append(e.seq)
            if len(self.recent) > _RECENT:
                self.recent.pop(0)
        self.entries.remove(e)
        if e is self._sms_entry:
            self._sms_entry = None
        if e.ftype in PERSISTED:
            try:
                self.fs.remove(entry_name(e.seq))
            except OSError:
                self.flash_errors += 1

    # ------------------------------------------------------------ downlink
    def on_frame(self, raw, now):
        """A downlink frame from the transport. Returns (ftype, ack_frame)
        when it is an authenticated ACK for something we sent (ftype is the
        acked entry's type; None for a fresh ACK with commands naming a seq
        already acknowledged), else None."""
        try:
            fr = F.decode(self.keys, raw, F.DOWNLINK)
        except ProtocolError:
            self.rejected += 1
            return None
        except Exception:  # wrong type of object from a broken transport
            self.rejected += 1
            return None
        body = fr.body
        if not isinstance(body, F.Ack) or (self.device_id is not None and fr.device_id != self.device_id):
            self.rejected += 1
            return None
        seq = body.acked_seq
        e = self.find(seq)
        if e is None:
            if seq in self.recent:
                self.recent.remove(seq)
                return self._accept(F.TRACK, fr)
            if body.commands and fr.seq > self.high_down:
                # the ACK of a retransmission of something already ACKed:
                # nothing to discard, but an operator command on it is new
                # (listen-in, stand-down must not be lost to a slow first ACK)
                return self._accept(None, fr)
            self.unmatched += 1
            return None
        self._discard(e, False)
        return self._accept(e.ftype, fr)

    def _accept(self, ftype, fr):
        fresh = fr.seq > self.high_down
        if fresh:
            self.high_down = fr.seq
        else:
            # a replayed (older) ACK still proves delivery, but its commands
            # are stale: never act on them twice
            fr.body.commands = []
        return ftype, fr

    def on_event(self, ev, now):
        kind = ev[0]
        if kind == EV_SMS_SENT:
            e = self._sms_entry
            if e is not None:
                e.sms_n += 1
                self.sms_sent += 1
                if self.sms_fo is not None and e.sms_n < self.sms_fo.n:
                    e.sms, e.sms_at = SMS_WAIT, now + self.sms_after  # no ACK by then: the next number
                else:
                    e.sms = SMS_DONE
            self._sms_entry = None
        elif kind == EV_SMS_FAILED:
            e = self._sms_entry
            if e is not None:
                e.sms = SMS_WAIT
                e.sms_at = now + self._backoff(2)
            self._sms_entry = None
            fo = self.sms_fo
            if fo is not None and fo.failed(now):
                self.sms_number = fo.peers[fo.i]
        elif kind == EV_SEND_FAILED:
            pass  # the entry's next try is already scheduled

    def retry_now(self, now):
        """Every waiting entry is due now (the receiver changed)."""
        for e in self.entries:
            if e.next_try - now > 0:
                e.next_try = now

    # ------------------------------------------------------------ uplink
    def _backoff(self, n):
        d = self.base << (n - 1) if n < 16 else self.max
        if d > self.max:
            d = self.max
        half = d >> 1
        return d - half + self.rand(half + 1)

    def _due(self, e, now):
        return now - e.next_try >= 0

    def _sms_due(self, e, now):
        return e.sms == SMS_WAIT and now - e.sms_at >= 0

    def _pick(self, now, sms):
        best = None
        for e in self.entries:
            ok = self._sms_due(e, now) if sms else self._due(e, now)
            if ok and (best is None or e.prio < best.prio or (e.prio == best.prio and e.seq < best.seq)):
                best = e
        return best

    def pump(self, now):
        """Start whatever transmissions are due. Returns ms until the
        outbox next wants to run."""
        t = self.transport
        fo = self.sms_fo
        if fo is not None and fo.poll(now):
            self.sms_number = fo.peers[fo.i]
        for _ in range(_MAX_SENDS_PER_PUMP):
            if t.busy():
                break
            did = False
            if self.sms_number and self._sms_entry is None and t.sms_ready():
                e = self._pick(now, True)
                if e is not None and self._send_sms(e, now):
                    did = True
            if not did and t.data_ready():
                e = self._pick(now, False)
                if e is not None and t.send_frame(e.raw, now):
                    e.attempts += 1
                    e.next_try = now + self._backoff(e.attempts)
                    self.sends += 1
                    did = True
            if not did:
                break
        return self.next_deadline(now)

    def _send_sms(self, e, now):
        fo = self.sms_fo
        number = self.sms_number
        if fo is not None and e.sms_n:
            number = fo.peers[(fo.i + 1) % fo.n]  # its last SMS brought no ACK: the next number
        try:
            # imported here: only an unanswered ALERT/CANCEL/TRACK needs the
            # SMS form (protocol/sms.py), so an idle device never loads it
            from protocol.sms import to_sms

            fr = F.decode(self.keys, e.raw, F.UPLINK)
            text = to_sms(self.keys, fr)[0]
        except Exception:
            e.sms = SMS_NO  # cannot happen for frames we sealed; never retry
            return False
        if self.transport.send_sms(number, text, now):
            if fo is not None and e.sms_n and fo.timed_out(now):  # moved once the modem took it (a refusal is retried)
                self.sms_number = fo.peers[fo.i]
            e.sms = SMS_FLIGHT
            self._sms_entry = e
            return True
        return False

    def next_deadline(self, now):
        best = 3600000
        for e in self.entries:
            d = e.next_try - now
            if e.sms == SMS_WAIT and self.sms_number:
                d2 = e.sms_at - now
                if d2 < d:
                    d = d2
            if d < best:
                best = d
        if best <= 0:
            best = _RECHECK_MS if self.transport.busy() else _BLOCKED_MS  # due but blocked: look again
        return best

    def pending(self, ftype):
        return any(e.ftype == ftype for e in self.entries)


def _default_rand(n):
    if n <= 1:
        return 0
    try:
        import os

        r = int.from_bytes(os.urandom(4), "big")
    except Exception:
        import random

        r = random.getrandbits(30)
    return r % n
