"""firmware/board_unix.py in the real MicroPython VM: button edges sent by the
host are latched with the VM's ticks, as a GPIO interrupt latches them, so a
stalled VM sees every press, never shorter than the host held it (a 300 ms
tap at 10x is 30 ms of wall time: easy to miss by sampling)."""

import os
import socket
import subprocess

from host_sim.mpboard import micropython_path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The VM stalls for 400 ms of wall time (4 s at 10x) before it first reads,
# then collects the latched edges (level, ticks) for 3 s.
VM_SCRIPT = """
import sys, time
sys.path.insert(0, %r)
from firmware.board_unix import UnixBoard
b = UnixBoard(console=False)
time.sleep_ms(400)
seen = [(0, b.button_level())]
end = b.ticks_ms() + 3000
while b.ticks_ms() < end:
    for lvl, tk in b.button_edges():
        seen.append((tk, lvl))
    b.idle(50)
print(repr(seen))
"""


def _serve(ls, sends):
    """Accept the board's three channels; send `sends` on ctrl at once."""
    chans = {}
    ls.settimeout(20)
    while len(chans) < 3:
        s, _ = ls.accept()
        name = b""
        while not name.endswith(b"\n"):
            name += s.recv(1)
        chans[name.strip()] = s
        if name.strip() == b"ctrl":
            s.sendall(sends + b"k\n" * 4)  # the four pins the board sets at boot, applied (board_unix._applied)
    return chans


def _run(sends):
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(4)
    env = dict(os.environ, PANIC_PERIPH="127.0.0.1:%d" % ls.getsockname()[1])
    proc = subprocess.Popen([micropython_path(), "-X", "heapsize=256k", "-c", VM_SCRIPT % ROOT], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        chans = _serve(ls, sends)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        ls.close()
    for s in chans.values():
        s.close()
    assert proc.returncode == 0, out
    return eval(out.decode().strip().splitlines()[-1])  # noqa: S307  (our own VM's repr of a list of tuples)


def test_a_tap_sent_while_the_vm_stalls_is_seen_and_held_as_long_as_the_host_held_it():
    # hello at scale 10, idle level high; a 300 ms tap (host ms 1000..1300) and
    # a second one (2000..2300), all arriving while the VM is not sampling
    seen = _run(b"c 10 -1 1\nb 1 0\nb 0 1000\nb 1 1300\nb 0 2000\nb 1 2300\n")
    levels = [lvl for _t, lvl in seen]
    assert levels == [1, 0, 1, 0, 1], seen
    (t_down1, _), (t_up1, _), (t_down2, _), (t_up2, _) = seen[1:]
    # each level lasts at least what the host held it (debounce needs 30 ms; a tap must stay a tap)
    assert t_up1 - t_down1 >= 300
    assert t_down2 - t_up1 >= 700
    assert t_up2 - t_down2 >= 300
    # and not much longer: they were all latched while the VM stalled
    assert t_up1 - t_down1 < 300 + 150 and t_up2 - t_down2 < 300 + 150


def test_malformed_button_lines_are_dropped_and_later_edges_still_latch():
    seen = _run(b"c 10 -1 1\nb 1 0\nb 0\nb x 5\nb\nb 0 1000\nb 1 1300\n")
    assert [lvl for _t, lvl in seen] == [1, 0, 1], seen
    assert seen[2][0] - seen[1][0] >= 300


def test_the_gnss_uart_ring_reads_into_a_buffer_the_bytes_read_gives_across_its_wrap():
    # UnixBoard's UART buffer is a ring allocated once (as the IDF driver's);
    # the App reads the NMEA UART into its own buffer (UART.readinto): the
    # same bytes in the same order as read(), whatever the ring's position,
    # and bytes past a full ring are lost and counted, never kept
    from firmware.board_unix import _UartSock

    data = bytes(range(256)) * 4
    outs = []
    for use_into in (False, True):
        a, b = socket.socketpair()
        u = _UartSock(a, 100)
        got = bytearray()
        buf = bytearray(b"\xee" * 37)
        for i in range(0, len(data), 60):
            b.send(data[i:i + 60])
            while True:
                if use_into:
                    n = u.readinto(buf)
                    if not n:
                        break
                    got += buf[:n]
                else:
                    chunk = u.read(37)
                    if not chunk:
                        break
                    got += chunk
        outs.append(bytes(got))
        assert u.overrun == 0
        b.send(b"x" * 150)  # more than the ring holds
        n = u.readinto(bytearray(200))
        assert n == 100 and u.overrun == 50 and u.readinto(buf) == 0
        a.close()
        b.close()
    assert outs[0] == outs[1] == data
