"""panic flash against the real MicroPython unix port reached as socket://."""

import hashlib
import json
import os
import socket
import threading

import pytest

from host_sim.mpboard import MpBoard
from tools import cli
from tools import flash as FL
from tools.board import Board, DeviceError
from tools.errors import Unavailable, UsageError


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return FL.build(str(tmp_path_factory.mktemp("mpy")), march="")


@pytest.fixture
def board(tmp_path):
    b = MpBoard(str(tmp_path / "root")).start()
    yield b
    b.stop()


def _host_files(root):
    out = {}
    for d, _, fs in os.walk(root):
        for f in fs:
            p = os.path.join(d, f)
            out[os.path.relpath(p, root)] = hashlib.sha256(open(p, "rb").read()).hexdigest()
    return out


def test_cli_flash_installs_verifies_and_reports(board, capsys):
    assert cli.main(["flash", "--port", board.url, "--march", ""]) == 0
    cap = capsys.readouterr()
    assert "all verified by sha256" in cap.out and "wearable-panic" in cap.out
    assert "copying [" in cap.err and "100%" in cap.err  # the progress bar
    m = json.load(open(os.path.join(board.root, "manifest.json")))
    on_disk = _host_files(board.root)
    for p, h in m["files"].items():
        assert on_disk[m["app"] + "/" + p] == h
    assert "firmware/diag.mpy" in m["files"] and "protocol/frame.mpy" in m["files"]
    # only what this board runs: its port's board module (the unix port's here), nothing host-only
    assert "firmware/board_unix.mpy" in m["files"] and "firmware/board_esp32.mpy" not in m["files"]
    assert not {"protocol/jsonform.mpy", "protocol/replay.mpy"} & set(m["files"])
    assert open(os.path.join(board.root, "main.py"), "rb").read() == FL.SHIM_SRC
    assert not [f for f in os.listdir(board.root) if f.endswith(".tmp")]
    # again: nothing to copy
    assert cli.main(["flash", "--port", board.url, "--march", "", "--quiet"]) == 0
    assert "already up to date" in capsys.readouterr().out
    assert cli.main(["flash", "--port", board.url, "--check"]) == 0
    assert "all verified by sha256" in capsys.readouterr().out
    os.remove(os.path.join(board.root, "manifest.json"))
    assert cli.main(["flash", "--port", board.url, "--check"]) == 1
    cap = capsys.readouterr()
    assert "no application installed" in cap.out and "panic flash: the board has no verified release" in cap.err


def test_an_esp32_release_is_what_the_esp32_runs():
    src = FL.release_sources(platform="esp32")
    assert "firmware/main.py" in src and "firmware/board_esp32.py" in src and "firmware/modem/engine.py" in src
    assert "firmware/diagprov.py" in src  # imported lazily, at the console's first byte: still on the board
    # test doubles, host-only protocol code and the unix port's board never go on an ESP32
    for host_only in ("firmware/board_unix.py", "protocol/jsonform.py", "protocol/replay.py"):
        assert host_only not in src
    assert "firmware/transport.py" in src  # the event names every transport and caller import
    assert all(p.startswith(("firmware/", "protocol/")) for p in src)


def test_corrupted_file_on_board_is_detected_and_repaired(board, release, capsys):
    with Board(board.url) as b:
        m = FL.install(b, release, "1", "")
    victim = os.path.join(board.root, m["app"], "protocol", "frame.mpy")
    with open(victim, "r+b") as f:
        f.write(b"\x00\x00")
    with Board(board.url) as b:
        got, bad = FL.verify(b)
        assert bad == ["protocol/frame.mpy"]
        assert "DO NOT MATCH" in FL.describe(got, bad)
    assert cli.main(["flash", "--port", board.url, "--march", "", "--quiet"]) == 0
    assert "all verified" in capsys.readouterr().out
    assert not os.path.exists(os.path.join(board.root, m["app"]))  # the old folder is gone


