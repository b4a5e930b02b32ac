"""The App's provider for the diagnostics console (firmware/diag.py).

Owns: what the console may see of a running App (the status schema of
docs/diag.md, built from the App's parts without any I/O that blocks), the
console's TEST alert round trip (a TEST frame queued through the App's
own alert controller and outbox, its ACK matched by seq), and the event
log view. Never touches the alert controller except through fire(TEST),
which its transition table allows only in IDLE: a running alert (COVERT
included) is never disturbed, and the console refuses `test` then anyway.
Never reports key material: status carries no key fields (and diag.scrub
removes any that slipped in).

Also: the lock-out counters of the console kept on flash (DIAG_FILE) so a
power cycle does not reset a lock-out (load_lock / save_lock).

Must stay in sync with: docs/diag.md (status schema, provider interface),
firmware/app.py (fields read here: cfg, ctl, outbox, fix, t, button, board,
fs, faults, evlog, ack_hook), tools/field.py (what selftest checks).
"""

from protocol import frame as F

from firmware import alert as A
from firmware.version import VERSION

DIAG_FILE = "diaglock"
TEST_TIMEOUT_MS = 120000  # a console TEST without an ACK by then is reported failed
_KEEP_TESTS = 4
GNSS_HOLD_MS = 120000  # the modem's GNSS stays on this long after each status


def load_lock(fs):
    """(fails, lockouts) kept on flash, (0, 0) when absent or unreadable."""
    raw = fs.read(DIAG_FILE)
    try:
        a, b = raw.decode().split()
        return int(a), int(b)
    except Exception:
        return 0, 0


def save_lock(fs, state):
    fs.write_atomic(DIAG_FILE, b"%d %d\n" % (state[0], state[1]))


class Provider:
    def __init__(self, app):
        self.app = app
        self.tests = []  # [seq, sent_ms, result dict or None], newest last
        app.ack_hook = self._on_ack

    # -- status ------------------------------------------------------------
    def status(self):
        app = self.app
        cfg = app.cfg
        now = app.now
        if getattr(app, "modem_gnss", False):
            # an authenticated engineer is asking: keep the modem's GNSS on
            # for a while so the self-test sees it answer and fix (it is off
            # between standby refreshes); only after login, so a stranger on
            # the USB port cannot run the battery down with it
            app.gnss_hold = now + GNSS_HOLD_MS
        st = {
            "firmware": VERSION,
            "device_id": cfg.device_id,
            "config": {
                # every receiver and SMS number, in the device's order (failover)
                "receiver": " ".join(["%s:%d" % r for r in cfg.receivers]) or "%s:%d" % (cfg.receiver_host,
                                                                                    cfg.receiver_port),
                "sms_number": " ".join(cfg.sms_numbers) or cfg.sms_number,
                "apn": cfg.apn,
                "power_profile": cfg.power_profile,
                "wifi_scan": cfg.wifi_scan,
                "test_enabled": cfg.test_enabled,
                "errors": len(cfg.errors),
            },
            "faults": list(app.faults),
            "outbox": 0,
            "alert_active": False,
        }
        for name in ("board", "button", "battery", "flash", "gnss", "modem"):
            if app.dead and name in ("gnss", "modem"):
                continue
            try:
                st[name] = getattr(self, "_" + name)(now)
            except Exception:  # one part failing must not hide the others
                st[name] = {"error": "not available"}
        if app.dead:
            st["faults"].append("config unusable: not provisioned?")
            return st
        ob = app.outbox
        st["outbox"] = ob.count()
        st["alert_active"] = self.alert_active()
        if ob.flash_errors or ob.corrupt:
            fl = st["flash"]
            fl["ok"] = False
            fl["outbox_errors"] = ob.flash_errors + ob.corrupt
        return st

    def _board(self, now):
        b = self.app.board
        return {"led": b.output_pins().get("led"), "status_pin": b.modem_status()}

    def _button(self, now):
        app = self.app
        lvl = app.board.button_level()
        cfg = getattr(app.button, "cfg", None) if not app.dead else None
        active_low = cfg.active_low if cfg is not None else True
        return {"level": lvl, "pressed": (lvl == 0) == active_low}

    def _battery(self, now):
        app = self.app
        return {"mv": app.board.battery_mv(), "low": None if app.dead else bool(app.ctl.battery_low)}

    def _gnss(self, now):
        fix = self.app.fix
        pos = fix.position(now)
        live = fix.has_live_fix(now) if hasattr(fix, "has_live_fix") else (pos is not None and pos.source == F.SRC_GNSS)
        sats = getattr(fix, "sats", None)
        if sats is None and pos is not None:
            sats = pos.sats
        app = self.app
        return {"fix": bool(live), "sats": sats, "age_s": None if pos is None else getattr(pos, "age_s", None),
                "source": "modem" if getattr(app, "modem_gnss", False) else "uart"}

    def _modem(self, now):
        app = self.app
        ms = getattr(app.transport, "modem_status", None)
        if ms is not None:
            return ms()
        return {"csq": app.csq(), "cell": app.cell()}

    def _flash(self, now):
        d = {"ok": True, "free_kb": None, "writes": self.app.fs.writes}
        try:
            import os

            v = os.statvfs(self.app.fs.root)
            d["free_kb"] = v[0] * v[3] // 1024
        except Exception:
            d["ok"] = False
        return d

    # -- alert state ---------------------------------------------------------
    def alert_active(self):
        app = self.app
        return (not app.dead) and app.ctl.active()

    # -- TEST round trip -------------------------------------------------------
    def send_test(self, now):
        app = self.app
        if app.dead or not app.ctl.allowed(A.TEST) or app.ctl.active():
            return None
        before = [e.seq for e in app.outbox.entries if e.ftype == F.TEST]
        if app.asleep:
            app.asleep = False
            app.transport.wake(now)
        app.ctl.fire(A.TEST, now)
        seq = None
        for e in app.outbox.entries:
            if e.ftype == F.TEST and e.seq not in before:
                seq = e.seq
        if seq is None:
            return None
        app.note("console test %d" % seq)
        self.tests.append([seq, now, None])
        if len(self.tests) > _KEEP_TESTS:
            self.tests.pop(0)
        return seq

    def _on_ack(self, ftype, fr, now):
        if ftype != F.TEST:
            return
        for t in self.tests:
            if t[0] == fr.body.acked_seq and t[2] is None:
                t[2] = {"acked": True, "via": "tcp", "rtt_ms": now - t[1], "seq": t[0]}

    def test_result(self, token):
        now = self.app.now
        for t in self.tests:
            if t[0] == token:
                if t[2] is None and now - t[1] > TEST_TIMEOUT_MS:
                    queued = self.app.outbox.find(token) is not None
                    t[2] = {"acked": False, "seq": token, "rtt_ms": now - t[1],
                            "error": "no ACK within %d s%s" % (TEST_TIMEOUT_MS // 1000, ", still queued" if queued else "")}
                return t[2]
        return {"acked": False, "error": "unknown token"}

    def events(self):
        return list(self.app.evlog)
