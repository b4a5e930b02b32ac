"""`panic field selftest|console`: prove a unit works, over USB, with the engineer key.

Owns: the list of field checks and what counts as a pass, the TEST alert
round trip as seen from the console, the optional receiver confirmation,
and the report (text for people, JSON for records).
Each check is (name, "pass"|"fail", why). The self-test passes only if
every check passes; `why` always says what was seen and what to do.
Never prints the engineer key or anything derived from it.
Stays in sync with: the status schema in docs/diag.md (what the App's
provider reports), tools/diaglink.py, tools/registry.py.
"""

import json
import sys
import time

from tools.diaglink import DiagError, SerialConsole, load_engineer_key
from tools.errors import Unavailable
from tools.registry import ReceiverRegistry, RegistryError

MIN_BATTERY_MV = 3600
MIN_CSQ = 10
GNSS_WAKE_S = 5.0  # how long a status may take to show a GNSS fix after the console woke the unit
# The SIM7600's own GNSS is off between refreshes and the console starts a
# session: SIM7600 Hardware Design V1.02 3.12 gives "Hot start <1s, Cold
# start<35s" in open sky; wait the cold figure with margin before failing.
GNSS_MODEM_WAKE_S = 60.0


def _get(d, *path):
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def check_status(st, expect_id=None):
    """Checks on one status dict: list of (name, result, why)."""
    r = []

    def add(name, ok, why):
        r.append((name, "pass" if ok else "fail", why))

    fw = st.get("firmware")
    add("firmware", bool(fw), "version %s" % fw if fw else "no firmware version reported")
    dev = st.get("device_id")
    if expect_id is not None:
        add("device id", dev == expect_id, "device %s%s" % (dev, "" if dev == expect_id else ", expected %d" % expect_id))
    else:
        add("device id", isinstance(dev, int) and dev > 0, "device %s" % dev)
    cfg = st.get("config") or {}
    add("config", bool(cfg.get("receiver")) and bool(cfg.get("sms_number")),
        "receiver %s, SMS %s, profile %s" % (cfg.get("receiver"), cfg.get("sms_number"), cfg.get("power_profile"))
        if cfg else "no config summary: is the device provisioned?")
    pressed = _get(st, "button", "pressed")
    level = _get(st, "button", "level")
    if pressed is None:
        add("button", False, "button level not reported")
    else:
        add("button", not pressed, "level %s, %s" % (level, "reads PRESSED at rest: stuck or miswired" if pressed else "idle"))
    led = _get(st, "board", "led")
    add("led", led == 0, "the board LED (GPIO12) is held low" if led == 0 else
        "the board LED pin reads %s: it must be low (and the LED removed for issue, docs/hardware.md)" % led)
    spin = _get(st, "board", "status_pin")
    on = _get(st, "modem", "on")
    if spin is None:
        add("modem status", False, "the modem's STATUS line is not read: a V1.2 board without STATUS on GPIO34?")
    else:
        add("modem status", bool(spin) == bool(on), "STATUS %s, the engine has the modem %s%s" % (
            "high" if spin else "low", "on" if on else "off",
            "" if bool(spin) == bool(on) else ": they disagree, check the level shifter and GPIO34"))
    if _get(st, "modem", "ri_urc") is not None:
        ri = _get(st, "modem", "ri_urc")
        add("ri", bool(ri), "RI pulses for every URC (AT+CFGRI=1)" if ri else
            "AT+CFGRI=1 not accepted: URCs will not wake the board from light sleep")
    if _get(st, "gnss", "source") == "modem":
        n = _get(st, "modem", "nmea") or 0
        add("gnss answers", n > 0, "the modem's GNSS reported %d NMEA sentences" % n if n else
            "no NMEA from the modem's GNSS yet: wait for the session the console started, or check AT+CVAUXS (antenna power)")
    fix = _get(st, "gnss", "fix")
    sats = _get(st, "gnss", "sats")
    add("gnss", bool(fix), "fix with %s satellites" % sats if fix else
        "no fix (%s satellites seen): repeat with a clear view of the sky" % sats)
    sim = _get(st, "modem", "sim")
    add("sim", sim == "READY", "SIM %s" % sim if sim == "READY" else "SIM state %s: check the card and its PIN lock" % sim)
    reg = _get(st, "modem", "registered")
    op = _get(st, "modem", "operator")
    add("network", bool(reg), ("registered on %s" % op if op else "registered") if reg else
        "not registered on a network (operator %s)" % op)
    csq = _get(st, "modem", "csq")
    if not isinstance(csq, int) or csq == 99:
        add("signal", False, "signal unknown (CSQ %s)" % csq)
    else:
        add("signal", csq >= MIN_CSQ, "CSQ %d (%d dBm)%s" % (csq, -113 + 2 * csq, "" if csq >= MIN_CSQ else ": too weak, move or check the antenna"))
    cell = _get(st, "modem", "cell")
    add("cell", bool(cell), "serving cell %s" % (cell,) if cell else "no serving cell reported")
    mv = _get(st, "battery", "mv")
    if not isinstance(mv, int):
        add("battery", False, "battery not reported")
    else:
        add("battery", mv >= MIN_BATTERY_MV, "%d mV%s" % (mv, "" if mv >= MIN_BATTERY_MV else ": charge before issuing"))
    fok = _get(st, "flash", "ok")
    add("flash", fok is True, "flash ok, %s KB free" % _get(st, "flash", "free_kb") if fok else "flash reports a problem: %s" % st.get("flash"))
    ob = st.get("outbox")
    add("outbox", ob == 0, "empty" if ob == 0 else "%s frame(s) waiting to be delivered" % ob)
    faults = st.get("faults") or []
    add("faults", not faults, "none" if not faults else "; ".join(str(f) for f in faults[:5]))
    return r


