"""The device's main loop, its constants and the helpers it builds the
App with; firmware/main.py only picks the board and calls run().

Owns: the outermost loop, the firmware's clock and crash recovery. Loop
runs one pass at a time (run() steps it forever on the device; the
simulator and the 32-bit bench step it themselves). Each pass: build the
App if there is none (config from flash, transport, console), now = ms
since the App was built (accumulated with ticks_diff, so it never wraps),
wait = app.step(now), the console, feed the watchdog, then sleep until the
next deadline (light sleep when only the button can need us, otherwise a
plain wait so the UARTs keep receiving). Sleeps are capped well inside the
watchdog period.

Any exception: record a fault on flash (app.record_fault, read back into
the next boot STATUS), back off (1 s, doubling to 60 s while it keeps
failing, so a persistent fault is not a hot crash loop; capped at half the
watchdog period), rebuild the App from flash and go on.

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

Imports nothing that imports it: firmware/main.py and the boards' entry
points (board_unix.main) import this module, never the other way round.

Must stay in sync with: firmware/main.py, firmware/app.py,
firmware/board_esp32.py.
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


class Loop:
    """The main loop, one pass at a time. run() below calls step() forever
    on the device; a bench that must regain control between passes
    (bench/wasm_firmware.mjs: that VM collects garbage only between calls
    from JS) steps it itself. A pass is: build the App if there is none (config from
    flash, transport, console), then one App step, the console, the
    watchdog and the sleep; or, when anything raised, the fault recorded,
    the App dropped and the back-off slept."""

    def __init__(self, board, fs=None, transport_factory=None, app_kw=None):
        from firmware.alert import FAULT_EXCEPTION
        from firmware.app import record_fault
        from firmware.fs import Fs

        # bound now, so the fault path allocates as little as it can
        self.record_fault, self.fault_code = record_fault, FAULT_EXCEPTION
        self.board = board
        self.fs = fs if fs is not None else Fs(board.flash_dir)
        self.factory = transport_factory or make_transport
        self.app_kw = app_kw
        self.app = None
        self.failures = 0
        # observers for the simulator (host_sim/runner.py); None on a board
        self.on_app = None  # fn(app) after each App is built
        self.on_fault = None  # fn(exception) when a pass raised

    def step(self):
        board = self.board
        try:
            if self.app is None:
                from firmware.app import App

                fs = self.fs
                cfg = load_config(fs)
                transport = self.factory(board, cfg) if cfg.usable else None
                # `now` for the firmware never wraps: ticks_ms() wraps (2^30 ms,
                # 12.4 days on ESP32), so it is accumulated through ticks_diff()
                self.last = board.ticks_ms()
                self.now = 0
                self.app = App(board, cfg, transport, 0, fs=fs, **(self.app_kw or {}))
                self.diag = make_console(self.app, board, fs)
                self.lock = self.diag.persist_state() if self.diag is not None else None
                if self.on_app is not None:
                    self.on_app(self.app)
            app, diag = self.app, self.diag
            tk = board.ticks_ms()
            self.now += board.ticks_diff(tk, self.last)
            self.last = tk
            now = self.now
            wait = app.step(now)
            if diag is not None:
                self.lock = serve_console(diag, board, self.fs, now, self.lock)
                if diag.active() and wait > SESSION_WAKE_MS:
                    wait = SESSION_WAKE_MS
            board.feed_watchdog()
            self.failures = 0
            if wait > MAX_SLEEP_MS:
                wait = MAX_SLEEP_MS
            if wait > 0:
                if app.can_light_sleep() and (diag is None or not diag.active()):
                    board.light_sleep(wait)
                else:
                    board.idle(wait)
        except Exception as e:  # noqa: BLE001 - anything at all: record, back off, restart
            self.app = None
            self.diag = None
            self.failures += 1
            if self.on_fault is not None:
                self.on_fault(e)
            try:
                self.record_fault(self.fs, self.fault_code)
            except Exception:
                pass
            board.feed_watchdog()
            back = 1000 << (self.failures - 1 if self.failures < 7 else 6)
            board.idle(back if back < MAX_BACKOFF_MS else MAX_BACKOFF_MS)


def run(board, fs=None, transport_factory=make_transport, steps=-1, app_kw=None):
    """The loop. steps < 0: forever (the device); a test or the simulator
    passes a count and app_kw (extra App arguments: fix, button, rand).
    Returns the number of failures in a row at the end."""
    loop = Loop(board, fs, transport_factory, app_kw)
    while steps != 0:
        if steps > 0:
            steps -= 1
        loop.step()
    return loop.failures
