"""The console's store section and rules without a server: schema 5 and
its migration (from 3 and from 4), claims between two connections, outcomes and re-opening,
accounts (argon2id, lockout), queue order, statistics against BS 8484's
marks, the live feed's coalescing, and the Leaflet copy's checksums."""

import hashlib
import os
import threading

import pytest

from protocol import frame as F
from receiver import core, masterkey, users
from receiver import store as S
from receiver import store_console as SC
from receiver.console import live, views
from receiver.watch import format_event

from recv_helpers import T0, Dev, older_store, store_path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MK = masterkey.MasterKey(b"\x07" * 32)
PW = "correct horse battery staple"


class Clock:
    def __init__(self, t=T0):
        self.t = t

    def __call__(self):
        return self.t


def setup(tmp_path, n=1, clock=None):
    clock = clock or Clock()
    st = S.open_store(store_path(tmp_path, "rx.db"), MK, clock=clock)
    devs = [Dev(1000 + i) for i in range(n)]
    for d in devs:
        st.add_device(d.id, d.key, "URN-%d/26" % d.id)
    rx = core.Receiver(st, clock=clock)
    return st, rx, devs, clock


def alert(rx, d, ftype=F.ALERT, **kw):
    rep = dict(source=F.SRC_GNSS, lat=515007292, lon=-1246254, accuracy=8, age=2, battery=70, csq=18)
    rep.update(kw)
    out = rx.handle_frames([(d.frame(ftype, t=T0, **rep), "tcp", "1.2.3.4")])[0]
    assert out.status == core.ACCEPTED, out
    return out.incident_id


@pytest.mark.parametrize("version", [3, 4])
@pytest.mark.sqlite_only  # a SQLite schema migration
def test_migration_from_an_older_version_keeps_rows_and_adds_the_console_tables(tmp_path, version):
    """3 -> 4 -> 5 and 4 -> 5: every row kept, the console's tables empty,
    the old incident in the queue unclaimed."""
    d = Dev(7)
    old = older_store(tmp_path, MK, version, d, [d.frame(F.ALERT)])
    audit = [dict(r) for r in old.audit_log()]
    incidents = [dict(r) for r in old._x("SELECT * FROM incidents ORDER BY id").fetchall()]
    assert old.schema_version() == version and audit and incidents
    path = old.path
    old.close()
    st = S.open_store(path, MK)
    assert st.schema_version() == len(S.MIGRATIONS) == 5
    assert [{k: r[k] for k in a} for r, a in zip(st.audit_log(), audit, strict=True)] == audit
    assert all(r["peer"] is None and r["incident_id"] is None for r in st.audit_log())
    assert [{k: r[k] for k in incidents[0]} for r in st.incidents()] == incidents
    (inc,) = st.console_queue(0)
    assert inc["owner"] is None and inc["outcome"] is None and inc["person_ref"] == "URN 7"
    assert st.users() == []


def test_two_connections_claiming_at_once_exactly_one_wins(tmp_path):
    st, rx, devs, _ = setup(tmp_path, n=12)
    ids = [alert(rx, d) for d in devs]
    a = S.open_store(st.path, None)
    b = S.open_store(st.path, None)
    results = {}

    def claim(store, who, iid, barrier):
        barrier.wait()
        results[(who, iid)] = store.claim_and_record(iid, who, peer="10.0.0.%d" % len(who))

    for iid in ids:
        bar = threading.Barrier(2)
        ts = [threading.Thread(target=claim, args=(a, "alice", iid, bar)),
              threading.Thread(target=claim, args=(b, "bob", iid, bar))]
        for t in ts:
            t.start()
        for t in ts:
            t.join(20)
        ra, rb = results[("alice", iid)], results[("bob", iid)]
        assert [ra[0], rb[0]].count(True) == 1, (ra, rb)
        winner = "alice" if ra[0] else "bob"
        assert ra[1] == rb[1] == winner  # the loser is told who has it
        assert st.console_incident(iid)["owner"] == winner
        acts = st.incident_actions(iid)
        assert [(x["action"], x["actor"]) for x in acts] == [("claimed", winner)]
    a.close()
    b.close()


