"""panic provision against the MicroPython unix port, and the whole chain:
flash -> provision -> boot -> field self-test -> receiver saw the TEST."""

import json
import os
import socket
import stat
import threading

import pytest

from host_sim.mpboard import MpBoard
from protocol import frame as F
from protocol import stream
from protocol.crypto import DeviceKeys
from tools import cli
from tools import flash as FL
from tools import provision as PV
from tools.board import Board, DeviceError
from tools.errors import Refused, UsageError
from tools.registry import MemoryRegistry, RegistryError, ReceiverRegistry

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return FL.build(str(tmp_path_factory.mktemp("mpy")), march="")


@pytest.fixture(scope="module")
def flashed_root(tmp_path_factory, release):
    """A board folder flashed once; each test gets a copy (a board is its folder)."""
    root = str(tmp_path_factory.mktemp("flashed") / "root")
    with MpBoard(root) as b:
        with Board(b.url) as conn:
            FL.install(conn, release, "9.9.9", "")
    return root


@pytest.fixture
def flashed(tmp_path, flashed_root):
    import shutil

    shutil.copytree(flashed_root, str(tmp_path / "root"))
    b = MpBoard(str(tmp_path / "root")).start()
    yield b
    b.stop()


def _args(port, tmp_path, *extra, device_id=42, receiver="arc.example.org:7700"):
    recv = []
    for r in receiver if isinstance(receiver, list) else [receiver]:
        recv += ["--receiver", r]
    argv = ["provision", "--port", port, "--device-id", str(device_id)] + recv + [
            "--sms-number", "+447700900123", "--listen-number", "+447700900456", "--apn", "internet",
            "--person-ref", "urn:arc:case:A-1001", "--db", str(tmp_path / "rx.db"),
            "--engineer-key-out", str(tmp_path / "keys" / ("dev%d.key" % device_id))] + list(extra)
    return cli.build_parser().parse_args(argv)


def _config(board):
    with open(os.path.join(board.root, "data", "config.json")) as f:
        return json.load(f)


def test_provision_writes_config_registers_and_prints_label(flashed, tmp_path, capsys):
    reg = MemoryRegistry()
    cfg = PV.provision(_args(flashed.url, tmp_path), reg)
    on_board = _config(flashed)
    assert on_board == cfg
    assert tuple(sorted(on_board)) == tuple(sorted(PV.CONFIG_FIELDS))
    assert on_board["device_id"] == 42 and on_board["test_enabled"] is True
    assert on_board["receivers"] == ["arc.example.org:7700"] and on_board["sms_numbers"] == ["+447700900123"]
    assert reg.key_of(42).hex() == on_board["key_hex"] and len(reg.key_of(42)) == 32
    assert reg.devices[42][1] == "urn:arc:case:A-1001"
    kf = tmp_path / "keys" / "dev42.key"
    assert kf.read_text().strip() == on_board["engineer_key_hex"]
    assert stat.S_IMODE(os.stat(kf).st_mode) == 0o600
    assert on_board["engineer_key_hex"] != on_board["key_hex"]
    out = capsys.readouterr()
    assert "device id  42" in out.out and "urn:arc:case:A-1001" in out.out and "9.9.9" in out.out
    assert str(kf) in out.out
    for secret in (on_board["key_hex"], on_board["engineer_key_hex"]):
        assert secret not in out.out and secret not in out.err
    assert not os.path.exists(os.path.join(flashed.root, "data", "config.json.tmp"))


def test_refuses_provisioned_board_and_reused_id(flashed, tmp_path):
    reg = MemoryRegistry()
    PV.provision(_args(flashed.url, tmp_path), reg)
    before = _config(flashed)
    with pytest.raises(DeviceError) as ei:
        PV.provision(_args(flashed.url, tmp_path, device_id=43), reg)
    assert "already provisioned" in str(ei.value)
    assert _config(flashed) == before and 43 not in reg.devices
    # --force overwrites the board, but an id the receiver knows is never reused
    with pytest.raises(Refused) as ei:
        PV.provision(_args(flashed.url, tmp_path, "--force", device_id=42), reg)
    assert "never reused" in str(ei.value)
    assert _config(flashed) == before
    cfg = PV.provision(_args(flashed.url, tmp_path, "--force", device_id=43), reg)
    assert _config(flashed) == cfg and cfg["device_id"] == 43 and 43 in reg.devices


