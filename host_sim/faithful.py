"""Faithful mode: the real firmware inside the real MicroPython VM, the
world around it served over sockets in real time, a real receiver over TCP.

Owns: the rig, one faithful run: `Rig` wires the pieces below, paces the
world, moves bytes between them (`pump()`), parses the board's ctrl and
flash-gate lines, decodes what the taps see with the device key, and turns
it all into results. The pieces, one job each:
- host_sim/install.py: the compiled release on the board folder, as
  `panic flash` lays it (layout from panic/release.py).
- the board: a MicroPython unix-port process (host_sim/mpboard.py) whose
  "/" is that folder, with /data/config.json; its /main.py runs
  firmware.main.main(), which on the unix port builds
  firmware/board_unix.py's UnixBoard. Its stdin/stdout are the USB serial,
  served as socket://127.0.0.1:PORT (`console_url`) for the tools.
- host_sim/periph.py's PeriphServer: the host end of board_unix.py's wire
  (ctrl, gnss, modem channels over TCP; format in firmware/board_unix.py)
  and of the flash gate.
- the world (host_sim/world.py) paced against the wall clock
  (host_sim/pacer.py, the scenario's time_scale): button edges, GNSS NMEA
  bytes, battery mV, coverage, power cuts (the VM process is killed and
  restarted: RAM and clock lost, the folder kept), brown-out.
- the modem: host_sim/modem.py's Sim7600 emulator on the modem channel,
  its sockets real (host_sim/taps.py TapTcp over host_sim/tcp.py SocketTcp,
  redirected from the receiver address in the config to the receiver
  below), tapped both ways, recording frames as they cross the air.
- the receiver: host_sim/receiver_thread.py, receiver/server.py's asyncio
  Server over a real receiver/store.py SQLite store, in a thread of this
  process, with its clock on scenario time (start + simulated ms); SMS
  from the emulator go to its core. As in virtual time, the scenario's
  towers and Wi-Fi survey are imported into its location database
  (host_sim/cells.py), the modem answers with the tower serving the
  person, and every receiver event and a battery sample a simulated minute
  are recorded for the report.
Results go through host_sim/results.py's Recorder, so the invariants and
[expect] checks are the virtual-time mode's.

Or the receiver runs elsewhere (`panic sim device`): a
host_sim/rig_remote.py RemoteReceiver, a real `panic receiver serve` that
the modem's sockets reach at its own address (the device's config names
it) and its SMS endpoint over HTTP. The rig then cannot read that store: a
frame counts as stored (committed and raised) when an ACK that verifies
under the device key names its seq; the receiver's own alarms (silent
device) and a scenario's operator commands stay at the receiver, and the
rig says so in its notes.

Power cuts armed at a flash write are exact: the board's VFS shim
(host_sim/mpboard.py, flash_gate) reports each mutating flash step on a
"flash" channel and waits for the host's go-ahead, so the host kills the
VM at the n-th atomic write's step, as host_sim/esp32.py's SimFs
tears it in virtual time. Once the device is gone for good (brown-out, a
cut never restored) the rest of the run is paced fast (DEAD_WALL_S).

Never: lays out a release (install.py, from panic/release.py), frames the
board's channels (periph.py), runs the receiver's logic (receiver/), or
judges a run (results.py and invariants.py do).

Not faithful (said in the results' events as "faithful_note"): modem
faults whose names are not host_sim/modem.py settings (timed ones that are
change the emulator's settings in place, as the virtual-time runner does),
and the energy model (the ESP32 is counted idle throughout; the modem off /
asleep / idle as the emulator shows it).

Entry points:
    run(scenario, args)    what `panic sim run FILE --faithful` calls
    run_faithful(scenario_path, json_out=None, report_out=None,
                 time_scale=None, duration_ms=None, heap=None) -> results
    Rig(...)  start() / run_until(t_ms) / run(progress=) / stop()  (tests, tools)
    Rig.progress() -> {sim_ms, duration_ms, wall_s, time_scale, on_air, acks, boots}
    Rig.world / pacer / periph / emu: made by start(); before it they raise
    RigNotStarted (a host_sim.errors.SimBug: our misuse, never the board's)

Stays in sync with: firmware/board_unix.py (the wire), host_sim/results.py
(what is recorded), host_sim/runner.py (the same receiver set-up and
recording in virtual time), host_sim/cells.py, host_sim/world.py (handlers),
host_sim/taps.py (the Rig is its TapHost), host_sim/install.py,
host_sim/periph.py, host_sim/receiver_thread.py.
"""

import json
import os
import queue
import select
import shutil
import socket
import tempfile
import time
from typing import TypeVar

from protocol import frame as F
from protocol.crypto import DeviceKeys
from protocol.errors import ProtocolError
from protocol.sms import from_sms

from host_sim import cells
from host_sim import scenario as SC
from host_sim.errors import SimBug
from host_sim.install import install_release
from host_sim.modem import DEFAULTS as MODEM_SETTINGS
from host_sim.modem import Sim7600
from host_sim.mpboard import MpBoard
from host_sim.pacer import Pacer
from host_sim.periph import PeriphServer
from host_sim.receiver_thread import ReceiverThread
from host_sim.results import Recorder
from host_sim.setup import PERSON_REF, button_patterns, device_config, node_addresses
from host_sim.taps import SmsEndpoint, TapTcp
from host_sim.world import World

