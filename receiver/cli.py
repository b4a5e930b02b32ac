"""`panic receiver ...`: serve, take an SMS, watch, command, device registry,
migrate (a SQLite store into PostgreSQL), location database
(`locations import|list|lookup`).

Owns: argument parsing and human output for the receiver. Every error a
user can cause is one line with the exit code of tools/errors.py: a
ReceiverError becomes Unavailable (3) when something cannot be opened (the
store, the master key, an address), Refused (1) when the registry's state
says no, UsageError (2) otherwise. Never prints or logs a key: keys go in
and out through files created with mode 0600; so does the event feed.
"""

import argparse
import asyncio
import binascii
import gc
import json
import logging
import os
import signal
import sys
import time

from receiver import core, estimate, masterkey, personref
from receiver import store as S
from receiver.errors import DuplicateDevice, ReceiverError, UnknownDevice
from receiver.errors import Unavailable as RxUnavailable
from receiver.server import Limits, Server, parse_hostport
from receiver.watch import Watcher, format_device, format_incident, format_position
from panic.argtypes import number
from panic.errors import Refused, Unavailable, UsageError


def _err(e):
    """A ReceiverError as the error of the exit-code convention."""
    if isinstance(e, RxUnavailable):
        return Unavailable(str(e))
    if isinstance(e, (DuplicateDevice, UnknownDevice)):
        return Refused(str(e))
    return UsageError(str(e))


def _master(args):
    try:
        return masterkey.load(getattr(args, "master_key_file", None))
    except ReceiverError as e:
        raise _err(e)


def _store(args, need_key=False, create=True):
    mk = _master(args) if need_key else None
    try:
        return S.open_store(args.db, mk, create=create)
    except ReceiverError as e:
        raise _err(e)


def _receiver(args, st, events=None, cls=core.Receiver):
    return cls(st, events=events, heartbeat_s=args.heartbeat_s, silent_margin_s=args.silent_margin_s,
               low_battery_pct=args.low_battery_pct)


def _console_receiver():
    from receiver.console.live import ConsoleReceiver

    return ConsoleReceiver


def _write_secret_file(path, text):
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise Refused("%s already exists; refusing to overwrite a key file" % path)
    except OSError as e:
        raise Unavailable("cannot create %s: %s" % (path, e.strerror))
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")


def _read_key_file(path):
    try:
        with open(path) as f:
            text = "".join(f.read().split())
    except OSError as e:
        raise Unavailable("cannot read key file %s: %s" % (path, e.strerror))
    try:
        raw = binascii.unhexlify(text)
    except (binascii.Error, ValueError):
        raise UsageError("key file %s is not hex" % path)
    if len(raw) != 32:
        raise UsageError("key file %s must hold 32 bytes (64 hex digits), got %d bytes" % (path, len(raw)))
    return raw


# ---------------------------------------------------------------- serve