def test_interrupted_copy_keeps_the_old_release(board, release):
    with Board(board.url) as b:
        old = FL.install(b, release, "old", "")
    newer = dict(release)
    newer["firmware/extra.mpy"] = b"M" * 3000
    seen = []

    def pull_the_plug(path):
        seen.append(path)
        if len(seen) == 4:
            board.kill()

    with pytest.raises(DeviceError) as ei:
        with Board(board.url) as b:
            FL.install(b, newer, "new", "", on_file=pull_the_plug)
    assert "lost" in str(ei.value) or "refused" in str(ei.value)
    board.power_cycle()
    with Board(board.url) as b:
        m, bad = FL.verify(b)
        assert m == old and bad == []  # still the old release, intact
        m2 = FL.install(b, newer, "new", "")
        m3, bad = FL.verify(b)
        assert m3 == m2 and bad == [] and m3["version"] == "new"
    apps = [f for f in os.listdir(board.root) if f.startswith("app-")]
    assert apps == [m2["app"]]  # the half-copied folder was cleaned up


def test_interrupted_first_flash_leaves_no_release(board, release):
    n = [0]

    def pull(path):
        n[0] += 1
        if n[0] == 3:
            board.kill()

    with pytest.raises(DeviceError):
        with Board(board.url) as b:
            FL.install(b, release, "v", "", on_file=pull)
    board.power_cycle()
    with Board(board.url) as b:
        assert FL.verify(b) == (None, [])
        assert "no application installed" in FL.describe(None, [])
        FL.install(b, release, "v", "")
        assert FL.verify(b)[1] == []


def test_full_flash_is_refused_before_writing(tmp_path, release, capsys):
    with MpBoard(str(tmp_path / "small"), quota=16 * 1024) as b:
        assert cli.main(["flash", "--port", b.url, "--march", "", "--quiet"]) == 1
        err = capsys.readouterr().err
        assert err.startswith("panic flash: not enough flash on the board") and err.count("\n") == 1
        assert os.listdir(b.root) == []


def test_flash_filling_up_mid_copy_keeps_old_release(tmp_path, release, monkeypatch):
    small = {p: d for p, d in release.items() if p.startswith("protocol/")}
    monkeypatch.setattr(FL, "_need_bytes", lambda files: 0)  # as if statvfs over-reported free space
    with MpBoard(str(tmp_path / "tight"), quota=sum(len(d) for d in small.values()) + 4000) as mb:
        with Board(mb.url) as b:
            old = FL.install(b, small, "small", "")
            with pytest.raises(DeviceError) as ei:
                FL.install(b, release, "big", "")
            assert "flash is full" in str(ei.value)
            m, bad = FL.verify(b)
            assert m == old and bad == []
        assert [f for f in os.listdir(mb.root) if f.startswith("app-")] == [old["app"]]


def test_bad_port_and_silent_device_are_one_line_errors(capsys):
    assert cli.main(["flash", "--port", "/dev/does-not-exist", "--quiet", "--march", ""]) == 3  # environment
    err = capsys.readouterr().err
    assert err.startswith("panic flash: cannot open port /dev/does-not-exist") and err.count("\n") == 1
    # something listens but no MicroPython answers (a dead or locked board)
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)
    conns = []
    t = threading.Thread(target=lambda: conns.append(ls.accept()), daemon=True)
    t.start()
    with pytest.raises(DeviceError) as ei:
        Board("socket://127.0.0.1:%d" % ls.getsockname()[1], timeout=1)
    assert "no MicroPython REPL answered" in str(ei.value)
    ls.close()


def test_esptool_commands_and_image_checks(tmp_path):
    img = tmp_path / "mp.bin"
    img.write_bytes(b"\xe9" + b"\x00" * 100)
    cmds = FL.esptool_command("/dev/ttyUSB0", str(img), baud=921600, erase=True)
    assert cmds[0][-1] == "erase-flash"

    assert cmds[1][cmds[1].index("write-flash"):] == ["write-flash", "-z", "0x1000", str(img)]
    assert "--port" in cmds[1] and cmds[1][cmds[1].index("--port") + 1] == "/dev/ttyUSB0"

    class Done:
        def __init__(self, rc, err=""):
            self.returncode, self.stderr, self.stdout = rc, err, ""

    ran = []
    FL.write_image("p", str(img), 460800, False, run=lambda c, **k: ran.append(c) or Done(0))
    assert len(ran) == 1 and "write-flash" in ran[0]
    with pytest.raises(DeviceError) as ei:
        FL.write_image("p", str(img), 460800, False,
                       run=lambda c, **k: Done(2, "Connecting....\nA fatal error occurred: Failed to connect to ESP32"))
    assert str(ei.value) == "esptool failed on p: A fatal error occurred: Failed to connect to ESP32"
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"MZ")
    with pytest.raises(UsageError):
        FL.check_image(str(bad))
    with pytest.raises(Unavailable):
        FL.check_image(str(tmp_path / "missing.bin"))
    assert cli.main(["flash", "--port", "x", "--erase"]) == 2


