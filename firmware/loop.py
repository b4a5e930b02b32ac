"""The device's main loop, one pass at a time (firmware.main.run steps it
forever; see firmware/main.py for what a pass does and why).

Owns: the App's lifetime across faults (build, step, drop and rebuild),
the firmware's never-wrapping `now`, the fault back-off. Lives apart from
firmware/main.py so that importing main's helpers (load_config,
make_transport) does not load it. Must stay in sync with: firmware/main.py.
"""

from firmware.main import (
    MAX_BACKOFF_MS,
    MAX_SLEEP_MS,
    SESSION_WAKE_MS,
    load_config,
    make_console,
    make_transport,
    serve_console,
)


class Loop:
    """The main loop, one pass at a time. firmware.main.run() calls step()
    forever on the device; a bench that must regain control between passes
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
                t = self.factory(board, cfg) if cfg.usable else None
                # `now` for the firmware never wraps: ticks_ms() wraps (2^30 ms,
                # 12.4 days on ESP32), so it is accumulated through ticks_diff()
                self.last = board.ticks_ms()
                self.now = 0
                self.app = App(board, cfg, t, 0, fs=fs, **(self.app_kw or {}))
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