def cmd_serve(args):
    logging.basicConfig(level=getattr(logging, args.log_level), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        host, port = parse_hostport(args.listen)
        http = parse_hostport(args.http, "--http") if args.http else None
    except ValueError as e:
        raise UsageError(str(e))
    # In this order, so that a serve that cannot start leaves nothing
    # behind (issue 15, D3): the master key, then the listening sockets,
    # and only then the store (which creates the database if it is new).
    mk = _master(args)
    if args.console:
        _check_console_args(args, args.console)
    limits = Limits(idle_timeout=args.idle_timeout, frame_deadline=args.frame_deadline,
                    auth_deadline=args.auth_deadline, max_conns_per_peer=args.max_conns_per_peer,
                    max_conns=args.max_conns, max_batch=args.max_batch)
    srv = Server(None, limits, supervise_every=args.supervise_every)
    try:
        srv.bind(host, port, http)
    except OSError as e:
        raise Unavailable(e.strerror or str(e))
    try:
        st = S.open_store(args.db, mk)
    except ReceiverError as e:
        srv.unbind()
        raise _err(e)
    srv.receiver = _receiver(args, st, cls=_console_receiver() if args.console else core.Receiver)
    if S.is_pg(st):  # several nodes on PostgreSQL: one of them leads (receiver/leader.py)
        from receiver import leader

        srv.leader, srv.leading = leader.for_store(st), False
    # Every frame allocates a few dozen short-lived containers, none in a
    # cycle; with the default thresholds the collector ran every few
    # frames and walked the start-up objects too. They are frozen out of
    # it, and it runs after 20,000 allocations instead of 700 (a cycle
    # lives a little longer; the measured saving is about 2.5% of the
    # receiver's instructions per frame).
    gc.collect()
    gc.freeze()
    gc.set_threshold(20000, 20, 100)
    log = logging.getLogger("receiver")

    async def main():
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await srv.start()
        console = None
        if args.console:  # the operator console in this process, pushed at each commit (docs/console.md)
            try:
                console = await _start_console(args, args.console, srv.receiver)
            except BaseException:
                await srv.close()
                raise
        last = None
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), args.stats_every)
            except TimeoutError:
                pass
            c = srv.all_counters()
            if c != last:
                log.info("counters %s", json.dumps(c, sort_keys=True))
                last = c
        if console is not None:
            await console.close()
        await srv.close()

    try:
        asyncio.run(main())
    finally:
        st.close()
    return 0


# ---------------------------------------------------------------- console (receiver/console/)


def _console_config(args):
    from receiver.console import app as capp

    return capp.Config(tile_url=args.tiles, claim_cue_s=args.claim_cue_s, progress_cue_s=args.progress_cue_s,
                       queue_days=args.queue_days, poll_s=args.poll, idle_s=args.session_idle_s,
                       tls=bool(args.cert))


def _check_console_args(args, listen):
    try:
        host, port = parse_hostport(listen, "--console" if args.receiver_cmd == "serve" else "--listen")
    except ValueError as e:
        raise UsageError(str(e))
    if bool(args.cert) != bool(args.key):
        raise UsageError("--cert and --key go together")
    for f in (args.cert, args.key):
        if f and not os.path.isfile(f):
            raise Unavailable("cannot read %s" % f)
    return host, port


async def _start_console(args, listen, receiver=None):
    from receiver.console import app as capp

    host, port = _check_console_args(args, listen)
    try:
        return await capp.start(args.db, host, port, _console_config(args), cert=args.cert, key=args.key,
                                receiver=receiver)
    except OSError as e:
        raise Unavailable("console %s: %s" % (listen, e.strerror or e))
    except ReceiverError as e:
        raise _err(e)


