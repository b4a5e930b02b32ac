"""The receiver's sans-I/O core: frames in, ACK frames and events out.

Owns: the order of work for every uplink frame and the incident rules.
Never touches a socket, never sleeps, never reads a clock except through
the `clock` callable it is given (the simulator passes virtual time).

For every frame, in this order (a failing step rejects the frame; a
rejected frame is counted, logged with its reason and never ACKed):
  1. peek the header (malformed -> "bad length" / "unknown version" / ...)
  2. look up the device key (absent -> "unknown device"; retired ->
     "retired device")
  3. verify and decrypt with protocol.frame.decode (UPLINK only;
     -> "bad tag", "bad body", "bad tlv", "unknown type")
  4. inside one store transaction for the whole batch: check the replay
     window (older than the window -> "stale"; already seen -> duplicate),
     store the frame as evidence, apply the incident rules, record events,
     bind pending operator commands, advance the downlink seq, save the
     window
  5. commit (durable: WAL + synchronous=FULL), and only then build the
     ACKs (new and duplicate frames alike) and hand out the events.
If the commit fails nothing is ACKed and every frame of the batch reports
status "error"; the device retries.

Incident rules (one table: receiver/rules.py RULES): an ALERT opens an incident (a TEST
frame or an ALERT with the test flag opens a *test* incident, never a real
one); TRACKs attach to the open incident (or open one if the ALERT has not
arrived yet); a plain CANCEL closes it; a duress CANCEL marks it DURESS and
keeps it open (it reopens a closed one: a duress cancel is never lost or
shown as a cancel); the operator's stand-down closes it. Frames that arrive
late (seq below the seq that closed the latest incident) attach to that
incident and raise nothing. A duplicate frame is ACKed again, raises
nothing.

Forwarding: when forward targets are configured, `self.outbox`
(receiver/forward/outbox.py) turns the batch's events (and the
supervision tick's) into forward queue rows inside the same transaction,
so an event and the ARC messages it causes commit together.

Must stay in sync with: store.py (row meanings), docs/receiver.md (the
event fields), watch.py (reads the events), protocol/frame.py (types,
flags, TLVs), forward/events.py (the event kinds it forwards).
"""

import collections
import json
import logging
import operator
import struct
import time
from typing import Callable

from protocol import frame as F
from protocol import jsonform, sms
from protocol.crypto import DeviceKeys
from protocol.errors import ProtocolError
from protocol.replay import DUPLICATE, NEW, STALE, WINDOW, ReplayWindow
from receiver import estimate as E
from receiver import locations
from receiver import rules as R
from receiver import store as S
from receiver.errors import ReceiverError

log = logging.getLogger("receiver")
_to_json = S.to_json
_ACK_SEQ = struct.Struct(">I").pack  # an ACK body without commands: just the acked seq

# Outcome statuses
ACCEPTED = "accepted"    # new frame, stored, ACKed
DUPLICATE_S = "duplicate"  # seen before, ACKed again, nothing raised
REJECTED = "rejected"    # never ACKed
ERROR = "error"          # the store failed; not ACKed, the device retries

# Rejection reasons (counter keys) beyond ProtocolError.reason
R_UNKNOWN_DEVICE = "unknown device"
R_RETIRED = "retired device"
R_STALE = "stale"
R_KEY = "key does not open"
R_SENDER = "bad sender"
# not a rejection: a frame whose cell or Wi-Fi source carries (0, 0), as
# firmware older than the position rule sends it (stored, ACKed, the
# coordinates ignored: docs/protocol.md, "Position semantics")
C_PLACEHOLDER = "placeholder position"

SENDER_MAX = 32  # characters of an SMS sender: an E.164 number (<= 16) or an alphanumeric sender id (<= 11), with room


def sender_problem(sender):
    """Why an SMS sender cannot be taken, or None. One rule for every path
    that hands the core an SMS (`panic receiver sms`, POST /sms, the
    simulator): 1 to 32 printable ASCII characters, not starting or ending
    with a space. The sender is stored with the frame as evidence and
    shown to operators, so it is never trimmed to fit: it is refused."""
    if not isinstance(sender, str) or not sender:
        return "the sender is empty"
    if len(sender) > SENDER_MAX:
        return "the sender is %d characters long (at most %d)" % (len(sender), SENDER_MAX)
    if sender.strip() != sender or not all(" " <= c <= "~" for c in sender):
        return "the sender must be printable ASCII without leading or trailing spaces"
    return None

DEFAULT_HEARTBEAT_S = 6 * 3600
DEFAULT_SILENT_MARGIN_S = 30 * 60
DEFAULT_LOW_BATTERY_PCT = 15
_BATTERY_HYSTERESIS = 5

_CMD_TLV = {S.CMD_TRACK: F.C_TRACKING, S.CMD_STAND_DOWN: F.C_STAND_DOWN, S.CMD_LISTEN_IN: F.C_LISTEN_IN}


