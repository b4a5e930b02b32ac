"""`panic receiver ...` as an operator and a provisioning tool use it:
registry, SMS intake, commands, the live view and its JSON feed. Keys never
appear in any output; errors are one line with the exit code of the one
convention (1 refused, 2 usage, 3 something cannot be opened)."""

import json
import os
import stat

from protocol import frame as F
from protocol import sms
from receiver import masterkey
from recv_helpers import Dev, store_path
from tools.cli import main

MK = "ab" * 32


def run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_registry_sms_command_and_watch(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(masterkey.ENV, MK)
    db = store_path(tmp_path, "r.db")
    keyf = str(tmp_path / "dev.key")
    rc, out, err = run(capsys, "receiver", "device", "add", "--db", db, "--device-id", "1001", "--generate-key", keyf,
                       "--person-ref", "URN 01/1234/26")
    assert rc == 0 and "1001" in out
    assert stat.S_IMODE(os.stat(keyf).st_mode) == 0o600
    key_hex = open(keyf).read().strip()
    assert len(key_hex) == 64
    # a duplicate id is refused
    rc, out, err = run(capsys, "receiver", "device", "add", "--db", db, "--device-id", "1001", "--key-file", keyf,
                       "--person-ref", "URN 02/2222/26")
    assert rc == 1 and "already registered" in err
    d = Dev(1001, bytes.fromhex(key_hex))
    text = sms.text_of(d.frame(F.ALERT))
    rc, out, err = run(capsys, "receiver", "sms", "--db", db, "--from", "+447700900123", "--text", text)
    res = json.loads(out)
    assert rc == 0 and res["status"] == "accepted" and d.ack(sms.from_sms(res["reply"])).body.acked_seq == 1
    rc, out, err = run(capsys, "receiver", "sms", "--db", db, "--from", "+447700900123", "--text", "PNC1 AAAA")
    assert rc == 1 and json.loads(out)["status"] == "rejected"
    rc, out, err = run(capsys, "receiver", "command", "--db", db, "--device", "1001", "--track", "20")
    assert rc == 0 and "queued track" in out
    duress = sms.text_of(d.frame(F.CANCEL, duress=True, source=F.SRC_NONE))
    rc, out, err = run(capsys, "receiver", "sms", "--db", db, "--from", "+447700900123", "--text", duress)
    assert rc == 0 and d.ack(sms.from_sms(json.loads(out)["reply"])).body.command(F.C_TRACKING) == (True, 20)
    feed = str(tmp_path / "events.jsonl")
    rc, out, err = run(capsys, "receiver", "watch", "--db", db, "--once", "--from-start", "--events", feed)
    assert rc == 0
    lines = out.splitlines()
    assert any(line.split()[2] == "ALERT" for line in lines)
    duress_lines = [line for line in lines if "DURESS" in line]
    assert duress_lines and not any("CANCEL" in line for line in duress_lines)
    assert "openstreetmap.org/?mlat=51.5007292&mlon=-0.1246254" in out and "URN 01/1234/26" in out
    events = [json.loads(x) for x in open(feed)]
    assert [e["kind"] for e in events] == ["alert", "duress"]
    rc, out, err = run(capsys, "receiver", "watch", "--db", db, "--once")
    assert "open incidents: 1" in out and "DURESS" in out
    rc, out, err = run(capsys, "receiver", "device", "show", "--db", db, "--device-id", "1001")
    assert rc == 0 and "DURESS" in out
    rc, out, err = run(capsys, "receiver", "device", "retire", "--db", db, "--device-id", "1001")
    assert rc == 0 and "retired" in out
    rc, out, err = run(capsys, "receiver", "device", "list", "--db", db, "--json")
    assert json.loads(out)[0]["status"] == "retired"
    rc, out, err = run(capsys, "receiver", "sms", "--db", db, "--from", "+44", "--text", sms.text_of(d.frame(F.TRACK)))
    assert rc == 1 and json.loads(out)["reason"] == "retired device"
    # keys never printed anywhere
    for argv in (("device", "list", "--db", db), ("device", "list", "--db", db, "--json"),
                 ("device", "show", "--db", db, "--device-id", "1001", "--json")):
        rc, out, err = run(capsys, "receiver", *argv)
        assert key_hex not in out + err and key_hex.upper() not in out + err and MK not in out + err


def test_missing_or_wrong_master_key_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(masterkey.ENV, raising=False)
    db = store_path(tmp_path, "r.db")
    rc, out, err = run(capsys, "receiver", "device", "add", "--db", db, "--device-id", "1", "--generate-key",
                       str(tmp_path / "k"), "--person-ref", "URN-2026-0001")
    assert rc == 3 and masterkey.ENV in err and "--master-key-file" in err
    assert not os.path.exists(tmp_path / "k")
    mkf = str(tmp_path / "mk")
    rc, out, err = run(capsys, "receiver", "master-key", "--out", mkf)
    assert rc == 0 and stat.S_IMODE(os.stat(mkf).st_mode) == 0o600 and open(mkf).read().strip() not in out
    rc, out, err = run(capsys, "receiver", "device", "add", "--db", db, "--master-key-file", mkf, "--device-id", "1",
                       "--generate-key", str(tmp_path / "k"), "--person-ref", "URN-2026-0001")
    assert rc == 0
    monkeypatch.setenv(masterkey.ENV, "cd" * 32)
    rc, out, err = run(capsys, "receiver", "sms", "--db", db, "--from", "1", "--text", "PNC1 AAAA")
    assert rc == 3 and "does not match" in err
    monkeypatch.setenv(masterkey.ENV, "nothex")
    rc, out, err = run(capsys, "receiver", "sms", "--db", db, "--from", "1", "--text", "PNC1 AAAA")
    assert rc == 2 and "not hex" in err and "nothex" not in err
    rc, out, err = run(capsys, "receiver", "command", "--db", db, "--device", "9", "--listen-in")
    assert rc == 1 and "not registered" in err
    rc, out, err = run(capsys, "receiver", "watch", "--db", store_path(tmp_path, "nope.db", exists=False), "--once")
    assert rc == 3 and "no store" in err and not os.path.exists(tmp_path / "nope.db")
