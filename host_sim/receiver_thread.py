"""Faithful mode's receiving centre: the real receiver (receiver/server.py's
asyncio Server over receiver/core.py's Receiver and a receiver/store.py
store) on its own event loop in a daemon thread of the host process, on
the caller's clock.

Owns: `ReceiverThread(db_path, master, clock, on_event, ...)`: `start()`
(returns once the server listens on 127.0.0.1 and `port` is set, or raises
what stopped it), `sms(sender, text)` (an SMS handed to the core on the
receiver's own thread), `stop()` (the loop ended, the server closed, the
store closed). `store`, `core` and `server` stay readable for the rig
(registration, supervision pace).

Never: decides anything about frames, incidents or ACKs (the receiver does);
reads the wall clock for the receiver (clock() is the caller's, scenario
time in faithful mode); lets an SMS the core refuses end a run (the core
counts it).

Stays in sync with: receiver/server.py (Server, Limits, start/close,
tcp_address, supervise_every), receiver/core.py (Receiver, handle_sms),
receiver/store.py (open_store), host_sim/faithful.py (its caller), and
host_sim/runner.py's SimReceiver (the same receiver in virtual time).
"""

import asyncio
import threading


class ReceiverThread:
    """receiver.server.Server + core.Receiver on a store, in a thread."""

    def __init__(self, db_path, master, clock, on_event, supervise_every=0.5, heartbeat_s=3600, silent_margin_s=600):
        from receiver import core
        from receiver import store as S
        from receiver.server import Limits, Server

        self.store = S.open_store(db_path, master, clock=clock)
        self.core = core.Receiver(self.store, clock=clock, events=on_event, heartbeat_s=heartbeat_s,
                                  silent_margin_s=silent_margin_s)
        self.server = Server(self.core, Limits(), supervise_every=supervise_every)
        self.loop = asyncio.new_event_loop()
        self.port = None
        self._ready = threading.Event()
        self._err = None
        self._t = threading.Thread(target=self._main, daemon=True)

    def start(self):
        self._t.start()
        self._ready.wait(10)
        if self._err is not None:
            raise self._err
        return self

    def _main(self):
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.server.start("127.0.0.1", 0))
            addr = self.server.tcp_address
            if addr is None:
                raise RuntimeError("the receiver started without a TCP listener")
            self.port = addr[1]
        except Exception as e:  # noqa: BLE001 - reported to start()
            self._err = e
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.server.close())
        self.loop.close()

    def sms(self, sender, text):
        self.loop.call_soon_threadsafe(self._sms, sender, text)

    def _sms(self, sender, text):
        try:
            self.core.handle_sms(sender, text)
        except Exception:  # noqa: BLE001 - the core counts; a run goes on
            pass

    def stop(self):
        if self._t.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._t.join(10)
        self.store.close()