def test_unflashed_board_is_refused(tmp_path):
    with MpBoard(str(tmp_path / "bare")) as b:
        with pytest.raises(DeviceError) as ei:
            PV.provision(_args(b.url, tmp_path), MemoryRegistry())
        assert "run `panic flash` first" in str(ei.value)
        assert os.listdir(b.root) == []
    assert not (tmp_path / "keys").exists()


def test_registry_failure_says_how_to_recover(flashed, tmp_path):
    class Refusing(MemoryRegistry):
        def add_device(self, device_id, key_bytes, person_ref):
            raise RegistryError("database is locked")

    with pytest.raises(DeviceError) as ei:
        PV.provision(_args(flashed.url, tmp_path), Refusing())
    assert "re-run with --force" in str(ei.value) and "database is locked" in str(ei.value)
    reg = MemoryRegistry()
    PV.provision(_args(flashed.url, tmp_path, "--force"), reg)
    assert 42 in reg.devices


@pytest.mark.parametrize(
    "field_,value,msg",
    [
        ("--device-id", "0", "--device-id"),
        ("--receiver", "arc.example.org", "HOST:PORT"),
        ("--receiver", "arc.example.org:99999", "HOST:PORT"),
        ("--sms-number", "07700900123", "international"),
        ("--listen-number", "+44 7700", "international"),
        ("--apn", "has space", "--apn"),
        ("--person-ref", "Jane Doe", "URN"),
    ],
)
def test_bad_arguments_are_usage_errors_before_touching_anything(tmp_path, field_, value, msg):
    a = _args("socket://127.0.0.1:1", tmp_path)
    listed = field_ in ("--receiver", "--sms-number")  # repeatable: argparse gives a list
    setattr(a, field_[2:].replace("-", "_"), int(value) if field_ == "--device-id" else [value] if listed else value)
    with pytest.raises(UsageError) as ei:
        PV.provision(a, MemoryRegistry())
    assert msg in str(ei.value)


def test_receivers_and_sms_numbers_are_written_in_the_order_given(flashed, tmp_path, capsys):
    a = _args(flashed.url, tmp_path, "--sms-number", "+447700900124",
              receiver=["arc1.example.org:7700", "arc2.example.org:7701", "[2001:db8::7]:7702"])
    cfg = PV.provision(a, MemoryRegistry())
    on_board = _config(flashed)
    assert on_board == cfg
    assert on_board["receivers"] == ["arc1.example.org:7700", "arc2.example.org:7701", "2001:db8::7:7702"]
    assert on_board["sms_numbers"] == ["+447700900123", "+447700900124"]
    # what the firmware makes of it: the same list, in order (firmware/config.py)
    from firmware import config as C

    fw = C.validate(on_board)
    assert fw.errors == [] and fw.receivers == [("arc1.example.org", 7700), ("arc2.example.org", 7701),
                                                ("2001:db8::7", 7702)]
    assert fw.sms_numbers == ["+447700900123", "+447700900124"]
    out = capsys.readouterr().out
    assert "arc1.example.org:7700" in out and "arc2.example.org:7701" in out and "[2001:db8::7]:7702" in out


@pytest.mark.parametrize("receivers,msg", [
    (["a.example:1"] * 2, "the same value twice"),
    (["a%d.example:1" % i for i in range(5)], "1 to 4 times"),
])
def test_too_many_or_repeated_receivers_are_usage_errors(tmp_path, receivers, msg):
    with pytest.raises(UsageError) as ei:
        PV.provision(_args("socket://127.0.0.1:1", tmp_path, receiver=receivers), MemoryRegistry())
    assert msg in str(ei.value)


