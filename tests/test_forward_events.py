"""Which event goes to an ARC as what (receiver/forward/events.py), on the
event dicts the receiver core really makes."""

import os

import pytest

from protocol import frame as F
from receiver import core, masterkey
from receiver import store as S
from receiver.forward import config as C
from receiver.forward import events as E
from recv_helpers import T0, Dev, store_path

GNSS = dict(source=F.SRC_GNSS, lat=515007292, lon=-1246254, accuracy=6, age=3)


def cfg(**kw):
    return C.check(dict({"kind": "dc09", "paths": ["127.0.0.1:9"], "account": "ABC"}, **kw))


def events_of(frames, dev, ref="URN 7", heartbeat=None):
    st = S.open_store(store_path(), masterkey.MasterKey(os.urandom(32)))
    st.add_device(dev.id, dev.key, ref, heartbeat_s=heartbeat)
    rx = core.Receiver(st, clock=lambda: T0 + 5)
    out = []
    for raw in frames:
        for o in rx.handle_frames([(raw, "tcp", "t")]):
            out.extend(o.events)
    return out, rx


def test_the_table_for_every_forwarded_event():
    d = Dev(7)
    evs, rx = events_of([d.frame(F.ALERT, **GNSS), d.frame(F.CANCEL, **GNSS), d.frame(F.ALERT, **GNSS),
                         d.frame(F.CANCEL, duress=True, **GNSS), d.frame(F.HEARTBEAT, battery=5),
                         d.frame(F.HEARTBEAT, battery=90)], d, heartbeat=1)
    evs += rx.tick(T0 + 5000)
    evs += [o for r in rx.handle_frames([(d.frame(F.HEARTBEAT), "tcp", "t")]) for o in r.events]
    c = cfg(format="adm-cid")
    got = [(e["kind"], E.dc09_body(e, c)["data"]) for e in evs]
    assert got == [("alert", "#ABC|1122 00 000"), ("cancel", "#ABC|1406 00 000"), ("alert", "#ABC|1122 00 000"),
                   ("duress", "#ABC|1121 00 000"), ("low_battery", "#ABC|1302 00 000"),
                   ("battery_ok", "#ABC|3302 00 000"), ("device_silent", "#ABC|1350 00 000"),
                   ("device_back", "#ABC|3350 00 000")]
    s = cfg(format="sia-dcs")
    assert [E.dc09_body(e, s)["data"][-6:] for e in evs] == [
        "NPA000", "NOC000", "NPA000", "NHA000", "NYT000", "NYR000", "NYC000", "NYK000"]


def test_duress_is_never_sent_as_a_panic():
    d = Dev(8)
    evs, _ = events_of([d.frame(F.CANCEL, duress=True, **GNSS)], d)
    assert [e["kind"] for e in evs] == ["duress"]
    for fmt in E.FORMATS:
        body = E.dc09_body(evs[0], cfg(format=fmt))
        assert "1121" in body["data"] or "NHA" in body["data"]
        assert "PA" not in body["data"] and "122" not in body["data"]


def test_test_incidents_send_only_the_601_and_never_a_real_code():
    d = Dev(9)
    evs, _ = events_of([d.frame(F.TEST, **GNSS), d.frame(F.CANCEL, test=True, **GNSS),
                        d.frame(F.CANCEL, duress=True, test=True, **GNSS)], d)
    assert [e["kind"] for e in evs] == ["test_alert", "cancel", "duress"] and all(e["test"] for e in evs)
    bodies = [E.dc09_body(e, cfg(format="adm-cid")) for e in evs]
    assert bodies[0]["data"] == "#ABC|1601 00 000" and bodies[1:] == [None, None]
    assert [E.osmand_params(e, {"id_template": "{device_id}"}) for e in evs] == [None, None, None]


def test_tracks_and_repeats_stay_home():
    d = Dev(10)
    evs, _ = events_of([d.frame(F.ALERT, **GNSS), d.frame(F.ALERT, **GNSS), d.frame(F.TRACK, **GNSS)], d)
    assert [e["kind"] for e in evs] == ["alert", "alert_repeat", "track"]
    assert [E.dc09_body(e, cfg()) is None for e in evs] == [False, True, True]


def test_auto_format_located_events_as_sia_dcs_with_location_text_and_link():
    d = Dev(11)
    evs, _ = events_of([d.frame(F.ALERT, **GNSS), d.frame(F.HEARTBEAT, battery=5), d.frame(F.TEST, battery=5)], d)
    c = cfg(verify_url="https://console.example/incidents/{incident_id}?d={device_id}")
    alert, low, test = (E.dc09_body(e, c) for e in evs)
    assert alert["token"] == "SIA-DCS" and alert["ext"][:2] == ["X-0.124625", "Y51.500729"]
    assert alert["ext"][2] == "IALERT device 11 gnss +/-6 m fix 8 s old at %s" % E._hms(T0 + 5)
    assert alert["ext"][3] == "Vhttps://console.example/incidents/1?d=11"
    assert low == {"token": "ADM-CID", "account": "ABC", "data": "#ABC|1302 00 000", "ext": []}  # no incident, no link
    assert test["token"] == "ADM-CID" and test["data"] == "#ABC|1601 00 000" and len(test["ext"]) == 1


@pytest.mark.parametrize("field, value, want", [
    ("account", "1001", "#1001|1122 00 001"),
    ("zone", "17", "#ABC|1122 00 017"),
])
def test_the_person_is_the_account_or_the_zone(field, value, want):
    d = Dev(12)
    evs, _ = events_of([d.frame(F.ALERT)], d, ref="URN 01/12/26")
    c = cfg(format="adm-cid", person_field=field, persons={"URN 01/12/26": value})
    assert E.dc09_body(evs[0], c)["data"] == want
    other = dict(evs[0], person_ref="URN unmapped")
    assert E.dc09_body(other, c)["data"] == "#ABC|1122 00 000"  # still sent, to the default account


def test_code_overrides_and_bad_settings():
    d = Dev(13)
    evs, _ = events_of([d.frame(F.ALERT)], d)
    c = cfg(format="adm-cid", codes={"alert": [120]})
    assert E.dc09_body(evs[0], c)["data"] == "#ABC|1120 00 000"
    for bad in ({"codes": {"nope": [1]}}, {"codes": {"alert": [1200]}}, {"codes": {"alert": [120, 1, "p"]}},
                {"account": "XYZ"}, {"paths": []}, {"paths": ["host"]}, {"format": "cid"},
                {"persons": {"a": "12G"}}, {"person_field": "zone", "persons": {"a": "0"}},
                {"verify_url": "https://x/{nope}"}, {"verify_url": "https://x/[1]"}, {"poll_s": 0},
                {"key_encoding": "hex"}):
        with pytest.raises(C.ConfigError):
            cfg(**bad)


def test_osmand_parameters_as_traccar_reads_them():
    d = Dev(14)
    evs, _ = events_of([d.frame(F.ALERT, battery=55, **GNSS), d.frame(F.TRACK, **GNSS),
                        d.frame(F.HEARTBEAT, battery=5)], d)
    m = {"id_template": "panic-{device_id}"}
    alert, track, low = (dict(E.osmand_params(e, m)) for e in evs)
    assert alert == {"id": "panic-14", "lat": "51.5007292", "lon": "-0.1246254", "accuracy": "6", "valid": "true",
                     "timestamp": str(T0 - 3), "batt": "55", "alarm": "sos", "event": "alert", "incident": "1"}
    assert "alarm" not in track and track["event"] == "track"
    assert low["alarm"] == "lowBattery" and "lat" not in low and low["timestamp"] == str(T0 + 5)
