"""Run one scenario in virtual time: the real firmware App, the real modem
engine (ModemTransport) against the SIM7600 emulator, the network model and
the real receiver core, all on one discrete-event clock.

Owns: wiring and event order of one run, and what gets recorded.
    res = run(scenario)              # results dict (host_sim/report.py format)
    r = Runner(scenario); r.run(); r.results
Pieces: World (clock, route, GNSS, energy, scenario events), SimBoard (the
Board), Sim7600 + Network + ModelTcp (modem and network), SimReceiver (the
receiver core over an in-memory store, in virtual wall time, ticking its
silent-device supervision every minute, SMS through the same door), and
App(board, config, ModemTransport(...)) stepped at its own deadlines.

Event-driven: the App is stepped only when something can have changed for
it: its own deadline (capped like main.py at 30 s), the emulator's next
output, a button edge, the end of each GNSS burst while the receiver is
powered (the UART wakes the CPU; the App reads the burst as soon as it is
complete, so the fix tracker always holds the latest epoch), power
returning. After a step that produced transport events it is stepped
again at the same instant. A request the App left for the engine is not
re-stepped for: the App starts it in the same step (App.step polls the
transport again at its end), and a regression there shows as latency. A 24 h day is a few hundred thousand
events.

Power cuts: the world cuts the battery (at a time, or at the n-th flash
write, where the write is torn by firmware.fs PowerCut); the App, the
modem and RAM are gone; when power returns the App is rebuilt from the
same flash as after a reset (config.json re-read, outbox reloaded).

Never does: change firmware behaviour. It observes through thin wrappers
on the App's instance (button events, outbox add/ACK, transport calls and
events) and never alters their results.

Must stay in sync with: firmware/main.py (loop, sleep cap, crash recovery),
firmware/app.py, host_sim/world.py, host_sim/results.py, docs/simulator.md.
"""

import contextlib
import hashlib
import io
import os
import random
import shutil
import tempfile
import traceback

from firmware import config as C
from firmware.app import App, record_fault
from firmware.alert import FAULT_EXCEPTION
from firmware.button import EV_CANCEL, EV_DURESS_CANCEL, EV_SOS, EV_TEST, ButtonConfig
from firmware.fs import PowerCut
from firmware.modem.transport import ModemTransport
from host_sim import energy as E
from host_sim.modem import Sim7600
from host_sim.network import Network
from host_sim.results import Recorder
from host_sim.simboard import SimBoard
from host_sim.world import World
from protocol import frame as F
from protocol.crypto import DeviceKeys
from protocol.errors import ProtocolError
from receiver import core, masterkey
from receiver import store as S

DEVICE_ID = 1001
PERSON_REF = "URN 01/1234/26"
SMS_NUMBER = "+447700900999"
RECEIVER_HOST = "203.0.113.5"
RECEIVER_PORT = 5000
MAX_SLEEP_MS = 30000  # firmware/main.py
TICK_MS = 60000  # receiver supervision
GNSS_READ_AFTER_MS = 5  # the device reads a GNSS burst this long after its last byte
SAME_INSTANT_MAX = 8
_EVENT_KIND = {EV_SOS: "sos", EV_CANCEL: "cancel", EV_DURESS_CANCEL: "duress_cancel", EV_TEST: "test"}
_COVERAGE = {"data+sms": "full", "sms-only": "sms", "none": "none"}


def device_key(seed):
    """The simulated device's 32-byte master key (derived from the seed; a
    simulation, never a real device's key)."""
    return hashlib.sha256(b"wearable-panic sim device key %d" % seed).digest()


def button_patterns(cfg=None):
    """{kind: [(offset_ms, hold_ms), ...]} a person would press for each
    named action, from the firmware's own button configuration."""
    b = cfg or ButtonConfig()
    tap, gap = 150, 250
    taps = lambda n: [(i * (tap + gap), tap) for i in range(n)]  # noqa: E731
    test = taps(b.test_presses) + [(b.test_presses * (tap + gap), b.test_hold_ms + 300)]
    return {
        "sos": taps(b.sos_presses),
        "cancel": [(0, b.cancel_hold_ms + 500)],
        "duress_cancel": taps(b.duress_presses),
        "test": test,
    }


