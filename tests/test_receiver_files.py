"""What the receiver keeps on disk and who may read it (issue 15): the
store, its -wal and -shm files and the event feed are private, a store
others can read is refused, a serve that cannot start leaves nothing; one
rule for person references on every path that writes one; the audit names
who really acted."""

import os
import socket
import stat
import subprocess
import sys

import pytest

from receiver import masterkey
from receiver import store as S
from recv_helpers import Dev
from tools import provision as PV
from tools.cli import main
from tools.registry import MemoryRegistry

pytestmark = pytest.mark.sqlite_only  # the SQLite store's files and the key files

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MK = "ab" * 32


def mode(p):
    return stat.S_IMODE(os.stat(p).st_mode)


def run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_the_store_and_its_wal_and_shm_files_are_private(tmp_path):
    db = str(tmp_path / "rx.db")
    old = os.umask(0o022)  # the usual umask, which made them 0644
    try:
        st = S.open_store(db, masterkey.MasterKey(os.urandom(32)))
        st.add_device(1, os.urandom(32), "URN-2026-0001")
        assert os.path.exists(db + "-wal") and os.path.exists(db + "-shm")
        for p in (db, db + "-wal", db + "-shm"):
            assert mode(p) == 0o600, (p, oct(mode(p)))
        st.close()
    finally:
        os.umask(old)


def test_a_store_others_can_read_is_refused_with_the_fix(tmp_path):
    from receiver.errors import Unavailable

    db = str(tmp_path / "rx.db")
    S.open_store(db).close()
    os.chmod(db, 0o644)
    with pytest.raises(Unavailable) as ei:
        S.open_store(db)
    msg = str(ei.value)
    assert "open to other users" in msg and "0644" in msg and "chmod o-rwx %s" % db in msg
    os.chmod(db, 0o640)  # a group given access on purpose is fine
    serving = S.open_store(db)
    serving.audit(None, "a write, so the -wal file exists")
    assert mode(db + "-wal") == 0o640  # SQLite gives the -wal file the database's mode
    os.chmod(db + "-wal", 0o604)  # every file of the store is checked
    with pytest.raises(Unavailable) as ei:
        S.open_store(db)
    assert db + "-wal mode 0604" in str(ei.value)
    serving.close()


def test_a_master_key_file_others_can_read_is_refused(tmp_path):
    p = tmp_path / "mk"
    p.write_text(MK)
    p.chmod(0o644)
    with pytest.raises(masterkey.MasterKeyError) as ei:
        masterkey.load(str(p))
    assert "chmod 600" in str(ei.value) and MK not in str(ei.value)
    p.chmod(0o600)
    masterkey.load(str(p))


def test_a_serve_that_cannot_start_creates_nothing(tmp_path):
    env = dict(os.environ, PANIC_RECEIVER_KEY=MK)
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    cases = [
        (["--listen", "127.0.0.1:%d" % port], 3, "Address already in use"),  # port in use
        (["--listen", "no-such-host.invalid:7700"], 3, "cannot resolve"),
        (["--listen", "127.0.0.1:0", "--http", "127.0.0.1:%d" % port], 3, "Address already in use"),
        (["--listen", "nonsense"], 2, "HOST:PORT"),
        (["--listen", "127.0.0.1:99999"], 2, "HOST:PORT"),
    ]
    try:
        for i, (extra, code, says) in enumerate(cases):
            db = str(tmp_path / ("rx%d.db" % i))
            p = subprocess.run([sys.executable, "-m", "tools", "receiver", "serve", "--db", db] + extra, cwd=ROOT,
                               env=env, capture_output=True, text=True, timeout=30)
            assert p.returncode == code, (extra, p.stderr)
            assert says in p.stderr and p.stderr.count("\n") == 1, p.stderr
            assert not [f for f in os.listdir(tmp_path) if f.startswith("rx%d" % i)], extra
    finally:
        busy.close()


def test_the_event_feed_is_private_and_an_exposed_one_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(masterkey.ENV, MK)
    db = str(tmp_path / "rx.db")
    assert run(capsys, "receiver", "device", "add", "--db", db, "--device-id", "5", "--generate-key",
               str(tmp_path / "k"), "--person-ref", "URN-2026-0005")[0] == 0
    feed = str(tmp_path / "events.jsonl")
    old = os.umask(0o022)
    try:
        assert run(capsys, "receiver", "watch", "--db", db, "--once", "--events", feed)[0] == 0
    finally:
        os.umask(old)
    assert mode(feed) == 0o600
    os.chmod(feed, 0o644)
    rc, out, err = run(capsys, "receiver", "watch", "--db", db, "--once", "--events", feed)
    assert rc == 3 and "readable by other users" in err and "chmod 600" in err


VALID = ["URN-2026-0042", "URN 01/1234/26", "urn:arc:case:A-1001", "CAD 4821 03/12/26", "42/12345/26"]
INVALID = ["Jane Doe", "jane doe", "JANE DOE", "Jane Doe, 12 Acacia Avenue", "12 Acacia Avenue", "12 acacia avenue",
           "Flat 3", "doe", "", "x", "URN  01/1234/26", " URN-1", "URN-2026-0042;", "é-2026-1", "U" * 70 + "1"]


@pytest.mark.parametrize("ref", VALID)
def test_police_reference_styles_are_valid(ref):
    from receiver import personref

    assert personref.problem(ref) is None


@pytest.mark.parametrize("ref", INVALID)
def test_names_addresses_and_junk_are_not_person_references(ref):
    from receiver import personref

    assert personref.problem(ref) is not None
    with pytest.raises(personref.PersonRefError):
        personref.check(ref)


