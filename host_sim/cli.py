"""`panic sim`: run simulated scenarios, a simulated device against a real
receiver, and a simulated board for the field tools.

    panic sim run FILE [--json OUT] [--report OUT.html] [--seed N] [--strict]
                       [--faithful [--time-scale X]]
        one scenario in virtual time (or, --faithful, the firmware in the
        MicroPython VM, paced X times faster than real time); prints each
        alert's press -> first frame on air and press -> ACK; exit 0 when
        every invariant and the scenario's [expect] hold, else 1 with the
        failures on stderr
    panic sim demo [--json OUT] [--report OUT.html]
        the default scenario (walk home, then an indoor attack) and a short
        summary of the alert as the receiver saw it
    panic sim device --receiver HOST:PORT --device-id N --key-file F
                     [--sms-http HOST:PORT] [--faithful [--time-scale X]] [FILE]
        the firmware living a scenario (in virtual time, or --faithful in
        the MicroPython VM, paced), its frames going to a real `panic
        receiver serve` (TCP, and SMS over its HTTP endpoint) as the
        device registered there; exit as `run`
    panic sim board [--dir DIR] [--device-id N] [--time-scale X] [--for D]
        a provisioned simulated board with the firmware running; prints its
        console's socket:// URL for `panic field selftest|console`; runs
        until Ctrl-C (or D of simulated time)

Owns: argument handling, the progress line and the human summaries.
Never does: decide pass or fail itself (host_sim/runner.failures does),
print keys (results hold none; key files are only named).
Exit codes (tools/errors.py): 0 every invariant and expectation holds,
1 one failed, 2 the scenario file or an option is wrong, 3 a file cannot be
read or written (the message names it), or the receiver cannot be reached.
The progress line (simulated time, wall time, frames) goes to stderr and
only when stderr is a terminal: logs and pipes get the summary alone.

Must stay in sync with: host_sim/runner.py, host_sim/faithful.py,
host_sim/rig_board.py, host_sim/rig_remote.py, host_sim/report.py,
docs/simulator.md ("Commands"), docs/scenarios.md ("How to run"),
docs/receiver.md (the loop), docs/tools.md, tools/cli.py COMMANDS.
"""

import importlib
import os
import signal
import sys
import tempfile
import time

from host_sim import report, scenario
from panic.argtypes import number
from panic.errors import Refused, Unavailable, UsageError

DEFAULT_SCENARIO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scenarios", "walk_home_indoor_attack.toml")
_LABEL = {"sos": "SOS", "test": "TEST", "cancel": "CANCEL", "duress_cancel": "DURESS CANCEL"}
_scale = number(float, 0.01, 1000, unit="times real time")
BOARD_DEFAULT_MS = 24 * 3600 * 1000  # `sim board` without --for: a simulated day


def _load(path):
    if os.path.isdir(path):
        inside = sorted(f for f in os.listdir(path) if f.endswith(".toml"))
        raise UsageError("%s is a folder: give one scenario file%s" % (
            path, " (it holds %s)" % ", ".join(inside[:4] + (["..."] if len(inside) > 4 else [])) if inside else ""))
    try:
        with open(path, "rb"):
            pass
    except OSError as e:
        raise Unavailable("cannot read scenario %s: %s" % (path, e.strerror or e)) from None
    try:
        return scenario.load(path)
    except scenario.ScenarioError as e:
        raise UsageError(str(e)) from None
    except OSError as e:
        raise Unavailable("cannot read scenario %s: %s" % (path, e.strerror or e)) from None


def _faithful():
    try:
        return importlib.import_module("host_sim.faithful")
    except ImportError:
        raise Unavailable("faithful mode is not available in this build") from None


def _run(args, path, progress=None):
    from host_sim import runner

    sc = _load(path)
    if getattr(args, "faithful", False):
        try:
            return _faithful().run(sc, args, progress=progress), runner
        except scenario.ScenarioError as e:
            raise UsageError(str(e)) from None
        except RuntimeError as e:  # the MicroPython board exited or never connected (faithful.Rig._check_boot)
            raise Unavailable(str(e)) from None
    try:
        res = runner.run(sc, seed=args.seed, strict=getattr(args, "strict", False))
    except ValueError as e:  # a [device] or fault setting the firmware/emulator does not know
        raise UsageError("%s: %s" % (path, e)) from None
    return res, runner