def test_cli_errors_are_one_line(tmp_path, capsys, monkeypatch):
    # no receiver master key: refused before the board is even contacted
    monkeypatch.delenv("PANIC_RECEIVER_KEY", raising=False)
    rc = cli.main(["provision", "--port", "socket://127.0.0.1:1", "--device-id", "5", "--receiver", "h:1",
                   "--sms-number", "+447700900123", "--listen-number", "+447700900456", "--apn", "internet",
                   "--person-ref", "urn:arc:case:1", "--db", str(tmp_path / "rx.db")])
    err = capsys.readouterr().err
    assert rc == 3 and err.count("\n") == 1 and err.startswith("panic provision: receiver registry:")
    assert "master key" in err and "PANIC_RECEIVER_KEY" in err
    # with a key but no board at that port: one line naming the port
    mk = tmp_path / "master.key"
    mk.write_text("11" * 32 + "\n")
    mk.chmod(0o600)
    rc = cli.main(["provision", "--port", "socket://127.0.0.1:1", "--device-id", "5", "--receiver", "h:1",
                   "--sms-number", "+447700900123", "--listen-number", "+447700900456", "--apn", "internet",
                   "--person-ref", "urn:arc:case:1", "--db", str(tmp_path / "rx.db"), "--master-key-file", str(mk)])
    err = capsys.readouterr().err
    assert rc == 3 and err.count("\n") == 1 and err.startswith("panic provision:") and "127.0.0.1:1" in err
    assert "11" * 16 not in err


def test_receiver_registry_over_the_real_store(tmp_path):
    from receiver import core, masterkey
    from receiver import store as S

    mk = tmp_path / "master.key"
    mk.write_text(masterkey.generate_hex() + "\n")
    mk.chmod(0o600)
    db = str(tmp_path / "rx.db")
    with pytest.raises(RegistryError) as ei:  # the self-test reads only: the store must exist
        ReceiverRegistry(db, need_key=False)
    assert "no store" in str(ei.value)
    reg = ReceiverRegistry(db, str(mk))
    key = bytes(range(32))
    assert not reg.has_device(42)
    reg.add_device(42, key, "urn:arc:case:A-1")
    assert reg.has_device(42)
    with pytest.raises(RegistryError) as ei:
        reg.add_device(42, key, "urn:arc:case:A-1")
    assert "already registered" in str(ei.value) and key.hex() not in str(ei.value)
    # a TEST frame and an ALERT through the real receiver core: only the TEST is labelled test
    st = S.open_store(db, masterkey.load(str(mk)))
    rc = core.Receiver(st)
    keys = DeviceKeys(key)
    for ftype, seq in ((F.TEST, 1), (F.ALERT, 2)):
        raw = F.encode(keys, F.Frame(ftype, 42, seq, 1773524400, F.Report(test=ftype == F.TEST)))
        assert rc.handle_frame(raw)
    ro = ReceiverRegistry(db, need_key=False)
    seen = ro.test_alerts(42, 0)
    assert [(r["type"], r["seq"], r["test"], r["label"]) for r in seen] == [("TEST", 1, True, "test")]
    assert ro.test_alerts(42, 2**40) == [] and ro.test_alerts(43, 0) == []
    with pytest.raises(RegistryError) as ei:
        ReceiverRegistry(db, str(tmp_path / "missing.key"))
    assert "missing.key" in str(ei.value)