def test_every_path_that_writes_a_person_reference_applies_the_rule(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(masterkey.ENV, MK)
    db = str(tmp_path / "rx.db")
    # device add: the docs' form is taken, a name and street address are not (nothing is written)
    rc, out, err = run(capsys, "receiver", "device", "add", "--db", db, "--device-id", "7", "--generate-key",
                       str(tmp_path / "k7"), "--person-ref", "Jane Doe, 12 Acacia Avenue")
    assert rc == 2 and err.startswith("panic: --person-ref: ") and not os.path.exists(tmp_path / "k7")
    assert not os.path.exists(db)
    rc, out, err = run(capsys, "receiver", "device", "add", "--db", db, "--device-id", "7", "--generate-key",
                       str(tmp_path / "k7"), "--person-ref", "URN 01/1234/26")
    assert rc == 0
    # the store itself (the simulator, any import): the same rule
    st = S.open_store(db, masterkey.load())
    with pytest.raises(S.ReceiverError):
        st.add_device(8, os.urandom(32), "Jane Doe")
    assert st.get_device(8) is None
    st.close()
    # provision: both police styles pass its checks (it then fails only for want of a board)
    for ref in ("URN 01/1234/26", "URN-2026-0042"):
        a = _provision_args(tmp_path, ref)
        with pytest.raises(PV.DeviceError) as ei:
            PV.provision(a, MemoryRegistry())
        assert "127.0.0.1:1" in str(ei.value)
    with pytest.raises(PV.UsageError) as ei:
        PV.provision(_provision_args(tmp_path, "12 Acacia Avenue"), MemoryRegistry())
    assert "Acacia" in str(ei.value)


def _provision_args(tmp_path, ref):
    from tools.cli import build_parser

    return build_parser().parse_args([
        "provision", "--port", "socket://127.0.0.1:1", "--device-id", "42", "--receiver", "arc.example.org:7700",
        "--sms-number", "+447700900123", "--listen-number", "+447700900456", "--apn", "internet",
        "--person-ref", ref, "--db", str(tmp_path / "p.db"), "--engineer-key-out", str(tmp_path / "ek" / "42.key")])


def test_the_audit_names_who_really_acted(tmp_path, capsys, monkeypatch):
    """`device add` run by hand was audited as "provisioning" (the default
    when $USER is unset, and $USER is whatever the caller sets)."""
    monkeypatch.setenv(masterkey.ENV, MK)
    monkeypatch.setenv("USER", "someone-else")
    db = str(tmp_path / "rx.db")
    import pwd

    me = pwd.getpwuid(os.getuid()).pw_name
    assert me != "someone-else"
    assert run(capsys, "receiver", "device", "add", "--db", db, "--device-id", "9", "--generate-key",
               str(tmp_path / "k9"), "--person-ref", "URN-2026-0009")[0] == 0
    assert run(capsys, "receiver", "device", "add", "--db", db, "--device-id", "10", "--generate-key",
               str(tmp_path / "k10"), "--person-ref", "URN-2026-0010", "--actor", "desk 2")[0] == 0
    assert run(capsys, "receiver", "command", "--db", db, "--device", "9", "--stand-down")[0] == 0
    assert run(capsys, "receiver", "device", "retire", "--db", db, "--device-id", "10", "--actor", me)[0] == 0
    reg_db = str(tmp_path / "reg.db")
    mkf = tmp_path / "mk"
    mkf.write_text(MK)
    mkf.chmod(0o600)
    from tools.registry import ReceiverRegistry

    reg = ReceiverRegistry(reg_db, str(mkf))
    reg.add_device(11, os.urandom(32), "URN-2026-0011")  # what `panic provision` does
    st = S.open_store(db)
    rows = [(r["actor"], r["action"], r["device_id"], r["detail"]) for r in st.audit_log()]
    cmds = st._x("SELECT actor FROM commands").fetchall()
    st.close()
    assert rows == [
        (me, "device add", 9, "person_ref=URN-2026-0009 via panic receiver device add"),
        ("desk 2 (os user %s)" % me, "device add", 10, "person_ref=URN-2026-0010 via panic receiver device add"),
        (me, "command stand_down", 9, None),
        (me, "device retire", 10, None),
    ]
    assert [c["actor"] for c in cmds] == [me]
    [prov] = reg.s.audit_log()
    assert prov["actor"] == me and prov["detail"] == "person_ref=URN-2026-0011 via panic provision"
    reg.close()


def test_sms_by_hand_takes_the_sender_rule_of_http(tmp_path, capsys, monkeypatch):
    from protocol import frame as F
    from protocol import sms

    monkeypatch.setenv(masterkey.ENV, MK)
    db = str(tmp_path / "rx.db")
    kf = str(tmp_path / "k")
    assert run(capsys, "receiver", "device", "add", "--db", db, "--device-id", "12", "--generate-key", kf,
               "--person-ref", "URN-2026-0012")[0] == 0
    d = Dev(12, bytes.fromhex(open(kf).read().strip()))
    for sender in ("", "x" * 100_000, "+44 7700 900123 " * 3):
        rc, out, err = run(capsys, "receiver", "sms", "--db", db, "--from", sender, "--text", sms.text_of(d.frame(F.ALERT)))
        assert rc == 2 and err.startswith("panic: --from: the sender") and out == "", sender[:20]
    st = S.open_store(db)
    assert st.count_frames() == 0
    st.close()
    rc, out, err = run(capsys, "receiver", "sms", "--db", str(tmp_path / "typo.db"), "--from", "+447700900123",
                       "--text", sms.text_of(d.frame(F.ALERT)))
    assert rc == 3 and "no store" in err and not os.path.exists(tmp_path / "typo.db")
