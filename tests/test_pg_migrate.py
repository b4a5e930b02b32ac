"""`panic receiver migrate --from rx.db --to postgresql://...`: a pilot's
SQLite store moved whole into PostgreSQL (issue 19): ids, raw frames,
events, audit, forward queue and sealed keys kept; the receiver then goes
on where it stopped; a target that holds anything is refused and left as
it was."""

import os

from protocol import frame as F
from receiver import core, locations, masterkey
from receiver import store as S
from receiver.forward import config as C
from recv_helpers import T0, Dev
from tools.cli import main

MK = masterkey.MasterKey(os.urandom(32))


def run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def pilot(path):
    """A SQLite store that has been used: devices (one retired), alerts,
    tracks, a duress, a stand-down, a command waiting, forward rows."""
    st = S.open_store(path, MK, clock=lambda: T0)
    a, b, c = Dev(11), Dev(12), Dev(13)
    for d in (a, b, c):
        st.add_device(d.id, d.key, "URN %d" % d.id, actor="migration test")
    st.add_forward_target("arc", "dc09", C.to_json(C.check({"kind": "dc09", "paths": ["127.0.0.1:9"], "account": "1234"})))
    rx = core.Receiver(st, clock=lambda: T0 + 1)
    for raw in [a.frame(F.ALERT), a.frame(F.TRACK), b.frame(F.ALERT), b.frame(F.CANCEL, duress=True), c.frame(F.HEARTBEAT)]:
        assert rx.handle_frame(raw)
    core.operator_command(st, 11, S.CMD_STAND_DOWN, actor="desk 1", clock=lambda: T0 + 2)
    core.operator_command(st, 12, S.CMD_TRACK, 30, actor="desk 2", clock=lambda: T0 + 3)
    st.retire_device(13, actor="migration test")
    cells = st.begin_location_set("cell", "OpenCellID", "CC BY-SA 4.0", "cells.csv")
    with st.transaction():
        st.insert_cells([(234, 15, 6699, 30125732, "LTE", cells, 515000000, -1250000, 800, 12, 1700000000)])
    st.activate_location_set(cells, 1, 0)
    aps = st.begin_location_set("wifi", "survey", None, "aps.csv")
    with st.transaction():
        st.insert_wifi_aps([(0x0242AC110002, aps, 515010000, -1251000, 40, 1700000000)])
    st.activate_location_set(aps, 1, 0)
    # the console's tables: an operator, a session, a claimed incident with a note and an escalation
    st.user_add("alice", "operator", "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA", actor="migration test")
    st.session_create("f" * 64, "alice", "csrf", T0 + 4, peer="127.0.0.1")
    inc = st.incidents()[0]["id"]
    st.claim_and_record(inc, "alice", peer="127.0.0.1")
    st.add_note(inc, "alice", "called back", peer="127.0.0.1")
    st.escalate(inc, "alice", "Met Police", "CAD 1234", peer="127.0.0.1")
    st.set_device_firmware(11, "1.2.0", actor="migration test")
    return st, (a, b, c)


def table(st, name):
    rows = st._x("SELECT * FROM %s ORDER BY 1" % name).fetchall()
    return [{k: v for k, v in r.items() if k != "tx"} for r in rows]


TABLES = ("meta", "devices", "frames", "incidents", "replay", "commands", "events", "audit", "forward_targets",
          "forward_queue", "location_sets", "cells", "wifi_aps", "users", "sessions", "handling", "incident_actions",
          "escalations", "device_info")