def run_test_alert(con, timeout=90.0, poll=1.0, sleep=time.sleep):
    """Send a TEST alert through the console; (result, why, detail)."""
    r = con.call("test")
    if not r.get("ok"):
        return "fail", "device refused the test: %s" % r.get("error"), None
    tok = r.get("token")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rr = con.call("result", token=tok)
        if rr.get("ok") and rr.get("done"):
            res = rr.get("result") or {}
            if res.get("acked"):
                return "pass", "acknowledged by the receiver via %s in %s ms" % (res.get("via", "?"), res.get("rtt_ms", "?")), res
            return "fail", "not acknowledged: %s" % (res.get("error") or "no ACK"), res
        sleep(poll)
    return "fail", "no result within %.0f s" % timeout, None


def check_receiver(registry, device_id, since, timeout=30.0, sleep=time.sleep):
    deadline = time.monotonic() + timeout
    while True:
        try:
            seen = registry.test_alerts(device_id, since)
        except RegistryError as e:
            return "fail", "receiver store: %s" % e
        if seen:
            return "pass", "receiver stored %d TEST alert(s) from device %s, labelled test" % (len(seen), device_id)
        if time.monotonic() >= deadline:
            return "fail", "the receiver has no TEST alert from device %s since the test started" % device_id
        sleep(0.5)


def selftest(port, ekey, registry=None, expect_id=None, test_timeout=90.0, baud=115200, console_timeout=5.0):
    """Run every check; return the report dict."""
    started = time.time()
    report = {"port": port, "started": int(started), "checks": [], "status": None}
    checks = report["checks"]

    def add(name, result, why):
        checks.append({"name": name, "result": result, "why": why})

    with SerialConsole(port, ekey, baud=baud, timeout=console_timeout) as con:
        try:
            con.login()
        except DiagError as e:
            add("console", "fail", str(e))
            return _finish(report)
        add("console", "pass", "authenticated; responses verified")
        try:
            st = con.call("status").get("status") or {}
            # A unit that was light-sleeping has not listened to its GNSS
            # (the UART is off then); the open session keeps it awake, so
            # a fix shows within a few NMEA epochs: ask again briefly.
            waited = 0.0
            limit = GNSS_MODEM_WAKE_S if _get(st, "gnss", "source") == "modem" else GNSS_WAKE_S
            while not _get(st, "gnss", "fix") and waited < limit:
                time.sleep(0.5)
                waited += 0.5
                st = con.call("status").get("status") or st
            report["status"] = st
            for name, res, why in check_status(st, expect_id):
                add(name, res, why)
            dev = st.get("device_id")
            if st.get("alert_active"):
                add("test alert", "fail", "a real alert is active: not sending a test")
            else:
                res, why, detail = run_test_alert(con, timeout=test_timeout)
                add("test alert", res, why)
                report["test_alert"] = detail
                if registry is not None:
                    if res == "pass":
                        r2, why2 = check_receiver(registry, dev, int(started) - 5)
                    else:
                        r2, why2 = "fail", "skipped: the test alert was not acknowledged"
                    add("receiver", r2, why2)
            try:
                con.call("bye")
            except DiagError:
                pass
        except DiagError as e:
            add("console", "fail", str(e))
        if con.rejected:
            add("link", "fail", "%d response line(s) failed verification: the USB link is noisy or tampered" % con.rejected)
    return _finish(report)


