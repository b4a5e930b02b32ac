"""Run one scenario in virtual time: the real firmware main loop
(firmware/loop.py Loop, over the real App, ModemTransport and modem engine)
on the real board driver (firmware/board_esp32.py) over a model of
MicroPython's ESP32 port (host_sim/esp32.py), against the SIM7600 emulator,
the network model and the real receiver core, all on one virtual clock.

Owns: wiring and event order of one run, and what gets recorded.
    res = run(scenario)              # results dict (host_sim/report.py format)
    r = Runner(scenario); r.run(); r.results
Pieces: World (clock, route, GNSS, energy, scenario events), Chip (the
ESP32 and its wiring, from the board table), Esp32Board (the firmware's
own driver, executed over the chip's modules), Sim7600 + Network +
ModelTcp (modem and network), SimReceiver (the receiver core over an
in-memory store, in virtual wall time, ticking its silent-device
supervision every minute, SMS through the same door), and Loop.

The firmware drives: the runner only calls Loop.step() again and again,
as firmware/main.py does. Time passes where the firmware blocks: the
board's idle() (select.poll), light_sleep() (machine.lightsleep), a
Wi-Fi scan, the fault back-off; there the chip asks advance() to run the
world (its events, the emulator's output, the receiver) until the wake
condition the silicon has (a Pin interrupt, UART bytes at a poll tick,
ext0/ext1 levels in light sleep, the timer). So the loop's sleep choice,
back-off, fault recording and never-wrapping clock are the firmware's own,
and a firmware that sleeps through a modem reply loses it here as it
would on the board.

Power cuts: the world cuts the battery (at a time, or at the n-th flash
write, torn by firmware.fs PowerCut); advance() raises PowerCut through
whatever the firmware was doing (a BaseException: no `except Exception`
runs after the power went); when power returns the chip resets and main's
start is replayed (config read, board built, a new Loop). A watchdog that
was not fed in time resets the chip the same way (cause WDT). The modem
is on the battery rail: an ESP32 reset leaves it running.

Never does: change firmware behaviour. It observes through the Loop's
on_app/on_fault hooks and thin wrappers on the App's instance (button
events, outbox add/ACK, transport calls and events) and never alters their
results.

Must stay in sync with: firmware/main.py (what main() builds),
firmware/loop.py, host_sim/esp32.py, host_sim/world.py, host_sim/results.py,
docs/simulator.md.
"""

import io
import os
import random
import sys
import traceback
from typing import Any

from firmware import alert as A
from firmware import boards
from firmware import config as C
from firmware.button import EV_CANCEL, EV_DURESS_CANCEL, EV_SOS, EV_TEST, ButtonConfig
from firmware.fs import PowerCut
from firmware.loop import Loop
from firmware.loop import load_config, make_transport
from host_sim import cells
from host_sim import energy as E
from host_sim.esp32 import Chip, ConsoleSink, RunEnd, SimFs, SimMemFs, WatchdogReset, cache_boot_modules, load_board_module
from host_sim.modem import Sim7600
from host_sim.network import Network
from host_sim.results import Recorder
from host_sim.setup import DEVICE_ID, OWN_NUMBER, PERSON_REF, button_patterns, device_config, device_key, node_addresses
from host_sim.tcp import ModelTcp
from host_sim.world import World
from protocol import frame as F
from protocol.crypto import DeviceKeys
from protocol.errors import ProtocolError
from receiver import core, masterkey
from receiver import store as S

__all__ = ["DEVICE_ID", "PERSON_REF", "Runner", "button_patterns", "device_config", "device_key", "failures", "run"]

TICK_MS = 60000  # receiver supervision
SPIN_MAX = 1000  # main-loop passes at one instant before the run is stopped as a busy loop


class FirmwareSpins(RuntimeError):
    """The firmware's main loop stopped waiting (a busy loop)."""
# machine.reset_cause() codes (MicroPython's ESP32 port, modmachine.c)
_PWRON, _WDT = 1, 3
_EVENT_KIND = {EV_SOS: "sos", EV_CANCEL: "cancel", EV_DURESS_CANCEL: "duress_cancel", EV_TEST: "test"}
_COVERAGE = {"data+sms": "full", "sms-only": "sms", "lte-only": "lte", "none": "none"}


