"""Battery and energy model of the simulated board.

Owns: the current drawn by each part in each state (ESP32, modem, GNSS,
board quiescent), the integral of that current over simulated time (mAh),
the battery's state of charge and terminal voltage (open-circuit curve of
a Li-ion cell minus the drop over its internal resistance), what the ESP32
ADC reads through the board's 2:1 divider, brown-out detection, standby
projections and the power-profile trade-off.

Never does: decide states (the simulation reports them with `set_state`),
or read real time.

Figures (design brief, datasheet typicals): SIM7600 sleep 4.6 mA, idle
17.5 mA, TX 0.5-0.65 A (modelled at 0.575 A mean); ESP32 deep sleep 10 uA,
light sleep 0.8 mA, active 30-68 mA; GNSS ~30 mA while on; SIM7080G PSM
3 uA. Board quiescent draw (regulator, charger, divider) is a parameter,
0 by default: measure a real board and set it, it can dominate standby.

Stays in sync with: docs/scenarios.md ([battery] and profile fields), the
firmware's battery percent mapping (it sees only battery_mv).
"""

import bisect
import math

from host_sim.errors import SimBug

# mA per state, per part.
CURRENTS = {
    "esp32": {"off": 0.0, "deep_sleep": 0.010, "light_sleep": 0.8, "idle": 30.0, "active": 68.0},
    "sim7600": {"off": 0.0, "sleep": 4.6, "idle": 17.5, "tx": 575.0},
    "sim7080g": {"off": 0.0, "psm": 0.003, "sleep": 1.0, "idle": 10.0, "tx": 250.0},
    "gnss": {"off": 0.0, "backup": 0.015, "standby": 1.0, "acquire": 30.0, "tracking": 30.0},
}

# Open-circuit voltage of a Li-ion cell (mV) against state of charge (%).
OCV_CURVE = (
    (0, 3000),
    (3, 3300),
    (5, 3450),
    (10, 3680),
    (20, 3740),
    (30, 3770),
    (40, 3790),
    (50, 3820),
    (60, 3870),
    (70, 3920),
    (80, 3980),
    (90, 4060),
    (100, 4200),
)


_OCV_XS = [p[0] for p in OCV_CURVE]


class EnergyError(SimBug):
    """Unknown part or state, time going backwards: a simulator bug."""


def ocv_mv(soc_pct):
    """Open-circuit cell voltage (mV) at a state of charge in percent."""
    if soc_pct <= 0:
        return OCV_CURVE[0][1]
    if soc_pct >= 100:
        return OCV_CURVE[-1][1]
    i = bisect.bisect_right(_OCV_XS, soc_pct) - 1
    (x0, y0), (x1, y1) = OCV_CURVE[i], OCV_CURVE[i + 1]
    return y0 + (y1 - y0) * (soc_pct - x0) / (x1 - x0)


def soc_from_mv(mv):
    """Inverse of ocv_mv (percent), for tests and for reports."""
    if mv <= OCV_CURVE[0][1]:
        return 0.0
    if mv >= OCV_CURVE[-1][1]:
        return 100.0
    for (x0, y0), (x1, y1) in zip(OCV_CURVE, OCV_CURVE[1:], strict=False):
        if y0 <= mv <= y1:
            return x0 + (x1 - x0) * (mv - y0) / (y1 - y0)
    return 0.0


