"""The device's main loop: build the board, load the config, run the App
forever.

Owns: the outermost loop, the firmware's clock and crash recovery. Each
pass: now = ms since the App was built (accumulated with ticks_diff, so it
never wraps), wait = app.step(now), feed the watchdog, then sleep until the next deadline (light
sleep when only the button can need us, otherwise a plain wait so the UARTs
keep receiving). Sleeps are capped well inside the watchdog period.

Never returns. Ctrl-C is disabled (micropython.kbd_intr(-1)) so nobody at
the USB port can stop it. Any exception: record a fault on flash
(app.record_fault, read back into the next boot STATUS), back off (1 s,
doubling to 60 s while it keeps failing, so a persistent fault is not a
hot crash loop), rebuild the App from flash and go on.

The modem engine is built separately: make_transport() is the one place
that imports it (firmware.modem.make_transport(board, config) -> transport
object per firmware/transport.py).

On the board, the root /main.py is one line:
    from firmware.main import main; main()

Must stay in sync with: firmware/app.py, firmware/board_esp32.py.
"""

MAX_SLEEP_MS = 30000  # half the board watchdog period
MAX_BACKOFF_MS = 60000


def make_transport(board, cfg):
    from firmware.modem import make_transport as build

    return build(board, cfg)


def run(board, fs=None, transport_factory=make_transport, steps=-1, app_kw=None):
    """The loop. steps < 0: forever (the device); a test or the simulator
    passes a count and app_kw (extra App arguments: fix, button, rand)."""
    from firmware import config as C
    from firmware.alert import FAULT_EXCEPTION
    from firmware.app import App, record_fault
    from firmware.fs import Fs

    if fs is None:
        fs = Fs(board.flash_dir)
    failures = 0
    while steps != 0:
        try:
            cfg = C.load(fs)
            t = transport_factory(board, cfg) if cfg.usable else None
            # `now` for the firmware never wraps: ticks_ms() wraps (2^30 ms,
            # 12.4 days on ESP32), so it is accumulated through ticks_diff()
            last = board.ticks_ms()
            now = 0
            app = App(board, cfg, t, now, fs=fs, **(app_kw or {}))
            while steps != 0:
                if steps > 0:
                    steps -= 1
                tk = board.ticks_ms()
                now += board.ticks_diff(tk, last)
                last = tk
                wait = app.step(now)
                board.feed_watchdog()
                failures = 0
                if wait > MAX_SLEEP_MS:
                    wait = MAX_SLEEP_MS
                if wait > 0:
                    if app.can_light_sleep():
                        board.light_sleep(wait)
                    else:
                        board.idle(wait)
        except Exception:  # noqa: BLE001 - anything at all: record, back off, restart
            if steps > 0:
                steps -= 1
            failures += 1
            try:
                record_fault(fs, FAULT_EXCEPTION)
            except Exception:
                pass
            board.feed_watchdog()
            back = 1000 << (failures - 1 if failures < 7 else 6)
            board.idle(back if back < MAX_BACKOFF_MS else MAX_BACKOFF_MS)
    return failures


def main():
    import micropython

    micropython.kbd_intr(-1)
    from firmware import config as C
    from firmware.board_esp32 import FLASH_DIR, Esp32Board
    from firmware.fs import Fs

    fs = Fs(FLASH_DIR)
    pins = C.load(fs).pins
    board = Esp32Board(pins)
    while True:
        run(board, fs)
