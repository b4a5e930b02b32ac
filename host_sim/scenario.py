"""Scenario files: TOML under host_sim/scenarios/, loaded into a plain,
validated Scenario object.

Owns: the scenario format (documented in docs/scenarios.md), its
validation, and small queries over a loaded scenario (coverage at a time,
receiver up at a time, button edges, the route and the GNSS/energy models it
asks for).

Never does: run anything. The scenario runners (virtual time and faithful) read the object.

Errors: every problem is a ScenarioError naming the file, the line (as
near as TOML allows: the table header or the key's own line) and the field,
e.g. `walk.toml:42: [[action]] #2: field 'kind': unknown action 'sso'`.
Unknown fields are errors too (a typo must not silently do nothing).

Times: a number is seconds; a string is a duration like "1h20m", "90s",
"2.5s", "250ms", "1d"; "never" where allowed.

Stays in sync with: docs/scenarios.md, host_sim/route.py (conditions),
host_sim/gnss.py (styles, talkers, starts), host_sim/energy.py (profiles,
modems).
"""

import os
import re
import tomllib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal, TypeVar, overload

from firmware.config import BOARDS
from host_sim import energy, gnss
from host_sim.errors import InputError
from host_sim.route import CONDITIONS, Route, RouteError

ACTIONS = ("sos", "cancel", "duress_cancel", "test", "raw")
COVERAGE_MODES = ("data+sms", "sms-only", "lte-only", "none")  # lte-only: LTE with no circuit-switched registration
EXPECT_KEYS = {
    "alerts": int,  # ALERTs raised at the receiver
    "cancels": int,  # CANCELs raised (duress included)
    "duress": int,  # CANCELs with the duress flag
    "test_alerts": int,
    "silent_alarm": bool,  # the receiver flags the device as silent
    "low_battery": bool,  # a low-battery STATUS reaches the receiver
    "device_dead": bool,  # the battery browns out before the end
    "sms_used": bool,  # at least one frame went by SMS
    "max_press_to_first_frame_s": float,
    "max_press_to_ack_s": float,
    "min_heartbeats": int,
    "listen_in_calls": int,  # covert voice calls the device placed (the modem dialled)
    "max_modem_power_cycles": int,  # forced power-offs (PWRKEY hold) of a hung modem, at most
}
OPERATOR_COMMANDS = ("listen_in", "track", "stand_down")  # receiver/store.py CMD_*
NODE_FAULTS = ("kill", "cut")  # [[receiver_fault]] mode: the process dies (resets, refusals) / cut off (silence)
MAX_NODES = 4  # firmware/config.py MAX_PEERS: the device lists at most this many receivers

_T = TypeVar("_T")
_DUR = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60000, "h": 3600000, "d": 86400000}


class ScenarioError(InputError):
    """A scenario file that cannot be used. str() names file, line, field."""

    def __init__(self, msg, path=None, line=None, where=None, fld=None):
        self.path = path
        self.line = line
        self.where = where
        self.field = fld
        head = os.path.basename(path) if path else "<scenario>"
        if line:
            head += ":%d" % line
        parts = [head]
        if where:
            parts.append(where)
        if fld:
            parts.append("field '%s'" % fld)
        super().__init__(": ".join(parts + [msg]))


@overload
def parse_duration_ms(v: object, allow_never: Literal[False] = False) -> int: ...
@overload
def parse_duration_ms(v: object, allow_never: bool) -> "int | None": ...


def parse_duration_ms(v, allow_never=False):
    """Seconds (number) or a duration string -> int ms. ValueError if bad."""
    if isinstance(v, bool):
        raise ValueError("expected a duration, got a boolean")
    if isinstance(v, (int, float)):
        if v < 0:
            raise ValueError("negative duration %r" % v)
        return int(round(v * 1000))
    if isinstance(v, str):
        s = v.strip().replace(" ", "")
        if allow_never and s == "never":
            return None
        if not s:
            raise ValueError("empty duration")
        pos = 0
        total = 0.0
        for m in _DUR.finditer(s):
            if m.start() != pos:
                break
            total += float(m.group(1)) * _UNIT_MS[m.group(2)]
            pos = m.end()
        if pos != len(s) or pos == 0:
            raise ValueError("bad duration %r (use seconds or e.g. \"1h20m\", \"90s\", \"250ms\")" % v)
        return int(round(total))
    raise ValueError("expected a duration, got %s" % type(v).__name__)


# -- the plain objects the runner reads ------------------------------------------
@dataclass
class Action:
    at_ms: int
    kind: str  # sos, cancel, duress_cancel, test, raw
    presses: list = field(default_factory=list)  # raw: [(offset_ms, hold_ms)]