# The smallest heap the firmware runs a scenario in with a console session
# open, release installed as files (.mpy loaded into the heap): 224 KB on
# the 64-bit unix port before the shared event-name modules, 352 KB after
# (336 KB fails: at the console's first byte 157 KB is free but the largest
# free block is 6 KB, so loading firmware.diag fails; measured with
# micropython.mem_info()). That is fragmentation, not live data (167 KB
# after a collection either way); the production layout, ROMFS, runs the
# code in place (bench_firmware: 56 KB peak on 32 bits), and the
# T-SIM7600E's ESP32-WROVER has 4 MB of PSRAM for the heap. The default
# leaves ~40 % headroom over 352 KB (bench_faithful, later, on the
# T-SIM7600E's own GNSS: 384 KB runs, 352 KB does not: ~30 %).
DEFAULT_HEAP = "512k"
PUBLIC_RX = ("203.0.113.5", 5000)  # what the config names; redirected to the real receiver
DEVICE_ID = 4242
BATTERY_LOG_MS = 60000  # a battery sample for the report each simulated minute (host_sim/runner.py TICK_MS)
BOOT_TIMEOUT_S = 60  # wall seconds the VM may take to load the release and say hello
# Once the device is gone for good (brown-out, a cut never restored) no
# firmware runs: the rest of the run is the receiver's supervision alone,
# paced to end within DEAD_WALL_S wall seconds (never slower than before).
DEAD_WALL_S = 10.0
RESET_POWER_ON = 1
_COVERAGE = {"data+sms": "full", "sms-only": "sms", "none": "none"}


class RigNotStarted(SimBug):
    """A part of a Rig that start() makes, used before start()."""


_T = TypeVar("_T")


def _started(part: "_T | None", name) -> _T:
    if part is None:
        raise RigNotStarted("Rig.%s is made by start(): start the rig first" % name)
    return part


def _fault_value(v):
    """Timed faults give params as a table: { value = x } means x."""
    if isinstance(v, dict) and set(v) == {"value"}:
        return v["value"]
    return v


# ---------------------------------------------------------------------------- the rig