class Outcome:
    """What happened to one frame. replies: ACK frames (no length prefix)
    to send back, empty unless status is accepted or duplicate."""

    __slots__ = ("status", "reason", "device_id", "seq", "type", "replies", "raised", "incident_id")

    def __init__(self, status, reason=None, device_id=None, seq=None, ftype=None):
        self.status = status
        self.reason = reason
        self.device_id = device_id
        self.seq = seq
        self.type = ftype
        self.replies = []
        self.raised = ()  # the Events this frame raised
        self.incident_id = None

    @property
    def events(self):
        """The events this frame raised, as dicts."""
        return [e.as_dict() for e in self.raised]

    @property
    def acked(self):
        return bool(self.replies)

    def sms_reply(self):
        """The ACK as SMS text, for a gateway that can answer by SMS."""
        return sms.text_of(self.replies[0]) if self.replies else None

    def __repr__(self):
        return "<Outcome %s %s dev=%s seq=%s>" % (self.status, self.reason or "", self.device_id, self.seq)


# ---------------------------------------------------------------- the decoded-frame column

_FALSE_TRUE = ("false", "true")
_U16, _NO_BATTERY, _NO_CSQ = F.UNKNOWN_U16, F.UNKNOWN_BATTERY, F.UNKNOWN_CSQ
_REPORT_JSON = (
    '{"type":"%s","device_id":%d,"seq":%d,"time":%d,"flags":%d,"duress":%s,"battery_low":%s,"charging":%s,'
    '"test":%s,"source":"%s",%s,"accuracy_m":%s,"age_s":%s,"battery":%s,'
    '"csq":%s,"tlvs":[%s]}')
_TLV_JSON = {
    F.T_CELL: lambda v: '{"tlv":"cell","mcc":%d,"mnc":%d,"tac":%d,"cell_id":%d,"rsrp":%d}' % v,
    F.T_WIFI: lambda v: '{"tlv":"wifi","bssid":"%s","rssi":%d}' % (jsonform.bssid_str(v[0]), v[1]),
    F.T_MOTION: lambda v: '{"tlv":"motion","alt_m":%d,"speed_cms":%d,"course_cdeg":%d}' % v,
    F.T_GNSS: lambda v: '{"tlv":"gnss","sats":%d,"hdop_x10":%d}' % v,
    F.T_EVENT: lambda v: '{"tlv":"event","code":%d,"event":"%s","detail":%d}' % (
        v[0], jsonform.EVENT_NAMES.get(v[0], "unknown"), v[1]),
}


def _latlon(lat, lon):
    """A position as '"lat_e7":..,"lon_e7":..,"lat":..,"lon":..' (JSON),
    formatted once per frame for its decoded column and its event (float
    formatting is much of their cost)."""
    return '"lat_e7":%d,"lon_e7":%d,"lat":%r,"lon":%r' % (lat, lon, lat / 1e7, lon / 1e7)


def frame_json(fr, name, latlon=None):
    """The `decoded` column of a stored frame: the JSON of
    jsonform.to_dict(fr), compact, formatted from one template instead of
    building a dict and encoding it (which cost as much as verifying the
    frame). tests/test_receiver_fastpath.py holds the two together over
    random frames, including unknown uplink TLVs numbered like downlink
    commands (0x81..0x83), stored as {"tlv": type, "hex": ...}. Uplink frames from F.decode only (a Report body,
    bool flags); anything else takes the dict path. latlon: _latlon() of
    the frame's position, when the caller has it already."""
    b = fr.body
    if type(b) is not F.Report:
        return _to_json(jsonform.to_dict(fr))
    tlvs = []
    for t, v in b.tlvs:
        f = _TLV_JSON.get(t)
        tlvs.append(f(v) if f is not None else '{"tlv":%d,"hex":"%s"}' % (t, v.hex()))
    return _REPORT_JSON % (
        name, fr.device_id, fr.seq, fr.time, b.flags, _FALSE_TRUE[b.duress is True], _FALSE_TRUE[b.battery_low is True],
        _FALSE_TRUE[b.charging is True], _FALSE_TRUE[b.test is True], F.SOURCE_NAMES[b.source],
        latlon or _latlon(b.lat, b.lon), "null" if b.accuracy == _U16 else b.accuracy, "null" if b.age == _U16 else b.age,
        "null" if b.battery == _NO_BATTERY else b.battery, "null" if b.csq == _NO_CSQ else b.csq, ",".join(tlvs))


def _printable(s):
    """A peer name safe for one log line (an SMS sender comes from outside)."""
    if not s:
        return "-"
    s = str(s)[:64]
    return "".join(c if " " <= c <= "~" else "?" for c in s)


osm_link = E.osm_link


def _inc_position(inc, now):
    """The estimate an incident (or device) row holds, as an event shows
    it (receiver/estimate.py position_dict), or None."""
    if inc is None or inc["lat_e7"] is None:
        return None
    return E.position_dict((inc["lat_e7"], inc["lon_e7"], inc["accuracy_m"], inc["pos_time"], inc["source"],
                            inc["pos_note"], inc["pos_seq"]), now)


# ---------------------------------------------------------------- events