@dataclass
class Coverage:
    from_ms: int
    to_ms: int  # exclusive; the next window's start or the run's end
    mode: str  # data+sms, sms-only, none
    latency_ms: int = 300
    loss: float = 0.0
    csq: int = 20
    sms_latency_ms: int = 5000


@dataclass
class PowerCut:
    at_ms: int
    duration_ms: object = 5000  # int ms, or None: never restored
    at_flash_write: object = None  # int N: cut at the Nth flash write after at_ms


@dataclass
class OperatorCommand:
    at_ms: int
    command: str  # listen_in, track, stand_down
    value: object = None  # track: interval seconds


@dataclass
class Window:
    from_ms: int
    to_ms: int


@dataclass
class NodeFault:
    node: str  # a [[receiver]] name
    from_ms: int
    to_ms: int  # the node is back then (the run's end: never)
    mode: str  # kill, cut


@dataclass
class ModemFault:
    from_ms: int
    to_ms: object  # None: until the end
    name: str
    params: dict = field(default_factory=dict)


@dataclass
class Tower:
    """A cell tower: its identity as AT+CPSI? reports it, where it stands,
    the radius it serves, and whether the receiving centre's location
    database knows it (host_sim/cells.py)."""
    mcc: int
    mnc: int
    tac: int
    cell: int
    lat: float
    lon: float
    range_m: int
    radio: str = "LTE"
    in_database: bool = True


@dataclass
class GnssConfig:
    style: str = "sim7600"
    talker: object = None
    sentences: object = None
    start: str = "auto"
    baud: object = None
    uere_m: float = 2.5
    on_at_boot: bool = True


@dataclass
class BatteryConfig:
    capacity_mah: float = 2000.0
    start_pct: float = 100.0
    board_quiescent_ma: float = 0.0
    modem: str = "sim7600"