def _fault_value(v):
    """Timed faults give params as a table: { value = x } means x."""
    if isinstance(v, dict) and set(v) == {"value"}:
        return v["value"]
    return v


class SimReceiver:
    """The far end for the emulator: the real receiver core over an
    in-memory store, in virtual wall time; down windows refuse frames and
    hold SMS until the receiver is back."""

    def __init__(self, run, key, heartbeat_s):
        self.run = run
        self.clock = lambda: run.unix()
        st = S.open_store(":memory:", masterkey.MasterKey(os.urandom(32)), clock=self.clock)
        st.add_device(run.device_id, key, PERSON_REF, heartbeat_s=heartbeat_s)
        cells.import_into(st, run.sc)  # the centre's location database knows the scenario's towers and survey
        self.core = core.Receiver(st, clock=self.clock, events=self._event)
        self.keys = DeviceKeys(key)
        self.up = True
        self.held_sms = []
        self.events = []  # every receiver event dict

    def _event(self, ev):
        self.events.append(ev)
        rec = self.run.rec
        t = self.run.clock.now
        rec.receiver_event(t, ev)
        if ev["kind"] == "device_silent":
            rec.silent(t, ev["device_id"])
        elif ev["kind"] == "low_battery":
            rec.summary["low_battery"] = True

    def _frame(self, raw, path, peer, node=None):
        rec = self.run.rec
        t = self.run.clock.now
        try:
            ftype, dev, seq = F.peek(raw)
            name = F.TYPE_NAMES.get(ftype, "?")
        except ProtocolError:
            ftype, dev, seq, name = None, None, None, "?"
        out = self.core.handle_frames([(bytes(raw), path, peer)])[0]
        f = rec.frame(t, "up", "received" if out.status in (core.ACCEPTED, core.DUPLICATE_S) else "rejected",
                      name, seq, dev, path, len(raw), note=out.status)
        if node is not None:
            f["node"] = node
        if out.status == core.ACCEPTED:
            duress = False
            if ftype == F.CANCEL:
                try:
                    body = F.decode(self.keys, raw, F.UPLINK).body
                    duress = isinstance(body, F.Report) and bool(body.duress)
                except ProtocolError:
                    pass
            rec.raise_(t, dev, seq, name, duress)
        for r in out.replies:
            try:
                _, ddev, dseq = F.peek(r)
                ack = F.decode(self.keys, r, F.DOWNLINK).body
                acked = ack.acked_seq if isinstance(ack, F.Ack) else None
            except ProtocolError:
                ddev, dseq, acked = dev, None, None
            f = rec.frame(t, "down", "built", "ACK", dseq, ddev, path, len(r), acked_seq=acked)
            if node is not None:
                f["node"] = node
        return out

    # -- the emulator's endpoint interface
    def on_tcp_frame(self, raw, now, node=None):
        if not self.up:
            return []
        return list(self._frame(raw, "tcp", node or "sim", node).replies)

    def on_sms(self, sender, text, now):
        if not self.up:
            self.held_sms.append((sender, text))
            return None
        return self._sms(sender, text)

    def _sms(self, sender, text):
        try:
            from protocol import sms as PS

            raw = PS.from_sms(text)
        except ProtocolError:
            self.run.rec.frame(self.run.clock.now, "up", "rejected", "?", None, None, "sms", len(text), note="bad sms")
            return None
        return self._frame(raw, "sms", sender)

    def set_up(self, up):
        self.up = up
        if up:
            held, self.held_sms = self.held_sms, []
            for sender, text in held:
                self._sms(sender, text)

    def tick(self):
        self.core.tick(self.run.unix())

    def operator(self, command, value):
        """The receiving centre's operator: a command rides the device's next ACK."""
        core.operator_command(self.core.store, self.run.device_id, command, value, actor="scenario", clock=self.clock)