class Event:
    """One event on its way to the store's feed and the listeners: its
    columns and its JSON body (what `watch` and the JSON-lines feed read
    back). The dict form is json.loads(body), made only when someone asks
    (Outcome.events, the on_event listener): the server has no listener,
    so an incident event is formatted once, straight from its values."""

    __slots__ = ("time", "kind", "device_id", "incident_id", "body", "_dict")

    def __init__(self, time, kind, device_id, incident_id, body, as_dict=None):
        self.time = time
        self.kind = kind
        self.device_id = device_id
        self.incident_id = incident_id
        self.body = body
        self._dict = as_dict

    @classmethod
    def of(cls, ev):
        return cls(ev["time"], ev["kind"], ev.get("device_id"), ev.get("incident_id"), _to_json(ev), ev)

    def as_dict(self):
        d = self._dict
        if d is None:
            d = self._dict = json.loads(self.body)
        return d

    def __repr__(self):
        return "<Event %s dev=%s incident=%s>" % (self.kind, self.device_id, self.incident_id)


_EVENT_ROW = operator.attrgetter("time", "kind", "device_id", "incident_id", "body")
_str = S.json_string  # a str as the JSON encoder writes it (quoted, escaped)


def _num(v):
    """A number or None as the JSON encoder writes it (str() of an int or a
    finite float is what json writes)."""
    return "null" if v is None else str(v)


# An incident event (alert, alert_repeat, track, duress, cancel ...): the
# JSON of the dict {time, kind, device_id, person_ref, incident_id,
# incident_kind, incident_state, test, label, duress, frame: {type, seq,
# time, transport}, position: the incident's estimate (receiver/estimate.py
# position_dict: lat_e7, lon_e7, lat, lon, source, accuracy_m, fix_time,
# age_s, map, note, seq, stale) or null, evidence: [estimate evidence
# items], position_in_frame, battery, csq}, keys in that order.
# tests/test_receiver_fastpath.py holds it to json.dumps of that dict over
# random frames.
_INC_EVENT_JSON = (
    '{"time":%s,"kind":%s,"device_id":%d,"person_ref":%s,"incident_id":%d,"incident_kind":%s,"incident_state":%s,'
    '"test":%s,"label":%s,"duress":%s,"frame":{"type":%s,"seq":%d,"time":%d,"transport":%s},"position":%s,'
    '"evidence":%s,"position_in_frame":%s,"battery":%s,"csq":%s}')
_POS_JSON = '{%s,"source":%s,"accuracy_m":%s,"fix_time":%s,"age_s":%s,"map":%s,"note":%s,"seq":%s,"stale":%s}'
_STALE_S = E.STALE_S


def _inc_event(kind, now, now_s, device, parsed, inc, ist, label, fr, name, transport, pos_in_frame, latlon, extra=()):
    """The Event for a frame that belongs to an incident, formatted from
    the rows without building its dict. now_s: str(now), formatted once
    per batch (a 17-digit float costs about a microsecond to format);
    parsed: the device's _Parsed (its map link is kept there); ist: the
    incident's estimate state (estimate.state); latlon: _latlon() of the
    frame's own position; extra: evidence items of this frame only (a
    placeholder it carried)."""
    lat = inc["lat_e7"]
    if lat is None:
        pos = "null"
    else:
        lon = inc["lon_e7"]
        rep = fr.body
        if lat != rep.lat or lon != rep.lon:  # the incident's estimate is not this frame's position
            latlon = _latlon(lat, lon)
        link = parsed.link
        if link is None or link[0] != lat or link[1] != lon:
            link = parsed.link = (lat, lon, _str(osm_link(lat, lon)))
        ft = inc["pos_time"]
        note = inc["pos_note"]
        pos = _POS_JSON % (latlon, _str(inc["source"]), _num(inc["accuracy_m"]), _num(ft),
                           "null" if ft is None else max(0, round(now - ft)), link[2],
                           "null" if note is None else _str(note), _num(inc["pos_seq"]),
                           _FALSE_TRUE[ft is None or now - ft > _STALE_S])
    ev = _to_json(E.evidence(ist, now, extra)) if extra or E.has_evidence(ist) else "[]"
    iid = inc["id"]
    ikind = inc["kind"]
    body = _INC_EVENT_JSON % (
        now_s, _str(kind), device["device_id"], _str(device["person_ref"]), iid, _str(ikind), _str(inc["state"]),
        _FALSE_TRUE[ikind == S.KIND_TEST], _str(label), _FALSE_TRUE[bool(inc["duress"])], _str(name), fr.seq,
        fr.time, _str(transport), pos, ev, _FALSE_TRUE[pos_in_frame], _num(inc["battery"]), _num(inc["csq"]))
    return Event(now, kind, device["device_id"], iid, body)


