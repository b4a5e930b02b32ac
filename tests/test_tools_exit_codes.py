"""One exit-code convention for every `panic` command (tools/errors.py,
docs/tools.md): 0 done, 1 the answer is no, 2 usage, 3 something needed
cannot be reached or opened; and errors a newcomer understands, one line
each, naming the field, the file or the port (issue 15)."""

import json
import os

import pytest

from tools import cli

EXIT_REFUSED, EXIT_USAGE, EXIT_UNAVAILABLE = 1, 2, 3  # tools/errors.py, written out: the convention is the contract

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEY = "ab" * 32
SCENARIO = os.path.join(ROOT, "host_sim", "scenarios", "walk_home_indoor_attack.toml")


def run(capsys, argv):
    try:
        rc = cli.main(argv)
    except SystemExit as e:  # argparse
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


def encode(capsys, frame):
    return run(capsys, ["frame", "encode", "--key-hex", KEY, "--json", json.dumps(frame)])


ALERT = {"type": "ALERT", "device_id": 1001, "seq": 1}


@pytest.mark.parametrize("extra,says", [
    ({"battery": "full"}, '"battery" must be a whole number from 0 to 100 (or null for unknown), got "full"'),
    ({"device_id": "abc"}, '"device_id" must be a whole number from 0 to 4294967295, got "abc"'),
    ({"seq": -1}, '"seq" must be a whole number from 0 to 4294967295, got -1'),
    ({"lat": 51.5, "lon": -0.12}, 'lat/lon given without a position source: add "source": "gnss"'),
    ({"lat_e7": 515000000, "source": "none"}, "lat_e7 given without a position source"),
    ({"duress": "yes"}, '"duress" must be true or false, got "yes"'),
    ({"source": "gps"}, '"source" must be one of none, gnss, last_fix, cell, wifi, got "gps"'),
    ({"tlvs": [{"tlv": "cell", "mcc": 234}]}, 'tlvs[0] (cell) needs "mnc"'),
    ({"tlvs": [{"tlv": "gnss", "sats": 9, "hdop_x10": 1000}]}, 'tlvs[0] "hdop_x10" must be a whole number from 0 to 255'),
    ({"csq": 40}, '"csq" must be a whole number from 0 to 31'),
])
def test_frame_encode_names_the_field_and_what_it_must_be(capsys, extra, says):
    rc, out, err = encode(capsys, dict(ALERT, **extra))
    assert rc == EXIT_USAGE and out == ""
    assert err == "panic: %s\n" % says or (err.startswith("panic: " + says) and err.count("\n") == 1), err
    assert "Traceback" not in err and "'<'" not in err and "out of range" not in err


def test_frame_encode_still_encodes_what_decode_prints(capsys):
    rc, out, err = encode(capsys, dict(ALERT, source="gnss", lat=51.5, lon=-0.12, battery=None, csq=None))
    assert rc == 0, err
    hexframe = out.strip()
    rc, out, err = run(capsys, ["frame", "decode", "--key-hex", KEY, "--hex", hexframe])
    assert rc == 0
    rc, out2, err = encode(capsys, json.loads(out))  # decode's own output encodes back, byte for byte
    assert rc == 0 and out2.strip() == hexframe


def test_sim_run_on_a_folder_and_a_report_nowhere_say_what_is_wrong(capsys):
    folder = os.path.join(ROOT, "host_sim", "scenarios") + os.sep
    rc, out, err = run(capsys, ["sim", "run", folder])
    assert rc == EXIT_USAGE and err.startswith("panic: %s is a folder: give one scenario file" % folder)
    assert "walk_home_indoor_attack.toml" in err or "..." in err
    rc, out, err = run(capsys, ["sim", "run", SCENARIO, "--report", "/nonexistent/x.html"])
    assert rc == EXIT_UNAVAILABLE and err == "panic: cannot write /nonexistent/x.html: folder /nonexistent does not exist\n"
    assert out == ""  # said before the run, not after it
    rc, out, err = run(capsys, ["sim", "run", "/nonexistent/walk.toml"])
    assert rc == EXIT_UNAVAILABLE and err.startswith("panic: cannot read scenario /nonexistent/walk.toml: ")


@pytest.mark.parametrize("opt,value,says", [
    ("--latency", "-5", "argument --latency: must be at least 0 milliseconds, got -5"),
    ("--jitter", "-1", "argument --jitter: must be at least 0 milliseconds"),
    ("--loss", "1.5", "argument --loss: must be from 0.0 to 1.0, got 1.5"),
    ("--loss", "nan", "argument --loss: must be from 0.0 to 1.0, got nan"),
    ("--limit", "0", "argument --limit: must be at least 1 seconds"),
    ("--latency", "soon", "argument --latency: not a whole number of milliseconds: 'soon'"),
])
def test_modem_refuses_impossible_network_settings(capsys, opt, value, says):
    rc, out, err = run(capsys, ["modem", opt, value])
    assert rc == EXIT_USAGE and says in err