def test_a_used_sqlite_store_is_copied_whole_and_the_receiver_goes_on_from_it(tmp_path, capsys, pg_databases):
    src = str(tmp_path / "rx.db")
    st, (a, b, c) = pilot(src)
    before = {t: table(st, t) for t in TABLES}
    st.close()
    url = pg_databases.new(empty=True)
    rc, out, err = run(capsys, "receiver", "migrate", "--from", src, "--to", url)
    assert rc == 0, err
    assert "migrated %d table(s), 5 frame(s), " % len(TABLES) in out and "verified" in out
    pg = S.open_store(url, MK, clock=lambda: T0 + 10)
    for t in TABLES:
        assert table(pg, t) == before[t], t
    assert all(before[t] for t in TABLES if t != "meta")  # every table had rows to copy
    assert pg.device_key(11) == a.key  # sealed under the same master key
    loc = locations.Locator(pg)  # the location database came over, and answers
    assert loc.cell(234, 15, 6699, 30125732)[:3] == (515000000, -1250000, 800)
    rx = core.Receiver(pg, clock=lambda: T0 + 10)
    again = rx.handle_frames([(before["frames"][0]["raw"], "tcp", "retry")])[0]
    assert again.status == core.DUPLICATE_S and again.replies  # the window came over
    ack = b.ack(rx.handle_frame(b.frame(F.TRACK))[0])
    assert ack.body.command(F.C_TRACKING) == (True, 30)  # the waiting command rides on the next ACK
    new = pg.frames(12)[-1]
    assert new["id"] > max(f["id"] for f in before["frames"])
    assert pg.events_after(0)[-1]["event_id"] > max(e["id"] for e in before["events"])
    assert rx.handle_frame(c.frame(F.ALERT)) == [] and rx.counters["retired device"] == 1


def test_a_target_that_holds_anything_is_refused_and_left_as_it_was(tmp_path, capsys, pg_databases):
    src = str(tmp_path / "rx.db")
    pilot(src)[0].close()
    url = pg_databases.new()
    other = S.open_store(url, MK)
    d = Dev(99)
    other.add_device(99, d.key, "URN 99")
    other.close()
    rc, out, err = run(capsys, "receiver", "migrate", "--from", src, "--to", url)
    assert rc == 2 and "is not empty (table" in err
    pg = S.open_store(url, MK)
    assert [r["device_id"] for r in pg.list_devices()] == [99] and pg.count_frames() == 0
    rc, out, err = run(capsys, "receiver", "migrate", "--from", url, "--to", url)
    assert rc == 2 and "--from must be a SQLite store" in err
    rc, out, err = run(capsys, "receiver", "migrate", "--from", str(tmp_path / "absent.db"), "--to", url)
    assert rc == 3 and "no store" in err


def test_the_url_password_never_appears_in_an_error(tmp_path, capsys, pg_server):
    src = str(tmp_path / "rx.db")
    pilot(src)[0].close()
    url = "postgresql://postgres:s3cret-pass@127.0.0.1:%d/no_such_db" % pg_server.port
    rc, out, err = run(capsys, "receiver", "migrate", "--from", src, "--to", url)
    assert rc == 3 and "s3cret" not in err + out and "***" in err
    rc, out, err = run(capsys, "receiver", "device", "list", "--db", url)
    assert rc == 3 and "s3cret" not in err + out


def test_a_copy_that_differs_is_rolled_back_whole(tmp_path, capsys, pg_databases, pg_server):
    """A copy whose rows came out different (here a trigger in the target
    flips a byte of every raw frame: the counts still match) is found by
    the evidence check and rolled back: the target stays empty."""
    src = str(tmp_path / "rx.db")
    pilot(src)[0].close()
    url = pg_databases.new()
    name = url.rpartition("/")[2]
    pg_server.sql("CREATE FUNCTION spoil() RETURNS trigger AS $$ BEGIN NEW.raw := set_byte(NEW.raw, 0, 255); "
                  "RETURN NEW; END $$ LANGUAGE plpgsql", name)
    pg_server.sql("CREATE TRIGGER spoil BEFORE INSERT ON frames FOR EACH ROW EXECUTE FUNCTION spoil()", name)
    rc, out, err = run(capsys, "receiver", "migrate", "--from", src, "--to", url)
    assert rc == 2 and "frames" in err and "rolled back" in err
    pg = S.open_store(url, MK)
    assert pg.count_frames() == 0 and pg.list_devices() == [] and pg.events_after(0) == []
