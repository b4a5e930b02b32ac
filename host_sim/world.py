"""The world side of one simulated run, built from a Scenario.

Owns: the clock, the true route, the GNSS emulator and the energy model
of one run, and the scheduling of every scenario event on the clock
(button edges, coverage changes, receiver outages, power cuts, modem
faults, the end of the run), with the world's own side effects of those
events (a power cut disconnects the battery and the GNSS backup; a
brown-out is detected as soon as it happens). It logs what happened as
report events.

Never does: run the firmware, the modem emulator or the receiver. It calls
the handlers the runner gives it; every handler is optional:

    action(kind, now)           a scenario action starts (before its first edge)
    button(pressed, now)        a button edge (True = pressed)
    power(on, now)              power cut (False) or restored (True)
    arm_flash_cut(n, now)       cut power at the n-th flash write from now
                                (the simulated flash calls world.cut_power)
    coverage(cov, now)          a scenario.Coverage comes into force
    receiver(up, now)           receiver outage starts (False) / ends (True)
    receiver_node(name, mode, now)   one node of a centre with several
                                (scenario [[receiver]]) fails (mode "kill" or
                                "cut") or is back (mode None)
    modem_faults(faults, now)   the merged fault dict changed
    brownout(now)               the cell can no longer hold the board up
    end(now)                    the run's duration is over (always the last
                                event at that instant)

Stays in sync with: host_sim/scenario.py (what a scenario can say),
host_sim/energy.py (parts and states), docs/scenarios.md.
"""

from host_sim.clock import Clock
from host_sim.energy import ocv_mv

_BROWN_SAFE_MS = 60000  # re-arm the brown-out watch on state changes only when closer than twice this