class FakeReceiver:
    """A tiny receiver: verifies TEST frames with the registered key, records
    them labelled as test, and ACKs them."""

    def __init__(self, registry):
        self.reg = registry
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(4)
        self.ls.settimeout(0.2)
        self.port = self.ls.getsockname()[1]
        self.stop = threading.Event()
        self.t = threading.Thread(target=self.serve, daemon=True)
        self.t.start()

    def serve(self):
        import time

        while not self.stop.is_set():
            try:
                c, _ = self.ls.accept()
            except OSError:
                continue
            with c:
                c.settimeout(5)
                d = stream.Deframer()
                try:
                    frames = []
                    while not frames:
                        b = c.recv(512)
                        if not b:
                            break
                        frames = d.feed(b)
                    for raw in frames:
                        _, dev, _ = F.peek(raw)
                        keys = DeviceKeys(self.reg.key_of(dev))
                        fr = F.decode(keys, raw, expect=F.UPLINK)
                        self.reg.record_alert(dev, int(time.time()), {"type": fr.name, "test": fr.body.test, "seq": fr.seq})
                        ack = F.encode(keys, F.Frame(F.ACK, dev, fr.seq, fr.time, F.Ack(fr.seq)))
                        c.sendall(stream.pack(ack))
                except Exception:
                    pass

    def close(self):
        self.stop.set()
        self.ls.close()
        self.t.join(2)


def test_flash_provision_then_field_selftest_end_to_end(tmp_path, capsys):
    reg = MemoryRegistry()
    rx = FakeReceiver(reg)
    board = MpBoard(str(tmp_path / "root")).start()
    try:
        assert cli.main(["flash", "--port", board.url, "--march", "", "--quiet"]) == 0
        # two receivers, the first with nothing listening: the board reads the
        # list with its own validator and the TEST is ACKed by the second
        dead = socket.socket()
        dead.bind(("127.0.0.1", 0))
        dead_port = dead.getsockname()[1]
        dead.close()
        PV.provision(_args(board.url, tmp_path, receiver=["127.0.0.1:%d" % dead_port, "127.0.0.1:%d" % rx.port]), reg)
        # put the bench app on the board and boot it: the USB serial now speaks only DIAG1
        with Board(board.url) as b:
            b.write("/diagbench.py", open(os.path.join(HERE, "board", "diagbench.py"), "rb").read())
        board.power_cycle(run="/diagbench.py")
        capsys.readouterr()
        rc = cli.main(["field", "selftest", "--port", board.url, "--engineer-key", str(tmp_path / "keys" / "dev42.key"),
                       "--device-id", "42", "--report", str(tmp_path / "rep"), "--test-timeout", "20"])
        out = capsys.readouterr().out
        assert rc == 0, out
        assert "RESULT: PASS" in out and "acknowledged by the receiver via tcp" in out
        alerts = reg.test_alerts(42, 0)
        assert alerts and alerts[0]["type"] == "TEST" and alerts[0]["test"] is True
        rep = json.loads((tmp_path / "rep.json").read_text())
        assert rep["status"]["firmware"].startswith(FL.release_version())
        # the flashed, provisioned, running board says nothing to a probe without the key
        with socket.create_connection(("127.0.0.1", board.port)) as s:
            s.sendall(b"\r\x03\x03\r\x01print('hi')\x04\r\nhelp\r\n")
            s.settimeout(1.5)
            with pytest.raises(socket.timeout):
                s.recv(100)
    finally:
        board.stop()
        rx.close()


def test_config_extra_is_checked_and_merged(flashed, tmp_path):
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps({"button": {"presses": 3}, "pins": {"button": 33}}))
    cfg = PV.provision(_args(flashed.url, tmp_path, "--config-extra", str(extra), "--power-profile", "saver"),
                       MemoryRegistry())
    assert cfg["button"] == {"presses": 3} and cfg["pins"] == {"button": 33} and cfg["timings"] == {}
    assert cfg["power_profile"] == "saver" and _config(flashed)["button"] == {"presses": 3}
    extra.write_text(json.dumps({"key_hex": "00"}))
    with pytest.raises(UsageError) as ei:
        PV.provision(_args(flashed.url, tmp_path, "--config-extra", str(extra), "--force", device_id=7), MemoryRegistry())
    assert "may only hold" in str(ei.value)