@dataclass
class Scenario:
    name: str
    path: object
    description: str = ""
    seed: int = 0
    duration_ms: int = 3600000
    time_scale: float = 1.0
    start_utc_ms: int = 1773524400000  # 2026-03-14T21:40:00Z
    clock_unknown_at_boot: bool = False
    profile: str = "ready"
    device: dict = field(default_factory=dict)
    board: str = "t-sim7600e"  # [device] board: firmware/boards/
    battery: BatteryConfig = field(default_factory=BatteryConfig)
    gnss: GnssConfig = field(default_factory=GnssConfig)
    route_points: object = None  # [(t_ms, lat, lon, alt, condition)]
    route_gpx: object = None  # absolute path
    route_start_ms: int = 0
    conditions: list = field(default_factory=list)  # [(from_ms, to_ms, condition)]
    coverage: list = field(default_factory=list)
    actions: list = field(default_factory=list)
    receiver_down: list = field(default_factory=list)
    receivers: list = field(default_factory=list)  # [[receiver]] names in the device's order (none: one node)
    receiver_faults: list = field(default_factory=list)  # [NodeFault]
    power_cuts: list = field(default_factory=list)
    modem_faults: dict = field(default_factory=dict)
    modem_fault_windows: list = field(default_factory=list)
    wifi: list = field(default_factory=list)  # [(from_ms, to_ms, bssid 6 bytes, rssi dBm)]
    wifi_places: dict = field(default_factory=dict)  # {bssid: (lat, lon, range_m, in_database)}: APs with a place
    towers: list = field(default_factory=list)  # [Tower]: the cells the modem can serve from (none: one fixed cell)
    operator: list = field(default_factory=list)  # [OperatorCommand]: what the receiving centre's operator does
    expect: dict = field(default_factory=dict)

    # -- queries ------------------------------------------------------------------
    def build_route(self):
        """A host_sim.route.Route with the indoor/sky windows applied."""
        if self.route_gpx:
            r = Route.from_gpx(self.route_gpx, start_ms=self.route_start_ms)
        else:
            r = Route(self.route_points)
        for f, t, c in self.conditions:
            r.add_window(f, t, c)
        return r

    def make_gnss(self, route=None, **kw):
        g = self.gnss
        args: dict[str, Any] = dict(
            start_utc_ms=self.start_utc_ms,
            style=g.style,
            talker=g.talker,
            sentences=g.sentences,
            baud=g.baud,
            seed=self.seed,
            start=g.start,
            uere_m=g.uere_m,
        )
        args.update(kw)
        return gnss.GnssEmulator(route or self.build_route(), **args)

    def make_energy(self, **kw):
        b = self.battery
        args: dict[str, Any] = dict(
            capacity_mah=b.capacity_mah,
            start_pct=b.start_pct,
            modem=b.modem,
            board_quiescent_ma=b.board_quiescent_ma,
        )
        args.update(kw)
        return energy.EnergyModel(**args)

    def coverage_at(self, t_ms):
        """The Coverage in force at t_ms (data+sms with defaults if none)."""
        for c in self.coverage:
            if c.from_ms <= t_ms < c.to_ms:
                return c
        return Coverage(0, self.duration_ms, "data+sms")

    def wifi_at(self, t_ms, where=None):
        """[(bssid, rssi)] a Wi-Fi scan finds at t_ms, strongest first. An
        access point with a place is heard only within its range of
        `where` ((lat_e7, lon_e7), the person's true position)."""
        aps = []
        for f, to, b, r in self.wifi:
            if not f <= t_ms < to:
                continue
            place = self.wifi_places.get(b)
            if place is not None and where is not None:
                from host_sim.route import distance_m

                if distance_m(where[0] / 1e7, where[1] / 1e7, place[0], place[1]) > place[2]:
                    continue
            aps.append((b, r))
        return sorted(aps, key=lambda a: -a[1])

    def receiver_up(self, t_ms):
        return not any(w.from_ms <= t_ms < w.to_ms for w in self.receiver_down)

    def faults_at(self, t_ms):
        """Static modem_faults merged with every timed fault active at t_ms."""
        d = dict(self.modem_faults)
        for f in self.modem_fault_windows:
            if f.from_ms <= t_ms and (f.to_ms is None or t_ms < f.to_ms):
                d[f.name] = dict(f.params) if f.params else True
        return d

    def world_events(self):
        """The scenario's timeline as report events, sorted by time:
        [{t_ms, end_ms, kind, detail}] with kind coverage / sky /
        receiver_down / power_cut / modem_fault / action."""
        ev = []
        for c in self.coverage or [Coverage(0, self.duration_ms, "data+sms")]:
            ev.append({"t_ms": c.from_ms, "end_ms": c.to_ms, "kind": "coverage", "detail": c.mode})
        r = self.build_route()
        # sky changes, sampled at every point and window edge
        edges = sorted({0, self.duration_ms} | {t for t in r.t if 0 <= t < self.duration_ms}
                       | {x for f, to, _ in self.conditions for x in (f, to) if 0 <= x < self.duration_ms})
        cur = None
        for a, b in zip(edges, edges[1:], strict=False):
            c = r.condition(a)
            if cur and cur["detail"] == c:
                cur["end_ms"] = b
            else:
                cur = {"t_ms": a, "end_ms": b, "kind": "sky", "detail": c}
                ev.append(cur)
        for w in self.receiver_down:
            ev.append({"t_ms": w.from_ms, "end_ms": w.to_ms, "kind": "receiver_down", "detail": ""})
        for nf in self.receiver_faults:
            ev.append({"t_ms": nf.from_ms, "end_ms": nf.to_ms, "kind": "receiver_fault", "detail": "%s %s" % (nf.mode, nf.node)})
        for pc in self.power_cuts:
            end = self.duration_ms if pc.duration_ms is None else pc.at_ms + pc.duration_ms
            det = "at flash write %d" % pc.at_flash_write if pc.at_flash_write else ("never restored" if pc.duration_ms is None else "")
            ev.append({"t_ms": pc.at_ms, "end_ms": end, "kind": "power_cut", "detail": det})
        for f in self.modem_fault_windows:
            ev.append({"t_ms": f.from_ms, "end_ms": self.duration_ms if f.to_ms is None else f.to_ms, "kind": "modem_fault", "detail": f.name})
        for a in self.actions:
            ev.append({"t_ms": a.at_ms, "end_ms": a.at_ms, "kind": "action", "detail": a.kind})
        ev.sort(key=lambda e: (e["t_ms"], e["kind"]))
        return ev

    def button_edges(self, patterns):
        """[(t_ms, pressed)] for every action, given the firmware's patterns:
        {kind: [(offset_ms, hold_ms), ...]} for sos, cancel, duress_cancel,
        test. Raises ScenarioError if a kind has no pattern or presses
        overlap."""
        edges = []
        last_up = -1
        for i, a in enumerate(sorted(self.actions, key=lambda a: a.at_ms)):
            if a.kind == "raw":
                presses = a.presses
            else:
                if a.kind not in patterns:
                    raise ScenarioError("no button pattern given for action %r" % a.kind, self.path)
                presses = patterns[a.kind]
            for off, hold in presses:
                down = a.at_ms + int(off)
                up = down + int(hold)
                if down <= last_up:
                    raise ScenarioError("action #%d (%s at %d ms) overlaps the previous press" % (i + 1, a.kind, a.at_ms), self.path)
                edges.append((down, True))
                edges.append((up, False))
                last_up = up
        return edges


