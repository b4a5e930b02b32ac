"""Which receiver events go to an alarm-receiving centre, with which code,
in which DC-09 format, and what goes to a Traccar map.

Owns: the event -> code table, the format choice, the person mapping and
the OsmAnd parameters. Pure functions over the event dicts core.py makes;
no I/O. Must stay in sync with: core.py's event kinds, docs/arc.md (the
mapping table and its sources), tests/test_forward_events.py.

The table (Contact ID codes per SIA DC-05 as used by ARC software; the
SIA DC-03 two-letter codes as pysiaalarm's ADM_MAPPING converts them, with
the one deliberate difference noted):

  event          CID  Q  SIA  why
  alert          122  1  PA   the wearer's hidden alarm is silent: 122
                              "silent panic" tells the operator that
                              nothing sounded and a call back to the
                              wearer could reveal the device. SIA: PA
                              "panic alarm" (pysiaalarm's table gives
                              122 -> HA; we keep HA for duress alone, so
                              a SIA-DCS ARC can never mistake one for the
                              other)
  duress         121  1  HA   duress (a cancel entered under coercion)
  cancel         406  1  OC   cancel by the user (the 400 group: 1 =
                              cancel/opening, user number in the zone
                              field); no 3122 restore is sent: an
                              attack alarm is closed by the ARC's
                              procedure, not by the device
  test_alert     601  1  RX   manual test report
  low_battery    302  1  YT   low system battery
  battery_ok     302  3  YR   ... restored
  device_silent  350  1  YC   communication trouble (the device missed
                              its heartbeat window)
  device_back    350  3  YK   ... restored

Everything else (tracks, alert repeats, status reports, operator
stand-downs) stays in the receiver and its map feed: an ARC has no
"position update" event, and a repeated alarm code would read as a second
alarm. Any event of a *test* incident other than the test alert itself is
never forwarded (a test duress must not reach an ARC as a real 121).

Formats (configurable per target: auto, adm-cid, sia-dcs):
  auto   - an event that carries a position goes as SIA-DCS with [X]
           longitude, [Y] latitude and [I] text (fix source, accuracy,
           age, the event's time); the rest as ADM-CID. The standard
           allows extended blocks after either; SIA-DCS is what receivers
           read with several blocks (pysiaalarm 3.2.2 NAKs an ADM-CID
           message with more than one), and Patriot's DC09 task logs GPS
           fields from any signal. An ADM-CID message carries at most the
           [V] link, so the common receivers read every message.
  adm-cid / sia-dcs - every event in that format, blocks as above.
[V] (a verification link) carries the console's incident page when a URL
template is configured.

The person: each event names the device's person reference. A target
maps it to the DC-09 account ("account" mode: one ARC account per person,
zone 001) or to the zone ("zone" mode: one account for this service, the
person's zone number). An unmapped person goes to the target's default
account with zone 000, and the alarm still goes out.
"""

import time

from receiver.forward import dc09 as D

AUTO = "auto"
FORMATS = (AUTO, "adm-cid", "sia-dcs")
PERSON_ACCOUNT = "account"
PERSON_ZONE = "zone"

# kind -> (Contact ID code, qualifier, SIA code)
CODES = {
    "alert": (122, 1, "PA"),
    "duress": (121, 1, "HA"),
    "cancel": (406, 1, "OC"),
    "test_alert": (601, 1, "RX"),
    "low_battery": (302, 1, "YT"),
    "battery_ok": (302, 3, "YR"),
    "device_silent": (350, 1, "YC"),
    "device_back": (350, 3, "YK"),
}
LOCATED = ("alert", "duress", "cancel", "test_alert")  # kinds whose event carries the incident's position

# Traccar (OsmAnd protocol): what goes to the map, and the alarm it shows
MAP_KINDS = {"alert": "sos", "duress": "sos", "track": None, "cancel": None, "low_battery": "lowBattery"}


def forwardable(ev):
    """True when the event may go to an ARC at all."""
    kind = ev.get("kind")
    if kind not in CODES:
        return False
    return kind == "test_alert" or not (ev.get("test") or ev.get("incident_kind") == "test")


def _clean(s, n=64):
    return "".join(c if " " <= c <= "~" and c not in "[]|" else "?" for c in str(s))[:n]