def cmd_console(args):
    logging.basicConfig(level=getattr(logging, args.log_level), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _check_console_args(args, args.listen)
    if not os.path.exists(args.db):
        raise Unavailable("no store at %s" % args.db)

    async def main():
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        c = await _start_console(args, args.listen)
        try:
            await stop.wait()
        finally:
            await c.close()

    asyncio.run(main())
    return 0


def _console_opts(p, serve=False):
    pre = "console " if serve else ""
    p.add_argument("--cert", help="%sTLS certificate chain (PEM); with --key the console is served over HTTPS" % pre)
    p.add_argument("--key", help="%sTLS private key (PEM)" % pre)
    p.add_argument("--tiles", default="https://tile.openstreetmap.org/{z}/{x}/{y}.png",
                   help="map tile URL template ('' for none: a plain grid); default OpenStreetMap")
    p.add_argument("--claim-cue-s", type=_seconds, default=10.0,
                   help="an alarm unclaimed this long raises a supervisor cue (default 10, BS 8484)")
    p.add_argument("--progress-cue-s", type=_seconds, default=120.0,
                   help="a claimed alarm with no action for this long raises a supervisor cue (default 120)")
    p.add_argument("--queue-days", type=_count, default=30, help="the queue shows incidents of this many days")
    p.add_argument("--session-idle-s", type=_seconds, default=900.0,
                   help="a session ends after this long without an operator's request (default 900)")
    p.add_argument("--poll", type=_seconds, default=0.1,
                   help="seconds between looks at the store for commits by other processes (default 0.1)")


# ---------------------------------------------------------------- sms


def cmd_sms(args):
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    why = core.sender_problem(args.sender)  # the core applies the same rule; say it before opening anything
    if why is not None:
        raise UsageError("--from: %s" % why)
    st = _store(args, need_key=True, create=False)
    try:
        out = _receiver(args, st).handle_sms(args.sender, args.text)
    finally:
        st.close()
    res = {"status": out.status, "reason": out.reason, "device_id": out.device_id, "seq": out.seq,
           "reply": out.sms_reply(), "events": [e["kind"] for e in out.events]}
    print(json.dumps(res))
    return 0 if out.status in (core.ACCEPTED, core.DUPLICATE_S) else 1


# ---------------------------------------------------------------- watch


def cmd_watch(args):
    st = _store(args, create=False)
    feed = None
    human = sys.stdout
    if args.events == "-":
        feed, human = sys.stdout, None
    elif args.events:
        try:
            feed = open_private(args.events)
        except (OSError, ReceiverError) as e:
            st.close()
            raise Unavailable("cannot open %s: %s" % (args.events, getattr(e, "strerror", None) or e))
    w = Watcher(st, human=human, feed=feed)
    w.start(from_start=args.from_start)
    try:
        while True:
            w.poll()
            if args.once:
                break
            w.wait(args.interval)
    except KeyboardInterrupt:
        pass
    finally:
        if feed is not None and feed is not sys.stdout:
            feed.close()
        st.close()
    return 0


# ---------------------------------------------------------------- command


def cmd_command(args):
    st = _store(args, create=False)
    if args.track is not None:
        kind, value = S.CMD_TRACK, args.track
    elif args.stand_down:
        kind, value = S.CMD_STAND_DOWN, None
    else:
        kind, value = S.CMD_LISTEN_IN, None
    try:
        cid = core.operator_command(st, args.device, kind, value, actor=args.actor or S.os_user())
    except ReceiverError as e:
        raise _err(e)
    finally:
        st.close()
    print("queued %s%s for device %d (command %d): sent with the device's next ACK" % (
        kind, "" if value is None else " %d s" % value, args.device, cid))
    return 0


# ---------------------------------------------------------------- device registry


def cmd_device_add(args):
    if bool(args.key_file) == bool(args.generate_key):
        raise UsageError("give --key-file FILE (an existing key) or --generate-key FILE (write a new one)")
    why = personref.problem(args.person_ref)
    if why is not None:
        raise UsageError("--person-ref: %s" % why)
    st = _store(args, need_key=True)
    try:
        if st.get_device(args.device_id) is not None:
            raise Refused("device %d is already registered" % args.device_id)
        if args.key_file:
            key = _read_key_file(args.key_file)
        else:
            key = os.urandom(32)
            _write_secret_file(args.generate_key, binascii.hexlify(key).decode())
        try:
            st.add_device(args.device_id, key, args.person_ref, heartbeat_s=args.heartbeat_s, actor=args.actor,
                          via="panic receiver device add")
        except ReceiverError as e:
            raise _err(e)
    finally:
        st.close()
    print("registered device %d for %s%s" % (args.device_id, args.person_ref,
                                             " (key written to %s, mode 0600)" % args.generate_key if args.generate_key else ""))
    return 0


def cmd_device_list(args):
    st = _store(args, create=False)
    rows = st.list_devices()
    st.close()
    if args.json:
        print(json.dumps(rows))
        return 0
    if not rows:
        print("no devices registered")
    for d in rows:
        print(format_device(d))
    return 0


def cmd_device_show(args):
    st = _store(args, create=False)
    d = st.get_device(args.device_id)
    if d is None:
        st.close()
        raise Refused("device %d is not registered" % args.device_id)
    incs = [i for i in st.incidents() if i["device_id"] == args.device_id]
    pending = st.pending_commands(args.device_id)
    nframes = len(st.frames(args.device_id))
    st.close()
    now = time.time()
    if args.json:
        # each row's estimate at `now` beside its stored columns (receiver/estimate.py: the rules depend on the time)
        print(json.dumps({"device": d, "position": estimate.view(d, now), "incidents": incs,
                          "incident_positions": {str(i["id"]): estimate.view(i, now) for i in incs},
                          "pending_commands": pending, "frames": nframes}))
        return 0
    print(format_device(d))
    print("  last position %s" % format_position(estimate.view(d, now)["position"]).replace("\n", "\n  "))
    print("  frames stored: %d, pending commands: %s" % (nframes, ", ".join(c["kind"] for c in pending) or "none"))
    for i in incs:
        print("  " + format_incident(i, d["person_ref"], now).replace("\n", "\n  "))
    return 0


def cmd_device_retire(args):
    st = _store(args, create=False)
    try:
        changed = st.retire_device(args.device_id, actor=args.actor)
    except ReceiverError as e:
        raise _err(e)
    finally:
        st.close()
    print("device %d %s" % (args.device_id, "retired: its frames are now rejected" if changed else "was already retired"))
    return 0


# ---------------------------------------------------------------- migrate


def cmd_migrate(args):
    from receiver import migrate

    try:
        counts = migrate.migrate(args.src, args.dst, out=print)
    except ReceiverError as e:
        raise _err(e)
    print("migrated %d table(s), %d frame(s), %d event(s): every table's count and the evidence verified" % (
        len(counts), counts.get("frames", 0), counts.get("events", 0)))
    return 0


# ---------------------------------------------------------------- location database


def cmd_locations_import(args):
    from receiver import locations

    st = _store(args, create=False)
    tty = sys.stderr.isatty() and not args.quiet
    shown = [0.0]

    def progress(rows, bad, frac):
        if not tty:
            return
        now = time.monotonic()
        if frac != 1.0 and now - shown[0] < 0.2:
            return
        shown[0] = now
        sys.stderr.write("\r  %s rows imported, %d bad%s " % (
            format(rows, ","), bad, "" if frac is None else ", %3d%% of the file" % int(100 * frac)))
        sys.stderr.flush()

    try:
        res = locations.import_file(st, args.file, name=args.name, licence=args.licence, max_bad=args.max_bad,
                                    actor=args.actor, progress=progress)
    except OSError as e:
        raise Unavailable("cannot read %s: %s" % (args.file, e.strerror or e))
    except locations.LocationFileError as e:
        if tty:
            sys.stderr.write("\n")
        raise Refused(str(e))
    except ReceiverError as e:
        raise _err(e)
    finally:
        st.close()
    if tty:
        sys.stderr.write("\n")
    print("%s in %.1f s%s" % (res.summary(), res.seconds,
                              "; %d rows of replaced or failed sets dropped" % res.pruned if res.pruned else ""))
    for line, why in res.bad_lines:
        print("  bad row at line %d: %s" % (line, why))
    if res.bad > len(res.bad_lines):
        print("  ... and %d more bad rows" % (res.bad - len(res.bad_lines)))
    if res.kind == "cell" and res.name == locations.OPENCELLID[0]:
        print("  positions resolved from it are shown as \"cell (resolved)\", credited: %s"
              % locations.attribution(res.name, locations.OPENCELLID[1]))
    return 0


def cmd_locations_list(args):
    st = _store(args, create=False)
    try:
        sets = st.location_sets()
        counts = st.location_counts()
    finally:
        st.close()
    if args.json:
        print(json.dumps([dict(r, stored=counts.get(r["id"], 0)) for r in sets]))
        return 0
    if not sets:
        print("no location data imported (cell and Wi-Fi observations are shown as \"not in database\")")
    for r in sets:
        print("set %d  %-4s %-8s %s%s  %s rows (%d bad) from %s, %s by %s" % (
            r["id"], r["kind"], r["state"], r["name"], " (%s)" % r["licence"] if r["licence"] else "",
            format(counts.get(r["id"], 0), ","), r["bad"], r["file"],
            time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(r["finished"] or r["started"])), r["actor"]))
    return 0