def _finish(report):
    report["passed"] = bool(report["checks"]) and all(c["result"] == "pass" for c in report["checks"])
    report["finished"] = int(time.time())
    return report


def report_text(report):
    lines = ["wearable-panic field self-test on %s" % report["port"]]
    st = report.get("status") or {}
    if st:
        lines.append("device %s, firmware %s" % (st.get("device_id"), st.get("firmware")))
    w = max([len(c["name"]) for c in report["checks"]] + [4])
    for c in report["checks"]:
        lines.append("  %-4s  %s  %s" % ("PASS" if c["result"] == "pass" else "FAIL", c["name"].ljust(w), c["why"]))
    lines.append("RESULT: %s" % ("PASS" if report["passed"] else "FAIL"))
    return "\n".join(lines)


def cmd_selftest(a):
    ekey = load_engineer_key(a.engineer_key)
    registry = None
    if a.receiver_db:
        try:
            registry = ReceiverRegistry(a.receiver_db, a.master_key_file, need_key=False)
        except RegistryError as e:
            raise Unavailable("receiver store: %s" % e)
    report = selftest(a.port, ekey, registry=registry, expect_id=a.device_id, test_timeout=a.test_timeout, baud=a.baud)
    text = report_text(report)
    print(text)
    if a.report:
        base = a.report[:-5] if a.report.endswith(".json") else a.report[:-4] if a.report.endswith(".txt") else a.report
        for path, write in ((base + ".txt", lambda f: f.write(text + "\n")),
                            (base + ".json", lambda f: json.dump(report, f, indent=2, sort_keys=True))):
            try:
                with open(path, "w") as f:
                    write(f)
            except OSError as e:
                raise Unavailable("cannot write the report %s: %s (the self-test %s)" % (
                    path, e.strerror, "passed" if report["passed"] else "FAILED"))
        print("report written to %s.txt and %s.json" % (base, base))
    return 0 if report["passed"] else 1


HELP = "commands: status | test | result TOKEN | log [START] | bye"


def console_loop(con, inp, out):
    out.write("authenticated. " + HELP + "\n")
    out.flush()
    for raw in inp:
        words = raw.split()
        if not words:
            continue
        cmd, rest = words[0], words[1:]
        args = {}
        if cmd in ("quit", "exit"):
            cmd = "bye"
        if cmd == "result":
            if not rest:
                out.write("usage: result TOKEN\n")
                continue
            args["token"] = int(rest[0]) if rest[0].isdigit() else rest[0]
        elif cmd == "log" and rest:
            if not rest[0].isdigit():
                out.write("usage: log [START]\n")
                continue
            args["start"] = int(rest[0])
        elif cmd not in ("status", "test", "log", "bye"):
            out.write(HELP + "\n")
            continue
        resp = con.call(cmd, **args)
        out.write(json.dumps(resp, indent=2, sort_keys=True) + "\n")
        out.flush()
        if cmd == "bye":
            return 0
    try:
        con.call("bye")
    except DiagError:
        pass
    return 0


def cmd_console(a, inp=None, out=None):
    ekey = load_engineer_key(a.engineer_key)
    with SerialConsole(a.port, ekey, baud=a.baud) as con:
        try:
            con.login()
            return console_loop(con, inp or sys.stdin, out or sys.stdout)
        except DiagError as e:
            print("panic field console: %s" % e, file=sys.stderr)
            return 1


def register(sub):
    p = sub.add_parser("field", help="field engineer: self-test or console over USB")
    fs = p.add_subparsers(dest="field_cmd", metavar="ACTION")
    fs.required = True
    s = fs.add_parser("selftest", help="authenticate and run every check, with a TEST alert")
    s.add_argument("--port", required=True, help="serial port or pyserial URL")
    s.add_argument("--engineer-key", required=True, metavar="FILE")
    s.add_argument("--receiver-db", metavar="PATH", help="confirm the receiver stored the TEST alert")
    s.add_argument("--master-key-file", help="receiver master key file (default: $PANIC_RECEIVER_KEY)")
    s.add_argument("--device-id", type=int, help="the device id the unit must report")
    s.add_argument("--report", metavar="OUT", help="write OUT.txt and OUT.json")
    s.add_argument("--test-timeout", type=float, default=90.0, help="seconds to wait for the TEST ACK (default 90)")
    s.add_argument("--baud", type=int, default=115200)
    s.set_defaults(func=cmd_selftest)
    c = fs.add_parser("console", help="interactive authenticated console")
    c.add_argument("--port", required=True)
    c.add_argument("--engineer-key", required=True, metavar="FILE")
    c.add_argument("--baud", type=int, default=115200)
    c.set_defaults(func=cmd_console)