class _Parsed:
    """What the core parsed from one device's cached rows, kept beside the
    rows (Receiver._parsed, by device id), never inside the store's dicts:
      row     the store's device row it was parsed from
      window  the ReplayWindow parsed from row["window"] (or rebuilt from
              the stored frames), marked as frames arrive and written back
              into row["window"] at the end of each batch
      est     the device row's estimate state (estimate.state), or None
              until a frame needs it
      incs    {incident kind: (the device's latest incident row of that
              kind, its estimate state)}
      link    (lat_e7, lon_e7, the JSON of their map link) of the device's
              incident position, formatted once while it does not move
    The store hands out the same row objects between batches while its
    cache holds (store.load_batch) and new ones once the cache is dropped
    (a rollback, another process's commit, any other write): a row that is
    not the one parsed is parsed again, so nothing parsed outlives the row
    it came from (a batch that failed to commit marked seqs in its window
    and moved its estimates). So one Receiver per store object, as every
    caller makes it: a second core over the same store object would keep
    windows of its own beside the same rows and miss the first's marks."""

    __slots__ = ("row", "window", "est", "incs", "link")

    def __init__(self):
        self.row = None
        self.window = ReplayWindow()
        self.est = None
        self.incs = {}
        self.link = None

    def device_est(self, row):
        """The estimate state of the device row `row` (self.row)."""
        st = self.est
        if st is None:
            st = self.est = E.state(row)
        return st

    def inc_est(self, inc):
        """The estimate state of `inc`, the device's latest incident of its
        kind (store.load_batch's incs, or one the core opened)."""
        kind = inc["kind"]
        hit = self.incs.get(kind)
        if hit is None or hit[0] is not inc:
            hit = self.incs[kind] = (inc, E.state(inc))
        return hit[1]

    def parse(self, store, device_id, row):
        """Parse `row` (the device's row from store.load_batch)."""
        if row["window"] is not None:
            w = ReplayWindow.from_bytes(bytes(row["window"]))
        else:  # no saved window: rebuild it from the evidence, never trust emptiness
            w = ReplayWindow()
            for q in sorted(store.recent_seqs(device_id, WINDOW)):
                w.mark(q)
        row["down_seq"] = row["down_seq"] or 0
        self.window = w
        self.est = None
        self.row = row


class Batch:
    """One group commit between Receiver.prepare and Receiver.finish."""

    __slots__ = ("store", "outs", "verified", "events", "open", "committed", "error")

    def __init__(self, store, outs, verified):
        self.store = store
        self.outs = outs
        self.verified = verified
        self.events = []
        self.open = False       # a transaction is open (begun, not yet ended)
        self.committed = False  # COMMIT returned: the batch is on disk
        self.error = None

    @property
    def needs_commit(self):
        return self.open and self.error is None

    def commit(self):
        """Make the batch durable (any thread). Never raises: a failure is
        kept in .error and finish() turns it into 'store error' outcomes."""
        if not self.needs_commit:
            return
        try:
            self.store.commit_durable()
            self.committed = True
        except Exception as e:
            self.error = e