def _cell_arg(text):
    parts = text.replace("/", "-").split("-")
    try:
        vals = [int(p, 0) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError("a cell is MCC-MNC-AREA-CELL, e.g. 234-15-6699-30125732")
    if len(vals) != 4 or not all(0 <= v < 1 << 36 for v in vals):
        raise argparse.ArgumentTypeError("a cell is MCC-MNC-AREA-CELL, e.g. 234-15-6699-30125732")
    return vals


def _bssid_arg(text):
    from receiver import locations

    try:
        rssi = -70
        if "@" in text:
            text, r = text.split("@", 1)
            rssi = int(r)
        return locations.parse_bssid(text).to_bytes(6, "big"), rssi
    except ValueError as e:
        raise argparse.ArgumentTypeError("%s (BSSID aa:bb:cc:dd:ee:ff, optionally @RSSI)" % e)


def cmd_locations_lookup(args):
    from receiver import locations

    st = _store(args, create=False)
    try:
        loc = locations.Locator(st)
        if args.cell:
            lat, lon, acc, note = loc.cell(*args.cell)
            source = "cell (resolved)"
        else:
            lat, lon, acc, note = loc.wifi(args.wifi)
            source = "wifi (resolved)"
    finally:
        st.close()
    if lat is None or lon is None:  # (None, None, None, why) together: not in the database
        print(note)
        return 1
    print("%.7f, %.7f %s +/-%d m  %s\n  from %s" % (lat / 1e7, lon / 1e7, source, acc, core.osm_link(lat, lon), note))
    return 0


def cmd_master_key(args):
    _write_secret_file(args.out, masterkey.generate_hex())
    print("master key written to %s (mode 0600); pass it with --master-key-file or $%s" % (args.out, masterkey.ENV))
    return 0


# ---------------------------------------------------------------- operator accounts (receiver/users.py)


def _password(args, name):
    """A new password: one line on stdin (--password-stdin), or typed twice
    at a prompt. Never an argument: the command line is visible to every
    user of the machine."""
    import getpass

    from receiver import users

    if args.password_stdin:
        pw = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        pw = getpass.getpass("password for %s: " % name)
        if getpass.getpass("again: ") != pw:
            raise UsageError("the two passwords differ")
    else:
        raise UsageError("give the password on stdin with --password-stdin (or run at a terminal)")
    why = users.password_problem(pw, name)
    if why is not None:
        raise UsageError(why)
    return pw


def _user_err(e):
    from receiver import store_console as SC
    from receiver import users

    if isinstance(e, (SC.DuplicateUser, SC.UnknownUser)):
        return Refused(str(e))
    if isinstance(e, users.UserError):
        return UsageError(str(e))
    return _err(e)


def cmd_user_add(args):
    from receiver import users

    why = users.name_problem(args.name)
    if why is not None:
        raise UsageError("--name: %s" % why)
    pw = _password(args, args.name)
    st = _store(args)
    try:
        users.add(st, args.name, args.role, pw, actor=args.actor)
    except ReceiverError as e:
        raise _user_err(e)
    finally:
        st.close()
    print("added %s (%s)" % (args.name, args.role))
    return 0


def cmd_user_list(args):
    st = _store(args, create=False)
    rows = st.users()
    st.close()
    if args.json:
        print(json.dumps(rows))
        return 0
    if not rows:
        print("no users")
    now = time.time()
    for u in rows:
        state = "disabled" if u["disabled"] else ("locked" if (u["locked_until"] or 0) > now else "active")
        print("%-20s %-10s %-8s last login %s" % (u["name"], u["role"], state,
                                                  time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(u["last_login"]))
                                                  if u["last_login"] else "never"))
    return 0