def _check_outputs(args):
    """Say before the run, not after it, that --json or --report cannot be
    written (a missing folder, one we may not write to, a folder given as
    the file)."""
    for opt, path in (("--json", args.json), ("--report", args.report)):
        if not path:
            continue
        if os.path.isdir(path):
            raise UsageError("%s %s is a folder: give a file name" % (opt, path))
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise Unavailable("cannot write %s: folder %s does not exist" % (path, folder))
        if not os.access(folder, os.W_OK):
            raise Unavailable("cannot write %s: folder %s is not writable" % (path, folder))


def _write(res, args):
    for path, write in ((args.json, report.write_json), (args.report, report.write_html)):
        if not path:
            continue
        try:
            write(res, path)
        except OSError as e:
            raise Unavailable("cannot write %s: %s" % (path, e.strerror or e)) from None


class Progress:
    """One status line on a terminal, rewritten in place: simulated time
    (of the whole run), wall time, the pace, frames on the air and ACKs
    the device received. Writes nothing when the stream is not a terminal."""

    def __init__(self, stream=None, every_s=0.5):
        self.s = stream if stream is not None else sys.stderr
        try:
            self.on = self.s.isatty()
        except (AttributeError, ValueError):
            self.on = False
        self.every_s = every_s
        self._width = 0

    def __call__(self, p):
        if not self.on:
            return
        if p.get("booting"):
            line = "starting the MicroPython board ... %.0f s" % p["wall_s"]
        else:
            line = "%s / %s simulated  %s wall  %gx  %s on air, %s" % (
                _clock(p["sim_ms"]), _clock(p["duration_ms"]), _clock(p["wall_s"] * 1000), round(p["time_scale"], 1),
                _n(p["on_air"], "frame"), _n(p["acks"], "ACK"))
            if p.get("boots", 1) > 1:
                line += ", %d boots" % p["boots"]
        self.s.write("\r" + line.ljust(self._width))
        self.s.flush()
        self._width = len(line)

    def end(self):
        if self.on and self._width:
            self.s.write("\n")
            self.s.flush()
            self._width = 0


def _n(n, what):
    return "%d %s%s" % (n, what, "" if n == 1 else "s")