class Receiver:
    """One receiver core over one store.

    store: a store.SqliteStore opened with the master key.
    clock: returns Unix seconds (time.time, or the simulator's virtual time).
    events: optional callable(event_dict), called after each commit for
        every event raised (the same dicts go into the store's event feed).
    """

    def __init__(self, store, clock=time.time, events=None, heartbeat_s=DEFAULT_HEARTBEAT_S,
                 silent_margin_s=DEFAULT_SILENT_MARGIN_S, low_battery_pct=DEFAULT_LOW_BATTERY_PCT):
        self.store = store
        self.clock = clock
        self.on_event = events
        self.heartbeat_s = heartbeat_s
        self.silent_margin_s = silent_margin_s
        self.low_battery_pct = low_battery_pct
        self.counters = collections.Counter()
        self._keys = {}  # device_id -> (sealed, DeviceKeys)
        self._parsed = {}  # device_id -> _Parsed: the core's objects beside the store's device row
        self._now_s = None  # the batch's clock reading as JSON (set by _write)
        # may_log(peer) -> bool: whether a rejection from this peer may be
        # logged now (the server rate-limits per peer; counters always count)
        self.may_log: Callable[[object], bool] | None = None
        self.outbox = _outbox_for(store)  # forwarding to ARCs and maps: None unless configured
        self.locator = locations.Locator(store)  # cell and Wi-Fi observations -> receiver-resolved positions

    # ------------------------------------------------------------ public API

    def handle_frame(self, raw, transport="tcp", peer=None):
        """One frame in; the list of reply frames (ACK bytes) out, or []."""
        return self.handle_frames([(raw, transport, peer)])[0].replies

    def handle_sms(self, sender, text):
        """An SMS text in ('PNC1 ...'); an Outcome out (its sms_reply() is
        the ACK as SMS text, if the gateway answers by SMS). A sender that
        breaks sender_problem's rule is rejected ("bad sender")."""
        why = sender_problem(sender)
        if why is not None:
            return self._reject(Outcome(REJECTED), R_SENDER, "sms", sender, why)
        try:
            raw = sms.from_sms(text)
        except ProtocolError as e:
            return self._reject(Outcome(REJECTED), e.reason, "sms", sender, str(e))
        return self.handle_frames([(raw, "sms", sender)])[0]

    def handle_frames(self, items):
        """A batch of (raw, transport, peer); one Outcome per item, in order.
        The whole batch is stored in one transaction (group commit)."""
        batch = self.prepare(items)
        batch.commit()
        return self.finish(batch)

    # The same in three steps, for a server that waits for the disk off its
    # event loop: prepare() verifies and writes the batch inside an open
    # transaction (ACKs built but not handed out), batch.commit() makes it
    # durable (it touches only the store connection, so it may run on a
    # worker thread; nothing else may use the store until finish()), and
    # finish() hands out the ACKs only if the commit succeeded. finish()
    # runs on the thread that called prepare().

    def prepare(self, items):
        outs = [Outcome(REJECTED) for _ in items]
        heads = []
        for i, (raw, transport, peer) in enumerate(items):
            try:
                heads.append((i, F.peek(raw)))
            except ProtocolError as e:
                self._reject(outs[i], e.reason, transport, peer, str(e))
        keys = self.store.keys_for({h[1] for _, h in heads}) if heads else {}
        verified = []  # (index, frame, raw, transport, peer, keys)
        for i, (_ftype, device_id, seq) in heads:
            raw, transport, peer = items[i]
            fr, ks = self._verify(outs[i], raw, transport, peer, device_id, seq, keys.get(device_id))
            if fr is not None:
                verified.append((i, fr, bytes(raw), transport, peer, ks))
        batch = Batch(self.store, outs, verified)
        if verified:
            try:
                self.store.begin()
            except Exception as e:
                batch.error = e
                return batch
            batch.open = True
            try:
                batch.events = self._write(verified, outs)
            except Exception as e:
                batch.error = e
        return batch

    def finish(self, batch):
        """End the batch's transaction; its Outcomes, with ACKs only if it
        is durable. Events go to the listener after the commit."""
        outs = batch.outs
        if batch.open:
            batch.open = False
            self.store.end(batch.committed)
        if batch.verified and not batch.committed:  # the store failed: nothing is ACKed
            e = batch.error
            log.error("store commit failed, %d frame(s) not ACKed: %s: %s", len(batch.verified),
                      e.__class__.__name__, e)
            self.counters["store error"] += 1
            for i, *_ in batch.verified:
                o = outs[i]
                o.status, o.reason, o.replies, o.raised, o.incident_id = ERROR, "store error", [], (), None
            return outs
        for o in outs:
            if o.status == ACCEPTED:
                self.counters["accepted"] += 1
        if self.on_event is not None:
            for ev in batch.events:
                self._emit(ev.as_dict())
        return outs

    def tick(self, now=None):
        """Supervision: raise 'device silent' for every active device whose
        last frame is older than its heartbeat interval plus the margin.
        Returns the events raised."""
        now = self.clock() if now is None else now
        events = []
        with self.store.transaction():
            for d in self.store.list_devices():
                if d["status"] != S.ACTIVE or d["silent"]:
                    continue
                interval = d["heartbeat_s"] or self.heartbeat_s
                last = d["last_seen"] if d["last_seen"] is not None else d["created"]
                overdue = now - last - interval
                if overdue > self.silent_margin_s:
                    self.store.update_device(d["device_id"], silent=1)
                    ev = _event_dict("device_silent", now, d, None, label="DEVICE SILENT",
                                     silent_for_s=round(now - last), heartbeat_s=interval,
                                     last_seen=d["last_seen"])
                    self.store.add_event(ev)
                    events.append(ev)
            if self.outbox is not None and events:
                self.outbox.queue(self.store, [Event.of(e) for e in events])
        for ev in events:
            self._emit(ev)
        return events

    # ------------------------------------------------------------ verification

    def _reject(self, out, reason, transport, peer, detail="", device_id=None, seq=None):
        out.status = REJECTED
        out.reason = reason
        out.device_id = device_id
        out.seq = seq
        self.counters[reason] += 1
        if self.may_log is not None and not self.may_log(peer):
            return out
        log.warning("rejected frame via %s from %s: %s%s%s", transport, _printable(peer), reason,
                    (" (%s)" % detail) if detail else "",
                    "" if device_id is None else " claimed device %d seq %d" % (device_id, seq))
        return out

    def _verify(self, out, raw, transport, peer, device_id, seq, row):
        if row is None:
            self._keys.pop(device_id, None)
            self._reject(out, R_UNKNOWN_DEVICE, transport, peer, "", device_id, seq)
            return None, None
        status, sealed = row
        if status != S.ACTIVE:
            self._reject(out, R_RETIRED, transport, peer, "", device_id, seq)
            return None, None
        hit = self._keys.get(device_id)
        if hit is not None and hit[0] == sealed:
            ks = hit[1]
        else:
            try:
                ks = DeviceKeys(self.store.open_key(device_id, sealed))
            except ReceiverError:
                self._reject(out, R_KEY, transport, peer, "", device_id, seq)
                return None, None
            self._keys[device_id] = (sealed, ks)
        try:
            fr = F.decode(ks, raw, F.UPLINK)
        except ProtocolError as e:
            self._reject(out, e.reason, transport, peer, "", device_id, seq)
            return None, None
        out.device_id, out.seq, out.type = device_id, seq, fr.name
        return fr, ks

    # ------------------------------------------------------------ commit

    def _write(self, verified, outs):
        """The batch inside its open transaction: three reads, the rules in
        memory, then one executemany per table. Returns the events."""
        st = self.store
        now = self.clock()
        self._now_s = _num(now)
        events = []
        frame_rows = []
        devices, incs, pending = st.load_batch({v[1].device_id for v in verified})
        dirty_incs = {}
        touched = {}
        ack_time = int(now) & 0xFFFFFFFF
        encode_raw, ack_type = F.encode_raw, F.ACK
        parsed = self._parsed
        for i, fr, raw, transport, peer, keys in verified:
            out = outs[i]
            dev = fr.device_id
            seq = fr.seq
            device = devices[dev]
            # the window is parsed once while the store keeps handing out
            # the same row (its cache holds between batches), not once per
            # batch; a new row is parsed again (_Parsed)
            p = parsed.get(dev)
            if p is None:
                p = parsed[dev] = _Parsed()
            if p.row is not device:
                p.parse(st, dev, device)
            w = p.window
            verdict = w.check(seq)
            if verdict == STALE:
                self._reject(out, R_STALE, transport, peer, "older than the replay window", dev, seq)
                continue
            touched[dev] = p
            if verdict == NEW:
                w.mark(seq)
                out.status = ACCEPTED
                name = out.type
                latlon = _latlon(fr.body.lat, fr.body.lon)
                evs, inc = self._apply(fr, name, device, p, incs, dirty_incs, now, transport, latlon)
                iid = out.incident_id = None if inc is None else inc["id"]
                frame_rows.append((dev, seq, name, fr.time, now, transport, peer, raw, frame_json(fr, name, latlon), iid))
                if evs:
                    out.raised = evs
                    events.extend(evs)
            else:
                out.status = DUPLICATE_S
                self.counters["duplicate"] += 1
            down = device["down_seq"] = device["down_seq"] + 1
            if down >= 1 << 32:
                raise ReceiverError("downlink seq of device %d exhausted" % dev)
            cmds = ()
            if dev in pending or verdict == DUPLICATE:
                cmds = st.commands_for_ack(dev, seq, now)
                pending.discard(dev)
            if cmds:
                out.replies = [self._ack(keys, dev, down, now, seq, cmds)]
            else:  # the common case: the body is the acked seq alone (F.ack_bytes of Ack(seq, []))
                out.replies = [encode_raw(keys, ack_type, dev, down, ack_time, _ACK_SEQ(seq))]
        st.insert_frames(frame_rows)
        st.add_events(map(_EVENT_ROW, events))
        if self.outbox is not None and events:  # forwarded messages commit with the events that cause them
            self.outbox.queue(st, events)
        st.save_devices([p.row for p in touched.values()])
        st.save_incidents(dirty_incs.values())
        rows = []
        for dev, p in touched.items():
            d = p.row
            d["window"] = p.window.to_bytes()
            rows.append((dev, d["window"], d["down_seq"]))
        st.save_replays(rows)
        return events

    def _ack(self, keys, dev, down_seq, now, acked_seq, cmds):
        """An ACK carrying operator commands (one without is sealed in _write)."""
        tlvs = {}
        for c in cmds:  # one TLV per command kind; the latest tracking interval wins
            t = _CMD_TLV[c["kind"]]
            tlvs[t] = c["value"] if t == F.C_TRACKING else None
        ack = F.Frame(F.ACK, dev, down_seq, int(now) & 0xFFFFFFFF, F.Ack(acked_seq, sorted(tlvs.items())))
        return F.encode(keys, ack)

    # ------------------------------------------------------------ incident rules

    def _find_incident(self, incs, dev, seq, kind):
        """The incident a frame of `kind` belongs to: the latest one if it
        is open, or if it was closed by a later frame (this one is late)."""
        inc = incs.get((dev, kind))
        if inc is None:
            return None, False
        if inc["state"] in S.OPEN_STATES:
            return inc, False
        if inc["closed_seq"] is not None and seq < inc["closed_seq"] and (inc["opened_seq"] is None or seq >= inc["opened_seq"]):
            return inc, True
        return None, False

    def _open(self, incs, dirty, dev, kind, now, fr):
        iid = self.store.create_incident(dev, kind, now, fr.seq, fr.name)
        inc = {"id": iid, "device_id": dev, "kind": kind, "state": S.OPEN, "duress": 0, "opened_at": now,
               "opened_seq": fr.seq, "opened_by": fr.name, "closed_at": None, "closed_seq": None, "closed_by": None,
               "updated_at": now, "last_seq": fr.seq, "lat_e7": None, "lon_e7": None, "source": None,
               "accuracy_m": None, "pos_time": None, "pos_note": None, "pos_seq": None, "evidence": None,
               "battery": None, "csq": None}
        incs[(dev, kind)] = inc
        dirty[iid] = inc
        return inc

    def _apply(self, fr, name, device, parsed, incs, dirty, now, transport, latlon):
        """The incident rules for one new frame, on in-memory rows (device,
        incidents; parsed: the device's _Parsed); the caller writes the
        changed rows once per batch.
        Returns ([Event], the incident the frame belongs to or None)."""
        rep = fr.body
        dev = fr.device_id
        ftype = fr.ftype
        cands, unresolved, ph = self._where(fr, rep, now)
        is_test = ftype == F.TEST or rep.test
        kind = S.KIND_TEST if is_test else S.KIND_ALERT
        battery = rep.battery
        csq = rep.csq
        events = []
        inc = None
        ev_kind = None
        label = None

        # device-level state: seen, battery, signal, position
        if device["silent"]:
            events.append(Event.of(_event_dict("device_back", now, device, None, label="DEVICE BACK",
                                               silent_since=device["last_seen"], transport=transport)))
            device["silent"] = 0
        device["last_seen"] = now
        if ftype == F.HEARTBEAT:
            device["last_heartbeat"] = now
        if battery != _NO_BATTERY:
            device["battery"] = battery
        if csq != _NO_CSQ:
            device["csq"] = csq
        _apply_where(device, parsed.device_est(device), cands, unresolved, ph, now)
        status_events = [v for t, v in rep.tlvs if t == F.T_EVENT] if rep.tlvs else ()
        low = rep.battery_low or (battery != _NO_BATTERY and battery <= self.low_battery_pct) or any(
            c == F.EV_LOW_BATTERY for c, _ in status_events)
        if low and not device["battery_low"]:
            device["battery_low"] = 1
            events.append(Event.of(_event_dict("low_battery", now, device, None, label="LOW BATTERY",
                                               battery=None if battery == _NO_BATTERY else battery,
                                               frame={"type": name, "seq": fr.seq})))
        elif not low and device["battery_low"] and battery != _NO_BATTERY and battery > self.low_battery_pct + _BATTERY_HYSTERESIS:
            device["battery_low"] = 0
            events.append(Event.of(_event_dict("battery_ok", now, device, None, label="BATTERY OK", battery=battery,
                                               frame={"type": name, "seq": fr.seq})))

        # incident rules (receiver/rules.py: the table decides, this applies)
        if ftype in R.INCIDENT_TYPES:
            inc, late = self._find_incident(incs, dev, fr.seq, kind)
            sit = R.LATE if late else R.NONE if inc is None else R.DURESS if inc["state"] == S.DURESS else R.OPEN
            eff, ev_kind, label, t_kind, t_label = R.RULES[(ftype, bool(rep.duress) and ftype == F.CANCEL, sit)]
            if is_test:
                ev_kind, label = t_kind, t_label
            if eff == R.E_OPEN:
                inc = self._open(incs, dirty, dev, kind, now, fr)
            elif eff == R.E_CLOSE:
                assert inc is not None  # rules.py closes only in situation OPEN, where _find_incident found it
                inc.update(state=S.CANCELLED, closed_at=now, closed_seq=fr.seq, closed_by="CANCEL")
            elif eff == R.E_DURESS:
                # the latest incident of its kind, whatever its state
                inc = incs.get((dev, kind))
                if inc is None:
                    inc = self._open(incs, dirty, dev, kind, now, fr)
                inc.update(state=S.DURESS, duress=1, closed_at=None, closed_seq=None, closed_by=None)
        elif ftype == F.STATUS:
            for code, detail in status_events:
                sname = jsonform.EVENT_NAMES.get(code) or "event %d" % code  # every known name is non-empty
                events.append(Event.of(_event_dict("status", now, device, None, label="STATUS " + sname.upper(),
                                                   status=sname, detail=detail, frame={"type": name, "seq": fr.seq})))

        if inc is not None:
            inc["updated_at"] = now
            last = inc["last_seq"]
            if last is None or fr.seq > last:
                inc["last_seq"] = fr.seq
            if battery != _NO_BATTERY:
                inc["battery"] = battery
            if csq != _NO_CSQ:
                inc["csq"] = csq
            ist = parsed.inc_est(inc)
            _apply_where(inc, ist, cands, unresolved, ph, now)
            dirty[inc["id"]] = inc
            if ev_kind is not None:
                extra = () if ph is None else (E.placeholder_item(ph, fr.seq, fr.time or now, now),)
                events.append(_inc_event(ev_kind, now, self._now_s, device, parsed, inc, ist, label, fr, name, transport,
                                         rep.source != F.SRC_NONE and ph is None, latlon, extra))
        elif ev_kind is not None:
            extra = () if ph is None else (E.placeholder_item(ph, fr.seq, fr.time or now, now),)
            events.append(Event.of(_event_dict(ev_kind, now, device, None, label=label,
                                               frame={"type": name, "seq": fr.seq, "time": fr.time, "transport": transport},
                                               position=_inc_position(device, now),
                                               evidence=E.evidence(parsed.device_est(device), now, extra),
                                               battery=device["battery"], csq=device["csq"])))
        return events, inc

    def _where(self, fr, rep, now):
        """What one frame tells about where the person is:
        (positions, unresolved observation, placeholder source). positions:
        estimate candidates (receiver/estimate.py): the device's own
        position, and the cell and Wi-Fi observations resolved here from the
        location database when the frame has no live fix (a live fix is
        finer and as new, so the lookup would change nothing).
        unresolved: (time, source, note, seq) of observations the database
        does not know. placeholder: "cell"/"wifi" when the frame's source
        carried (0, 0) (docs/protocol.md, "Position semantics")."""
        src = rep.source
        ft = fr.time
        t_frame = ft if ft and ft < now else now  # a position is never from after its arrival
        cands = []
        ph = None
        if src:
            if src >= F.SRC_CELL and rep.lat == 0 and rep.lon == 0:
                ph = F.SOURCE_NAMES[src]
                self.counters[C_PLACEHOLDER] += 1
            else:
                age = rep.age
                cands.append((rep.lat, rep.lon, None if rep.accuracy == _U16 else rep.accuracy,
                              None if age == _U16 else t_frame - age, F.SOURCE_NAMES[src], None, fr.seq))
        unresolved = None
        tlvs = rep.tlvs
        if src != F.SRC_GNSS and tlvs:
            notes = []
            loc = self.locator
            cell = next((v for t, v in tlvs if t == F.T_CELL), None)  # the first is the serving cell
            if cell is not None:
                lat, lon, acc, note = loc.cell(cell[0], cell[1], cell[2], cell[3])
                if lat is None:
                    notes.append(("cell", note))
                else:
                    cands.append((lat, lon, acc, t_frame, "cell (resolved)", note, fr.seq))
            wifi = [v for t, v in tlvs if t == F.T_WIFI]
            if wifi:
                lat, lon, acc, note = loc.wifi(wifi)
                if lat is None:
                    notes.append(("wifi", note))
                else:
                    cands.append((lat, lon, acc, t_frame, "wifi (resolved)", note, fr.seq))
            if notes:
                unresolved = (t_frame, notes[0][0], "; ".join(n for _, n in notes), fr.seq)
        return cands, unresolved, ph

    def _emit(self, ev):
        if self.on_event is None:
            return
        try:
            self.on_event(ev)
        except Exception:  # a broken listener must not break the receiver
            log.exception("event listener failed")