def cmd_user_disable(args):
    st = _store(args, create=False)
    try:
        changed = st.user_set_disabled(args.name, not args.enable, actor=args.actor)
    except ReceiverError as e:
        raise _user_err(e)
    finally:
        st.close()
    word = "enabled" if args.enable else "disabled (its sessions ended)"
    print("%s %s" % (args.name, word if changed else "was already " + word.split()[0]))
    return 0


def cmd_user_passwd(args):
    from receiver import users

    st = _store(args, create=False)
    try:
        if st.user_get(args.name) is None:
            raise Refused("no user %r" % args.name)
        pw = _password(args, args.name)
        users.set_password(st, args.name, pw, actor=args.actor)
    except ReceiverError as e:
        raise _user_err(e)
    finally:
        st.close()
    print("password of %s changed; its sessions ended and any lockout lifted" % args.name)
    return 0


# ---------------------------------------------------------------- parser


def open_private(path):
    """A file to append to, mode 0600 if it is new (an export holds what the
    store holds); an existing one that other users can read is refused."""
    mode = S.exposed(path)
    if mode is not None:
        raise ReceiverError("it is readable by other users (mode %04o): run chmod 600 %s" % (mode, path))
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "a")


_seconds = number(float, 0.001, unit="seconds")
_seconds0 = number(float, 0.001, unit="seconds", off=0.0)  # 0 turns it off
_count = number(int, 1)


