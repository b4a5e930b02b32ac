"""The boot shim `panic flash` writes to /main.py (tools/flash.py SHIM_SRC),
run by the real MicroPython unix port on a board whose "/" is a host folder
(host_sim.mpboard): a Ctrl-C during boot never reaches a prompt, and a
release that cannot start leaves the port silent and is tried again
(issue 15, D2: the shim caught Exception only, so a KeyboardInterrupt while
firmware.main imported dropped to the REPL, where /data/config.json and its
keys are one open() away).

On the unix port a Ctrl-C byte on a raw pty is data, and after
kbd_intr(-1) a SIGINT ends the process (the port restores SIG_DFL), so the
Ctrl-C is delivered the way the ESP32 raises it: as a KeyboardInterrupt at
a check point while the firmware imports or runs. Why a Ctrl-C that came
before the shim's first statement lands inside its try is argued from the
bytecode in tools/flash.py; the shape that argument needs is checked here.
"""

import ast
import os
import socket
import subprocess
import time

import pytest

from host_sim.mpboard import MpBoard
from tools import flash as FL
from tools.mpy_compile import mpy_cross_path


@pytest.fixture
def board(tmp_path):
    b = MpBoard(str(tmp_path / "root")).start()
    yield b
    b.stop()


def _install(board, tmp_path, main_source, provisioned=True):
    """A release whose firmware/main.mpy is `main_source` (mpy-cross), the
    shim at /main.py and, if provisioned, a /data/config.json; then a power
    cycle that runs /main.py as the port does at boot."""
    app = os.path.join(board.root, "app-test", "firmware")
    os.makedirs(app)
    open(os.path.join(app, "__init__.py"), "w").close()
    src = tmp_path / "main.py"
    src.write_text(main_source)
    subprocess.run([mpy_cross_path(), "-o", os.path.join(app, "main.mpy"), str(src)], check=True)
    with open(os.path.join(board.root, "manifest.json"), "w") as f:
        f.write('{"format": 1, "app": "app-test", "files": {}}')
    with open(os.path.join(board.root, "main.py"), "wb") as f:
        f.write(FL.SHIM_SRC)
    if provisioned:
        os.makedirs(os.path.join(board.root, "data"))
        with open(os.path.join(board.root, "data", "config.json"), "w") as f:
            f.write("{}")
    board.power_cycle(run="/main.py")


def _listen(board, until, seconds):
    """Everything the USB serial says within `seconds` (or until `until`)."""
    got = b""
    with socket.create_connection(("127.0.0.1", board.port)) as s:
        s.settimeout(0.2)
        deadline = time.monotonic() + seconds
        while (until is None or until not in got) and time.monotonic() < deadline:
            try:
                d = s.recv(200)
            except socket.timeout:
                continue
            if not d:
                break
            got += d
    return got


# A firmware whose import is interrupted by Ctrl-C the first `n` times (a
# file on the board counts them, as a reset would not clear it), then runs.
_INTERRUPTED = """
import os
try:
    with open('/ctrlc') as f:
        _n = int(f.read())
except OSError:
    _n = 0
with open('/ctrlc', 'w') as f:
    f.write(str(_n + 1))
if _n < %d:
    raise KeyboardInterrupt
def main():
    import sys
    sys.stdout.write('APP RUNNING after %%d Ctrl-C' %% _n + chr(10))
    while True:
        pass
"""


def test_ctrl_c_while_the_firmware_imports_never_reaches_a_prompt(board, tmp_path):
    _install(board, tmp_path, _INTERRUPTED % 2)
    got = _listen(board, b"RUNNING", 15)
    assert b"APP RUNNING after 2 Ctrl-C" in got  # tried again, after 1 s and 2 s
    assert got.startswith(b"APP RUNNING")  # nothing before it: no traceback, no prompt
    assert b">>>" not in got and b"Traceback" not in got
    assert board.proc.poll() is None


def test_ctrl_c_from_a_running_firmware_restarts_it_silently(board, tmp_path):
    """A KeyboardInterrupt out of main() (firmware/main.py's loop catches
    Exception only) is caught by the shim like any failure."""
    _install(board, tmp_path, "def main():\n    raise KeyboardInterrupt\n")
    with socket.create_connection(("127.0.0.1", board.port)) as s:
        s.sendall(b"\x03\x03\r\nhelp()\r\n\x01\x04")  # what someone at the port would try
        s.settimeout(3)
        with pytest.raises(socket.timeout):
            s.recv(100)
    assert board.proc.poll() is None  # retrying, not ended at a prompt


def test_an_unprovisioned_board_leaves_the_shim_for_the_repl(board, tmp_path):
    """No /data/config.json (no keys on the board): the shim does not run
    the release, so `panic flash` and `panic provision` can reach the REPL
    (on the unix port the script then ends, where the ESP32 starts its
    REPL)."""
    _install(board, tmp_path, "def main():\n    import sys\n    sys.stdout.write('APP RUNNING' + chr(10))\n",
             provisioned=False)
    got = _listen(board, None, 2)
    assert b"APP RUNNING" not in got and b"Traceback" not in got
    board.proc.wait(5)
    assert board.proc.returncode == 0  # the script ended cleanly


def test_the_shim_disables_ctrl_c_first_and_everything_after_is_caught():
    """What tools/flash.py's argument about a Ctrl-C before the first
    statement rests on: the first two statements import the built-in
    micropython module and call kbd_intr(-1) (an import, a load and a call:
    no pending-exception check point, py/vm.c); then a `while True` (no
    jump before its body, py/compile.c compile_while_stmt) whose whole body
    is one try catching BaseException, re-raising only SystemExit."""
    tree = ast.parse(FL.SHIM_SRC)
    body = tree.body
    assert ast.dump(body[0]) == ast.dump(ast.parse("import micropython").body[0])
    assert ast.dump(body[1]) == ast.dump(ast.parse("micropython.kbd_intr(-1)").body[0])
    assert isinstance(body[2], ast.Assign) and isinstance(body[2].value, ast.Constant)
    loop = body[3]
    assert len(body) == 4 and isinstance(loop, ast.While) and loop.test.value is True
    assert len(loop.body) == 1 and isinstance(loop.body[0], ast.Try)
    handlers = [(h.type.id, type(h.body[0]).__name__) for h in loop.body[0].handlers]
    assert handlers == [("SystemExit", "Raise"), ("BaseException", "Pass")]