class SimNode:
    """One node of a receiving centre of several (scenario [[receiver]]):
    its own address, the centre's one store and core behind it (nodes of
    one centre share their database: docs/receiver.md), so a frame seen by
    either is stored and raised once. `state` is "up", "kill" (its process
    died: host_sim/tcp.py resets its connections and refuses new ones) or
    "cut" (cut off: nothing reaches it, nothing answers)."""

    def __init__(self, name, centre):
        self.name = name
        self.centre = centre
        self.state = "up"

    def on_tcp_frame(self, raw, now):
        if self.state != "up":
            return []
        return self.centre.on_tcp_frame(raw, now, self.name)


class _Transport:
    """ModemTransport seen through a window: records what the outbox hands
    it and what comes back, changes nothing."""

    def __init__(self, inner, run):
        self.inner = inner
        self.run = run
        self.inflight = []  # (name, seq, path) waiting for sent / sms_sent
        self.n_events = 0
        for name in ("poll", "busy", "quiet", "data_ready", "sms_ready", "nmea", "gnss", "sleep", "wake"):
            setattr(self, name, getattr(inner, name))  # the firmware's calls each step, without __getattr__

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def send_frame(self, raw, now):
        ok = self.inner.send_frame(raw, now)
        if ok:
            self._queue(raw, "tcp")
        return ok

    def send_sms(self, number, text, now):
        ok = self.inner.send_sms(number, text, now)
        if ok:
            try:
                from protocol import sms as PS

                self._queue(PS.from_sms(text), "sms")
            except ProtocolError:
                pass
        return ok

    def _queue(self, raw, path):
        try:
            ftype, _, seq = F.peek(raw)
            self.inflight.append((F.TYPE_NAMES.get(ftype, "?"), seq, path, len(raw)))
        except ProtocolError:
            pass

    def events(self):
        evs = self.inner.events()
        self.n_events += len(evs)
        t = self.run.clock.now
        for e in evs:
            k = e[0]
            if k in ("sent", "sms_sent", "send_failed", "sms_failed"):
                path = "sms" if k.startswith("sms") else "tcp"
                for i, f in enumerate(self.inflight):
                    if f[2] == path:
                        del self.inflight[i]
                        ev = "on_air" if k in ("sent", "sms_sent") else "send_failed"
                        self.run.rec.frame(t, "up", ev, f[0], f[1], self.run.device_id, path, f[3])
                        if ev == "on_air":
                            self.run.modem_tx()
                        break
        return evs