def _u32(text):
    try:
        v = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError("not an integer: %r" % text)
    if not 0 <= v < 1 << 32:
        raise argparse.ArgumentTypeError("must be 0..4294967295")
    return v


def _u16(text):
    v = _u32(text)
    if v > 0xFFFF:
        raise argparse.ArgumentTypeError("must be 0..65535")
    return v


def _db(p, key=False):
    p.add_argument("--db", required=True,
                   help="the store: a SQLite file, or postgresql://... for several receiver nodes (docs/deployment.md)")
    if key:
        p.add_argument("--master-key-file", help="file holding the receiver master key in hex (default: $%s)" % masterkey.ENV)


def _core_opts(p):
    p.add_argument("--heartbeat-s", type=int, default=core.DEFAULT_HEARTBEAT_S, help="default heartbeat interval")
    p.add_argument("--silent-margin-s", type=int, default=core.DEFAULT_SILENT_MARGIN_S,
                   help="how late a heartbeat may be before 'device silent'")
    p.add_argument("--low-battery-pct", type=int, default=core.DEFAULT_LOW_BATTERY_PCT)


def register(sub):
    p = sub.add_parser("receiver", help="the alarm-receiving side: serve, sms, watch, command, device, locations")
    rs = p.add_subparsers(dest="receiver_cmd", metavar="ACTION")
    rs.required = True

    s = rs.add_parser("serve", help="accept device frames over TCP (and SMS over HTTP)")
    _db(s, key=True)
    s.add_argument("--listen", required=True, help="HOST:PORT for devices (port 0: any free port)")
    s.add_argument("--http", help="HOST:PORT for the SMS gateway endpoint (POST /sms)")
    _core_opts(s)
    s.add_argument("--idle-timeout", type=_seconds, default=300.0,
                   help="seconds a verified connection may stay idle (default 300)")
    s.add_argument("--auth-deadline", type=_seconds, default=10.0,
                   help="seconds a new connection has to deliver a verified frame (default 10)")
    s.add_argument("--frame-deadline", type=_seconds, default=10.0, help="seconds a started frame may take to arrive")
    s.add_argument("--max-conns-per-peer", type=_count, default=256,
                   help="unverified connections per address; at the limit the oldest silent one is closed for the "
                        "new one (verified connections never count: carrier NAT puts many devices behind one address)")
    s.add_argument("--max-conns", type=_count, default=8192)
    s.add_argument("--max-batch", type=_count, default=512, help="frames per group commit")
    s.add_argument("--supervise-every", type=_seconds0, default=30.0)
    s.add_argument("--stats-every", type=_seconds, default=60.0)
    s.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    s.add_argument("--console", metavar="HOST:PORT", help="also serve the operator console here (docs/console.md)")
    _console_opts(s, serve=True)
    s.set_defaults(func=cmd_serve)

    co = rs.add_parser("console", help="the operator console, a web page (docs/console.md)")
    _db(co)
    co.add_argument("--listen", default="127.0.0.1:8080", help="HOST:PORT (default 127.0.0.1:8080)")
    _console_opts(co)
    co.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    co.set_defaults(func=cmd_console)

    m = rs.add_parser("sms", help="take one SMS text as a gateway would deliver it")
    _db(m, key=True)
    m.add_argument("--from", dest="sender", required=True,
                   help="sender number or id, 1-%d printable characters (the same rule as POST /sms)" % core.SENDER_MAX)
    m.add_argument("--text", required=True, help="SMS text 'PNC1 ...'")
    _core_opts(m)
    m.set_defaults(func=cmd_sms)

    w = rs.add_parser("watch", help="show incidents live; optional JSON-lines event feed")
    _db(w)
    w.add_argument("--events", help="append events as JSON lines to FILE ('-': stdout, instead of the human view)")
    w.add_argument("--from-start", action="store_true", help="replay every stored event first")
    w.add_argument("--once", action="store_true", help="print what is there and exit")
    w.add_argument("--interval", type=float, default=0.5)
    w.set_defaults(func=cmd_watch)

    c = rs.add_parser("command", help="queue an operator command for a device's next ACK")
    _db(c)
    c.add_argument("--device", type=_u32, required=True)
    g = c.add_mutually_exclusive_group(required=True)
    g.add_argument("--track", type=_u16, metavar="SECONDS", help="tracking interval (0 stops tracking)")
    g.add_argument("--stand-down", action="store_true", help="close the incident; the device stops alerting")
    g.add_argument("--listen-in", action="store_true", help="ask the device to place the covert voice call")
    c.add_argument("--actor", help="who is acting, if not the logged-in user (the audit keeps both)")
    c.set_defaults(func=cmd_command)

    d = rs.add_parser("device", help="device registry: add, list, show, retire")
    ds = d.add_subparsers(dest="device_cmd", metavar="ACTION")
    ds.required = True
    a = ds.add_parser("add", help="register a device and its key")
    _db(a, key=True)
    a.add_argument("--device-id", type=_u32, required=True)
    a.add_argument("--key-file", help="existing key file (64 hex digits)")
    a.add_argument("--generate-key", metavar="FILE", help="make a new key and write it to FILE (mode 0600)")
    a.add_argument("--person-ref", required=True,
                   help="case reference of the person at risk, e.g. URN-2026-0042 or 'URN 01/1234/26' (never a name "
                        "or an address; the rule: docs/receiver.md)")
    a.add_argument("--heartbeat-s", type=int, help="this device's heartbeat interval")
    a.add_argument("--actor", help="who is acting, if not the logged-in user (the audit keeps both)")
    a.set_defaults(func=cmd_device_add)
    li = ds.add_parser("list", help="every registered device, its state and last contact")
    _db(li)
    li.add_argument("--json", action="store_true")
    li.set_defaults(func=cmd_device_list)
    sh = ds.add_parser("show", help="one device: its incidents, stored frames and pending commands")
    _db(sh)
    sh.add_argument("--device-id", type=_u32, required=True)
    sh.add_argument("--json", action="store_true")
    sh.set_defaults(func=cmd_device_show)
    r = ds.add_parser("retire", help="stop accepting a device's frames (its id is never reused)")
    _db(r)
    r.add_argument("--device-id", type=_u32, required=True)
    r.add_argument("--actor", help="who is acting, if not the logged-in user (the audit keeps both)")
    r.set_defaults(func=cmd_device_retire)

    from receiver.forward import cli as forward_cli  # `panic receiver forward ...` (receiver/forward/cli.py)

    forward_cli.register(rs)

    mg = rs.add_parser("migrate", help="copy a SQLite store whole into a new PostgreSQL store, and check it")
    mg.add_argument("--from", dest="src", required=True, metavar="SQLITE_FILE", help="the SQLite store (stop serve first)")
    mg.add_argument("--to", dest="dst", required=True, metavar="URL", help="postgresql://... (an empty store)")
    mg.set_defaults(func=cmd_migrate)

    u = rs.add_parser("user", help="operator console accounts: add, list, disable, passwd")
    us = u.add_subparsers(dest="user_cmd", metavar="ACTION")
    us.required = True
    ua = us.add_parser("add", help="add an account (password on stdin or at a prompt)")
    _db(ua)
    ua.add_argument("--name", required=True)
    ua.add_argument("--role", required=True, choices=["operator", "supervisor", "admin"])
    ua.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    ua.add_argument("--actor", help="who is acting, if not the logged-in user (the audit keeps both)")
    ua.set_defaults(func=cmd_user_add)
    ul = us.add_parser("list", help="every account: role, state, last sign-in")
    _db(ul)
    ul.add_argument("--json", action="store_true")
    ul.set_defaults(func=cmd_user_list)
    ud = us.add_parser("disable", help="disable an account and end its sessions (--enable: the reverse)")
    _db(ud)
    ud.add_argument("--name", required=True)
    ud.add_argument("--enable", action="store_true")
    ud.add_argument("--actor", help="who is acting, if not the logged-in user (the audit keeps both)")
    ud.set_defaults(func=cmd_user_disable)
    up = us.add_parser("passwd", help="set a new password; ends the account's sessions, lifts a lockout")
    _db(up)
    up.add_argument("--name", required=True)
    up.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    up.add_argument("--actor", help="who is acting, if not the logged-in user (the audit keeps both)")
    up.set_defaults(func=cmd_user_passwd)

    lo = rs.add_parser("locations", help="the location database: cell ids and Wi-Fi BSSIDs to positions")
    ls = lo.add_subparsers(dest="locations_cmd", metavar="ACTION")
    ls.required = True
    li = ls.add_parser("import", help="import an OpenCellID cell export or a BSSID survey (CSV, .gz too)")
    _db(li)
    li.add_argument("file", help="CSV with the OpenCellID header (radio,mcc,net,area,cell,...) or the survey "
                                 "header (bssid,lat,lon,range,surveyed); '-' reads stdin")
    li.add_argument("--name", help="the data set's name (default: OpenCellID for a cell export, the file's name for a "
                                   "survey); a set of the same name is replaced when this one is complete")
    li.add_argument("--licence", help="the data's licence, shown with every position resolved from it (default for "
                                      "OpenCellID: CC BY-SA 4.0)")
    li.add_argument("--max-bad", type=number(int, 0), default=1000,
                    help="give up (and use nothing of the file) after this many bad rows (default 1000)")
    li.add_argument("--quiet", action="store_true", help="no progress line on the terminal")
    li.add_argument("--actor", help="who is acting, if not the logged-in user (the audit keeps both)")
    li.set_defaults(func=cmd_locations_import)
    ll = ls.add_parser("list", help="the imported sets, their state and row counts")
    _db(ll)
    ll.add_argument("--json", action="store_true")
    ll.set_defaults(func=cmd_locations_list)
    lk = ls.add_parser("lookup", help="resolve a cell or Wi-Fi BSSIDs as the receiver would")
    _db(lk)
    g = lk.add_mutually_exclusive_group(required=True)
    g.add_argument("--cell", type=_cell_arg, metavar="MCC-MNC-AREA-CELL")
    g.add_argument("--wifi", type=_bssid_arg, nargs="+", metavar="BSSID[@RSSI]")
    lk.set_defaults(func=cmd_locations_lookup)

    k = rs.add_parser("master-key", help="generate a receiver master key file (mode 0600)")
    k.add_argument("--out", required=True)
    k.set_defaults(func=cmd_master_key)
