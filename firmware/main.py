"""The device's main loop: build the board, load the config, run the App
forever.

Owns: the outermost loop, the firmware's clock and crash recovery (one
pass at a time in firmware/loop.py, which run() steps forever). Each
pass: now = ms since the App was built (accumulated with ticks_diff, so it
never wraps), wait = app.step(now), feed the watchdog, then sleep until the next deadline (light
sleep when only the button can need us, otherwise a plain wait so the UARTs
keep receiving). Sleeps are capped well inside the watchdog period.

Never returns. Ctrl-C is disabled (micropython.kbd_intr(-1)) so nobody at
the USB port can stop it. Any exception: record a fault on flash
(app.record_fault, read back into the next boot STATUS), back off (1 s,
doubling to 60 s while it keeps failing, so a persistent fault is not a
hot crash loop; capped at half the watchdog period), rebuild the App from
flash and go on.

The modem engine is built separately: make_transport() is the one place
that imports it (firmware.modem.make_transport(board, config) -> transport
object per firmware/transport.py).

Diagnostics console (firmware/diag.py, docs/diag.md): when the config has
an engineer key and the board a console stream, each pass reads at most
CONSOLE_READ bytes from it without blocking, feeds them to the Diag with
`now` (imported and built at the first byte: LazyConsole) and writes back
what Diag returns (nothing at all until an engineer
has authenticated). The lock-out counters go to flash when they change
(firmware/diagprov.py), so a power cycle does not lift a lock-out. While a
session is open the loop wakes at least every SESSION_WAKE_MS (and never
light-sleeps) so answers come promptly; boards whose idle() can return on
console input (board_unix.py) answer sooner.

On the board, the root /main.py is one line:
    from firmware.main import main; main()
(`panic flash` writes a shim that does the same for the release it
installed; the config is /data/config.json: FLASH_DIR of the board module
plus config.CONFIG_FILE, as tools/provision.py writes it).

Must stay in sync with: firmware/app.py, firmware/board_esp32.py.
"""

from firmware.board import WATCHDOG_MS

# Both derived from the watchdog's period, so neither a sleep nor the fault
# back-off can ever outlast it (the loop feeds it before each)
MAX_SLEEP_MS = WATCHDOG_MS // 2
MAX_BACKOFF_MS = WATCHDOG_MS // 2
CONSOLE_READ = 256  # bytes per pass at most: a flood cannot starve the alert path
SESSION_WAKE_MS = 50
LOAD_RETRY_MS = 60000  # a console that could not be loaded is tried again after this


class LazyConsole:
    """The diagnostics console until an engineer speaks: firmware.diag and
    firmware.diagprov (about 18 KB of loaded code on the unix port) are
    imported at the first byte on the console, never on a device nobody
    plugs into. Lock-out counters are read from flash at that moment, so a
    power cycle still does not lift a lock-out."""

    def __init__(self, app, fs):
        self.app = app
        self.fs = fs
        self.diag = None
        self.load_failures = 0
        self.retry_at = None  # after a failed load: no new try before then

    def load(self):
        from firmware.diag import Diag
        from firmware.diagprov import Provider, load_lock

        fails, lockouts = load_lock(self.fs)
        self.diag = Diag(self.app.cfg.engineer_key, Provider(self.app), fails=fails, lockouts=lockouts)
        return self.diag

    def active(self):
        return self.diag is not None and self.diag.active()

    def persist_state(self):
        """(fails, lockouts), or None before the console was first used."""
        return None if self.diag is None else self.diag.persist_state()


def make_console(app, board, fs):
    """A LazyConsole for the App, or None when the console is off (no
    engineer key, no console stream, or a dead App)."""
    if app.dead or app.cfg.engineer_key is None or board.console is None:
        return None
    return LazyConsole(app, fs)


def serve_console(con, board, fs, now, lock):
    """One pass of the console; returns the lock-out state now on flash.
    Never raises into the loop (the console stream and Diag never do): a
    console that cannot be loaded (a MemoryError importing firmware.diag)
    drops what came and is tried again at a byte after LOAD_RETRY_MS, so
    bytes on the USB serial can never tear the App down."""
    data = board.console.read(CONSOLE_READ)
    diag = con.diag
    if data:
        if diag is None:
            if con.retry_at is not None and now - con.retry_at < 0:
                return lock
            try:
                diag = con.load()
            except Exception:  # noqa: BLE001 - the App must go on without its console
                con.load_failures += 1
                con.retry_at = now + LOAD_RETRY_MS
                return lock
            lock = diag.persist_state()  # what load() just read from flash
        out = diag.feed(data, now)
        if out:
            board.console.write(out)
    elif diag is None:
        return lock
    else:
        diag.poll(now)
    st = diag.persist_state()
    if st != lock:
        from firmware.diagprov import save_lock

        try:
            save_lock(fs, st)
        except OSError:
            pass  # flash trouble: the lock still holds in RAM
    return st


def forget(name):
    """Drop a boot-only module (e.g. "firmware.config") so its code can be
    freed once nothing refers to it; its interned names stay (MicroPython
    never frees those). A later import loads it again."""
    import sys

    sys.modules.pop(name, None)
    pkg, _, attr = name.rpartition(".")
    parent = sys.modules.get(pkg)
    if parent is not None:
        try:
            delattr(parent, attr)
        except (AttributeError, KeyError):  # MicroPython raises KeyError for a module attribute never set
            pass


def load_config(fs):
    """config.json from flash, validated (firmware/config.py, never raises),
    then the validator dropped: the running firmware keeps only the
    Config record (firmware/settings.py)."""
    from firmware import config as C

    cfg = C.load(fs)
    forget("firmware.config")
    return cfg


def make_transport(board, cfg):
    from firmware.modem import make_transport as build

    return build(board, cfg)


def run(board, fs=None, transport_factory=make_transport, steps=-1, app_kw=None):
    """The loop. steps < 0: forever (the device); a test or the simulator
    passes a count and app_kw (extra App arguments: fix, button, rand).
    Returns the number of failures in a row at the end."""
    from firmware.loop import Loop

    loop = Loop(board, fs, transport_factory, app_kw)
    while steps != 0:
        if steps > 0:
            steps -= 1
        loop.step()
    return loop.failures


def main():
    import sys

    import micropython

    micropython.kbd_intr(-1)
    if sys.platform == "linux":  # the unix port: faithful mode (firmware/board_unix.py)
        from firmware.board_unix import main as unix_main

        unix_main()
        return
    from firmware import boards
    from firmware.board import FLASH_DIR
    from firmware.board_esp32 import Esp32Board
    from firmware.fs import Fs

    fs = Fs(FLASH_DIR)
    cfg = load_config(fs)
    table = boards.load(cfg.board)  # validated by load_config: a known name
    board = Esp32Board(table, cfg.pins)
    del table, cfg
    for name in ("firmware.boards.t_sim7600e_ext_gnss", "firmware.boards.t_sim7600e"):
        forget(name)  # the table is read: its text need not stay in RAM
    while True:
        run(board, fs)