class Runner:
    """far_end: None (SimReceiver, the receiver core in this process) or
    far_end(runner, device_id, key) -> an object with SimReceiver's
    endpoint, set_up, tick, operator and events (host_sim/rig_remote.py
    VirtualFarEnd: a real receiver elsewhere); device: (device_id, key)
    to run as, instead of the simulator's own."""

    def __init__(self, scenario, seed=None, flash_root=None, strict=False, far_end=None, device=None):
        self.sc = scenario
        self.seed = scenario.seed if seed is None else seed
        self.strict = strict
        self.device_id, self.key = device or (DEVICE_ID, device_key(self.seed))
        self.keys = DeviceKeys(self.key)
        self.cfg_dict, cfg = device_config(scenario, self.key, device_id=self.device_id)
        self.table = boards.load(cfg.board)
        self.patterns = button_patterns(ButtonConfig.from_dict(cfg.button))
        self.world = World(scenario, patterns=self.patterns)
        self.clock = self.world.clock
        self.rec = Recorder(scenario, route=self.world.route)
        if far_end is None:
            self.receiver = SimReceiver(self, self.key, cfg.t("heartbeat_s"))
        else:
            self.receiver = far_end(self, self.device_id, self.key)
        cov = scenario.coverage_at(0)
        self.net = Network(seed=self.seed, up_ms=cov.latency_ms, down_ms=cov.latency_ms, jitter_ms=20,
                           loss=min(cov.loss, 0.95), outages=[(w.from_ms, w.to_ms) for w in scenario.receiver_down],
                           sms_ms=cov.sms_latency_ms)
        faults = {k: _fault_value(v) for k, v in scenario.faults_at(0).items()}
        schedule = [(c.from_ms, _COVERAGE[c.mode]) for c in scenario.coverage] or [(0, "full")]
        if schedule[0][0] > 0:
            schedule.insert(0, (0, "full"))
        faults.setdefault("coverage", tuple(schedule))
        faults.setdefault("own_number", OWN_NUMBER)
        faults.setdefault("rssi", cov.csq)
        self.serving = None
        if scenario.towers:  # the serving cell follows the person (host_sim/cells.py)
            self.serving = faults.setdefault("cell", cells.ServingCell(scenario.towers, self.world.route.true_position))
        # the board's GNSS: the modem's own receiver (world.gnss in the
        # "sim7600" style, switched by AT+CGPS), or an external module on UART2
        self.modem_gnss = self.table.FACTS["gnss"][0] == "modem"
        # a centre of several nodes: each at its own address, one store behind them
        self.nodes = {name: SimNode(name, self.receiver) for name in node_addresses(scenario)}
        tcp = None
        if self.nodes:
            tcp = ModelTcp(self.net, self.receiver, {a: self.nodes[n] for n, a in node_addresses(scenario).items()})
        self.tcp = tcp
        self.emu = Sim7600(self.receiver, self.net, tcp=tcp, seed=self.seed,
                           gnss=self.world.gnss if self.modem_gnss else None, **faults)
        if self.modem_gnss:
            self.world.gnss.lazy = True  # the modem reports only its latest epoch (host_sim/modem.py _nmea_out)
        self.emu.record = False
        self.flash_root = flash_root
        if flash_root is None:
            self.fs = SimMemFs(self._flash_cut)  # the flash ends with the run
        else:
            self.fs = SimFs(os.path.join(flash_root, "flash"), self._flash_cut)
        self.level = 1 if self.table.PINS["button"][2] == 0 else 0  # released
        self.chip = Chip(self, self.table, cfg.pins)
        self.board_mod = load_board_module(self.chip)
        cache_boot_modules()
        self.loop = None
        self.board = None
        self.transports = []  # every ModemTransport built (engine counters over the run)
        self.boots = 0
        self.crashes = []
        self.steps = 0
        self.haptics = 0
        self._tx_timer = None
        self._mstate = None
        self._gstate = None
        self._actions = []  # (kind, at_ms, the device could take it)
        self._cut_times = []
        self._lost_with_power = 0
        self._done = False
        self._boot_due = False
        self._spin = 0
        self._off = False  # the device has no power (advance() then only waits)
        self.results = None
        self._stdout = io.StringIO()
        rng = random.Random(self.seed ^ 0x51D)
        self._rand = lambda n: rng.randrange(n) if n > 1 else 0  # the firmware's jitter, seeded: runs repeat
        # config.json on the simulated flash, as provisioning leaves it
        self.fs.write_atomic(C.CONFIG_FILE, _json(self.cfg_dict))

    # -- what the chip asks of its host
    @property
    def start_utc_ms(self):
        return self.sc.start_utc_ms

    def button_level(self):
        return self.level

    def wifi_at(self, t):
        return self.sc.wifi_at(t, self.world.route.true_position(t))

    def on_pin(self, name, level):
        pass

    def on_clock_set(self, unix):
        pass

    def on_scan(self, t0, t1):
        self.rec.event(t0, "wifi_scan", "%d ms, radio on" % (t1 - t0))

    def printed(self, text):
        if text:
            self.rec.print_(self.clock.now, text)

    def unix(self):
        return self.sc.start_utc_ms / 1000.0 + self.clock.now / 1000.0

    def advance(self, until, stop=None):
        """Run the world until `until` (virtual ms; None: no limit) or until
        stop() is true, stopping at every instant something happens (a world
        event, the emulator's output or timers, the watchdog's deadline).
        Raises PowerCut when the power goes (unless the device is already
        off), RunEnd at the scenario's end, WatchdogReset when it bites."""
        clock, emu, chip, world = self.clock, self.emu, self.chip, self.world
        while True:
            if self._done:
                raise RunEnd()
            if not self._off:
                if not world.powered:
                    raise PowerCut()
                if chip.wdt_ms is not None and clock.now > chip.last_feed + chip.wdt_ms:  # (chip.wdt_deadline())
                    raise WatchdogReset()
                chip.uart_rx()
            if stop is not None and stop():
                return
            now = clock.now
            if until is not None and now >= until:
                return
            nxt = until
            t = clock.next_time()
            if t is not None and (nxt is None or t < nxt):
                nxt = t
            t = emu.next_event_after(now) if world.powered else None
            if t is not None and (nxt is None or t < nxt):
                nxt = t
            if not self._off and chip.wdt_ms is not None:  # again: stop() may have fed it
                wd = chip.last_feed + chip.wdt_ms
                if nxt is None or wd + 1 < nxt:
                    nxt = wd + 1
            if nxt is None:
                raise RunEnd()
            clock.run_until(max(nxt, now))

    # -- the device's life
    def _boot(self, cause):
        """A reset: the chip starts again and main() runs: the config is
        read, the board table chosen, the board built, the loop started."""
        chip = self.chip
        self._off = False
        chip.power_on(self.clock.now, clock_known=self.boots == 0 and not self.sc.clock_unknown_at_boot, cause=cause)
        self.boots += 1
        self.rec.event(self.clock.now, "boot", "boot %d (reset cause %d)" % (self.boots, cause))
        try:
            cfg = load_config(self.fs)
            table = boards.load(cfg.board)
            board = self.board_mod.Esp32Board(table, cfg.pins, flash_dir=self.fs.root, console=ConsoleSink(self))
        except PowerCut:
            self.loop = None
            return
        board.haptic = self._haptic
        self.board = board
        # (its on_app / on_fault hooks start as None: typed loosely here, where they are set)
        loop: Any = Loop(board, self.fs, transport_factory=self._make_transport, app_kw={"rand": self._rand})
        loop.on_app = self._instrument
        loop.on_fault = self._on_fault
        self.loop = loop

    def _make_transport(self, board, cfg):
        t = _Transport(make_transport(board, cfg), self)
        self.transports.append(t.inner)
        return t

    def _haptic(self, ms):
        self.haptics += 1
        self.rec.pin(self.clock.now, "haptic", 1)

    def _on_fault(self, e):
        now = self.clock.now
        self.crashes.append("%d ms: %s: %s" % (now, e.__class__.__name__, e))
        self.rec.event(now, "firmware_exception", "".join(traceback.format_exception(e, limit=3))[-300:])

    def _instrument(self, app):
        rec, clock, keys, fs, dev = self.rec, self.clock, self.keys, self.fs, self.device_id
        btn_update = app.button.update

        def update(level, t):
            ev = btn_update(level, t)
            if ev is not None and ev in _EVENT_KIND:
                # when it happened: the edge's time (latched edges are fed late)
                at = clock.now - max(0, app.now - t)
                if ev == EV_TEST and not (app.cfg.test_enabled and app.ctl.allowed(A.TEST)):
                    rec.event(at, "test_refused", "a TEST pattern while the alert controller is not idle")
                else:
                    rec.press(_EVENT_KIND[ev], at, dev)
            return ev

        app.button.update = update
        ob = app.outbox
        add = ob.add

        def add_(ftype, seq, raw, now, sms=False):
            t = clock.now
            name = F.TYPE_NAMES.get(ftype, "?")
            rec.frame(t, "up", "built", name, seq, dev, None, len(raw))
            try:
                body = F.decode(keys, raw, F.UPLINK).body
                assert isinstance(body, F.Report)  # decode(..., UPLINK) parses a Report or raises
                rec.position(t, name, seq, body.source, body.lat if body.source else None,
                             body.lon if body.source else None, body.accuracy, body.age)
            except ProtocolError:
                pass
            r = add(ftype, seq, raw, now, sms)
            from firmware.outbox import entry_name

            if fs.read(entry_name(seq)) == bytes(raw):
                rec.frame(clock.now, "up", "committed", name, seq, dev, None, len(raw))
            return r

        ob.add = add_
        on_frame = ob.on_frame

        def on_frame_(raw, now):
            res = on_frame(raw, now)
            if res is not None:
                ftype, fr = res
                rec.frame(clock.now, "down", "acked", "ACK", fr.seq, dev, None, len(raw),
                          acked_seq=fr.body.acked_seq)
            return res

        ob.on_frame = on_frame_

    # -- energy of the modem and its GNSS, from what the emulator is doing
    def _modem_state(self):
        e = self.emu
        if not self.world.powered:
            return
        now = self.clock.now
        if self._tx_timer is not None and self._tx_timer.active:
            st = "tx"
        elif not e.powered or not e.on:
            st = "off"
        elif e.low_power(now):
            st = "sleep"
        else:
            st = "idle"
        if st != self._mstate:
            self._mstate = st
            self.world.set_state("modem", st)
        if self.modem_gnss:
            g = "acquire" if e.on and e._gps and e._cvaux else "off"
            if g != self._gstate:
                self._gstate = g
                self.world.energy.set_state("gnss", g, now)

    def modem_tx(self):
        """A frame or SMS went out: the modem transmitted (~1 s of TX current)."""
        if self._tx_timer is not None:
            self._tx_timer.cancel()
        self._mstate = "tx"
        self.world.set_state("modem", "tx")
        self._tx_timer = self.clock.after(1000, self._tx_end, name="tx_end")

    def _tx_end(self):
        self._tx_timer = None
        self._modem_state()

    # -- world handlers
    def _h_action(self, kind, now):
        """Note whether the device could take this action when it began:
        powered and running, and the pattern means something in its state
        (SOS only when no alert is active, TEST only with test enabled and
        the alert controller idle: firmware/alert.py's table has TEST only
        in IDLE, so a TEST during a duress-cancelled alert is refused)."""
        app = self.loop.app if self.loop is not None else None
        ok = self.world.powered and app is not None and not app.dead
        if ok and kind == "sos":
            ok = not app.ctl.looks_active()  # pyright: ignore[reportOptionalMemberAccess]
        elif ok and kind == "test":
            ok = bool(app.cfg.test_enabled) and app.ctl.allowed(A.TEST)  # pyright: ignore[reportOptionalMemberAccess]
        self._actions.append((kind, now, ok))

    def _h_button(self, pressed, now):
        old = self.level
        active = self.table.PINS["button"][2]
        self.level = active if pressed else 1 - active
        if self.level != old and self.world.powered:
            self.chip.input_changed(self.chip.gpio_of["button"], old, self.level)

    def _h_power(self, on, now):
        if not on:
            self._cut_times.append(now)
            self._drop_uncommitted_presses(now)
            self.emu.power(False, now)
            self.rec.event(now, "power_off", "")
        else:
            self.fs.cut_at = -1  # the torn write happened; the flash works again
            self.fs.steps = 0
            self.emu.power(True, now)
            if self.sc.gnss.on_at_boot:  # the board powers an external GNSS module at boot, as at t = 0
                self.world.set_state("gnss", "acquire")
            self._boot_due = True

    def _drop_uncommitted_presses(self, now):
        """A press whose alert the power took before it reached flash (the
        cut came in the very step that handled it, or tore its write)
        cannot be delivered by any device: it is logged, not counted."""
        rec = self.rec
        for a in list(rec.alerts):
            if a["kind"] not in ("sos", "test") or now - a["press_ms"] > 1000:
                continue
            want = "ALERT" if a["kind"] == "sos" else "TEST"
            committed = any(f["event"] == "committed" and f["type"] == want and f["t_ms"] >= a["press_ms"]
                            for f in rec.frames if f["dir"] == "up")
            if not committed:
                rec.alerts.remove(a)
                self._lost_with_power += 1
                rec.event(now, "press_lost_with_power", "%s pressed at %d ms" % (a["kind"], a["press_ms"]))

    def _h_arm_flash_cut(self, n, now):
        self.fs.cut_in = max(1, int(n))

    def _flash_cut(self):
        if self.world.powered:
            self.world.flash_cut()

    def _h_coverage(self, cov, now):
        self.net.latency = {"up": cov.latency_ms, "down": cov.latency_ms}
        self.net.loss = min(cov.loss, 0.95)
        self.net.sms_ms = cov.sms_latency_ms
        self.emu.f["rssi"] = cov.csq

    def _h_receiver(self, up, now):
        self.receiver.set_up(up)

    def _h_receiver_node(self, name, mode, now):
        node = self.nodes[name]
        node.state = mode or "up"
        if mode is not None and self.tcp is not None:
            self.tcp.node_failed(node, now)

    def _h_faults(self, faults, now):
        for k, v in faults.items():
            if k in ("coverage",):
                continue
            v = _fault_value(v)
            if k not in self.emu.f:
                raise ValueError("unknown modem fault %r" % k)
            self.emu.f[k] = v
        # a timed fault that ended goes back to its static value or default
        from host_sim.modem import DEFAULTS

        for w in self.sc.modem_fault_windows:
            if w.name not in faults and w.name in DEFAULTS:
                self.emu.f[w.name] = _fault_value(self.sc.modem_faults.get(w.name, DEFAULTS[w.name]))

    def _h_brownout(self, now):
        self.emu.power(False, now)
        self.rec.summary["device_dead"] = True
        self.rec.event(now, "device_dead", "brown-out")

    def _h_operator(self, command, value, now):
        """The receiving centre's operator: a command rides the device's next ACK."""
        self.receiver.operator(command, value)

    def _h_end(self, now):
        self._done = True

    def _tick(self):
        self.receiver.tick()
        self.rec.battery(self.clock.now, *self.world.battery_sample())

    # -- the run
    def run(self):
        w = self.world
        w.start({
            "action": self._h_action,
            "button": self._h_button,
            "power": self._h_power,
            "arm_flash_cut": self._h_arm_flash_cut,
            "coverage": self._h_coverage,
            "receiver": self._h_receiver,
            "receiver_node": self._h_receiver_node,
            "modem_faults": self._h_faults,
            "brownout": self._h_brownout,
            "operator": self._h_operator,
            "end": self._h_end,
        })
        self.clock.every(TICK_MS, self._tick, first_ms=TICK_MS, name="receiver_tick")
        self.rec.battery(0, *self.world.battery_sample())
        self._boot(_PWRON)
        try:
            while True:
                if self.loop is None:
                    self._off = True
                    self.advance(None, lambda: self._boot_due)
                    self._boot_due = False
                    self._boot(_PWRON)
                    continue
                t0 = self.clock.now
                out0 = sys.stdout
                sys.stdout = self._stdout  # what the firmware prints (contextlib.redirect_stdout, without one per step)
                try:
                    self.steps += 1
                    self.loop.step()
                except PowerCut:
                    self.loop = None
                except WatchdogReset:
                    self.chip.wdt_resets += 1
                    self.rec.event(self.clock.now, "watchdog_reset", "not fed for %d ms" % self.chip.wdt_ms)
                    self._boot(_WDT)
                finally:
                    sys.stdout = out0
                out = self._stdout.getvalue()
                if out:
                    self.printed(out)
                    self._stdout = io.StringIO()
                self._modem_state()
                # a loop that never waits would burn the battery on the board,
                # and here would never let time pass: say so, loudly
                self._spin = self._spin + 1 if self.clock.now == t0 else 0
                if self._spin > SPIN_MAX:
                    raise FirmwareSpins("the main loop ran %d passes at %d ms without waiting" % (self._spin, t0))
        except RunEnd:
            pass
        return self.finish()

    def pending_seqs(self):
        out = []
        for name in self.fs.listdir():
            if name.startswith("o") and not name.endswith(".tmp"):
                raw = self.fs.read(name)
                try:
                    out.append(F.peek(raw)[2])
                except (ProtocolError, TypeError):
                    pass
        return out

    def _unmatched_actions(self):
        """A scenario SOS/TEST the device could take (powered, running, the
        pattern valid in its state, power held through the pattern) whose
        pattern the firmware never recognised is a lost alert too: it is
        added as a press at the action's time."""
        got = [a["press_ms"] for a in self.rec.alerts]
        for kind, at, ok in self._actions:
            if kind not in ("sos", "test") or not ok:
                continue
            end = at + sum(o + h for o, h in self.patterns[kind][-1:]) + 2000
            if any(at <= t <= end for t in self._cut_times) or (self.world.dead and self.clock.now <= end):
                continue
            if end > self.sc.duration_ms:
                continue
            if not any(at <= t <= at + 15000 for t in got):
                self.rec.press(kind, at, self.device_id)
                self.rec.event(at, "press_not_recognised", kind)

    def engine_totals(self):
        """Counters of every modem engine the run built, added up."""
        tot = {"timeouts": 0, "power_cycles": 0, "boots": 0, "ri_syncs": 0, "nmea_dropped": 0}
        for t in self.transports:
            st = t.stats()
            for k in tot:
                tot[k] += st.get(k) or 0
        return tot

    def finish(self):
        now = self.clock.now
        self._unmatched_actions()
        if self.world.dead or any(pc.duration_ms is None for pc in self.sc.power_cuts if pc.at_ms <= now):
            self.rec.summary["device_dead"] = True
        en = self.world.energy
        bq = self.sc.battery
        prof = E.profile_tradeoff(capacity_mah=bq.capacity_mah, heartbeat_s=4 * 3600, modem=bq.modem,
                                  board_quiescent_ma=bq.board_quiescent_ma)
        chip = self.chip
        eng = self.engine_totals()
        self.rec.summary.update({
            "boots": self.boots, "firmware_exceptions": len(self.crashes), "app_steps": self.steps,
            "haptic_calls": self.haptics, "max_watchdog_gap_ms": chip.max_feed_gap_ms,
            "wifi_scans": chip.scans, "presses_lost_with_power": self._lost_with_power,
            "board": self.table.NAME, "light_sleeps": chip.lightsleeps, "uart_bytes_lost": chip.uart_lost,
            "uart_overrun_bytes": chip.uart_overrun, "irq_dropped": chip.irq_dropped,
            "uart_byte_events": sorted(chip.uart_byte_events),
            "watchdog_resets": chip.wdt_resets, "modem_power_cycles": eng["power_cycles"],
            "at_timeouts": eng["timeouts"], "ri_syncs": eng["ri_syncs"],
            "modem_forced_offs": [e[0] for e in self.emu.events if e[1] == "shutdown" and e[2] == "pwrkey"],
            "listen_in_calls": len([e for e in self.emu.events if e[1] == "call"]),
            "modem_deaf_writes": [list(d) for d in self.emu.deaf],
        })
        visible = ("haptic",) + tuple(n for n in self.table.LIGHTS if n in self.table.PINS) + _visible_words()
        res = self.rec.finish(energy=en, pending_seqs=self.pending_seqs(), profiles=prof, strict=self.strict,
                              visible=visible, extra_events=self.world.events)
        res["receiver"]["events"] = [_clean_event(e) for e in self.receiver.events]
        self.results = res
        return res


def _visible_words():
    from host_sim.invariants import VISIBLE_PIN_WORDS

    return tuple(VISIBLE_PIN_WORDS)


def _clean_event(ev):
    keep = ("time", "kind", "label", "device_id", "person_ref", "incident_id", "duress", "position", "evidence", "frame",
            "battery", "csq", "test", "silent_for_s", "status", "detail")
    return {k: ev[k] for k in keep if k in ev}


def _json(d):
    import json

    return json.dumps(d, sort_keys=True).encode()


def failures(results):
    """Human lines for every failed invariant and expectation (empty: pass)."""
    out = []
    for inv in results.get("invariants", []):
        if not inv["ok"]:
            for v in inv["violations"]:
                out.append("invariant %s: %s" % (inv["name"], v))
    for e in results.get("expect", []):
        if not e["ok"]:
            out.append("expect %s: wanted %r, got %r" % (e["name"], e["expected"], e["actual"]))
    n = (results.get("summary") or {}).get("firmware_exceptions")
    if n:
        out.append("firmware raised %d exception(s) (main.py would restart it)" % n)
    return out


def run(scenario, seed=None, strict=False):
    """Run a Scenario; the results dict."""
    return Runner(scenario, seed=seed, strict=strict).run()