class EnergyModel:
    """Integrates current over simulated time.

    capacity_mah: usable cell capacity. start_pct: initial state of charge.
    modem: "sim7600" or "sim7080g". r_int_ohm: cell internal resistance.
    brownout_mv: terminal voltage below which the board resets (LDO dropout
    for the 3.3 V rail plus the modem's 3.4 V minimum under TX).
    self_discharge_pct_month: Li-ion self-discharge, counted in standby
    projections and in the integral.
    """

    def __init__(
        self,
        capacity_mah=2000.0,
        start_pct=100.0,
        modem="sim7600",
        r_int_ohm=0.15,
        brownout_mv=3300,
        board_quiescent_ma=0.0,
        self_discharge_pct_month=2.0,
        adc_divider=2,
    ):
        if modem not in ("sim7600", "sim7080g"):
            raise EnergyError("unknown modem %r (sim7600, sim7080g)" % modem)
        if capacity_mah <= 0:
            raise EnergyError("battery capacity must be > 0 mAh")
        if not (0.0 <= start_pct <= 100.0):
            raise EnergyError("battery start level must be 0..100 %%, got %r" % start_pct)
        self.capacity_mah = float(capacity_mah)
        self.modem = modem
        self.r_int_ohm = r_int_ohm
        self.brownout_mv = brownout_mv
        self.board_quiescent_ma = board_quiescent_ma
        self.self_discharge_ma = capacity_mah * self_discharge_pct_month / 100.0 / (30 * 24)
        self.adc_divider = adc_divider
        self._tables = {"esp32": CURRENTS["esp32"], "modem": CURRENTS[modem], "gnss": CURRENTS["gnss"]}
        self.state = {"esp32": "active", "modem": "off", "gnss": "off"}
        self._cur = None  # the present states' loads (see _load), until one changes
        self._loads = {}  # (esp32, modem, gnss) states -> their loads
        self.used_mah = self.capacity_mah * (1.0 - start_pct / 100.0)
        self.start_used_mah = self.used_mah
        self.t_ms = 0
        self.by_part_mah = {"esp32": 0.0, "modem": 0.0, "gnss": 0.0, "board": 0.0}
        self.by_state_ms = {}  # (part, state) -> ms spent
        self.power_connected = True  # battery present (a power cut sets False)

    # -- state reporting --------------------------------------------------------
    def current_ma(self):
        if not self.power_connected:
            return 0.0
        return self._load()[1]

    def _load(self):
        """((part, mA, (part, state)) for each part, the total mA) in the
        present states: worked out again only when a state changes (the
        device changes state a few times a second of simulated time)."""
        c = self._cur
        if c is None:
            s = self.state
            key = (s["esp32"], s["modem"], s["gnss"])
            c = self._loads.get(key)
            if c is None:
                t = self._tables
                parts = tuple((part, t[part][s[part]], (part, s[part])) for part in ("esp32", "modem", "gnss"))
                total = t["esp32"][s["esp32"]] + t["modem"][s["modem"]] + t["gnss"][s["gnss"]] + self.board_quiescent_ma
                c = self._loads[key] = (parts, total)
            self._cur = c
        return c

    def advance(self, now):
        """Integrate up to now (ms) with the current states."""
        if now < self.t_ms:
            raise EnergyError("energy time went backwards: %d ms after %d ms" % (now, self.t_ms))
        dt = now - self.t_ms
        if dt == 0:
            return
        h = dt / 3600000.0
        if self.power_connected:
            parts, total = self._load()
            by_part, by_state = self.by_part_mah, self.by_state_ms
            for part, ma, k in parts:
                by_part[part] += ma * h
                by_state[k] = by_state.get(k, 0) + dt
            by_part["board"] += self.board_quiescent_ma * h
            self.used_mah += total * h
        self.used_mah += self.self_discharge_ma * h
        if self.used_mah > self.capacity_mah:
            self.used_mah = self.capacity_mah
        self.t_ms = now

    def set_state(self, part, state, now):
        """Part ("esp32", "modem", "gnss") enters state at sim time now."""
        if self.state.get(part) == state:
            self.advance(now)  # known part, known state: nothing changes
            return
        if part not in self._tables:
            raise EnergyError("unknown part %r (esp32, modem, gnss)" % part)
        if state not in self._tables[part]:
            raise EnergyError("unknown %s state %r (%s)" % (part, state, ", ".join(self._tables[part])))
        self.advance(now)
        self.state[part] = state
        self._cur = None

    def set_connected(self, connected, now):
        """Battery connected or cut (power-cut injection)."""
        self.advance(now)
        self.power_connected = bool(connected)

    # -- battery readings -------------------------------------------------------
    def soc_pct(self, now=None):
        if now is not None:
            self.advance(now)
        return max(0.0, 100.0 * (1.0 - self.used_mah / self.capacity_mah))

    def battery_mv(self, now=None):
        """Cell terminal voltage under the present load (mV, int)."""
        if now is not None:
            self.advance(now)
        return int(round(self._terminal_mv()))

    def _terminal_mv(self):
        return ocv_mv(self.soc_pct()) - self.current_ma() * self.r_int_ohm

    def adc_pin_mv(self, now=None):
        """What the ESP32 measures on GPIO35 behind the divider (mV, int)."""
        return self.battery_mv(now) // self.adc_divider

    def board_battery_mv(self, now=None):
        """battery_mv as the firmware's board computes it: pin mV x divider
        (so it is quantised to the divider ratio, as on the real board)."""
        return self.adc_pin_mv(now) * self.adc_divider

    def browned_out(self, now=None):
        """True if the terminal voltage under load is at or below brownout_mv."""
        if now is not None:
            self.advance(now)
        return self.power_connected and self._terminal_mv() <= self.brownout_mv

    def max_ma(self):
        """The most the board can draw: every part in its hungriest state."""
        t = self._tables
        return max(t["esp32"].values()) + max(t["modem"].values()) + max(t["gnss"].values()) + self.board_quiescent_ma

    def ms_until_brownout(self, now, load_ma=None):
        """Ms until the terminal voltage at the present load (or at
        load_ma) falls below brownout_mv if nothing changes (None if never,
        0 if already)."""
        self.advance(now)
        if not self.power_connected:
            return None
        cur = self.current_ma() if load_ma is None else load_ma
        if ocv_mv(self.soc_pct()) - cur * self.r_int_ohm <= self.brownout_mv:
            return 0
        ma = cur + self.self_discharge_ma
        if ma <= 0:
            return None
        drop = cur * self.r_int_ohm
        # the SoC where ocv - drop meets the line: the curve is piecewise
        # linear and rising, so its inverse gives it directly
        lo = soc_from_mv(self.brownout_mv + drop)
        mah = (self.soc_pct() - lo) / 100.0 * self.capacity_mah  # lo: first SoC at or below the line
        return int(math.ceil(mah / ma * 3600000.0)) + 1

    # -- summaries ----------------------------------------------------------------
    def summary(self, now=None):
        if now is not None:
            self.advance(now)
        used = self.used_mah - self.start_used_mah
        hours = self.t_ms / 3600000.0
        avg = used / hours if hours > 0 else 0.0
        return {
            "duration_ms": self.t_ms,
            "used_mah": round(used, 4),
            "avg_ma": round(avg, 4),
            "by_part_mah": {k: round(v, 4) for k, v in self.by_part_mah.items()},
            "time_in_state_ms": {"%s.%s" % k: v for k, v in sorted(self.by_state_ms.items())},
            "soc_pct_end": round(self.soc_pct(), 2),
            "battery_mv_end": self.battery_mv(),
            "capacity_mah": self.capacity_mah,
            "projected_days_at_avg": round(standby_days(self.capacity_mah, avg), 2) if avg > 0 else None,
        }