def test_mpremote_cli_with_resume_works_against_the_bridge(board, tmp_path):
    import subprocess
    import sys

    src = tmp_path / "hello.py"
    src.write_text("X = 1\n")
    exe = os.path.join(os.path.dirname(sys.executable), "mpremote")
    p = subprocess.run([exe, "connect", board.url, "resume", "fs", "cp", str(src), ":/hello.py", "+",
                        "exec", "import sys; sys.path.insert(0, '/'); import hello; print(hello.X + 41)"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "42" in p.stdout
    assert open(os.path.join(board.root, "hello.py")).read() == "X = 1\n"
    assert board.proc.poll() is None  # the "board" survived the session


def _provisioned(board):
    """Give the board a /data/config.json, as `panic provision` does: the
    boot shim runs a release only on a provisioned board (an unprovisioned
    one keeps its REPL for flash and provision; tools/flash.py SHIM_SRC)."""
    os.makedirs(os.path.join(board.root, "data"), exist_ok=True)
    with open(os.path.join(board.root, "data", "config.json"), "w") as f:
        f.write("{}")


def _install_with_main(board, release, tmp_path, source):
    """Install `release` with firmware/main replaced by `source` (compiled
    with mpy-cross) on a provisioned board and power-cycle it through
    /main.py; returns the manifest."""
    import subprocess

    from tools.mpy_compile import mpy_cross_path

    src = tmp_path / "main.py"
    src.write_text(source)
    mpy = tmp_path / "main.mpy"
    subprocess.run([mpy_cross_path(), "-o", str(mpy), str(src)], check=True)
    files = dict(release)
    files["firmware/main.mpy"] = mpy.read_bytes()
    with Board(board.url) as b:
        m = FL.install(b, files, "v", "")
    _provisioned(board)
    board.power_cycle(run="/main.py")
    return m


def test_boot_shim_runs_the_release_named_by_the_manifest(board, release, tmp_path):
    """Boot the board through /main.py: the shim must find firmware.main in
    the app folder the manifest names, and call its main()."""
    import time

    m = _install_with_main(board, release, tmp_path,
                           "def main():\n    import sys\n    sys.stdout.write('APP RUNNING FROM ' + __file__ + chr(10))\n")
    got = b""
    with socket.create_connection(("127.0.0.1", board.port)) as s:
        s.settimeout(0.2)
        deadline = time.monotonic() + 5
        while b"RUNNING" not in got and time.monotonic() < deadline:
            try:
                got += s.recv(200)
            except socket.timeout:
                pass
    assert b"APP RUNNING FROM /" + m["app"].encode() + b"/firmware/main" in got


def test_boot_shim_stays_silent_when_the_release_cannot_start(board, release, tmp_path):
    """A release whose firmware.main raises at import (here: MemoryError,
    as on a board with too little heap) prints no traceback on the USB
    serial: a probe sees a dead port."""
    _install_with_main(board, release, tmp_path, "raise MemoryError('memory allocation failed')\n")
    with socket.create_connection(("127.0.0.1", board.port)) as s:
        s.sendall(b"help\r\n")
        s.settimeout(1.5)
        with pytest.raises(socket.timeout):
            s.recv(100)
    assert board.proc.poll() is None  # idling, not crashed back to a prompt


@pytest.fixture
def rom_board(tmp_path):
    """A board whose MicroPython has a 256 KB ROM partition (host_sim.mpboard)."""
    b = MpBoard(str(tmp_path / "root"), rom=256 * 1024).start()
    yield b
    b.stop()


def _stand_in_main(tmp_path, source):
    import subprocess

    from tools.mpy_compile import mpy_cross_path

    src = tmp_path / "main.py"
    src.write_text(source)
    mpy = tmp_path / "main.mpy"
    subprocess.run([mpy_cross_path(), "-o", str(mpy), str(src)], check=True)
    return mpy.read_bytes()


def _boot_output(board, want, seconds=5):
    import time

    got = b""
    with socket.create_connection(("127.0.0.1", board.port)) as s:
        s.settimeout(0.2)
        deadline = time.monotonic() + seconds
        while want not in got and time.monotonic() < deadline:
            try:
                got += s.recv(200)
            except socket.timeout:
                pass
    return got


def test_flash_romfs_refuses_a_board_without_a_rom_partition(board, capsys):
    assert cli.main(["flash", "--port", board.url, "--march", "", "--romfs", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "no ROM partition" in err and "nothing was changed" in err
    assert not os.path.exists(os.path.join(board.root, "manifest.json"))


def test_flash_romfs_installs_in_rom_verifies_and_the_board_boots_from_it(rom_board, release, tmp_path, capsys):
    # a file-copied release first: going to ROM removes its folder
    with Board(rom_board.url) as b:
        FL.install(b, release, "v0", "")
    assert [f for f in os.listdir(rom_board.root) if f.startswith("app-")]
    files = dict(release)
    files["firmware/main.mpy"] = _stand_in_main(
        tmp_path, "def main():\n    import sys\n    sys.stdout.write('APP RUNNING FROM ' + __file__ + chr(10))\n")
    m = FL.flash_romfs(rom_board.url, files, "v1", "")
    out = capsys.readouterr().out
    assert m["app"] == "rom" and "all verified by sha256" in out and "ROMFS image" in out
    assert not [f for f in os.listdir(rom_board.root) if f.startswith("app-")]
    assert json.load(open(os.path.join(rom_board.root, "manifest.json")))["files"] == m["files"]
    # the same release again: nothing written
    assert FL.flash_romfs(rom_board.url, files, "v1", "")["app"] == "rom"
    assert "already up to date" in capsys.readouterr().out
    # power on: the shim runs firmware.main from the ROM partition
    _provisioned(rom_board)
    rom_board.power_cycle(run="/main.py")
    assert b"APP RUNNING FROM /rom/firmware/main.mpy" in _boot_output(rom_board, b"RUNNING")


def test_a_corrupted_rom_partition_fails_the_check(rom_board, release, capsys):
    FL.flash_romfs(rom_board.url, release, "v1", "")
    capsys.readouterr()
    rom = bytearray(open(rom_board.rom_file, "rb").read())
    frame_mpy = release["protocol/frame.mpy"]
    at = rom.find(frame_mpy)
    assert at > 0
    rom[at + len(frame_mpy) // 2] ^= 0xFF
    with open(rom_board.rom_file, "wb") as f:
        f.write(rom)
    rom_board.power_cycle()
    assert cli.main(["flash", "--port", rom_board.url, "--check"]) == 1
    assert "protocol/frame.mpy" in capsys.readouterr().out


def test_a_failed_rom_write_leaves_no_release_to_boot(rom_board, release, capsys):
    """The cable is pulled while a new image goes into the ROM partition
    (here: mpremote exits with an error): the old manifest, which named the
    partition now half-written, is gone, so the board boots nothing rather
    than a broken release, and the error says so."""
    import subprocess

    FL.flash_romfs(rom_board.url, release, "v1", "")
    files = dict(release)
    files["firmware/version.mpy"] = release["firmware/version.mpy"] + b"\x00"

    def pulled(cmd, **kw):
        return subprocess.CompletedProcess(cmd, 1, stdout="Writing at offset 4096", stderr="mpremote: failed to access port")

    with pytest.raises(DeviceError, match="mpremote romfs deploy failed: mpremote: failed to access port"):
        FL.flash_romfs(rom_board.url, files, "v2", "", run=pulled)
    assert not os.path.exists(os.path.join(rom_board.root, "manifest.json"))
    assert cli.main(["flash", "--port", rom_board.url, "--check"]) == 1
    assert "no application installed" in capsys.readouterr().out


def test_a_rom_partition_too_small_is_refused_before_anything_changes(tmp_path, release, capsys):
    b = MpBoard(str(tmp_path / "root"), rom=32 * 1024).start()
    try:
        with Board(b.url) as bd:
            FL.install(bd, release, "v0", "")
        before = open(os.path.join(b.root, "manifest.json")).read()
        assert cli.main(["flash", "--port", b.url, "--march", "", "--romfs", "--quiet"]) == 1
        err = capsys.readouterr().err
        assert "ROM partition 32 KB" in err and "nothing was changed" in err
        assert open(os.path.join(b.root, "manifest.json")).read() == before  # the copied release still boots
    finally:
        b.stop()
