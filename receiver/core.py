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

Incident rules (one table, see _RULES): an ALERT opens an incident (a TEST
frame or an ALERT with the test flag opens a *test* incident, never a real
one); TRACKs attach to the open incident (or open one if the ALERT has not
arrived yet); a plain CANCEL closes it; a duress CANCEL marks it DURESS and
keeps it open (it reopens a closed one: a duress cancel is never lost or
shown as a cancel); the operator's stand-down closes it. Frames that arrive
late (seq below the seq that closed the latest incident) attach to that
incident and raise nothing. A duplicate frame is ACKed again, raises
nothing.

Must stay in sync with: store.py (row meanings), docs/receiver.md,
protocol/frame.py (types, flags, TLVs).
"""

import collections
import logging
import time

from protocol import frame as F
from protocol import jsonform, sms
from protocol.crypto import DeviceKeys
from protocol.errors import ProtocolError
from protocol.replay import DUPLICATE, NEW, STALE, ReplayWindow
from receiver import store as S
from receiver.errors import ReceiverError

log = logging.getLogger("receiver")

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

DEFAULT_HEARTBEAT_S = 6 * 3600
DEFAULT_SILENT_MARGIN_S = 30 * 60
DEFAULT_LOW_BATTERY_PCT = 15
_BATTERY_HYSTERESIS = 5

_CMD_TLV = {S.CMD_TRACK: F.C_TRACKING, S.CMD_STAND_DOWN: F.C_STAND_DOWN, S.CMD_LISTEN_IN: F.C_LISTEN_IN}


class Outcome:
    """What happened to one frame. replies: ACK frames (no length prefix)
    to send back, empty unless status is accepted or duplicate."""

    __slots__ = ("status", "reason", "device_id", "seq", "type", "replies", "events", "incident_id")

    def __init__(self, status, reason=None, device_id=None, seq=None, ftype=None):
        self.status = status
        self.reason = reason
        self.device_id = device_id
        self.seq = seq
        self.type = ftype
        self.replies = []
        self.events = []
        self.incident_id = None

    @property
    def acked(self):
        return bool(self.replies)

    def sms_reply(self):
        """The ACK as SMS text, for a gateway that can answer by SMS."""
        return sms.text_of(self.replies[0]) if self.replies else None

    def __repr__(self):
        return "<Outcome %s %s dev=%s seq=%s>" % (self.status, self.reason or "", self.device_id, self.seq)


def osm_link(lat_e7, lon_e7):
    lat = "%.7f" % (lat_e7 / 1e7)
    lon = "%.7f" % (lon_e7 / 1e7)
    return "https://www.openstreetmap.org/?mlat=%s&mlon=%s#map=18/%s/%s" % (lat, lon, lat, lon)


def _position(report, frame_time, arrival):
    """Position dict with provenance, or None. fix_time: Unix time of the
    fix (frame time minus the age the device reported)."""
    if report.source == F.SRC_NONE:
        return None
    base = frame_time if frame_time else arrival
    age = None if report.age == F.UNKNOWN_U16 else report.age
    fix_time = base - age if age is not None else None
    return {
        "lat_e7": report.lat,
        "lon_e7": report.lon,
        "lat": report.lat / 1e7,
        "lon": report.lon / 1e7,
        "source": F.SOURCE_NAMES[report.source],
        "accuracy_m": None if report.accuracy == F.UNKNOWN_U16 else report.accuracy,
        "fix_time": fix_time,
        "age_s": None if fix_time is None else max(0, round(arrival - fix_time)),
        "map": osm_link(report.lat, report.lon),
    }


def _inc_position(inc, now):
    if inc is None or inc["lat_e7"] is None:
        return None
    ft = inc["pos_time"]
    return {
        "lat_e7": inc["lat_e7"],
        "lon_e7": inc["lon_e7"],
        "lat": inc["lat_e7"] / 1e7,
        "lon": inc["lon_e7"] / 1e7,
        "source": inc["source"],
        "accuracy_m": inc["accuracy_m"],
        "fix_time": ft,
        "age_s": None if ft is None else max(0, round(now - ft)),
        "map": osm_link(inc["lat_e7"], inc["lon_e7"]),
    }


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

    # ------------------------------------------------------------ public API

    def handle_frame(self, raw, transport="tcp", peer=None):
        """One frame in; the list of reply frames (ACK bytes) out, or []."""
        return self.handle_frames([(raw, transport, peer)])[0].replies

    def handle_sms(self, sender, text):
        """An SMS text in ('PNC1 ...'); an Outcome out (its sms_reply() is
        the ACK as SMS text, if the gateway answers by SMS)."""
        try:
            raw = sms.from_sms(text)
        except ProtocolError as e:
            return self._reject(Outcome(REJECTED), e.reason, "sms", sender, str(e))
        return self.handle_frames([(raw, "sms", sender)])[0]

    def handle_frames(self, items):
        """A batch of (raw, transport, peer); one Outcome per item, in order.
        The whole batch is stored in one transaction (group commit)."""
        outs = []
        verified = []  # (index, frame, raw, transport, peer, keys)
        for i, (raw, transport, peer) in enumerate(items):
            out, fr, keys = self._verify(raw, transport, peer)
            outs.append(out)
            if fr is not None:
                verified.append((i, fr, bytes(raw), transport, peer, keys))
        if verified:
            try:
                events = self._commit(verified, outs)
            except Exception as e:  # the store failed: nothing is ACKed
                log.error("store commit failed, %d frame(s) not ACKed: %s", len(verified), e.__class__.__name__)
                self.counters["store error"] += 1
                for i, fr, *_ in verified:
                    o = outs[i]
                    o.status, o.reason, o.replies, o.events = ERROR, "store error", [], []
                return outs
            for ev in events:
                self._emit(ev)
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
                    ev = self._event("device_silent", now, d, None, label="DEVICE SILENT",
                                     silent_for_s=round(now - last), heartbeat_s=interval,
                                     last_seen=d["last_seen"])
                    self.store.add_event(ev)
                    events.append(ev)
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
        log.warning("rejected frame via %s from %s: %s%s%s", transport, peer or "-", reason,
                    (" (%s)" % detail) if detail else "",
                    "" if device_id is None else " claimed device %d seq %d" % (device_id, seq))
        return out

    def _verify(self, raw, transport, peer):
        out = Outcome(REJECTED)
        try:
            ftype, device_id, seq = F.peek(raw)
        except ProtocolError as e:
            return self._reject(out, e.reason, transport, peer, str(e)), None, None
        try:
            ks = self._device_keys(device_id)
        except ReceiverError:
            return self._reject(out, R_KEY, transport, peer, "", device_id, seq), None, None
        if ks is None:
            return self._reject(out, R_UNKNOWN_DEVICE, transport, peer, "", device_id, seq), None, None
        if ks == R_RETIRED:
            return self._reject(out, R_RETIRED, transport, peer, "", device_id, seq), None, None
        try:
            fr = F.decode(ks, raw, F.UPLINK)
        except ProtocolError as e:
            return self._reject(out, e.reason, transport, peer, "", device_id, seq), None, None
        out.device_id, out.seq, out.type = device_id, seq, fr.name
        return out, fr, ks

    def _device_keys(self, device_id):
        row = self.store.device_key_sealed(device_id)
        if row is None:
            self._keys.pop(device_id, None)
            return None
        status, sealed = row
        if status != S.ACTIVE:
            return R_RETIRED
        hit = self._keys.get(device_id)
        if hit is not None and hit[0] == sealed:
            return hit[1]
        keys = DeviceKeys(self.store.open_key(device_id, sealed))
        self._keys[device_id] = (sealed, keys)
        return keys

    # ------------------------------------------------------------ commit

    def _commit(self, verified, outs):
        st = self.store
        now = self.clock()
        events = []
        with st.transaction():
            state = {}  # device_id -> [window, down_seq, device row]
            for i, fr, raw, transport, peer, keys in verified:
                out = outs[i]
                dev = fr.device_id
                if dev not in state:
                    wb, down = st.load_replay(dev)
                    state[dev] = [ReplayWindow.from_bytes(wb) if wb else ReplayWindow(), down, st.get_device(dev)]
                ds = state[dev]
                w = ds[0]
                verdict = w.check(fr.seq)
                if verdict == STALE:
                    self._reject(out, R_STALE, transport, peer, "older than the replay window", dev, fr.seq)
                    continue
                if verdict == NEW and st.insert_frame(dev, fr.seq, fr.name, fr.time, now, transport, peer, raw,
                                                      jsonform.to_dict(fr), None):
                    w.mark(fr.seq)
                    out.status = ACCEPTED
                    evs, inc_id, ds[2] = self._apply(fr, ds[2], now, transport)
                    out.incident_id = inc_id
                    for ev in evs:
                        st.add_event(ev)
                    out.events = evs
                    events.extend(evs)
                else:
                    w.mark(fr.seq)  # a frame stored but not in the window (cannot happen unless state was lost)
                    out.status = DUPLICATE_S
                    self.counters["duplicate"] += 1
                ds[1] += 1
                if ds[1] >= 1 << 32:
                    raise ReceiverError("downlink seq of device %d exhausted" % dev)
                cmds = st.commands_for_ack(dev, fr.seq, now)
                out.replies = [self._ack(keys, dev, ds[1], now, fr.seq, cmds)]
            for dev, (w, down, _row) in state.items():
                st.save_replay(dev, w.to_bytes(), down)
        for o in outs:
            if o.status == ACCEPTED:
                self.counters["accepted"] += 1
        return events

    def _ack(self, keys, dev, down_seq, now, acked_seq, cmds):
        tlvs = {}
        for c in cmds:  # one TLV per command kind; the latest tracking interval wins
            t = _CMD_TLV[c["kind"]]
            tlvs[t] = c["value"] if t == F.C_TRACKING else None
        ack = F.Frame(F.ACK, dev, down_seq, int(now) & 0xFFFFFFFF, F.Ack(acked_seq, sorted(tlvs.items())))
        return F.encode(keys, ack)

    # ------------------------------------------------------------ incident rules

    def _event(self, kind, now, device, inc, **extra):
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

    def _find_incident(self, dev, seq, kind):
        """The incident a frame of `kind` belongs to: the latest one if it
        is open, or if it was closed by a later frame (this one is late)."""
        inc = self.store.latest_incident(dev, kind)
        if inc is None:
            return None, False
        if inc["state"] in S.OPEN_STATES:
            return inc, False
        if inc["closed_seq"] is not None and seq < inc["closed_seq"] and (inc["opened_seq"] is None or seq >= inc["opened_seq"]):
            return inc, True
        return None, False

    def _apply(self, fr, device, now, transport):
        st = self.store
        rep = fr.body
        dev = fr.device_id
        pos = _position(rep, fr.time, now)
        is_test = fr.ftype == F.TEST or rep.test
        kind = S.KIND_TEST if is_test else S.KIND_ALERT
        events = []
        inc = None
        late = False
        ev_kind = None
        label = None

        # device-level state: seen, battery, signal, position
        upd = {"last_seen": now}
        if fr.ftype == F.HEARTBEAT:
            upd["last_heartbeat"] = now
        if rep.battery != F.UNKNOWN_BATTERY:
            upd["battery"] = rep.battery
        if rep.csq != F.UNKNOWN_CSQ:
            upd["csq"] = rep.csq
        if pos is not None and (device["pos_time"] is None or pos["fix_time"] is None or pos["fix_time"] >= device["pos_time"]):
            upd.update(lat_e7=rep.lat, lon_e7=rep.lon, source=pos["source"], accuracy_m=pos["accuracy_m"],
                       pos_time=pos["fix_time"] if pos["fix_time"] is not None else now)
        if device["silent"]:
            upd["silent"] = 0
            events.append(self._event("device_back", now, device, None, label="DEVICE BACK",
                                      silent_since=device["last_seen"], transport=transport))
        status_events = [v for t, v in rep.tlvs if t == F.T_EVENT]
        low = rep.battery_low or (rep.battery != F.UNKNOWN_BATTERY and rep.battery <= self.low_battery_pct) or any(
            c == F.EV_LOW_BATTERY for c, _ in status_events)
        if low and not device["battery_low"]:
            upd["battery_low"] = 1
            events.append(self._event("low_battery", now, device, None, label="LOW BATTERY",
                                      battery=None if rep.battery == F.UNKNOWN_BATTERY else rep.battery,
                                      frame={"type": fr.name, "seq": fr.seq}))
        elif not low and device["battery_low"] and rep.battery != F.UNKNOWN_BATTERY and rep.battery > self.low_battery_pct + _BATTERY_HYSTERESIS:
            upd["battery_low"] = 0
        st.update_device(dev, **upd)
        device = dict(device, **upd)

        # incident rules
        if fr.ftype in (F.ALERT, F.TEST):
            inc, late = self._find_incident(dev, fr.seq, kind)
            if inc is None:
                inc = self._open(dev, kind, now, fr)
                ev_kind, label = ("test_alert", "TEST ALERT") if is_test else ("alert", "ALERT")
            elif not late:
                ev_kind, label = "alert_repeat", ("TEST ALERT (repeat)" if is_test else "ALERT (repeat)")
        elif fr.ftype == F.TRACK:
            inc, late = self._find_incident(dev, fr.seq, kind)
            if inc is None:
                inc = self._open(dev, kind, now, fr)
                ev_kind, label = ("test_alert", "TEST ALERT") if is_test else ("alert", "ALERT (opened by TRACK)")
            elif not late:
                ev_kind, label = "track", ("TEST TRACK" if is_test else "TRACK")
        elif fr.ftype == F.CANCEL:
            if rep.duress:
                # never lost, never shown as a cancel: mark the latest incident
                # DURESS (reopening it if it was closed), or open one
                inc = self.store.latest_incident(dev, kind)
                if inc is None:
                    inc = self._open(dev, kind, now, fr)
                st.update_incident(inc["id"], state=S.DURESS, duress=1, closed_at=None, closed_seq=None, closed_by=None)
                inc = dict(inc, state=S.DURESS, duress=1, closed_at=None, closed_seq=None, closed_by=None)
                ev_kind, label = "duress", ("TEST DURESS" if is_test else "DURESS")
            else:
                inc, late = self._find_incident(dev, fr.seq, kind)
                if inc is None:
                    ev_kind, label = "cancel", ("TEST CANCEL" if is_test else "CANCEL (no open incident)")
                elif late:
                    pass
                elif inc["state"] == S.DURESS:
                    ev_kind, label = "duress", "DURESS (a later cancel does not lift duress)"
                else:
                    st.update_incident(inc["id"], state=S.CANCELLED, closed_at=now, closed_seq=fr.seq, closed_by="CANCEL")
                    inc = dict(inc, state=S.CANCELLED)
                    ev_kind, label = "cancel", ("TEST CANCELLED" if is_test else "CANCELLED by user")
        elif fr.ftype == F.STATUS:
            for code, detail in status_events:
                name = jsonform.EVENT_NAMES.get(code, "event %d" % code)
                events.append(self._event("status", now, device, None, label="STATUS " + name.upper(),
                                          status=name, detail=detail, frame={"type": fr.name, "seq": fr.seq}))

        if inc is not None:
            iu = {"updated_at": now, "last_seq": max(fr.seq, inc["last_seq"] or 0)}
            if rep.battery != F.UNKNOWN_BATTERY:
                iu["battery"] = rep.battery
            if rep.csq != F.UNKNOWN_CSQ:
                iu["csq"] = rep.csq
            if pos is not None and (inc["pos_time"] is None or pos["fix_time"] is None or pos["fix_time"] >= inc["pos_time"]):
                iu.update(lat_e7=rep.lat, lon_e7=rep.lon, source=pos["source"], accuracy_m=pos["accuracy_m"],
                          pos_time=pos["fix_time"] if pos["fix_time"] is not None else now)
            st.update_incident(inc["id"], **iu)
            st._write("UPDATE frames SET incident_id = ? WHERE device_id = ? AND seq = ?", (inc["id"], dev, fr.seq))
            inc = dict(inc, **iu)
            if ev_kind is not None:
                events.append(self._event(
                    ev_kind, now, device, inc, label=label, duress=bool(inc["duress"]),
                    frame={"type": fr.name, "seq": fr.seq, "time": fr.time, "transport": transport},
                    position=_inc_position(inc, now), position_in_frame=pos is not None,
                    battery=inc["battery"], csq=inc["csq"],
                ))
        elif ev_kind is not None:
            events.append(self._event(ev_kind, now, device, None, label=label,
                                      frame={"type": fr.name, "seq": fr.seq, "time": fr.time, "transport": transport},
                                      position=pos, battery=device["battery"], csq=device["csq"]))
        return events, (None if inc is None else inc["id"]), device

    def _open(self, dev, kind, now, fr):
        iid = self.store.create_incident(dev, kind, now, fr.seq, fr.name)
        return self.store.get_incident(iid)

    def _emit(self, ev):
        if self.on_event is None:
            return
        try:
            self.on_event(ev)
        except Exception:  # a broken listener must not break the receiver
            log.exception("event listener failed")


# ---------------------------------------------------------------- operator actions


def operator_command(store, device_id, kind, value=None, actor="operator", clock=time.time):
    """Queue a command for the device's next ACK. A stand-down also closes
    the device's open incidents (recorded, with an event for the feed)."""
    if kind == S.CMD_TRACK and (not isinstance(value, int) or not 0 <= value <= 0xFFFF):
        raise ReceiverError("tracking interval must be 0..65535 seconds")
    now = clock()
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
                store.add_event({
                    "time": now, "kind": "stood_down", "label": "STOOD DOWN by " + actor,
                    "device_id": device_id, "person_ref": device["person_ref"], "incident_id": inc["id"],
                    "incident_kind": inc["kind"], "incident_state": inc["state"], "test": inc["kind"] == S.KIND_TEST,
                    "duress": bool(inc["duress"]),
                })
        return cid