class Rig:
    """One faithful run. root: the board folder (None: a temp folder with a
    fresh release and config); db: the receiver store (None: temp);
    master: receiver.masterkey.MasterKey (None: a fresh one). With root
    given, the device's key is read from its /data/config.json (the
    device must already be registered in db, as `panic provision` does).
    rom: bytes of the board's ROM partition, for a root flashed with
    `panic flash --romfs` (its image is in root + ".rom"); the firmware
    keeps `heap` beside it (MpBoard.vm_heap).
    remote: a rig_remote.RemoteReceiver (the receiver runs elsewhere; db
    and master are then unused); key: the device key (32 bytes) to give a
    fresh board (None: a random one), as registered at that receiver."""

    def __init__(self, scenario, root=None, db=None, master=None, time_scale=None, heap=None, start_utc_ms=None,
                 duration_ms=None, device_id=DEVICE_ID, rom=None, remote=None, key=None):
        from receiver import masterkey

        self.sc = scenario if isinstance(scenario, SC.Scenario) else SC.load(scenario)
        if start_utc_ms is not None:
            self.sc.start_utc_ms = int(start_utc_ms)
        if duration_ms is not None:
            self.sc.duration_ms = int(duration_ms)
        self.scale = float(time_scale or self.sc.time_scale or 1.0)
        self.heap = heap or DEFAULT_HEAP
        self.rom = rom  # bytes of the board's ROM partition (a root flashed with --romfs), or None
        self._tmp = tempfile.mkdtemp(prefix="faithful-")
        self.root = root or os.path.join(self._tmp, "board")
        self.db = db or os.path.join(self._tmp, "receiver.db")
        self.master = master or masterkey.MasterKey(os.urandom(32))
        self.rec = Recorder(self.sc)
        self.notes = []
        self._q = queue.Queue()  # receiver events, from its thread; SMS answers from rig_remote's
        self.remote = remote
        self.proven = set()  # seqs an authenticated ACK named (a remote receiver stored them)
        self.carried = set()  # seqs an earlier run left in the outbox: sent again, not raised as this run's
        self._up_info = {}  # seq -> (type name, duress) of the uplink frames seen
        self.seen_up = {}  # seq -> first on-air sim ms
        self.battery_low_seen = False
        self.rx_up = True
        # a centre of several nodes ([[receiver]]): each address the device's
        # list names leads to the one real receiver (one store: nodes of a
        # centre share their database), unless that node is dead (refused:
        # the dead port) or cut off (the silent port: accepts, never answers)
        self.nodes = node_addresses(self.sc)
        self.node_state = {n: "up" for n in self.nodes}
        self._sms_held = []
        self.board: "MpBoard | None" = None  # made by start()
        self.rx: "ReceiverThread | None" = None  # None with a remote receiver
        # made by start(); read through the properties below
        self._periph: "PeriphServer | None" = None
        self._world: "World | None" = None
        self._pacer: "Pacer | None" = None
        self._emu: "Sim7600 | None" = None
        self.stats = {"boots": 0, "max_lag_ms": 0, "wall_s": 0.0, "console_bytes_unauth": 0}
        self._emu_ev = 0
        self._next_batt = 0
        self._next_batt_log = 0
        self._last_mv = None
        self._button_level = 1
        self._powered = True
        self._dead_port = None
        self._cut_in = 0  # atomic flash writes to go before the torn one (0: none armed)
        self.flash = {"open": 0, "rename": 0, "remove": 0, "atomic_writes": 0}
        if root is None:
            os.makedirs(os.path.join(self.root, "data"), exist_ok=True)
            install_release(self.root)
            self.device_id = device_id
            self.key = key or os.urandom(32)
            self.ekey = os.urandom(32)
            try:
                self.cfg = device_config(self.sc, self.key, device_id=device_id, engineer_key=self.ekey,
                                         receiver=remote.tcp if remote is not None else PUBLIC_RX)[0]
            except ValueError as e:
                raise SC.ScenarioError(str(e), self.sc.path)
            with open(os.path.join(self.root, "data", "config.json"), "w") as f:
                json.dump(self.cfg, f, sort_keys=True)
            self._register = remote is None
        else:
            with open(os.path.join(self.root, "data", "config.json")) as f:
                self.cfg = json.load(f)
            self.device_id = self.cfg["device_id"]
            self.key = bytes.fromhex(self.cfg["key_hex"])
            self.ekey = bytes.fromhex(self.cfg["engineer_key_hex"])
            self._register = False
        self.keys = DeviceKeys(self.key)
        if remote is not None:
            if self.sc.expect.pop("silent_alarm", None) is not None:
                self.note(0, "[expect] silent_alarm not checked: the receiver raises it, at %s:%d" % remote.tcp)
        from firmware.button import ButtonConfig

        try:
            self.bcfg = ButtonConfig.from_dict(self.cfg.get("button") or {})
        except ValueError:
            self.bcfg = ButtonConfig()
        self.patterns = button_patterns(self.bcfg)
        self.active_low = (self.cfg.get("button") or {}).get("active_low", True)
        from firmware import boards

        self.table = boards.load(self.cfg.get("board", "t-sim7600e"))
        self.modem_gnss = self.table.FACTS["gnss"][0] == "modem"
        self._status_sent = None
        self._ri_sent = -1  # start of the last RI pulse sent
        self._pwrkey_bt = None  # the board's ticks when it pressed PWRKEY

    # -- the parts start() makes ---------------------------------------------------
    @property
    def world(self) -> World:
        return _started(self._world, "world")

    @property
    def pacer(self) -> Pacer:
        return _started(self._pacer, "pacer")

    @property
    def periph(self) -> PeriphServer:
        return _started(self._periph, "periph")

    @property
    def emu(self) -> Sim7600:
        return _started(self._emu, "emu")

    # -- clocks -----------------------------------------------------------------
    def sim_now(self):
        return self._pacer.sim_now() if self._pacer is not None else 0

    def unix_now(self):
        """The receiver's clock: scenario start + simulated time (s)."""
        return (self.sc.start_utc_ms + self.sim_now()) / 1000.0

    def note(self, t, text):
        self.notes.append((t, text))
        self.rec.event(t, "faithful_note", text)

    # -- start / stop ---------------------------------------------------------------
    def start(self):
        from host_sim.clock import Clock

        clock = Clock()
        self._world = World(self.sc, clock=clock, patterns=self.patterns)
        self._pacer = Pacer(clock, self.scale, paused=True)
        if self.remote is None:
            self.rx = rx = ReceiverThread(self.db, self.master, self.unix_now, self._q.put,
                                          supervise_every=max(0.05, min(1.0, 30.0 / self.scale)),
                                          heartbeat_s=self.cfg.get("timings", {}).get("heartbeat_s", 3600)).start()
            if self._register:  # a fresh board (never with a remote receiver)
                hb = self.cfg.get("timings", {}).get("heartbeat_s")
                rx.store.add_device(self.device_id, self.key, PERSON_REF, heartbeat_s=hb)
                cells.import_into(rx.store, self.sc)  # the scenario's towers and survey, as host_sim/runner.py
        dead = socket.socket()
        dead.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        self._dead_sock = dead
        self._dead_port = dead.getsockname()[1]
        silent = socket.socket()
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # never accepted: the kernel completes the handshake, nothing ever answers
        self._silent_sock = silent
        self._silent_port = silent.getsockname()[1]
        self._periph = PeriphServer()
        self._emu = self._make_modem()
        self.world.start({
            "button": self._on_button, "power": self._on_power, "arm_flash_cut": self._on_flash_cut,
            "receiver": self._on_receiver, "brownout": self._on_brownout, "action": self._on_action,
            "modem_faults": self._on_faults, "operator": self._on_operator,
            "receiver_node": self._on_receiver_node,
        })
        self.world.set_state("esp32", "idle")
        self.board = MpBoard(self.root, heap=self.heap, run="/main.py", rom=self.rom,
                             env={"PANIC_PERIPH": "127.0.0.1:%d" % self.periph.port},
                             flash_gate="127.0.0.1:%d" % self.periph.port).start()
        self.stats["boots"] += 1
        self._t0 = time.monotonic()
        return self

    @property
    def console_url(self):
        return _started(self.board, "board").url

    def _make_modem(self):
        sc = self.sc
        faults = {}
        for k, v in (sc.modem_faults or {}).items():
            if k in MODEM_SETTINGS:
                faults[k] = v
            else:
                self.note(0, "modem fault %s not emulated in faithful mode" % k)
        for f in sc.modem_fault_windows:
            if f.name not in MODEM_SETTINGS:
                self.note(f.from_ms, "timed modem fault %s not emulated in faithful mode" % f.name)
        cov = [(c.from_ms, _COVERAGE.get(c.mode, "full")) for c in sc.coverage] or [(0, "full")]
        if cov[0][0] > 0:
            cov.insert(0, (0, "full"))
        faults.setdefault("coverage", cov)
        if sc.coverage:
            faults.setdefault("rssi", sc.coverage[0].csq)
        if sc.towers:  # the serving cell follows the person (host_sim/cells.py), as host_sim/runner.py
            faults.setdefault("cell", cells.ServingCell(sc.towers, self.world.route.true_position))
        return Sim7600(SmsEndpoint(self), tcp=TapTcp(self), seed=sc.seed,
                       gnss=self.world.gnss if self.modem_gnss else None, **faults)

    def node_at(self, host, port):
        for n, a in self.nodes.items():
            if a == (host, port):
                return n
        return None

    def rx_addr_for(self, host, port):
        node = self.node_at(host, port)
        state = self.node_state.get(node, "up")
        if not self.rx_up or state == "kill":
            return ("127.0.0.1", self._dead_port)
        if state == "cut":
            return ("127.0.0.1", self._silent_port)
        if self.remote is not None:
            return self.remote.tcp
        return ("127.0.0.1", _started(self.rx, "rx").port)

    def stop(self):
        if self.board is not None:
            self.board.stop()
        if self._periph is not None:
            self.periph.close()
        if self.rx is not None:
            self.rx.stop()
        if self.remote is not None:
            self.remote.close()
        if getattr(self, "_dead_sock", None) is not None:
            self._dead_sock.close()
        if getattr(self, "_silent_sock", None) is not None:
            self._silent_sock.close()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *a):
        self.stop()

    # -- world handlers ------------------------------------------------------------------
    def _on_action(self, kind, now):
        if kind != "raw":
            self.rec.press(kind, now + self._fires_after(kind), device_id=self.device_id)

    def _fires_after(self, kind):
        """When the firmware's detector fires, from the pattern's start: a
        press is "pressed" then, as in virtual time (the release of the last
        tap; a hold's threshold), so latencies mean the same in both modes."""
        p = self.patterns.get(kind) or [(0, 0)]
        if kind == "cancel":
            return p[-1][0] + self.bcfg.cancel_hold_ms
        if kind == "test":
            return p[-1][0] + self.bcfg.test_hold_ms
        return max(o + h for o, h in p)

    def _on_button(self, pressed, now):
        self._button_level = (0 if pressed else 1) if self.active_low else (1 if pressed else 0)
        self.periph.send(b"ctrl", b"b %d %d\n" % (self._button_level, now))

    def _on_power(self, on, now):
        if not on:
            self._power_off(now)
        else:
            self._powered = True
            self.emu.power(True, now)  # the battery is back (the modem sits on it: no supply switch)
            _started(self.board, "board").power_cycle()
            self.stats["boots"] += 1

    def _power_off(self, now):
        self._powered = False
        _started(self.board, "board").kill()
        self.periph.drop_all()
        self.emu.power(False, now)
        if self.world.dead or self.world.never_back:
            self._fast_forward(now)

    def _fast_forward(self, now):
        left_s = max(0, self.sc.duration_ms - now) / 1000.0
        scale = max(self.pacer.time_scale, left_s / DEAD_WALL_S)
        if scale > self.pacer.time_scale:
            self.pacer.set_scale(scale)
            if self.rx is not None:
                self.rx.server.supervise_every = max(0.02, min(1.0, 60.0 / scale))  # a check every <= 60 simulated s
            self.stats["fast_forward"] = {"from_ms": now, "time_scale": round(scale, 1)}

    def _on_flash_cut(self, n, now):
        """As host_sim/esp32.py's SimFs: the n-th atomic write from now
        is torn (the power goes after its temp file was opened)."""
        self._cut_in = max(1, int(n))

    def _flash_lines(self, data, now):
        """The board's flash gate: one line per mutating step ("open",
        "rename", "remove" and the board path), each waiting for our "."
        before the VM goes on. An atomic write (firmware/fs.py) opens
        "<name>.tmp"; the armed one is torn here: the power goes with the
        temp file open and nothing written, exactly as in virtual time."""
        p = self.periph
        p.flash_buf += data
        while b"\n" in p.flash_buf:
            line, p.flash_buf = p.flash_buf.split(b"\n", 1)
            kind, _, path = line.decode("utf-8", "replace").partition(" ")
            if kind not in ("open", "rename", "remove"):
                self.note(now, "flash gate: bad line %r (not counted)" % line[:40])
                p.send(b"flash", b".")
                continue
            self.flash[kind] += 1
            if kind == "rename":
                self._outbox_commit(path, now)
            if kind == "open" and path.endswith(".tmp"):
                self.flash["atomic_writes"] += 1
                if self._cut_in > 0:
                    self._cut_in -= 1
                    if self._cut_in == 0:
                        self.rec.event(now, "flash_cut", "torn write of %s" % path.rsplit("/", 1)[-1][:-4])
                        self.world.flash_cut()  # kills the VM: it never gets the go-ahead
                        return
            p.send(b"flash", b".")
        if len(p.flash_buf) > 512:
            p.flash_buf = b""

    def _on_brownout(self, now):
        self._power_off(now)

    def _on_receiver_node(self, name, mode, now):
        self.node_state[name] = mode or "up"
        conn = self.emu.conn
        if mode == "kill" and conn is not None and getattr(conn, "node", None) == name:
            try:
                self.emu._remote_close(now, 1)  # its host resets the connection
            except Exception:  # noqa: BLE001
                pass

    def _on_receiver(self, up, now):
        self.rx_up = up
        if not up and self.emu.conn is not None:
            try:
                self.emu._remote_close(now, 1)  # the receiver went away: its side of the socket closes
            except Exception:  # noqa: BLE001
                pass
        if up:
            held, self._sms_held = self._sms_held, []
            for sender, text in held:
                self._sms_out(sender, text)

    def _on_operator(self, command, value, now):
        """The receiving centre's operator, through the receiver's own API
        on a second connection to its store (as `panic receiver command`)."""
        from receiver import core
        from receiver import store as S

        if self.remote is not None:
            self.note(now, "operator command %s not sent: the receiver is at %s:%d (panic receiver command)" % (
                (command,) + self.remote.tcp))
            return
        st = S.open_store(self.db, self.master)
        try:
            core.operator_command(st, self.device_id, command, value, actor="scenario", clock=self.unix_now)
        finally:
            st.close()

    def _on_faults(self, faults, now):
        """Timed faults come into force (and end) as in the virtual-time
        runner: the emulator's settings change in place."""
        f = self.emu.f
        for k, v in faults.items():
            if k == "coverage" or k not in MODEM_SETTINGS:
                continue
            f[k] = _fault_value(v)
        for w in self.sc.modem_fault_windows:
            if w.name not in faults and w.name in MODEM_SETTINGS:
                f[w.name] = _fault_value(self.sc.modem_faults.get(w.name, MODEM_SETTINGS[w.name]))

    # -- taps ------------------------------------------------------------------------------
    def _decode_up(self, raw):
        try:
            return F.decode(self.keys, raw, F.UPLINK)
        except ProtocolError:
            return None

    def on_air_up(self, raw, now, path, node=None):
        fr = self._decode_up(raw)
        if fr is None:
            self.rec.frame(now, "up", "on_air", "?", None, self.device_id, path=path, size=len(raw), note="did not verify")
            return
        self._built(fr, raw, now, path)
        f = self.rec.frame(now, "up", "on_air", fr.name, fr.seq, fr.device_id, path=path, size=len(raw))
        if node is not None:
            f["node"] = node  # where the device sent it

    def _built(self, fr, raw, now, path):
        """First sight of a frame: when the outbox committed it to flash
        (ALERT, CANCEL, TEST: the flash gate sees the rename), else the
        first time it was on the air; the firmware's outbox is inside the
        VM, so these are the closest the host can see to "built"."""
        if fr.seq in self.seen_up:
            return
        self.seen_up[fr.seq] = now
        self.rec.frame(now, "up", "built", fr.name, fr.seq, fr.device_id, path=path, size=len(raw))
        b = fr.body
        self._up_info[fr.seq] = (fr.name, bool(getattr(b, "duress", False)))
        if fr.ftype != F.ACK and hasattr(b, "source"):
            # measured at the time the frame was sealed: its own timestamp
            # (whole seconds: the middle of that second) when the device
            # knew the time, else the first time it was seen
            t_pos = now
            if fr.time:
                t_pos = min(now, max(0, fr.time * 1000 - self.sc.start_utc_ms + 500))
            # source 0 carries no coordinates (docs/protocol.md, "Position
            # semantics"): its zero fields are no position, as in runner.py
            self.rec.position(t_pos, fr.name, fr.seq, b.source, b.lat if b.source else None,
                              b.lon if b.source else None, b.accuracy, b.age)
            if b.battery_low:
                self.battery_low_seen = True

    def _outbox_commit(self, board_path, now):
        """The gate holds the VM before it renames "oXXXXXXXX.tmp" over its
        outbox file: the temp file is closed and whole, so read it here."""
        name = board_path.rsplit("/", 1)[-1]
        if len(name) != 9 or name[0] != "o":
            return
        try:
            with open(os.path.join(self.root, board_path.lstrip("/") + ".tmp"), "rb") as f:
                raw = f.read()
        except OSError:
            return
        fr = self._decode_up(raw)
        if fr is not None:
            self._built(fr, raw, now, None)

    def on_air_down(self, raw, now):
        try:
            fr = F.decode(self.keys, raw, F.DOWNLINK)
        except ProtocolError:
            self.rec.frame(now, "down", "rejected", "?", None, self.device_id, path="tcp", size=len(raw))
            return
        acked = fr.body.acked_seq if isinstance(fr.body, F.Ack) else None
        self.rec.frame(now, "down", "acked", fr.name, fr.seq, fr.device_id, path="tcp", size=len(raw), acked_seq=acked)
        if self.remote is not None and acked is not None:
            self._proven(acked, now, "tcp")

    def deliver_sms(self, sender, text, now):
        if self.rx_up:
            self._sms_out(sender, text)
        else:
            self._sms_held.append((sender, text))

    def _sms_out(self, sender, text):
        if self.remote is None:
            _started(self.rx, "rx").sms(sender, text)
        else:
            self.remote.post_sms(sender, text, lambda status, reply, why: self._q.put(
                {"kind": "_sms_answer", "status": status, "reply": reply, "why": why}))

    def _sms_answer(self, ev, now):
        """The remote receiver's answer to an SMS we posted: its reply is
        the ACK as SMS text, proof that it stored the frame."""
        if ev["reply"]:
            try:
                fr = F.decode(self.keys, from_sms(ev["reply"]), F.DOWNLINK)
            except ProtocolError:
                self.note(now, "the receiver's SMS reply did not verify under the device key")
                return
            if isinstance(fr.body, F.Ack):
                self._proven(fr.body.acked_seq, now, "sms")
        elif ev["status"] is not None and ev["status"] not in ("accepted", "duplicate"):  # None: counted in sms_unsent
            self.note(now, "SMS not stored by the receiver: %s" % (ev["why"] or ev["status"]))

    def _proven(self, seq, now, path):
        """A remote receiver ACKed seq: it is stored (it ACKs only after its commit)."""
        if seq in self.proven:
            return
        self.proven.add(seq)
        name, duress = self._up_info.get(seq, ("?", False))
        if seq in self.carried:
            self.rec.frame(now, "up", "committed", name, seq, self.device_id, path=path,
                           note="queued by an earlier run (the receiver may have stored it then)")
            return
        self.rec.frame(now, "up", "committed", name, seq, self.device_id, path=path)
        self.rec.raise_(now, self.device_id, seq, name, duress=duress)

    def _emu_events(self, now):
        evs = self.emu.events
        while self._emu_ev < len(evs):
            e = evs[self._emu_ev]
            self._emu_ev += 1
            if e[1] == "sms":
                try:
                    raw = from_sms(e[3])
                except ProtocolError:
                    continue
                self.on_air_up(raw, e[0], "sms")

    # -- the loop ---------------------------------------------------------------------------
    def _on_hello(self, name, rest, now):
        """A board channel named itself (periph.PeriphServer.hello): set it
        up; rest is what came after its hello line."""
        p = self.periph
        if name == b"ctrl":
            p.ctrl_buf = rest
            self._status_sent = None  # a new VM: tell it STATUS again
            self._pwrkey_bt = None
            # a fresh boot: the clock is known unless the scenario says so or a power cut lost it
            unix_ms = -1
            if self.stats["boots"] == 1 and not self.sc.clock_unknown_at_boot:
                unix_ms = self.sc.start_utc_ms + now
            self.periph.send(b"ctrl", b"c %r %d %d\n" % (self.scale, unix_ms, RESET_POWER_ON))
            self.periph.send(b"ctrl", b"b %d %d\n" % (self._button_level, now))
            if self.pacer.paused:
                # the scenario starts when the board first speaks: the
                # interpreter's own start-up is not device time
                self.pacer.resume()
                self.stats["vm_start_s"] = round(time.monotonic() - self._t0, 2)
            mv = self.world.battery_mv()
            self.periph.send(b"ctrl", b"v %d\n" % mv)
        elif name == b"modem":
            if rest:
                self.emu.write(rest, now)
        elif name == b"flash":
            p.flash_buf = b""
            if rest:
                self._flash_lines(rest, now)

    def _ctrl_lines(self, data, now):
        p = self.periph
        p.ctrl_buf += data
        while b"\n" in p.ctrl_buf:
            line, p.ctrl_buf = p.ctrl_buf.split(b"\n", 1)
            f = line.split()
            if len(f) in (3, 4) and f[0] == b"p":
                name = f[1].decode("ascii", "replace")
                level = int(f[2]) if f[2].isdigit() else f[2].decode("ascii", "replace")
                bt = int(f[3]) if len(f) == 4 and f[3].isdigit() else None
                self.rec.pin(now, name, level)
                if name == "modem_pwrkey":
                    # the hold as the board timed it (the two lines may reach us together)
                    held = None
                    if level == 0 and bt is not None and self._pwrkey_bt is not None:
                        held = bt - self._pwrkey_bt
                    self._pwrkey_bt = bt if level else None
                    self.emu.pwrkey(level, now, held=held)
                elif name == "modem_dtr":
                    self.emu.dtr(level, now)
                # applied: the board waits for this before it goes on (a GPIO
                # write is done when it returns), so the modem bytes it writes
                # next cannot reach the emulator before the pin (they travel
                # on another socket: firmware/board_unix.py _applied)
                self.periph.send(b"ctrl", b"k\n")
            elif len(f) == 2 and f[0] == b"s":
                self.rec.event(now, "clock_set", f[1].decode("ascii", "replace"))
        if len(p.ctrl_buf) > 256:
            p.ctrl_buf = b""

    def _modem_energy(self, now):
        e = self.emu
        st = "off" if not e.on else ("sleep" if e.low_power(now) else "idle")
        if self.world.energy.state.get("modem") != st:
            self.world.set_state("modem", st)

    def _modem_lines(self, now):
        """The modem's STATUS and RI lines to the board, as they change."""
        st = self.emu.status(now)
        if st != self._status_sent and self.periph.send(b"ctrl", b"st %d\n" % st):
            self._status_sent = st
        for a, _ in self.emu._ri_lows:
            if self._ri_sent < a <= now:
                self._ri_sent = a
                self.periph.send(b"ctrl", b"r\n")

    def pump(self, max_block_s=0.005):
        """One pass: fire due world events, move bytes both ways."""
        pc = self.pacer
        end = self.sc.duration_ms
        w = pc.wait_s(end)
        w = max_block_s if w is None else min(w, max_block_s)
        p = self.periph
        try:
            r, _, _ = select.select(p.sockets(), [], [], w)
        except (OSError, ValueError):
            r = []
        pc.tick(end)
        now = self.pacer.clock.now
        if pc.paused:
            self._check_boot()
        m = p.ch.get(b"modem")
        if m is not None and m in r and r[0] is not m:
            # the modem's bytes before the pins in one pass: bytes written
            # before a pin change (AT+CSCLK=1, then DTR high) reached the
            # board's UART first; a pin the board changes before writing
            # (DTR low, then AT) it has seen applied ("k") before it writes
            r = [m] + [x for x in r if x is not m]
        for s in r:
            if s is p.ls:
                p.accept()
            elif s in p.pending:
                named = p.hello(s)
                if named is not None:
                    self._on_hello(named[0], named[1], now)
            else:
                got = p.recv(s)
                if got is None:
                    continue
                name, data = got
                if name == b"ctrl":
                    self._ctrl_lines(data, now)
                elif name == b"gnss":
                    self.world.gnss.write(data, now)
                elif name == b"modem":
                    self.emu.write(data, now)
                elif name == b"flash":
                    self._flash_lines(data, now)
        if not self.modem_gnss:  # an NMEA module on UART2 (the modem's own GNSS speaks on the modem channel)
            g = self.world.gnss.read(now)
            if g and self._powered:
                p.send(b"gnss", g)
        m = self.emu.read(now)
        if m and self._powered:
            p.send(b"modem", m)
        if self._powered:
            self._modem_lines(now)
        self._emu_events(now)
        if now >= self._next_batt:
            if now >= self._next_batt_log:  # the report's battery chart, at the runner's pace
                self._next_batt_log = now + BATTERY_LOG_MS
                self.rec.battery(now, *self.world.battery_sample())
            self._next_batt = now + 1000
            mv = self.world.battery_mv()
            if mv != self._last_mv and p.send(b"ctrl", b"v %d\n" % mv):
                self._last_mv = mv
            self._modem_energy(now)
        while True:
            try:
                ev = self._q.get_nowait()
            except queue.Empty:
                break
            if ev.get("kind") == "_sms_answer":
                self._sms_answer(ev, now)
                continue
            t = min(now, max(0, int(ev.get("time", self.unix_now()) * 1000 - self.sc.start_utc_ms)))
            self.rec.receiver_event(t, ev)  # what an operator was shown (the report's receiver lane)
            if ev.get("kind") == "device_silent":
                self.rec.silent(t, ev.get("device_id"))
        return now

    def _check_boot(self):
        """Before the board's first hello: fail clearly, never wait forever."""
        proc = self.board.proc if self.board is not None else None
        code = proc.poll() if proc is not None else None
        if code is not None:
            raise RuntimeError("the MicroPython board exited (code %d) before it connected to the peripherals" % code)
        if time.monotonic() - self._t0 > BOOT_TIMEOUT_S:
            raise RuntimeError("the MicroPython board did not connect to the peripherals within %d s" % BOOT_TIMEOUT_S)

    def run_until(self, t_ms):
        t_ms = min(t_ms, self.sc.duration_ms)
        while self.pacer.clock.now < t_ms:
            self.pump()
        return self.pacer.clock.now

    def run(self, progress=None, every_s=0.5):
        """Run to the scenario's end and return the results; progress(info)
        is called with self.progress() about every every_s wall seconds
        (and once at the end)."""
        if progress is None:
            self.run_until(self.sc.duration_ms)
            return self.finish()
        end = self.sc.duration_ms
        next_at = 0.0
        while self.pacer.clock.now < end:
            self.pump()
            t = time.monotonic()
            if t >= next_at:
                next_at = t + every_s
                progress(self.progress())
        progress(self.progress())
        return self.finish()

    def progress(self):
        """Where the run is: simulated and wall time, frames on the air
        (uplink, both paths) and ACKs received by the device so far."""
        on_air = acks = 0
        for f in self.rec.frames:
            if f["event"] == "on_air":
                on_air += 1
            elif f["event"] == "acked":
                acks += 1
        pc = self._pacer
        return {"sim_ms": pc.clock.now if pc is not None else 0, "duration_ms": self.sc.duration_ms,
                "wall_s": time.monotonic() - self._t0 if self.board is not None else 0.0,
                "time_scale": pc.time_scale if pc is not None else self.scale,
                "booting": bool(pc is not None and pc.paused),
                "on_air": on_air, "acks": acks, "boots": self.stats["boots"]}

    # -- results ------------------------------------------------------------------------------
    def _drain_console(self):
        """What the board wrote on its USB serial that nobody authenticated
        for (read only when no tool is connected)."""
        if self.board is None or self.board._client is not None or self.board.proc is None:
            return b""
        try:
            with socket.create_connection(("127.0.0.1", self.board.port), timeout=2) as c:
                c.settimeout(0.3)
                out = b""
                while True:
                    try:
                        d = c.recv(4096)
                    except socket.timeout:
                        break
                    if not d:
                        break
                    out += d
                return out
        except OSError:
            return b""

    def finish(self):
        from receiver import store as S

        now = self.pacer.clock.now
        self.stats["wall_s"] = round(time.monotonic() - self._t0, 2)
        self.stats["max_lag_ms"] = self.pacer.max_lag_ms
        junk = self._drain_console()
        if junk:
            self.stats["console_bytes_unauth"] = len(junk)
            self.rec.print_(now, junk.decode("latin-1"), authenticated=False)
        rows = []
        if self.remote is not None:
            self.remote.close()  # the SMS still being posted get their answers
            while not self._q.empty():
                ev = self._q.get_nowait()
                if ev.get("kind") == "_sms_answer":
                    self._sms_answer(ev, now)
            if self.remote.sms_unsent:
                self.note(now, "%d SMS reached no receiver (%s)" % (
                    self.remote.sms_unsent, "no --sms-http" if self.remote.http is None else "the SMS endpoint failed"))
        else:
            time.sleep(0.2)  # the receiver's last group commit
            st = S.open_store(self.db, None)
            try:
                rows = st.frames(self.device_id)
            finally:
                st.close()
        for r in rows:
            t = int(round(r["arrival"] * 1000 - self.sc.start_utc_ms))
            try:
                dec = json.loads(r["decoded"])
            except ValueError:
                dec = {}
            self.rec.frame(t, "up", "committed", r["type"], r["seq"], r["device_id"], path=r["transport"])
            self.rec.raise_(t, r["device_id"], r["seq"], r["type"], duress=bool(dec.get("duress")))
        pending = []
        ddir = os.path.join(self.root, "data")
        for name in os.listdir(ddir) if os.path.isdir(ddir) else ():
            if len(name) == 9 and name[0] == "o":
                try:
                    pending.append(int(name[1:], 16))
                except ValueError:
                    pass
        self.rec.summary["low_battery"] = self.battery_low_seen
        self.rec.summary["device_dead"] = bool(self.world.dead)
        self.rec.summary["board"] = self.table.NAME
        self.rec.summary["modem_forced_offs"] = [e[0] for e in self.emu.events if e[1] == "shutdown" and e[2] == "pwrkey"]
        self.rec.summary["listen_in_calls"] = len([e for e in self.emu.events if e[1] == "call"])
        self.rec.summary["modem_deaf_writes"] = [list(d) for d in self.emu.deaf]
        res = self.rec.finish(energy=self.world.energy.summary(now), pending_seqs=pending, extra_events=self.world.events)
        res["faithful"] = dict(self.stats, heap=self.heap, time_scale=self.scale, flash=dict(self.flash),
                               notes=[n[1] for n in self.notes])
        return res


def run_faithful(scenario_path, json_out=None, report_out=None, time_scale=None, duration_ms=None, heap=None):
    """Run one scenario in faithful mode; write the JSON / HTML reports if
    asked; return the results dict (host_sim/results.py shape, plus a
    "faithful" entry: boots, wall_s, vm_start_s, max_lag_ms, heap, time_scale,
    notes)."""
    from host_sim import report as R

    rig = Rig(scenario_path, time_scale=time_scale, duration_ms=duration_ms, heap=heap)
    try:
        rig.start()
        res = rig.run()
    finally:
        rig.stop()
    if json_out:
        R.write_json(res, json_out)
    if report_out:
        R.write_html(res, report_out)
    return res


def run(scenario, args=None, progress=None):
    """`panic sim run FILE --faithful` (host_sim/cli.py calls run(sc, args)
    and writes the reports itself). args: the parsed options; `seed` and
    `time_scale` are used when present. progress: as Rig.run's."""
    seed = getattr(args, "seed", None)
    if seed is not None:
        scenario.seed = seed
    rig = Rig(scenario, time_scale=getattr(args, "time_scale", None))
    try:
        rig.start()
        return rig.run(progress=progress)
    finally:
        rig.stop()