MISSING = "/dev/does-not-exist"


@pytest.mark.parametrize("argv", [
    ["flash", "--port", MISSING, "--quiet", "--march", ""],
    ["flash", "--port", MISSING, "--check"],
    ["field", "selftest", "--port", MISSING, "--engineer-key", "{key}"],
    ["field", "console", "--port", MISSING, "--engineer-key", "{key}"],
    ["provision", "--port", MISSING, "--device-id", "5", "--receiver", "arc.example.org:7700", "--sms-number",
     "+447700900123", "--listen-number", "+447700900456", "--apn", "internet", "--person-ref", "URN-2026-0005",
     "--db", "{db}", "--master-key-file", "{mk}", "--engineer-key-out", "{ek}"],
])
def test_a_missing_port_is_exit_3_for_every_command(tmp_path, capsys, argv):
    """`flash` said 1 and `selftest` 2 for the same missing port."""
    key = tmp_path / "eng.key"
    key.write_text(KEY)
    mk = tmp_path / "mk"
    mk.write_text("cd" * 32)
    mk.chmod(0o600)
    argv = [a.format(key=key, db=tmp_path / "rx.db", mk=mk, ek=tmp_path / "ek.key") for a in argv]
    rc, out, err = run(capsys, argv)
    assert rc == EXIT_UNAVAILABLE, err
    assert "cannot open port %s" % MISSING in err and err.count("\n") == 1


def test_each_kind_of_outcome_has_its_code(tmp_path, capsys, monkeypatch):
    from protocol import frame as F
    from protocol.crypto import DeviceKeys

    raw = F.encode(DeviceKeys(bytes.fromhex(KEY)), F.Frame(F.ALERT, 1, 1, 0, F.Report()))
    assert run(capsys, ["frame", "decode", "--key-hex", KEY, "--hex", raw.hex()])[0] == 0
    rc, out, err = run(capsys, ["frame", "decode", "--key-hex", "cd" * 32, "--hex", raw.hex()])
    assert rc == EXIT_REFUSED and err.startswith("rejected: bad tag")  # the check failed
    rc, out, err = run(capsys, ["frame", "decode", "--key-file", str(tmp_path / "none.key"), "--hex", raw.hex()])
    assert rc == EXIT_UNAVAILABLE and str(tmp_path / "none.key") in err
    rc, out, err = run(capsys, ["frame", "decode", "--hex", raw.hex()])
    assert rc == EXIT_USAGE and "a device key is needed" in err
    rc, out, err = run(capsys, ["frame", "decode"])  # argparse: still usage
    assert rc == EXIT_USAGE
    monkeypatch.setenv("PANIC_RECEIVER_KEY", "cd" * 32)
    db = str(tmp_path / "rx.db")
    kf = str(tmp_path / "k")
    assert run(capsys, ["receiver", "device", "add", "--db", db, "--device-id", "1", "--generate-key", kf,
                        "--person-ref", "URN-2026-0001"])[0] == 0
    rc, out, err = run(capsys, ["receiver", "device", "add", "--db", db, "--device-id", "1", "--key-file", kf,
                                "--person-ref", "URN-2026-0001"])
    assert rc == EXIT_REFUSED and "already registered" in err
    rc, out, err = run(capsys, ["receiver", "device", "show", "--db", db, "--device-id", "2"])
    assert rc == EXIT_REFUSED and "not registered" in err
    rc, out, err = run(capsys, ["receiver", "device", "list", "--db", str(tmp_path / "nope.db")])
    assert rc == EXIT_UNAVAILABLE and "no store" in err
    rc, out, err = run(capsys, ["receiver", "sms", "--db", db, "--from", "+447700900123", "--text", "PNC1 AAAA"])
    assert rc == EXIT_REFUSED and json.loads(out)["status"] == "rejected"
    rc, out, err = run(capsys, ["receiver", "master-key", "--out", kf])
    assert rc == EXIT_REFUSED and "refusing to overwrite" in err
    rc, out, err = run(capsys, ["receiver", "master-key", "--out", str(tmp_path / "no" / "such" / "dir")])
    assert rc == EXIT_UNAVAILABLE and "cannot create" in err
    rc, out, err = run(capsys, ["receiver", "serve", "--db", db, "--listen", "127.0.0.1:0", "--auth-deadline", "-1"])
    assert rc == EXIT_USAGE and "argument --auth-deadline: must be at least 0.001 seconds, got -1" in err