def _clock(ms):
    s = int(ms) // 1000
    return "%d:%02d:%02d" % (s // 3600, s // 60 % 60, s % 60) if s >= 3600 else "%d:%02d" % (s // 60, s % 60)


def _dur(ms):
    s = ms // 1000
    return "%dh%02dm%02ds" % (s // 3600, s // 60 % 60, s % 60) if s >= 3600 else "%dm%02ds" % (s // 60, s % 60)


def alert_lines(res):
    """One line per alert the device recognised: when it was pressed, its
    seq, press -> first frame on the air and press -> ACK (docs/simulator.md)."""
    out = []
    for a in sorted(res.get("alerts") or [], key=lambda a: a["press_ms"]):
        def lat(k, a=a):
            return "%.2f s" % ((a[k] - a["press_ms"]) / 1000.0) if a.get(k) is not None else "never"

        head = "  %s at %s" % (_LABEL.get(a["kind"], a["kind"]), _clock(a["press_ms"]))
        if a.get("seq") is None:
            out.append(head + ": no frame was built for it")
            continue
        line = "%s, seq %d: press -> first frame on air %s, press -> ACK %s" % (
            head, a["seq"], lat("first_frame_ms"), lat("ack_ms"))
        if a.get("pending_at_end"):
            line += " (still queued on the device at the end)"
        out.append(line)
    return out


def _report_run(res, runner, wall, extra=(), more_fails=()):
    """The run's summary on stdout, its failures on stderr; the exit code."""
    fails = runner.failures(res) + list(more_fails)
    sc = res["scenario"]
    f = res.get("faithful") or {}
    pace = " (%gx real time)" % f["time_scale"] if f.get("time_scale") else ""
    print("%s: %s simulated in %.1f s wall%s" % (sc["name"], _dur(sc["duration_ms"]), wall, pace))
    lines = alert_lines(res)
    if lines:
        print("alerts:")
        for line in lines:
            print(line)
    for line in extra:
        print(line)
    for note in f.get("notes") or ():
        print("note: " + note)
    if fails:
        for fail in fails:
            print("FAIL " + fail, file=sys.stderr)
        print("%d failure(s)" % len(fails), file=sys.stderr)
        return 1
    n_inv = len(res.get("invariants", []))
    print("ok: %d invariants and %d expectations hold" % (n_inv, len(res.get("expect", []))))
    return 0


def cmd_run(args):
    if args.time_scale is not None and not args.faithful:
        raise UsageError("--time-scale paces a --faithful run; a virtual-time run goes as fast as it can")
    _check_outputs(args)
    prog = Progress()
    t0 = time.monotonic()
    try:
        res, runner = _run(args, args.file, progress=prog if args.faithful else None)
    finally:
        prog.end()
    wall = time.monotonic() - t0
    _write(res, args)
    return _report_run(res, runner, wall)


def summary_lines(res):
    """The human summary of a run: the first alert as the receiver raised
    it, its latencies, the TRACKs and the energy."""
    out = []
    sc = res["scenario"]
    out.append("scenario: %s (%s simulated)" % (sc["name"], _dur(sc["duration_ms"])))
    evs = (res.get("receiver") or {}).get("events") or []
    alert = next((e for e in evs if e.get("kind") in ("alert", "test_alert")), None)
    a = next((x for x in res.get("alerts", []) if x["kind"] in ("sos", "test")), None)
    if alert is None:
        out.append("NO ALERT reached the receiver")
    else:
        fr = alert.get("frame") or {}
        out.append("VERIFIED %s from device %s (%s), seq %s, by %s" % (
            alert.get("label", "ALERT"), alert.get("device_id"), alert.get("person_ref"), fr.get("seq"),
            (fr.get("transport") or "?").upper()))
        pos = alert.get("position")
        if pos:
            out.append("  position: lat %.7f lon %.7f, source %s, accuracy %s m, fix age %s s" % (
                pos["lat"], pos["lon"], pos.get("source"), pos.get("accuracy_m"), pos.get("age_s")))
            out.append("  map: %s" % pos.get("map", ""))
            p = next((p for p in res.get("positions", []) if a and p["seq"] == a["seq"]), None)
            if p and p.get("error_m") is not None:
                out.append("  true position was %.1f m away (claimed accuracy %s m)" % (p["error_m"], p["accuracy_m"]))
        else:
            out.append("  position: unknown")
    if a is not None:
        def lat(k):
            return "%.2f s" % ((a[k] - a["press_ms"]) / 1000.0) if a.get(k) is not None else "never"

        out.append("  latency: press -> first frame on air %s, press -> ACK %s" % (lat("first_frame_ms"), lat("ack_ms")))
    tracks = sum(1 for r in (res.get("receiver") or {}).get("raised", []) if r["type"] == "TRACK")
    out.append("TRACKs received: %d" % tracks)
    en = res.get("energy") or {}
    if en.get("used_mah") is not None:
        out.append("energy: %.1f mAh used (%.1f mA average), battery %s%% at the end; %s days at this average" % (
            en["used_mah"], en.get("avg_ma", 0.0), en.get("soc_pct_end", "?"), en.get("projected_days_at_avg", "?")))
    bad = [i["name"] for i in res.get("invariants", []) if not i["ok"]]
    out.append("invariants: %s" % ("all hold" if not bad else "FAILED " + ", ".join(bad)))
    return out


def cmd_demo(args):
    _check_outputs(args)
    args.file = DEFAULT_SCENARIO
    res, runner = _run(args, DEFAULT_SCENARIO)
    _write(res, args)
    for line in summary_lines(res):
        print(line)
    fails = runner.failures(res)
    for f in fails:
        print("FAIL " + f, file=sys.stderr)
    return 1 if fails else 0


# ---------------------------------------------------------------- sim device


def _hostport(text, opt):
    from receiver.server import parse_hostport

    try:
        host, port = parse_hostport(text, opt)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if port == 0:
        raise UsageError("%s %s: give the port the receiver listens on, not 0" % (opt, text))
    return ("127.0.0.1" if host in ("", "0.0.0.0") else host), port


def cmd_device(args):
    from host_sim import runner
    from host_sim.rig_remote import DeviceFlash, RemoteReceiver, Unreachable
    from receiver.cli import _read_key_file

    if args.time_scale is not None and not args.faithful:
        raise UsageError("--time-scale paces a --faithful run; a virtual-time run goes as fast as it can")
    tcp = _hostport(args.receiver, "--receiver")
    http = _hostport(args.sms_http, "--sms-http") if args.sms_http else None
    _check_outputs(args)
    sc = _load(args.file or DEFAULT_SCENARIO)
    if args.seed is not None:
        sc.seed = args.seed
    sc.start_utc_ms = int(time.time() * 1000)  # the device's clock is the receiver's at the start
    key = _read_key_file(args.key_file)
    remote = RemoteReceiver(tcp, http)
    try:
        remote.check()
    except Unreachable as e:
        raise Unavailable(str(e)) from None
    flash = DeviceFlash(args.flash or os.path.splitext(os.path.abspath(args.key_file))[0] + ".flash")
    try:
        fresh = not os.path.isdir(flash.data)
        flash.prepare()
    except OSError as e:
        raise Unavailable("cannot use %s for the device's flash: %s" % (flash.path, e.strerror or e)) from None
    print("simulated device %d -> receiver %s:%d (TCP)%s" % (
        (args.device_id,) + tcp + (", SMS to http://%s:%d/sms" % http if http else ", no SMS path (no --sms-http)",)))
    carried = flash.queued()
    print("its flash: %s (%s%s)" % (flash.path, "new" if fresh else "kept from its last run: its seqs go on",
                                     ", %s queued in its outbox" % _n(len(carried), "frame") if carried else ""))
    t0 = time.monotonic()
    if args.faithful:
        scale = args.time_scale or sc.time_scale or 1.0
        print("scenario: %s, %s in the MicroPython VM at %gx: about %s of wall time" % (
            sc.name, _dur(sc.duration_ms), scale, _dur(int(sc.duration_ms / scale))), flush=True)
        try:
            rig = _faithful().Rig(sc, device_id=args.device_id, key=key, remote=remote, time_scale=scale)
        except scenario.ScenarioError as e:
            raise UsageError(str(e)) from None
        rig.carried = carried
        prog = Progress()
        data = os.path.join(rig.root, "data")
        try:
            flash.copy_to(data)
            rig.start()
            res = rig.run(progress=prog)
        except RuntimeError as e:  # the MicroPython board exited or never connected (faithful.Rig._check_boot)
            raise Unavailable(str(e)) from None
        finally:
            prog.end()
            if rig.board is not None:
                rig.board.stop()  # the VM ends before its flash is read back
            flash.copy_from(data)
            rig.stop()
    else:
        import functools

        from host_sim.rig_remote import VirtualFarEnd

        print("scenario: %s, %s in virtual time" % (sc.name, _dur(sc.duration_ms)), flush=True)
        try:
            r = runner.Runner(sc, device=(args.device_id, key), far_end=functools.partial(VirtualFarEnd, remote=remote, carried=carried),
                              flash_root=flash.path)
        except ValueError as e:  # a [device] or fault setting the firmware/emulator does not know
            raise UsageError("%s: %s" % (sc.path, e)) from None
        far = r.receiver
        assert isinstance(far, VirtualFarEnd)  # far_end= above made it
        try:
            res = r.run()
        finally:
            far.close()
    _write(res, args)
    up = [f for f in res["frames"] if f["dir"] == "up" and f["event"] == "on_air"]
    acks = [f for f in res["frames"] if f["dir"] == "down" and f["event"] == "acked"]
    stored = {r["seq"] for r in res["receiver"]["raised"]}
    extra = ["frames: %s on air, %s received, %s stored by the receiver (each named by an ACK that verified)"
             % (_n(len(up), "frame"), _n(len(acks), "ACK"), _n(len(stored), "frame"))]
    if remote.sms_unsent and not args.faithful:
        extra.append("note: %s reached no receiver (%s)" % (
            _n(remote.sms_unsent, "SMS"), "no --sms-http" if http is None else "the SMS endpoint failed"))
    fails = []
    if up and not stored:
        fails.append("no frame was acknowledged: is device %d registered at %s:%d with this key? "
                     "(panic receiver device show --device-id %d)" % ((args.device_id,) + tcp + (args.device_id,)))
    return _report_run(res, runner, time.monotonic() - t0, extra, fails)


# ---------------------------------------------------------------- sim board


def cmd_board(args):
    from host_sim import rig_board as RB

    own = args.dir is None
    folder = RB.BoardFolder(args.dir or tempfile.mkdtemp(prefix="panic-sim-board-"))
    try:
        return _board(args, folder)
    finally:
        if own:
            import shutil

            shutil.rmtree(folder.path, ignore_errors=True)


def _board(args, folder):
    from host_sim import rig_board as RB
    from receiver.errors import ReceiverError

    duration_ms = args.for_ms
    if args.scenario:
        sc = _load(args.scenario)
        if duration_ms is not None:
            sc.duration_ms = duration_ms
    else:
        sc = RB.bench_scenario(duration_ms or BOARD_DEFAULT_MS)
    try:
        fresh = not folder.provisioned()
    except RB.BoardFolderError as e:
        raise Refused(str(e)) from None
    try:
        if fresh:
            folder.provision(sc, args.device_id)
        elif args.device_id_given:
            raise UsageError("--device-id: %s is already provisioned as device %d" % (folder.path, folder.device_id()))
    except OSError as e:
        raise Unavailable("cannot write %s: %s" % (getattr(e, "filename", None) or folder.path, e.strerror or e)) from None
    except (ValueError, ReceiverError) as e:
        raise UsageError(str(e)) from None
    stop = []
    handlers = {}

    def _stop(*_a):  # Ctrl-C or SIGTERM: power off cleanly (the store closed, the VM ended)
        stop.append(True)

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            handlers[sig] = signal.signal(sig, _stop)
        except ValueError:  # not the main thread: Ctrl-C is the caller's
            pass
    prog = Progress()
    rig = None
    try:
        try:
            rig = RB.boot(folder, sc, time_scale=args.time_scale, start_utc_ms=int(time.time() * 1000))
        except ReceiverError as e:
            raise Unavailable("receiver store %s: %s" % (folder.db, e)) from None
        except OSError as e:
            raise Unavailable("cannot start the MicroPython board: %s" % (e.strerror or e)) from None
        dev = rig.device_id
        print("simulated board: device %d (%s), %s, %gx real time, folder %s%s" % (
            dev, rig.cfg.get("board", "t-sim7600e"), "newly provisioned" if fresh else "provisioned before",
            rig.scale, folder.path, "" if args.dir else " (removed when it stops: --dir keeps one)"))
        print("  console   %s" % rig.console_url)
        print("  engineer  %s" % folder.engineer_key)
        print("  receiver  %s (master key %s), served by this command" % (folder.db, folder.master_key))
        print("  panic field selftest --port %s --engineer-key %s --device-id %d --receiver-db %s" % (
            rig.console_url, folder.engineer_key, dev, folder.db))
        print("  panic field console --port %s --engineer-key %s" % (rig.console_url, folder.engineer_key))
        print("Ctrl-C powers it off.", flush=True)
        ready = False
        next_at = 0.0
        end = rig.sc.duration_ms
        while not stop and rig.pacer.clock.now < end:
            try:
                rig.pump()
            except RuntimeError as e:  # the VM ended or never connected (faithful.Rig._check_boot)
                raise Unavailable(str(e)) from None
            t = time.monotonic()
            if t < next_at:
                continue
            next_at = t + prog.every_s
            p = rig.progress()
            if not ready and p["acks"]:
                ready = True
                prog.end()
                print("ready: the firmware is up and its boot STATUS was acknowledged (%s simulated, %.1f s wall)" % (
                    _clock(p["sim_ms"]), p["wall_s"]), flush=True)
            prog(p)
        prog.end()
        p = rig.progress()
        print("powered off after %s simulated (%.0f s wall): %s on air, %s" % (
            _dur(p["sim_ms"]), p["wall_s"], _n(p["on_air"], "frame"), _n(p["acks"], "ACK")), flush=True)
        return 0
    finally:
        prog.end()
        if rig is not None:
            rig.stop()
        for sig, h in handlers.items():
            signal.signal(sig, h)


def _duration(text):
    import argparse

    try:
        ms = scenario.parse_duration_ms(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if ms <= 0:
        raise argparse.ArgumentTypeError("must be longer than 0")
    return ms


def register(sub):
    import argparse

    class _StoreGiven(argparse.Action):
        def __call__(self, parser, ns, values, option_string=None):
            setattr(ns, self.dest, values)
            setattr(ns, self.dest + "_given", True)

    p = sub.add_parser("sim", help="simulated devices: scenarios, a device against a real receiver, a board")
    ss = p.add_subparsers(dest="sim_cmd", metavar="ACTION")
    ss.required = True
    r = ss.add_parser("run", help="run one scenario file; exit 1 if an invariant or expectation fails")
    r.add_argument("file", help="scenario TOML (docs/scenarios.md)")
    r.add_argument("--json", metavar="OUT", help="write the results as JSON")
    r.add_argument("--report", metavar="OUT.html", help="write the HTML report")
    r.add_argument("--seed", type=int, help="override the scenario's seed")
    r.add_argument("--strict", action="store_true", help="an alert still queued at the end counts as lost")
    r.add_argument("--faithful", action="store_true", help="run the firmware in the MicroPython VM, in real time")
    r.add_argument("--time-scale", type=_scale, metavar="X",
                   help="--faithful: run X times faster than real time (default: the scenario's time_scale, else 1)")
    r.set_defaults(func=cmd_run)
    d = ss.add_parser("demo", help="run the default scenario and summarise the alert")
    d.add_argument("--json", metavar="OUT")
    d.add_argument("--report", metavar="OUT.html")
    d.add_argument("--seed", type=int)
    d.set_defaults(func=cmd_demo)

    v = ss.add_parser("device", help="a simulated device living a scenario, its frames going to a running "
                                     "`panic receiver serve`")
    v.add_argument("file", nargs="?", help="scenario TOML (default: %s)" % os.path.relpath(DEFAULT_SCENARIO))
    v.add_argument("--receiver", required=True, metavar="HOST:PORT", help="the receiver's TCP address (serve --listen)")
    v.add_argument("--sms-http", metavar="HOST:PORT",
                   help="the receiver's SMS endpoint (serve --http): the device's SMS are posted there")
    v.add_argument("--device-id", type=number(int, 1, 0xFFFFFFFF), required=True,
                   help="the id registered at the receiver (panic receiver device add)")
    v.add_argument("--key-file", required=True, metavar="FILE", help="the device key registered with it (64 hex digits)")
    v.add_argument("--faithful", action="store_true",
                   help="run the firmware in the MicroPython VM in real time (default: virtual time, as fast as the "
                        "receiver answers)")
    v.add_argument("--time-scale", type=_scale, metavar="X",
                   help="--faithful: run X times faster than real time (default: the scenario's time_scale, else 1)")
    v.add_argument("--flash", metavar="DIR", help="the device's flash, kept between runs so its seqs go on (default: "
                                                  "beside the key file, KEY.flash)")
    v.add_argument("--seed", type=int, help="override the scenario's seed")
    v.add_argument("--json", metavar="OUT", help="write the results as JSON")
    v.add_argument("--report", metavar="OUT.html", help="write the HTML report")
    v.set_defaults(func=cmd_device)

    b = ss.add_parser("board", help="a provisioned simulated board with the firmware running; its console on socket://")
    b.add_argument("--dir", metavar="DIR", help="the board's folder: provisioned if new, booted again if it was "
                                                "(default: a temporary folder)")
    b.add_argument("--device-id", type=number(int, 1, 0xFFFFFFFF), default=4242, action=_StoreGiven,
                   help="the id a new board is provisioned with (default 4242)")
    b.add_argument("--time-scale", type=_scale, metavar="X", help="run X times faster than real time (default 1)")
    b.add_argument("--for", dest="for_ms", type=_duration, metavar="DURATION",
                   help="power off after this much simulated time, e.g. 2h (default 24h)")
    b.add_argument("--scenario", metavar="FILE", help="a scenario for the world around it (default: a bench with a "
                                                      "view of the sky, full coverage, a full battery)")
    b.set_defaults(func=cmd_board, device_id_given=False)
