"""`panic receiver forward add | list | remove | test` as an operator uses
them: against pysiaalarm's receiver, with keys that never show; errors are
one line and exit code 2. An SMS taken by `panic receiver sms` (another
process than `serve`) is queued too."""

import json

from protocol import frame as F
from protocol import sms
from receiver import masterkey
from recv_helpers import Dev, store_path
from test_forward_peers import PysiaArc, free_port
from tools.cli import main

MK = "cd" * 32
KEY = "FEDCBA9876543210"


def run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_add_list_test_remove(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(masterkey.ENV, MK)
    db = store_path(tmp_path, "r.db")
    keyf = tmp_path / "arc.key"
    keyf.write_text(KEY + "\n")
    keyf.chmod(0o600)
    dead = free_port()
    with PysiaArc([{"account": "5678", "key": KEY}]) as arc:
        rc, out, err = run(capsys, "receiver", "device", "add", "--db", db, "--device-id", "7", "--generate-key",
                           str(tmp_path / "d.key"), "--person-ref", "URN 7")
        assert rc == 0
        rc, out, err = run(capsys, "receiver", "forward", "add", "--db", db, "--name", "arc1",
                           "--arc", "127.0.0.1:%d" % arc.port, "--arc", "127.0.0.1:%d" % dead, "--account", "5678",
                           "--receiver", "2", "--key-file", str(keyf), "--key-encoding", "ascii",
                           "--person", "URN 7=7007", "--code", "alert=120::PA")
        assert rc == 0 and "added dc09 target arc1" in out and KEY not in out + err
        rc, out, err = run(capsys, "receiver", "forward", "add", "--db", db, "--name", "map",
                           "--traccar", "http://127.0.0.1:5055/")
        assert rc == 0
        rc, out, err = run(capsys, "receiver", "forward", "list", "--db", db)
        assert rc == 0 and "arc1  dc09" in out and "AES (ascii key)" in out and "next sequence number 0001" in out
        assert "map  traccar  http://127.0.0.1:5055/" in out and KEY not in out
        rc, out, err = run(capsys, "receiver", "forward", "list", "--db", db, "--json")
        t = {x["name"]: x for x in json.loads(out)}
        assert t["arc1"]["config"]["codes"] == {"alert": [120, 1, "PA"]} and t["arc1"]["config"]["persons"] == {
            "URN 7": "7007"}

        rc, out, err = run(capsys, "receiver", "forward", "test", "--db", db, "--name", "arc1", "--timeout", "2")
        assert rc == 1  # the secondary is down: said, not hidden
        lines = out.splitlines()
        assert lines[0] == "601 manual test seq 0001, account 5678, AES-128"
        assert "ACK in" in lines[1] and "receiver time" in lines[1] and "connect:" in lines[2]
        ev = arc.wait_for(lambda e: any(x["code"] == "RX" for x in e))[-1]
        assert (ev["seq"], ev["account"], ev["receiver"], ev["encrypted"]) == ("0001", "5678", "R2", True)
        assert KEY not in out + err

        rc, out, err = run(capsys, "receiver", "forward", "test", "--db", db, "--name", "arc1", "--null",
                           "--timeout", "2")
        assert out.startswith("NULL link test") and "ACK in" in out

        # an SMS taken by another process than serve is queued for the ARC and the map
        d = Dev(7, bytes.fromhex(open(tmp_path / "d.key").read().strip()))
        rc, out, err = run(capsys, "receiver", "sms", "--db", db, "--from", "+4477", "--text",
                           sms.text_of(d.frame(F.ALERT)))
        assert rc == 0
        rc, out, err = run(capsys, "receiver", "forward", "list", "--db", db, "--json")
        assert {x["name"]: x["queue"] for x in json.loads(out)} == {"arc1": {"pending": 1}, "map": {"pending": 1}}
        assert {x["name"]: x["next_seq"] for x in json.loads(out)}["arc1"] == 3  # 0001 test, 0002 the alert

        rc, out, err = run(capsys, "receiver", "forward", "remove", "--db", db, "--name", "arc1")
        assert rc == 2 and "1 undelivered" in err and len(err.strip().splitlines()) == 1
        rc, out, err = run(capsys, "receiver", "forward", "remove", "--db", db, "--name", "arc1", "--drop-pending")
        assert rc == 0 and "1 undelivered message(s) marked refused" in out


def test_bad_settings_are_one_line_errors(tmp_path, capsys):
    db = store_path(tmp_path, "r.db")
    from receiver import store as S

    S.open_store(db).close()
    bad_key = tmp_path / "bad.key"
    bad_key.write_text("0123456789ABCDEF")  # 16 hex digits: ascii encoding only
    cases = [
        (["--arc", "127.0.0.1:9"], "--account"),
        (["--arc", "nohost", "--account", "1234"], "HOST:PORT"),
        (["--arc", "127.0.0.1:9", "--account", "12"], "3 to 16 hex"),
        (["--arc", "127.0.0.1:9", "--account", "1234", "--key-file", str(bad_key)], "32, 48 or 64 hex digits"),
        (["--arc", "127.0.0.1:9", "--account", "1234", "--key-file", str(tmp_path / "none.key")], "cannot read"),
        (["--arc", "127.0.0.1:9", "--account", "1234", "--code", "alert"], "NAME=VALUE"),
        (["--arc", "127.0.0.1:9", "--account", "1234", "--person-field", "zone", "--person", "URN=1000"], "1..999"),
        (["--traccar", "https://x/"], "http://"),
        ([], "--arc"),
    ]
    for extra, want in cases:
        rc, out, err = run(capsys, "receiver", "forward", "add", "--db", db, "--name", "x", *extra)
        assert rc == 2 and want in err and len(err.strip().splitlines()) == 1, (extra, err)
        assert "0123456789ABCDEF" not in err
    rc, out, err = run(capsys, "receiver", "forward", "test", "--db", db, "--name", "nope")
    assert rc == 2 and "no forward target" in err
    rc, out, err = run(capsys, "receiver", "forward", "list", "--db", store_path(tmp_path, "absent.db", exists=False))
    assert rc == 2 and "no store" in err