def device_config(scenario, key):
    """config.json contents for the scenario: [device] keys are firmware
    config fields, timings (heartbeat_s ...) or button settings
    (sos_hold_ms ...) by their own names; test_enabled turns on both the
    config flag and the button's TEST pattern, as an engineer would."""
    d = {
        "device_id": DEVICE_ID,
        "key_hex": key.hex(),
        "receiver_host": RECEIVER_HOST,
        "receiver_port": RECEIVER_PORT,
        "sms_number": SMS_NUMBER,
        "apn": "internet",
        "power_profile": scenario.profile,
    }
    timings = {}
    button = {}
    bfields = ButtonConfig().to_dict()
    for k, v in scenario.device.items():
        if k in C.TIMINGS:
            timings[k] = v
        elif k == "test_enabled":
            d[k] = v
            button[k] = v
        elif k in bfields:
            button[k] = v
        elif k in ("device_id", "key_hex", "engineer_key_hex"):
            raise ValueError("[device] %s is set by the simulator" % k)
        else:
            d[k] = v
    if timings:
        d["timings"] = timings
    if button:
        d["button"] = button
    cfg = C.validate(d)
    if cfg.errors:
        raise ValueError("[device]: " + "; ".join(cfg.errors))
    return d, cfg


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
        st.add_device(DEVICE_ID, key, PERSON_REF, heartbeat_s=heartbeat_s)
        self.core = core.Receiver(st, clock=self.clock, events=self._event)
        self.keys = DeviceKeys(key)
        self.up = True
        self.held_sms = []
        self.events = []  # every receiver event dict

    def _event(self, ev):
        self.events.append(ev)
        rec = self.run.rec
        t = self.run.clock.now
        if ev["kind"] == "device_silent":
            rec.silent(t, ev["device_id"])
        elif ev["kind"] == "low_battery":
            rec.summary["low_battery"] = True

    def _frame(self, raw, path, peer):
        rec = self.run.rec
        t = self.run.clock.now
        try:
            ftype, dev, seq = F.peek(raw)
            name = F.TYPE_NAMES.get(ftype, "?")
        except ProtocolError:
            ftype, dev, seq, name = None, None, None, "?"
        out = self.core.handle_frames([(bytes(raw), path, peer)])[0]
        rec.frame(t, "up", "received" if out.status in (core.ACCEPTED, core.DUPLICATE_S) else "rejected",
                  name, seq, dev, path, len(raw), note=out.status)
        if out.status == core.ACCEPTED:
            duress = False
            if ftype == F.CANCEL:
                try:
                    duress = bool(F.decode(self.keys, raw, F.UPLINK).body.duress)
                except ProtocolError:
                    pass
            rec.raise_(t, dev, seq, name, duress)
        for r in out.replies:
            try:
                _, ddev, dseq = F.peek(r)
                acked = F.decode(self.keys, r, F.DOWNLINK).body.acked_seq
            except ProtocolError:
                ddev, dseq, acked = dev, None, None
            rec.frame(t, "down", "built", "ACK", dseq, ddev, path, len(r), acked_seq=acked)
        return out

    # -- the emulator's endpoint interface
    def on_tcp_frame(self, raw, now):
        if not self.up:
            return []
        return list(self._frame(raw, "tcp", "sim").replies)

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


class _Transport:
    """ModemTransport seen through a window: records what the outbox hands
    it and what comes back, changes nothing."""

    def __init__(self, inner, run):
        self.inner = inner
        self.run = run
        self.inflight = []  # (name, seq, path) waiting for sent / sms_sent
        self.n_events = 0

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
                        self.run.rec.frame(t, "up", ev, f[0], f[1], DEVICE_ID, path, f[3])
                        if ev == "on_air":
                            self.run.modem_tx()
                        break
        return evs