def _outbox_for(store):
    """The forward outbox of the store's configured targets, or None."""
    from receiver.forward import config, outbox

    try:
        return outbox.Outbox.for_store(store)
    except config.ConfigError as e:
        raise ReceiverError(str(e))


def _apply_where(row, st, cands, unresolved, ph, now):
    """One frame's positions and observations into a device or incident
    row and its estimate state st (receiver/estimate.py chooses the
    estimate by its rules)."""
    if cands:
        for c in cands:
            E.add(row, st, c, now)
    elif row["lat_e7"] is not None:
        E.refresh(row, st, now)  # R2/R3 depend on `now`: a stale fix may give way to newer evidence
    if unresolved is not None:
        E.observe_unresolved(row, st, unresolved[0], unresolved[1], unresolved[2], unresolved[3], now)
    if ph is not None:
        E.placeholder(row, st, now)


def _event_dict(kind, now, device, inc, **extra):
    """An event other than an incident's (see _inc_event) as a dict."""
    ev = {
        "time": now,
        "kind": kind,
        "device_id": device["device_id"],
        "person_ref": device["person_ref"],
        "incident_id": None if inc is None else inc["id"],
        "incident_kind": None if inc is None else inc["kind"],
        "incident_state": None if inc is None else inc["state"],
        "test": bool(inc is not None and inc["kind"] == S.KIND_TEST),
    }
    ev.update(extra)
    return ev