def test_outcome_reopen_keep_history_and_a_second_close_is_refused(tmp_path):
    st, rx, (d,), clock = setup(tmp_path)
    iid = alert(rx, d)
    assert st.claim_and_record(iid, "alice")[0]
    clock.t += 5
    st.escalate(iid, "alice", "Metropolitan Police", "CAD 1234/26")
    st.close_incident(iid, "alice", "false_accidental", note="pocket press")
    with pytest.raises(SC.Conflict):
        st.close_incident(iid, "bob", "genuine")
    assert st.console_queue(0) == []
    st.reopen_incident(iid, "sue", "the person called back: it was real")
    inc = st.console_incident(iid)
    assert inc["outcome"] is None and inc["reopened"] == 1 and inc["escalations"] == 1
    st.close_incident(iid, "sue", "genuine")
    acts = [(x["action"], x["actor"], x["detail"]) for x in st.incident_actions(iid)]
    assert acts == [("claimed", "alice", None), ("escalated", "alice", "Metropolitan Police, reference CAD 1234/26"),
                    ("closed", "alice", "false_accidental: pocket press"),
                    ("reopened", "sue", "was false_accidental; the person called back: it was real"),
                    ("closed", "sue", "genuine")]
    with pytest.raises(S.ReceiverError):
        st.close_incident(iid, "sue", "not an outcome")
    # every action is in the audit (who, what, which incident) and in the feed, which `watch` prints
    audit = [r for r in st.audit_log() if r["incident_id"] == iid]
    assert [r["action"] for r in audit] == ["claimed", "escalated", "closed", "reopened", "closed"]
    assert all(r["actor"].startswith(("alice", "sue")) for r in audit)
    feed = [e for e in st.events_after(0) if e.get("actor")]
    assert format_event(feed[0]).split("  ")[1].startswith("CLAIMED by alice")
    assert "ESCALATED to Metropolitan Police by alice" in format_event(feed[1])


def test_queue_order_duress_alert_track_only_closed_then_test(tmp_path):
    st, rx, devs, clock = setup(tmp_path, n=5)
    test_id = alert(rx, devs[0], F.TEST)
    clock.t += 1
    track_id = alert(rx, devs[1], F.TRACK)
    clock.t += 1
    old_alert = alert(rx, devs[2])
    clock.t += 1
    cancelled = alert(rx, devs[3])
    rx.handle_frame(devs[3].frame(F.CANCEL))
    clock.t += 1
    duress = alert(rx, devs[4])
    rx.handle_frame(devs[4].frame(F.CANCEL, source=F.SRC_GNSS, lat=515007292, lon=-1246254, duress=True))
    order = [r["id"] for r in views.order_queue(st.console_queue(0))]
    assert order == [duress, old_alert, track_id, cancelled, test_id]
    words = {r["id"]: views.headline(r) for r in st.console_queue(0)}
    assert words[duress] == "DURESS" and words[test_id] == "TEST" and words[cancelled] == "CANCELLED by user"
    assert words[track_id] == "ALERT (track only)"


def test_statistics_count_claims_against_the_10_and_40_second_marks(tmp_path):
    st, rx, devs, clock = setup(tmp_path, n=6)
    delays = [3, 9, 10, 25, 41, 200]
    for d, delay in zip(devs, delays):
        clock.t = T0
        iid = alert(rx, d)
        clock.t = T0 + delay
        st.claim_and_record(iid, "alice")
        clock.t = T0 + delay + 60
        st.close_incident(iid, "alice", "genuine" if delay < 40 else "false_malicious")
    (m,) = views.statistics_by_month(st.stats_rows(0))
    assert m["alarms"] == 6 and m["claimed"] == 6
    assert m["outcomes"]["genuine"] == 4 and m["outcomes"]["false_malicious"] == 2
    assert [(k["within"], k["met"]) for k in m["marks"]] == [(3, False), (4, False)]
    assert m["claim_median_s"] == 17.5 and m["handling_median_s"] == 17.5 + 60
    csv = views.statistics_csv([m]).splitlines()
    assert csv[0].startswith("month,alarms,tests,duress,outcome genuine")
    assert csv[1].split(",")[:5] == [m["month"], "6", "0", "0", "4"]
    # two false alarms for one person: warn; three: the police may withdraw
    assert views.false_alarm_level(2) == "warn" and views.false_alarm_level(3) == "danger"
    assert views.false_alarm_level(1) == ""
    assert st.false_alarm_counts(0) == {"URN-1004/26": 1, "URN-1005/26": 1}