class Runner:
    def __init__(self, scenario, seed=None, flash_root=None, strict=False):
        self.sc = scenario
        self.seed = scenario.seed if seed is None else seed
        self.strict = strict
        self.key = device_key(self.seed)
        self.keys = DeviceKeys(self.key)
        self.cfg_dict, cfg = device_config(scenario, self.key)
        self.patterns = button_patterns(ButtonConfig.from_dict(cfg.button))
        self.world = World(scenario, patterns=self.patterns)
        self.clock = self.world.clock
        self.rec = Recorder(scenario, route=self.world.route)
        self.receiver = SimReceiver(self, self.key, cfg.t("heartbeat_s"))
        cov = scenario.coverage_at(0)
        self.net = Network(seed=self.seed, up_ms=cov.latency_ms, down_ms=cov.latency_ms, jitter_ms=20,
                           loss=min(cov.loss, 0.95), outages=[(w.from_ms, w.to_ms) for w in scenario.receiver_down],
                           sms_ms=cov.sms_latency_ms)
        faults = {k: _fault_value(v) for k, v in scenario.faults_at(0).items()}
        schedule = [(c.from_ms, _COVERAGE[c.mode]) for c in scenario.coverage] or [(0, "full")]
        if schedule[0][0] > 0:
            schedule.insert(0, (0, "full"))
        faults.setdefault("coverage", tuple(schedule))
        faults.setdefault("own_number", "+447700900123")
        faults.setdefault("rssi", cov.csq)
        self.emu = Sim7600(self.receiver, self.net, seed=self.seed, **faults)
        self.emu.record = False
        self._own_tmp = flash_root is None
        self.flash_root = flash_root or tempfile.mkdtemp(prefix="panic-sim-")
        self.board = SimBoard(self.world, self.emu, os.path.join(self.flash_root, "flash"), self.rec,
                              clock_known=not scenario.clock_unknown_at_boot)
        self.app = None
        self.t = None
        self.boots = 0
        self.crashes = []
        self.steps = 0
        self._timer = None
        self._same = 0
        self._gnss_wake = None
        self._last_gnss_wake = -10**9
        self._tx_timer = None
        self._mstate = None
        self._actions = []  # (kind, at_ms, the device could take it)
        self._cut_times = []
        self._lost_with_power = 0
        self._done = False
        self.results = None
        self._stdout = io.StringIO()
        rng = random.Random(self.seed ^ 0x51D)
        self._rand = lambda n: rng.randrange(n) if n > 1 else 0  # the firmware's jitter, seeded: runs repeat
        # config.json on the simulated flash, as provisioning leaves it
        self.board.fs.write_atomic(C.CONFIG_FILE, _json(self.cfg_dict))

    # -- time
    def unix(self):
        return self.sc.start_utc_ms / 1000.0 + self.clock.now / 1000.0

    # -- the App's life
    def _boot(self):
        b = self.board
        b.fs.cleanup()
        cfg = C.load(b.fs)
        self.boots += 1
        self.t = _Transport(ModemTransport(b.modem, b, cfg), self)
        now = self.clock.now - b.boot_ms
        try:
            self.app = App(b, cfg, self.t, now, fs=b.fs, rand=self._rand)
        except PowerCut:
            self.app = None
            return
        self._instrument(self.app)
        self.rec.event(self.clock.now, "boot", "boot %d" % self.boots)
        self._schedule(self.clock.now)

    def _instrument(self, app):
        rec, clock, keys, fs = self.rec, self.clock, self.keys, self.board.fs
        btn_update = app.button.update

        def update(level, now):
            ev = btn_update(level, now)
            if ev is not None and ev in _EVENT_KIND:
                rec.press(_EVENT_KIND[ev], clock.now, DEVICE_ID)
            return ev

        app.button.update = update
        ob = app.outbox
        add = ob.add

        def add_(ftype, seq, raw, now, sms=False):
            t = clock.now
            name = F.TYPE_NAMES.get(ftype, "?")
            rec.frame(t, "up", "built", name, seq, DEVICE_ID, None, len(raw))
            try:
                body = F.decode(keys, raw, F.UPLINK).body
                rec.position(t, name, seq, body.source, body.lat if body.source else None,
                             body.lon if body.source else None, body.accuracy, body.age)
            except ProtocolError:
                pass
            r = add(ftype, seq, raw, now, sms)
            from firmware.outbox import entry_name

            if fs.read(entry_name(seq)) == bytes(raw):
                rec.frame(clock.now, "up", "committed", name, seq, DEVICE_ID, None, len(raw))
            return r

        ob.add = add_
        on_frame = ob.on_frame

        def on_frame_(raw, now):
            res = on_frame(raw, now)
            if res is not None:
                ftype, fr = res
                rec.frame(clock.now, "down", "acked", "ACK", fr.seq, DEVICE_ID, None, len(raw),
                          acked_seq=fr.body.acked_seq)
            return res

        ob.on_frame = on_frame_

    def _schedule(self, t):
        t = max(t, self.clock.now)
        tm = self._timer
        if tm is not None and tm.active and tm.at <= t:
            return
        if tm is not None:
            tm.cancel()
        self._timer = self.clock.at(t, self._step, name="app_step")

    def _step(self):
        self._timer = None
        if self.app is None or not self.world.powered:
            return
        b = self.board
        now = self.clock.now
        # a step takes no virtual time: the ESP32's state is what it does
        # between steps (idle with the UARTs on, or light sleep)
        n0 = self.t.n_events
        self.steps += 1
        try:
            with contextlib.redirect_stdout(self._stdout):
                wait = self.app.step(now - b.boot_ms)
        except PowerCut:
            return  # the world already cut the power
        except Exception as e:  # noqa: BLE001 - main.py: record, back off, rebuild
            self.crashes.append("%d ms: %s: %s" % (now, e.__class__.__name__, e))
            self.rec.event(now, "firmware_exception", traceback.format_exc(limit=3)[-300:])
            try:
                record_fault(b.fs, FAULT_EXCEPTION)
            except PowerCut:
                return
            self.app = None
            self.clock.after(1000, self._reboot_after_crash, name="reboot")
            return
        b.feed_watchdog()
        out = self._stdout.getvalue()
        if out:
            b.printed(out)
            self._stdout = io.StringIO()
        rng = random.Random(self.seed ^ 0x51D)
        self._rand = lambda n: rng.randrange(n) if n > 1 else 0  # the firmware's jitter, seeded: runs repeat
        wait = min(wait, MAX_SLEEP_MS)
        if self.app.can_light_sleep():
            b.light_sleep(wait)
        else:
            b.idle(wait)
        self._modem_state()
        if self.t.n_events != n0 and self._same < SAME_INSTANT_MAX:
            self._same += 1
            self._schedule(now)
            return
        self._same = 0
        nxt = now + max(1, wait)
        te = self.emu.next_event_ms()
        if te is not None:
            nxt = min(nxt, max(now + 1, te))
        self._schedule(nxt)
        self._arm_gnss()

    def _reboot_after_crash(self):
        if self.world.powered and self.app is None:
            self.board.cause = 5  # RESET_SOFT
            self._boot()

    def _arm_gnss(self):
        g = self.world.gnss
        if not self.world.powered or not g.on:
            return
        nb = g.burst_end_ms(self.clock.now)
        if nb is None:
            return
        t = max(nb + GNSS_READ_AFTER_MS, self._last_gnss_wake + 500, self.clock.now + 1)
        if self._gnss_wake is not None and self._gnss_wake.active and self._gnss_wake.at <= t:
            return
        if self._gnss_wake is not None:
            self._gnss_wake.cancel()
        self._gnss_wake = self.clock.at(t, self._gnss_read, name="gnss_burst")

    def _gnss_read(self):
        self._gnss_wake = None
        self._last_gnss_wake = self.clock.now
        self._schedule(self.clock.now)

    # -- energy of the modem, from what the emulator is doing
    def _modem_state(self):
        e = self.emu
        if not self.world.powered:
            return
        if self._tx_timer is not None and self._tx_timer.active:
            st = "tx"
        elif not e.powered or not e.on:
            st = "off"
        elif e.asleep():
            st = "sleep"
        else:
            st = "idle"
        if st != self._mstate:
            self._mstate = st
            self.world.set_state("modem", st)

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
        (SOS only when no alert is active, TEST only with test enabled)."""
        app = self.app
        ok = self.world.powered and app is not None and not app.dead
        if ok and kind == "sos":
            ok = not app.ctl.looks_active()
        elif ok and kind == "test":
            ok = bool(app.cfg.test_enabled) and not app.ctl.looks_active()
        self._actions.append((kind, now, ok))

    def _h_button(self, pressed, now):
        self.board.level = 0 if pressed else 1
        self._schedule(now)

    def _h_power(self, on, now):
        b = self.board
        if not on:
            self._cut_times.append(now)
            self._drop_uncommitted_presses(now)
            self.app = None
            self.t = None
            if self._timer is not None:
                self._timer.cancel()
            self.emu.power(False, now)
            b.power_lost()
            self.rec.event(now, "power_off", "")
        else:
            self.emu.power(True, now)
            b.power_back()
            if self.sc.gnss.on_at_boot:  # the board powers the GNSS at boot, as at t = 0
                self.world.set_state("gnss", "acquire")
            self.world.set_state("esp32", "active")
            b.esp32 = "active"
            self._boot()

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
        self.board.arm_flash_cut(n)

    def _h_coverage(self, cov, now):
        self.net.latency = {"up": cov.latency_ms, "down": cov.latency_ms}
        self.net.loss = min(cov.loss, 0.95)
        self.net.sms_ms = cov.sms_latency_ms
        self.emu.f["rssi"] = cov.csq
        self._schedule(now)

    def _h_receiver(self, up, now):
        self.receiver.set_up(up)

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
        self._schedule(now)

    def _h_brownout(self, now):
        self.app = None
        if self._timer is not None:
            self._timer.cancel()
        self.emu.power(False, now)
        self.board.power_lost()
        self.rec.summary["device_dead"] = True
        self.rec.event(now, "device_dead", "brown-out")

    def _h_end(self, now):
        self._done = True

    def _tick(self):
        self.receiver.tick()

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
            "modem_faults": self._h_faults,
            "brownout": self._h_brownout,
            "end": self._h_end,
        })
        self.board.set_esp32("active")
        self.clock.every(TICK_MS, self._tick, first_ms=TICK_MS, name="receiver_tick")
        self._boot()
        try:
            w.run()
        finally:
            pass
        return self.finish()

    def pending_seqs(self):
        from firmware.outbox import entry_name  # noqa: F401

        out = []
        for name in self.board.fs.listdir():
            if name.startswith("o") and not name.endswith(".tmp"):
                raw = self.board.fs.read(name)
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
                self.rec.press(kind, at, DEVICE_ID)
                self.rec.event(at, "press_not_recognised", kind)

    def finish(self):
        now = self.clock.now
        self._unmatched_actions()
        if self.world.dead or any(pc.duration_ms is None for pc in self.sc.power_cuts if pc.at_ms <= now):
            self.rec.summary["device_dead"] = True
        en = self.world.energy
        bq = self.sc.battery
        prof = E.profile_tradeoff(capacity_mah=bq.capacity_mah, heartbeat_s=4 * 3600, modem=bq.modem,
                                  board_quiescent_ma=bq.board_quiescent_ma)
        self.rec.summary.update({
            "boots": self.boots, "firmware_exceptions": len(self.crashes), "app_steps": self.steps,
            "haptic_calls": self.board.haptics, "max_watchdog_gap_ms": self.board.max_feed_gap_ms,
            "wifi_scans": self.board.scans, "presses_lost_with_power": self._lost_with_power,
        })
        res = self.rec.finish(energy=en, pending_seqs=self.pending_seqs(), profiles=prof, strict=self.strict,
                              visible=("haptic",) + _visible_words(), extra_events=self.world.events)
        res["receiver"]["events"] = [_clean_event(e) for e in self.receiver.events]
        self.results = res
        if self._own_tmp:
            shutil.rmtree(self.flash_root, ignore_errors=True)
        return res


def _visible_words():
    from host_sim.invariants import VISIBLE_PIN_WORDS

    return tuple(VISIBLE_PIN_WORDS)


def _clean_event(ev):
    keep = ("time", "kind", "label", "device_id", "person_ref", "incident_id", "duress", "position", "frame", "battery", "csq",
            "test", "silent_for_s", "status", "detail")
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