def _hms(t):
    return time.strftime("%H:%M:%SZ", time.gmtime(t))


def alarm_text(ev, pos):
    """The [I] block: what happened, the fix's source, accuracy and age,
    and the event's time (a queued message may leave minutes later)."""
    parts = [_clean(ev.get("label") or ev["kind"]).upper(), "device %d" % ev["device_id"]]
    if pos:
        parts.append(_clean(pos.get("source") or "?"))
        if pos.get("accuracy_m") is not None:
            parts.append("+/-%d m" % pos["accuracy_m"])
        if pos.get("age_s") is not None:
            parts.append("fix %d s old" % pos["age_s"])
    parts.append("at " + _hms(ev["time"]))
    return " ".join(parts)[:200]


def who(ev, cfg):
    """(account, zone) for the event's person under the target config."""
    ref = ev.get("person_ref")
    mapped = cfg["persons"].get(ref) if ref is not None else None
    if cfg["person_field"] == PERSON_ACCOUNT:
        return (mapped, 1) if mapped else (cfg["account"], 0)
    return cfg["account"], int(mapped) if mapped else 0


def verify_link(ev, template):
    if not template:
        return None
    if "{incident_id}" in template and ev.get("incident_id") is None:
        return None
    return template.format(incident_id=ev.get("incident_id") or "", device_id=ev.get("device_id"), kind=ev.get("kind"))


def dc09_body(ev, cfg):
    """The unchanging part of the DC-09 message for event `ev` under the
    target config `cfg` (see config.py), or None when the event does not
    go to an ARC: {"token", "account", "data", "ext"}."""
    if not forwardable(ev):
        return None
    kind = ev["kind"]
    cid, q, sia = cfg["codes"].get(kind) or CODES[kind]
    acct, zone = who(ev, cfg)
    pos = ev.get("position") if kind in LOCATED else None
    fmt = cfg["format"]
    if fmt == AUTO:
        fmt = "sia-dcs" if pos else "adm-cid"
    ext = []
    if pos:
        ext.append(D.ext_block("X", D.degrees(pos["lon_e7"])))
        ext.append(D.ext_block("Y", D.degrees(pos["lat_e7"])))
        ext.append(D.ext_block("I", alarm_text(ev, pos)))
    elif fmt == "sia-dcs":
        ext.append(D.ext_block("I", alarm_text(ev, None)))
    link = verify_link(ev, cfg.get("verify_url"))
    if link:
        ext.append(D.ext_block("V", link))
    if fmt == "sia-dcs":
        return {"token": D.SIA_DCS, "account": acct, "data": D.sia_dcs(acct, sia, zone), "ext": ext}
    return {"token": D.ADM_CID, "account": acct, "data": D.adm_cid(acct, q, cid, cfg.get("group", 0), zone), "ext": ext}


def osmand_params(ev, cfg):
    """The OsmAnd query parameters (Traccar's OsmAndProtocolDecoder reads
    id, timestamp, lat, lon, accuracy, batt, and keeps any other one, such
    as alarm, as a position attribute) for event `ev`, or None."""
    kind = ev.get("kind")
    if kind not in MAP_KINDS or ev.get("test") or ev.get("incident_kind") == "test":
        return None
    p = [("id", cfg["id_template"].format(device_id=ev["device_id"]))]
    pos = ev.get("position")
    t = ev["time"]
    if pos:
        if pos.get("fix_time") is not None:
            t = pos["fix_time"]
        p.append(("lat", "%.7f" % (pos["lat_e7"] / 1e7)))
        p.append(("lon", "%.7f" % (pos["lon_e7"] / 1e7)))
        if pos.get("accuracy_m") is not None:
            p.append(("accuracy", str(pos["accuracy_m"])))
        p.append(("valid", "true"))
    p.append(("timestamp", str(int(t))))
    if ev.get("battery") is not None:
        p.append(("batt", str(ev["battery"])))
    alarm = MAP_KINDS[kind]
    if alarm:
        p.append(("alarm", alarm))
    p.append(("event", kind))
    if ev.get("incident_id") is not None:
        p.append(("incident", str(ev["incident_id"])))
    return p