def test_accounts_argon2id_lockout_disable_and_the_rules(tmp_path):
    st, _rx, _devs, clock = setup(tmp_path)
    users.add(st, "alice", "operator", PW, actor="test")
    h = st.user_hash("alice")
    assert h.startswith("$argon2id$v=19$m=65536,t=3,p=4$") and PW not in h
    assert users.login(st, "alice", PW, clock.t)[0] == users.OK
    assert users.login(st, "nobody", PW, clock.t) == (users.BAD, None)
    for _ in range(users.LOCKOUT_FAILURES - 1):
        assert users.login(st, "alice", "wrong password!!", clock.t)[0] == users.BAD
    assert users.login(st, "alice", "wrong password!!", clock.t)[0] == users.LOCKED
    assert users.login(st, "alice", PW, clock.t)[0] == users.LOCKED  # the right password does not open it
    assert users.login(st, "alice", PW, clock.t + users.LOCKOUT_S + 1)[0] == users.OK
    st.session_create("h1", "alice", "c", clock.t)
    users.set_password(st, "alice", "another long passphrase")
    assert st.session_get("h1") is None  # a new password ends the sessions
    st.session_create("h2", "alice", "c", clock.t)
    assert st.user_set_disabled("alice", True) and st.session_get("h2") is None
    assert users.login(st, "alice", "another long passphrase", clock.t)[0] == users.DISABLED
    for bad in (("", "operator", PW), ("al ice", "operator", PW), ("bob", "root", PW), ("bob", "operator", "short"),
                ("bob", "operator", "bob's long password"), ("bob", "operator", "aaaaaaaaaaaaaaaa")):
        with pytest.raises(users.UserError):
            users.add(st, *bad)
    with pytest.raises(SC.DuplicateUser):
        users.add(st, "alice", "admin", PW)
    assert users.may("admin", "supervisor") and users.may("supervisor", "operator")
    assert not users.may("operator", "supervisor") and not users.may("supervisor", "admin")
    assert not users.may("root", "operator")
    actions = [r["action"] for r in st.audit_log()]
    assert actions.count("login failed") == users.LOCKOUT_FAILURES and "user passwd" in actions


def test_live_feed_coalesces_tracks_per_incident_and_keeps_the_rest():
    rows = [(1, "alert", 5, '{"kind":"alert"}'), (2, "track", 5, '{"kind":"track","n":1}'),
            (3, "track", 6, '{"kind":"track","n":2}'), (4, "claimed", 5, '{"kind":"claimed"}'),
            (5, "track", 5, '{"kind":"track","n":3}'), (6, "low_battery", None, '{"kind":"low_battery"}')]
    data, last = live.encode(rows)
    msgs = data.decode().split("\n\n")[:-1]
    assert last == 6
    assert [m.split("\n")[0] for m in msgs] == ["id: 1", "id: 3", "id: 4", "id: 5", "id: 6"]
    assert msgs[3].split("\n")[1] == 'data: {"event_id":5,"kind":"track","n":3}'


def test_the_leaflet_copy_is_the_release_it_names():
    base = os.path.join(ROOT, "receiver", "console", "static", "leaflet")
    lines = open(os.path.join(base, "SHA256SUMS")).read().split("\n")
    sums = [ln.split("  ") for ln in lines if ln.strip()]
    assert {p for _, p in sums} >= {"leaflet.js", "leaflet.css", "LICENSE"}
    for digest, path in sums:
        with open(os.path.join(base, path), "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == digest, path
    assert "BSD 2-Clause" in open(os.path.join(base, "LICENSE")).read()
    assert "Leaflet 1.9.4" in open(os.path.join(base, "leaflet.js")).read(200)