def standby_days(capacity_mah, avg_ma):
    return capacity_mah / avg_ma / 24.0


# -- power profiles ------------------------------------------------------------
# Each profile describes standby (between alerts) as baseline states plus
# periodic heartbeats, and the extra delay an alert pays before its first
# frame can go on air. Times in seconds.
PROFILES = {
    "ready": {
        "doc": "modem registered and asleep (DTR sleep), ESP32 in deep sleep: the first frame goes as soon as the pattern completes",
        "standby": {"esp32": "deep_sleep", "modem": "sleep", "gnss": "off"},
        "heartbeat": [("active", "idle", 1.0), ("active", "tx", 1.0), ("active", "idle", 2.0)],
        "first_frame_extra_s": {"min": 0.2, "typ": 0.5, "max": 2.0},
    },
    "saver": {
        "doc": "modem powered off until a press (or a heartbeat); ESP32 in deep sleep: long life, slower first frame",
        "standby": {"esp32": "deep_sleep", "modem": "off", "gnss": "off"},
        "heartbeat": [
            ("active", "idle", 12.0),  # PWRKEY to RDY
            ("active", "idle", 20.0),  # network registration (typical)
            ("active", "tx", 1.5),
            ("active", "idle", 2.0),
        ],
        "first_frame_extra_s": {"min": 15.0, "typ": 32.0, "max": 60.0},
    },
}


def profile_average_ma(name, heartbeat_s=4 * 3600, modem="sim7600", board_quiescent_ma=0.0, self_discharge_ma=0.0):
    """Average standby current (mA) of a profile with one heartbeat every
    heartbeat_s seconds."""
    if name not in PROFILES:
        raise EnergyError("unknown power profile %r (%s)" % (name, ", ".join(PROFILES)))
    p = PROFILES[name]
    tab_m = CURRENTS[modem]
    e, m, g = p["standby"]["esp32"], p["standby"]["modem"], p["standby"]["gnss"]
    base = CURRENTS["esp32"][e] + tab_m[m] + CURRENTS["gnss"][g]
    hb_s = sum(d for _, _, d in p["heartbeat"])
    hb_mas = sum((CURRENTS["esp32"][es] + tab_m[ms]) * d for es, ms, d in p["heartbeat"])
    avg = (base * (heartbeat_s - hb_s) + hb_mas) / heartbeat_s
    return avg + board_quiescent_ma + self_discharge_ma


def profile_tradeoff(capacity_mah=2000.0, heartbeat_s=4 * 3600, modem="sim7600", board_quiescent_ma=0.0, self_discharge_pct_month=2.0):
    """[{profile, avg_ma, standby_days, first_frame_extra_s}] for reports."""
    sd = capacity_mah * self_discharge_pct_month / 100.0 / (30 * 24)
    out = []
    for name, p in PROFILES.items():
        avg = profile_average_ma(name, heartbeat_s, modem, board_quiescent_ma, sd)
        out.append(
            {
                "profile": name,
                "doc": p["doc"],
                "avg_ma": round(avg, 4),
                "standby_days": round(standby_days(capacity_mah, avg), 1),
                "first_frame_extra_s": dict(p["first_frame_extra_s"]),
                "heartbeat_s": heartbeat_s,
                "capacity_mah": capacity_mah,
            }
        )
    return out