# -- locating lines for error messages -----------------------------------------------
class _Locator:
    def __init__(self, text):
        self.lines = text.splitlines()

    def header(self, name, index=None):
        """Line (1-based) of [name] or of the index-th (0-based) [[name]]."""
        if index is None:
            pat = re.compile(r"^\s*\[\s*%s\s*\]" % re.escape(name))
        else:
            pat = re.compile(r"^\s*\[\[\s*%s\s*\]\]" % re.escape(name))
        n = 0
        for i, ln in enumerate(self.lines):
            if pat.match(ln):
                if index is None or n == index:
                    return i + 1
                n += 1
        return None

    def key(self, name, key, index=None):
        """Line of `key =` inside [name] / the index-th [[name]] (or at the
        top level when name is None); the header's line if the key is absent."""
        start = 0
        if name:
            start = self.header(name, index)
            if start is None:
                return None
        kp = re.compile(r"^\s*%s\s*=" % re.escape(key))
        for i in range(start, len(self.lines)):
            ln = self.lines[i]
            if _HEADER.match(ln):
                break
            if kp.match(ln):
                return i + 1
        return start or None


_HEADER = re.compile(r"^\s*\[\[?\s*[A-Za-z_][\w.\-]*\s*\]\]?\s*(#.*)?$")


class _Ctx:
    """Validation context: where we are, for error messages."""

    def __init__(self, path, loc, table, index=None):
        self.path = path
        self.loc = loc
        self.table = table
        self.index = index

    @property
    def where(self):
        if self.index is None:
            return "[%s]" % self.table
        return "[[%s]] #%d" % (self.table, self.index + 1)

    def err(self, msg, fld=None):
        line = self.loc.key(self.table, fld, self.index) if fld else self.loc.header(self.table, self.index)
        return ScenarioError(msg, self.path, line, self.where, fld)

    def check_keys(self, d, known):
        for k in d:
            if k not in known:
                raise self.err("unknown field (known: %s)" % ", ".join(sorted(known)), k)

    # What dur() and typed() return, for the type checker: the field's own
    # type when it is required or its default has that type, else None too.
    @overload
    def dur(self, d: dict, k: str, default: None = None, *, required: Literal[True]) -> int: ...
    @overload
    def dur(self, d: dict, k: str, default: int, required: bool = False) -> int: ...
    @overload
    def dur(self, d: dict, k: str, default: "int | None" = None, required: bool = False,
            allow_never: bool = False) -> "int | None": ...

    def dur(self, d, k, default=None, required=False, allow_never=False):
        if k not in d:
            if required:
                raise self.err("missing (a duration: seconds or e.g. \"90s\")", k)
            return default
        try:
            return parse_duration_ms(d[k], allow_never)
        except ValueError as e:
            raise self.err(str(e), k)

    @overload
    def typed(self, d: dict, k: str, types: "tuple[type[_T], ...]", default: None = None, *, required: Literal[True],
              lo: Any = None, hi: Any = None, choices: Any = None) -> _T: ...
    @overload
    def typed(self, d: dict, k: str, types: "tuple[type[_T], ...]", default: _T, required: bool = False,
              lo: Any = None, hi: Any = None, choices: Any = None) -> _T: ...
    @overload
    def typed(self, d: dict, k: str, types: "tuple[type[_T], ...]", default: None = None, required: bool = False,
              lo: Any = None, hi: Any = None, choices: Any = None) -> "_T | None": ...

    def typed(self, d, k, types, default=None, required=False, lo=None, hi=None, choices=None):
        if k not in d:
            if required:
                raise self.err("missing", k)
            return default
        v = d[k]
        if isinstance(v, bool) and bool not in types:
            raise self.err("expected %s, got a boolean" % "/".join(t.__name__ for t in types), k)
        if not isinstance(v, types):
            raise self.err("expected %s, got %s" % ("/".join(t.__name__ for t in types), type(v).__name__), k)
        if choices is not None and v not in choices:
            raise self.err("%r is not one of %s" % (v, ", ".join(str(c) for c in choices)), k)
        if lo is not None and v < lo:
            raise self.err("%r is below the minimum %r" % (v, lo), k)
        if hi is not None and v > hi:
            raise self.err("%r is above the maximum %r" % (v, hi), k)
        return v


_TOP = {
    "scenario", "device", "battery", "gnss", "route", "indoor", "sky", "coverage", "action",
    "receiver_down", "power_cut", "modem_faults", "modem_fault", "wifi", "expect", "operator", "tower",
    "receiver", "receiver_fault",
}