class World:
    def __init__(self, scenario, clock=None, patterns=None, gnss_kw=None, energy_kw=None):
        self.scenario = scenario
        self.clock = clock or Clock()
        self.route = scenario.build_route()
        self.gnss = scenario.make_gnss(self.route, **(gnss_kw or {}))
        self.energy = scenario.make_energy(**(energy_kw or {}))
        self.patterns = patterns
        self.events = []  # [{t_ms, end_ms, kind, detail}] as they happened
        self.powered = True
        self.dead = False
        self.never_back = False  # the last power cut is never restored (the device is gone for good)
        self._h = {}
        self._brown_timer = None
        self._brown_safe_until = None  # no state change can brown the board out before then
        self._flash_cuts = []  # durations of armed at_flash_write cuts

    # -- setup --------------------------------------------------------------------
    def start(self, handlers=None):
        """Schedule every scenario event; call once, at now = 0."""
        self._h = dict(handlers or {})
        sc = self.scenario
        c = self.clock
        if sc.gnss.on_at_boot:
            self.gnss.power(True, c.now)
            self.energy.set_state("gnss", "acquire", c.now)
        for a in sc.actions:
            c.at(a.at_ms, self._action, a, name="action")
        # named actions need the firmware's patterns: button_edges raises if one is missing
        for t, pressed in sc.button_edges(self.patterns or {}):
            c.at(t, self._call, "button", pressed, name="button")
        for cov in sc.coverage:
            c.at(cov.from_ms, self._coverage, cov, name="coverage")
        for w in sc.receiver_down:
            c.at(w.from_ms, self._receiver, False, name="receiver_down")
            if w.to_ms < sc.duration_ms:
                c.at(w.to_ms, self._receiver, True, name="receiver_up")
        for nf in getattr(sc, "receiver_faults", ()):
            c.at(nf.from_ms, self._node, nf, nf.mode, name="receiver_fault")
            if nf.to_ms < sc.duration_ms:
                c.at(nf.to_ms, self._node, nf, None, name="receiver_back")
        for pc in sc.power_cuts:
            if pc.at_flash_write:
                c.at(pc.at_ms, self._arm_flash_cut, pc, name="arm_flash_cut")
            else:
                c.at(pc.at_ms, self.cut_power, pc.duration_ms, name="power_cut")
        edges = sorted({f.from_ms for f in sc.modem_fault_windows} | {f.to_ms for f in sc.modem_fault_windows if f.to_ms is not None})
        if sc.modem_faults:
            c.at(0, self._faults, name="modem_faults")
        for t in edges:
            c.at(t, self._faults, name="modem_faults")
        for op in getattr(sc, "operator", ()):
            c.at(op.at_ms, self._operator, op, name="operator")
        c.at(sc.duration_ms, self._end, name="end")
        self._arm_brownout()

    # -- the world's own effects ---------------------------------------------------
    def _call(self, name, *args):
        fn = self._h.get(name)
        if fn is not None:
            fn(*args, self.clock.now)

    def _log(self, kind, detail="", end_ms=None):
        t = self.clock.now
        self.events.append({"t_ms": t, "end_ms": t if end_ms is None else end_ms, "kind": kind, "detail": detail})

    def _action(self, a):
        self._log("action", a.kind)
        self._call("action", a.kind)

    def _coverage(self, cov):
        self._log("coverage", cov.mode, cov.to_ms)
        self._call("coverage", cov)

    def _receiver(self, up):
        if not up:
            end = next((w.to_ms for w in self.scenario.receiver_down if w.from_ms == self.clock.now), self.scenario.duration_ms)
            self._log("receiver_down", "", end)
        self._call("receiver", up)

    def _node(self, nf, mode):
        if mode is not None:
            self._log("receiver_fault", "%s %s" % (mode, nf.node), nf.to_ms)
        self._call("receiver_node", nf.node, mode)

    def _operator(self, op):
        self._log("operator", op.command + ("" if op.value is None else " %d" % op.value))
        self._call("operator", op.command, op.value)

    def _end(self):
        # the end is the last thing at its instant: whatever else falls due
        # then (a power restore, a button edge) happens first, so the end
        # handler sees the world as it is at the end of the run
        if self.clock.next_time() == self.clock.now:
            self.clock.at(self.clock.now, self._end, name="end")
            return
        self._call("end")

    def _faults(self):
        self._call("modem_faults", self.scenario.faults_at(self.clock.now))

    def cut_power(self, duration_ms=5000, detail=""):
        """Remove the battery now; restore after duration_ms (None: never).
        Called by the schedule; the simulated flash calls flash_cut()."""
        if not self.powered:
            return
        now = self.clock.now
        self.powered = False
        self.never_back = duration_ms is None
        self.energy.set_connected(False, now)
        self.gnss.power(False, now)
        self.gnss.lose_backup()
        self.energy.set_state("gnss", "off", now)
        end = self.scenario.duration_ms if duration_ms is None else min(self.scenario.duration_ms, now + duration_ms)
        self._log("power_cut", detail or ("never restored" if duration_ms is None else ""), end)
        self._call("power", False)
        if duration_ms is not None:
            self.clock.after(duration_ms, self._restore, name="power_restore")

    def _arm_flash_cut(self, pc):
        self._flash_cuts.append(pc.duration_ms)
        self._call("arm_flash_cut", pc.at_flash_write)

    def flash_cut(self):
        """For the simulated flash: the oldest armed at_flash_write cut
        happens now, with its scenario duration."""
        dur = self._flash_cuts.pop(0) if self._flash_cuts else 5000
        self.cut_power(dur, "at flash write")

    def _restore(self):
        if self.dead:
            return
        now = self.clock.now
        self.powered = True
        self.energy.set_connected(True, now)
        self.gnss.restore_backup()
        self._call("power", True)
        self._arm_brownout()

    def set_state(self, part, state):
        """Report a part's power state now (the board calls this); keeps the
        brown-out watch up to date. GNSS power follows "off"/other."""
        now = self.clock.now
        energy = self.energy
        same = energy.state.get(part) == state
        if same and part != "gnss":
            energy.advance(now)  # (what energy.set_state does for the same state)
            return
        energy.set_state(part, state, now)
        if part == "gnss":
            self.gnss.power(state not in ("off", "backup"), now)
        if not same:  # the same load: the brown-out watch already armed still holds
            self._arm_brownout()

    def _arm_brownout(self):
        # Far from empty, even the hungriest load takes a long while to
        # brown the board out: until half that time has passed no state
        # change can bring it closer, so none re-arms the watch (it is
        # re-armed then, by a timer). Otherwise: a timer at the instant the
        # present load would brown it out.
        now = self.clock.now
        if self._brown_safe_until is not None and now < self._brown_safe_until and self.powered and not self.dead:
            return
        if self._brown_timer is not None:
            self._brown_timer.cancel()
            self._brown_timer = None
        self._brown_safe_until = None
        if not self.powered or self.dead:
            return
        worst = self.energy.ms_until_brownout(now, self.energy.max_ma())
        if worst is not None and worst > 2 * _BROWN_SAFE_MS:
            self._brown_safe_until = now + worst // 2
            self._brown_timer = self.clock.after(worst // 2, self._rearm_brownout, name="brownout_check")
            return
        ms = self.energy.ms_until_brownout(now)
        if ms is None:
            return
        self._brown_timer = self.clock.after(ms, self._check_brownout, name="brownout_check")

    def _rearm_brownout(self):
        self._brown_timer = None
        self._brown_safe_until = None
        self._arm_brownout()

    def _check_brownout(self):
        self._brown_timer = None
        if self.powered and self.energy.browned_out(self.clock.now):
            self.dead = True
            self.powered = False
            self._log("brownout", "%d mV under load" % self.energy.battery_mv(), self.scenario.duration_ms)
            self.gnss.power(False, self.clock.now)
            self.energy.set_connected(False, self.clock.now)
            self._call("brownout")
        else:
            self._arm_brownout()

    # -- running -------------------------------------------------------------------
    def run(self):
        """Run the clock to the end of the scenario."""
        return self.clock.run_until(self.scenario.duration_ms)

    def battery_sample(self):
        """(state of charge %, cell terminal mV) now, for the report's
        battery chart: read without integrating the energy model (a sample
        must not change the run), extrapolated from its last step."""
        e = self.energy
        dt_h = max(0, self.clock.now - e.t_ms) / 3600000.0
        used = min(e.capacity_mah, e.used_mah + (e.current_ma() + e.self_discharge_ma) * dt_h)
        soc = max(0.0, 100.0 * (1.0 - used / e.capacity_mah))
        mv = ocv_mv(soc) - e.current_ma() * e.r_int_ohm
        return soc, mv

    def battery_mv(self):
        """What the firmware's board reads (0 when unpowered)."""
        if not self.powered:
            return 0
        return self.energy.board_battery_mv(self.clock.now)