# ---------------------------------------------------------------- operator actions

def operator_command(store, device_id, kind, value=None, actor="operator", clock=time.time, on_event=None):
    """Queue a command for the device's next ACK. A stand-down also closes
    the device's open incidents (recorded, with an event for the feed;
    on_event(event) is called for each after the commit). Returns the
    command id."""
    if kind == S.CMD_TRACK and (not isinstance(value, int) or not 0 <= value <= 0xFFFF):
        raise ReceiverError("tracking interval must be 0..65535 seconds")
    now = clock()
    events = []
    with store.transaction():
        device = store.get_device(device_id)
        if device is None:
            raise S.UnknownDevice("device %d is not registered" % device_id)
        cid = store.queue_command(device_id, kind, value if kind == S.CMD_TRACK else None, actor)
        if kind == S.CMD_STAND_DOWN:
            for inc in store.open_incidents_of(device_id):
                store.update_incident(inc["id"], state=S.STOOD_DOWN, closed_at=now, closed_seq=inc["last_seq"],
                                      closed_by="operator:" + actor, updated_at=now)
                inc = dict(inc, state=S.STOOD_DOWN)
                ev = _event_dict("stood_down", now, device, inc, label="STOOD DOWN by " + actor,
                                 duress=bool(inc["duress"]))
                store.add_event(ev)
                events.append(ev)
    for ev in events:
        if on_event is not None:
            on_event(ev)
    return cid