def load(path):
    """Load and validate a scenario file. Returns a Scenario."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ScenarioError("cannot read: %s" % (e.strerror or e), path)
    return loads(raw.decode("utf-8", errors="replace"), path)


def loads(text, path=None):
    """Validate scenario TOML text; path (for messages and relative GPX)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"line (\d+)", str(e))
        raise ScenarioError("TOML syntax: %s" % e, path, int(m.group(1)) if m else None)
    loc = _Locator(text)
    base = os.path.dirname(os.path.abspath(path)) if path else os.getcwd()
    for k in doc:
        if k not in _TOP:
            line = loc.header(k) or loc.header(k, 0) or loc.key(None, k)
            raise ScenarioError("unknown table (known: %s)" % ", ".join(sorted(_TOP)), path, line, "[%s]" % k)

    def table(name):
        v = doc.get(name, {})
        if not isinstance(v, dict):
            raise ScenarioError("must be a table [%s]" % name, path, loc.key(None, name), "[%s]" % name)
        return v

    def array(name):
        v = doc.get(name, [])
        if not isinstance(v, list) or not all(isinstance(x, dict) for x in v):
            raise ScenarioError("must be an array of tables [[%s]]" % name, path, loc.key(None, name), "[[%s]]" % name)
        return v

    # [scenario]
    s = table("scenario")
    c = _Ctx(path, loc, "scenario")
    c.check_keys(s, {"name", "description", "seed", "duration", "time_scale", "start_utc", "clock_unknown_at_boot", "profile"})
    if "scenario" not in doc:
        raise ScenarioError("missing [scenario] table (name and duration at least)", path, 1)
    sc = Scenario(name=c.typed(s, "name", (str,), required=True), path=os.path.abspath(path) if path else None)
    sc.description = c.typed(s, "description", (str,), "")
    sc.seed = c.typed(s, "seed", (int,), 0)
    sc.duration_ms = c.dur(s, "duration", required=True)
    if sc.duration_ms <= 0:
        raise c.err("must be > 0", "duration")
    sc.time_scale = float(c.typed(s, "time_scale", (int, float), 1.0, lo=0.001, hi=10000))
    if "start_utc" in s:
        v = s["start_utc"]
        try:
            if isinstance(v, datetime):
                dt = v
            elif isinstance(v, str):
                dt = datetime.fromisoformat(v.replace("Z", "+00:00"))
            else:
                raise ValueError("expected an RFC 3339 date-time")
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=timezone.utc)
            sc.start_utc_ms = int(dt.timestamp() * 1000)
        except ValueError as e:
            raise c.err(str(e), "start_utc")
    sc.clock_unknown_at_boot = c.typed(s, "clock_unknown_at_boot", (bool,), False)
    sc.profile = c.typed(s, "profile", (str,), "ready", choices=tuple(energy.PROFILES))

    # [device]: firmware config overrides, scalars only
    d = table("device")
    c = _Ctx(path, loc, "device")
    for k, v in d.items():
        if not isinstance(v, (int, float, str, bool)):
            raise c.err("device settings must be numbers, strings or booleans", k)
    sc.device = dict(d)

    # [battery]
    b = table("battery")
    c = _Ctx(path, loc, "battery")
    c.check_keys(b, {"capacity_mah", "start_pct", "board_quiescent_ma", "modem"})
    sc.battery = BatteryConfig(
        capacity_mah=float(c.typed(b, "capacity_mah", (int, float), 2000.0, lo=1)),
        start_pct=float(c.typed(b, "start_pct", (int, float), 100.0, lo=0, hi=100)),
        board_quiescent_ma=float(c.typed(b, "board_quiescent_ma", (int, float), 0.0, lo=0)),
        modem=c.typed(b, "modem", (str,), "sim7600", choices=("sim7600", "sim7080g")),
    )

    # [gnss]
    g = table("gnss")
    c = _Ctx(path, loc, "gnss")
    c.check_keys(g, {"style", "talker", "sentences", "start", "baud", "uere_m", "on_at_boot"})
    sents = c.typed(g, "sentences", (list,), None)
    if sents is not None:
        for x in sents:
            if x not in gnss.SENTENCE_TYPES:
                raise c.err("%r is not one of %s" % (x, ", ".join(gnss.SENTENCE_TYPES)), "sentences")
    # the board decides what the GNSS is: the SIM7600's own receiver
    # (t-sim7600e: style "sim7600", off until the firmware starts it), or an
    # external NMEA module on UART2 (t-sim7600e-ext-gnss: its style)
    sc.board = sc.device.get("board", "t-sim7600e")
    if sc.board not in BOARDS:
        raise _Ctx(path, loc, "device").err("board %r is not one of %s" % (sc.board, ", ".join(BOARDS)), "board")
    ext = sc.board != "t-sim7600e"
    style = c.typed(g, "style", (str,), "ublox-m8" if ext else "sim7600", choices=tuple(gnss.STYLES))
    if ext == (style == "sim7600"):
        raise c.err(("style %r is the SIM7600's own receiver: an external module needs another style" if ext else
                     "style %r is an external NMEA module: set [device] board = \"t-sim7600e-ext-gnss\" to fit one")
                    % style, "style")
    if not ext and "on_at_boot" in g:
        raise c.err("the SIM7600's GNSS is off until the firmware starts it (AT+CGPS=1)", "on_at_boot")
    sc.gnss = GnssConfig(
        style=style,
        talker=c.typed(g, "talker", (str,), None, choices=gnss.TALKERS),
        sentences=sents,
        start=c.typed(g, "start", (str,), "auto", choices=gnss.STARTS),
        baud=c.typed(g, "baud", (int,), None, choices=(4800, 9600, 19200, 38400, 57600, 115200)),
        uere_m=float(c.typed(g, "uere_m", (int, float), 2.5, lo=0.1, hi=100)),
        on_at_boot=c.typed(g, "on_at_boot", (bool,), True) if ext else False,
    )

    # [route]
    r = table("route")
    c = _Ctx(path, loc, "route")
    c.check_keys(r, {"gpx", "points", "start"})
    if "gpx" in r and "points" in r:
        raise c.err("give either gpx or points, not both", "points")
    if "gpx" not in r and "points" not in r:
        raise c.err("missing: give gpx = \"file.gpx\" or points = [...]", "points" if "route" in doc else None)
    sc.route_start_ms = c.dur(r, "start", 0)
    if "gpx" in r:
        gp = c.typed(r, "gpx", (str,), required=True)
        full = gp if os.path.isabs(gp) else os.path.join(base, gp)
        if not os.path.isfile(full):
            raise c.err("GPX file not found: %s" % gp, "gpx")
        sc.route_gpx = full
    else:
        pts = c.typed(r, "points", (list,), required=True)
        out = []
        for i, p in enumerate(pts):
            if not isinstance(p, dict):
                raise c.err("point %d: expected {at=..., lat=..., lon=...}" % (i + 1), "points")
            for k in p:
                if k not in ("at", "lat", "lon", "alt", "sky", "indoor"):
                    raise c.err("point %d: unknown key %r (at, lat, lon, alt, sky, indoor)" % (i + 1, k), "points")
            try:
                at = sc.route_start_ms + parse_duration_ms(p.get("at", 0))
            except ValueError as e:
                raise c.err("point %d: at: %s" % (i + 1, e), "points")
            lat, lon = p.get("lat"), p.get("lon")
            if not isinstance(lat, (int, float)) or isinstance(lat, bool) or not -90 <= lat <= 90:
                raise c.err("point %d: lat must be a number in -90..90" % (i + 1), "points")
            if not isinstance(lon, (int, float)) or isinstance(lon, bool) or not -180 <= lon <= 180:
                raise c.err("point %d: lon must be a number in -180..180" % (i + 1), "points")
            sky = p.get("sky", "indoor" if p.get("indoor") else "open")
            if sky not in CONDITIONS:
                raise c.err("point %d: sky %r is not one of %s" % (i + 1, sky, ", ".join(CONDITIONS)), "points")
            if out and at < out[-1][0]:
                raise c.err("point %d: time goes backwards" % (i + 1), "points")
            out.append((at, float(lat), float(lon), float(p.get("alt", 50.0)), sky))
        if not out:
            raise c.err("needs at least one point", "points")
        sc.route_points = out

    # [[indoor]] and [[sky]] windows
    for i, w in enumerate(array("indoor")):
        c = _Ctx(path, loc, "indoor", i)
        c.check_keys(w, {"from", "to"})
        f, t = c.dur(w, "from", required=True), c.dur(w, "to", sc.duration_ms)
        if t <= f:
            raise c.err("ends before it starts", "to")
        sc.conditions.append((f, t, "indoor"))
    for i, w in enumerate(array("sky")):
        c = _Ctx(path, loc, "sky", i)
        c.check_keys(w, {"from", "to", "condition"})
        f, t = c.dur(w, "from", required=True), c.dur(w, "to", sc.duration_ms)
        if t <= f:
            raise c.err("ends before it starts", "to")
        sc.conditions.append((f, t, c.typed(w, "condition", (str,), required=True, choices=CONDITIONS)))

    # [[coverage]]: each runs until the next one starts
    cov = []
    for i, w in enumerate(array("coverage")):
        c = _Ctx(path, loc, "coverage", i)
        c.check_keys(w, {"from", "mode", "latency_ms", "loss", "csq", "sms_latency_ms"})
        f = c.dur(w, "from", 0)
        if cov and f <= cov[-1].from_ms:
            raise c.err("coverage entries must be in time order", "from")
        cov.append(
            Coverage(
                from_ms=f,
                to_ms=sc.duration_ms,
                mode=c.typed(w, "mode", (str,), required=True, choices=COVERAGE_MODES),
                latency_ms=c.typed(w, "latency_ms", (int,), 300, lo=0, hi=600000),
                loss=float(c.typed(w, "loss", (int, float), 0.0, lo=0, hi=1)),
                csq=c.typed(w, "csq", (int,), 20, lo=0, hi=99),
                sms_latency_ms=c.typed(w, "sms_latency_ms", (int,), 5000, lo=0, hi=3600000),
            )
        )
        if cov[-1].mode == "none" and "csq" not in w:
            cov[-1].csq = 99
    for a, b2 in zip(cov, cov[1:], strict=False):
        a.to_ms = b2.from_ms
    if cov and cov[0].from_ms > 0:
        cov.insert(0, Coverage(0, cov[0].from_ms, "data+sms"))
    sc.coverage = cov

    # [[action]]
    for i, w in enumerate(array("action")):
        c = _Ctx(path, loc, "action", i)
        c.check_keys(w, {"at", "kind", "presses"})
        kind = c.typed(w, "kind", (str,), required=True, choices=ACTIONS)
        presses = []
        if kind == "raw":
            ps = c.typed(w, "presses", (list,), required=True)
            last = -1
            for j, p in enumerate(ps):
                if not (isinstance(p, list) and len(p) == 2 and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in p)):
                    raise c.err("press %d: expected [offset_ms, hold_ms] (non-negative integers)" % (j + 1), "presses")
                if p[0] <= last:
                    raise c.err("press %d starts before the previous one is released" % (j + 1), "presses")
                if p[1] == 0:
                    raise c.err("press %d: hold_ms must be > 0" % (j + 1), "presses")
                last = p[0] + p[1]
                presses.append((p[0], p[1]))
            if not presses:
                raise c.err("a raw action needs at least one press", "presses")
        elif "presses" in w:
            raise c.err("only raw actions take presses (the others use the firmware's pattern)", "presses")
        at = c.dur(w, "at", required=True)
        if at >= sc.duration_ms:
            raise c.err("after the end of the scenario", "at")
        sc.actions.append(Action(at, kind, presses))
    sc.actions.sort(key=lambda a: a.at_ms)

    for i, w in enumerate(array("receiver_down")):
        c = _Ctx(path, loc, "receiver_down", i)
        c.check_keys(w, {"from", "to"})
        f, t = c.dur(w, "from", required=True), c.dur(w, "to", sc.duration_ms)
        if t <= f:
            raise c.err("ends before it starts", "to")
        sc.receiver_down.append(Window(f, t))

    for i, w in enumerate(array("receiver")):
        c = _Ctx(path, loc, "receiver", i)
        c.check_keys(w, {"name"})
        name = c.typed(w, "name", (str,), required=True)
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,16}", name):
            raise c.err("a name of 1-16 letters, digits, '-' or '_'", "name")
        if name in sc.receivers:
            raise c.err("%r is given twice" % name, "name")
        if i >= MAX_NODES:
            raise c.err("at most %d receivers (the device's list holds %d)" % (MAX_NODES, MAX_NODES))
        sc.receivers.append(name)
    for i, w in enumerate(array("receiver_fault")):
        c = _Ctx(path, loc, "receiver_fault", i)
        c.check_keys(w, {"node", "from", "to", "mode"})
        if len(sc.receivers) < 2:
            raise c.err("needs two or more [[receiver]] nodes (one node going away is [[receiver_down]])")
        node = c.typed(w, "node", (str,), required=True, choices=sc.receivers)
        f, t = c.dur(w, "from", required=True), c.dur(w, "to", sc.duration_ms)
        if t <= f:
            raise c.err("ends before it starts", "to")
        for o in sc.receiver_faults:
            if o.node == node and f < o.to_ms and o.from_ms < t:
                raise c.err("overlaps an earlier fault of node %r" % node, "from")
        sc.receiver_faults.append(NodeFault(node, f, min(t, sc.duration_ms), c.typed(w, "mode", (str,), "kill", choices=NODE_FAULTS)))

    for i, w in enumerate(array("power_cut")):
        c = _Ctx(path, loc, "power_cut", i)
        c.check_keys(w, {"at", "duration", "at_flash_write"})
        pc = PowerCut(
            at_ms=c.dur(w, "at", required=True),
            duration_ms=c.dur(w, "duration", 5000, allow_never=True),
            at_flash_write=c.typed(w, "at_flash_write", (int,), None, lo=1),
        )
        sc.power_cuts.append(pc)

    mf = table("modem_faults")
    sc.modem_faults = dict(mf)
    for i, w in enumerate(array("modem_fault")):
        c = _Ctx(path, loc, "modem_fault", i)
        c.check_keys(w, {"from", "to", "name", "params"})
        params = c.typed(w, "params", (dict,), {})
        to = c.dur(w, "to", None, allow_never=True)
        sc.modem_fault_windows.append(ModemFault(c.dur(w, "from", 0), to, c.typed(w, "name", (str,), required=True), params))

    for i, w in enumerate(array("wifi")):
        c = _Ctx(path, loc, "wifi", i)
        c.check_keys(w, {"from", "to", "bssid", "rssi", "lat", "lon", "range", "in_database"})
        txt = c.typed(w, "bssid", (str,), required=True)
        parts = txt.split(":")
        if len(parts) != 6 or not all(len(x) == 2 and all(ch in "0123456789abcdefABCDEF" for ch in x) for x in parts):
            raise c.err("expected six hex pairs like 'aa:bb:cc:dd:ee:ff'", "bssid")
        f, t = c.dur(w, "from", 0), c.dur(w, "to", sc.duration_ms)
        if t <= f:
            raise c.err("ends before it starts", "to")
        bssid = bytes(int(x, 16) for x in parts)
        sc.wifi.append((f, t, bssid, c.typed(w, "rssi", (int,), -70, lo=-127, hi=0)))
        placed = [k for k in ("lat", "lon", "range") if k in w]
        if placed and len(placed) != 3:
            raise c.err("an access point with a place needs lat, lon and range (metres it can be heard)",
                        ({"lat", "lon", "range"} - set(placed)).pop())
        if placed:
            sc.wifi_places[bssid] = (float(c.typed(w, "lat", (int, float), required=True, lo=-90, hi=90)),
                                     float(c.typed(w, "lon", (int, float), required=True, lo=-180, hi=180)),
                                     c.typed(w, "range", (int,), required=True, lo=1, hi=1000),
                                     c.typed(w, "in_database", (bool,), True))
        elif "in_database" in w:
            raise c.err("only an access point with a place (lat, lon, range) can be in the database", "in_database")

    ids = set()
    for i, w in enumerate(array("tower")):
        c = _Ctx(path, loc, "tower", i)
        c.check_keys(w, {"mcc", "mnc", "tac", "cell", "lat", "lon", "range", "radio", "in_database"})
        tw = Tower(
            mcc=c.typed(w, "mcc", (int,), required=True, lo=0, hi=999),
            mnc=c.typed(w, "mnc", (int,), required=True, lo=0, hi=999),
            tac=c.typed(w, "tac", (int,), required=True, lo=0, hi=0xFFFF),
            cell=c.typed(w, "cell", (int,), required=True, lo=0, hi=0xFFFFFFF),
            lat=float(c.typed(w, "lat", (int, float), required=True, lo=-90, hi=90)),
            lon=float(c.typed(w, "lon", (int, float), required=True, lo=-180, hi=180)),
            range_m=c.typed(w, "range", (int,), required=True, lo=50, hi=100000),
            radio=c.typed(w, "radio", (str,), "LTE", choices=("LTE",)),
            in_database=c.typed(w, "in_database", (bool,), True),
        )
        key = (tw.mcc, tw.mnc, tw.tac, tw.cell)
        if key in ids:
            raise c.err("tower %d-%d TAC %d cell %d is given twice" % key, "cell")
        ids.add(key)
        sc.towers.append(tw)

    for i, w in enumerate(array("operator")):
        c = _Ctx(path, loc, "operator", i)
        c.check_keys(w, {"at", "command", "value"})
        cmd = c.typed(w, "command", (str,), required=True, choices=OPERATOR_COMMANDS)
        val = c.typed(w, "value", (int,), None, lo=0, hi=65535)
        if cmd == "track" and val is None:
            raise c.err("a track command needs value = <interval seconds>", "value")
        if cmd != "track" and val is not None:
            raise c.err("only track takes a value", "value")
        sc.operator.append(OperatorCommand(c.dur(w, "at", required=True), cmd, val))

    e = table("expect")
    c = _Ctx(path, loc, "expect")
    c.check_keys(e, set(EXPECT_KEYS))
    for k, t in EXPECT_KEYS.items():
        if k in e:
            v = c.typed(e, k, (int, float) if t is float else (t,), required=True, lo=0 if t is not bool else None)
            sc.expect[k] = float(v) if t is float else v

    # the route must build (GPX readable, points sane)
    try:
        route = sc.build_route()
    except RouteError as ex:
        raise ScenarioError(str(ex), path, loc.header("route"), "[route]")
    if sc.towers:  # a cell the modem reports must contain the person (the receiver's accuracy is its range)
        from host_sim.cells import coverage_gap

        gap = coverage_gap(sc.towers, route.true_position, sc.duration_ms)
        if gap is not None:
            la, lo = route.true_position(gap)
            raise ScenarioError("no tower has the route within 80%% of its range at %ds (%.5f, %.5f): add a [[tower]] or "
                                "widen a range"
                                % (gap // 1000, la / 1e7, lo / 1e7), path, loc.header("tower", 0), "[[tower]]")
    return sc


def shipped():
    """Paths of the scenarios shipped in host_sim/scenarios/, sorted."""
    d = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scenarios")
    return sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith(".toml"))
