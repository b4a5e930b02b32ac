"""`panic receiver forward add | list | remove | test`: the ARCs (SIA DC-09)
and maps (Traccar) the receiver forwards to.

Owns: the options and the human output. Settings are checked here
(config.py) and kept in the store; `serve` reads them when it starts.
Every user error is a panic.errors.UsageError (one line, exit 2). Never
prints a key, nor an ARC's raw answer (pysiaalarm echoes the key in it).
"""

import asyncio
import json
import os
import time

from receiver import store as S
from receiver.errors import ReceiverError
from receiver.forward import config as C
from receiver.forward import dc09 as D
from receiver.forward import events as E
from panic.errors import UsageError


def _open(args):
    try:
        return S.open_store(args.db, create=False)
    except ReceiverError as e:
        raise UsageError(str(e))


def _pairs(items, what):
    out = {}
    for it in items or ():
        k, sep, v = it.partition("=")
        if not sep or not k or not v:
            raise UsageError("%s takes NAME=VALUE, got %r" % (what, it))
        out[k] = v
    return out


def cmd_add(args):
    if bool(args.arc) == bool(args.traccar):
        raise UsageError("give --arc HOST:PORT (an ARC, repeat for the secondary) or --traccar URL")
    if args.traccar:
        cfg = {"kind": C.TRACCAR, "url": args.traccar}
        if args.traccar_id:
            cfg["id_template"] = args.traccar_id
    else:
        if not args.account:
            raise UsageError("an ARC target needs --account (3 to 16 hex digits)")
        codes = {}
        for kind, v in _pairs(args.code, "--code").items():
            parts = v.split(":")
            if not 1 <= len(parts) <= 3:
                raise UsageError("--code takes EVENT=CID[:QUALIFIER[:SIA]], got %r" % v)
            codes[kind] = [parts[0]] + [p or None for p in parts[1:]]
        cfg = {"kind": C.DC09, "paths": args.arc, "account": args.account, "receiver": args.receiver,
               "line": args.line, "key_file": args.key_file, "key_encoding": args.key_encoding,
               "format": args.format, "person_field": args.person_field,
               "persons": _pairs(args.person, "--person"), "codes": codes, "verify_url": args.verify_url,
               "group": args.group, "poll_s": args.poll_s, "ack_timeout_s": args.ack_timeout_s,
               "failback_s": args.failback_s}
    try:
        cfg = C.check(cfg)
        if cfg["kind"] == C.DC09:
            C.load_key(cfg)  # a key that cannot be read or used fails now, not when serve starts
    except C.ConfigError as e:
        raise UsageError(str(e))
    st = _open(args)
    try:
        st.add_forward_target(args.name, cfg["kind"], C.to_json(cfg), actor=args.actor)
    except ReceiverError as e:
        raise UsageError(str(e))
    finally:
        st.close()
    print("added %s target %s: %s (restart `panic receiver serve` to start forwarding to it)" % (
        cfg["kind"], args.name, _where(cfg)))
    return 0


def _where(cfg):
    if cfg["kind"] == C.TRACCAR:
        return cfg["url"]
    paths = " then ".join("%s:%d" % tuple(p) for p in cfg["paths"])
    return "%s, account %s%s L%s, %s, %s, person as %s (%d mapped)" % (
        paths, cfg["account"], "" if cfg["receiver"] is None else " R%s" % cfg["receiver"], cfg["line"],
        "AES (%s key)" % cfg["key_encoding"] if cfg["key_file"] else "NOT encrypted", cfg["format"],
        cfg["person_field"], len(cfg["persons"]))


def cmd_list(args):
    st = _open(args)
    try:
        rows = st.forward_targets()
        counts = st.forward_counts()
    finally:
        st.close()
    out = []
    for r in rows:
        try:
            cfg = C.from_row(r)
        except C.ConfigError as e:
            raise UsageError(str(e))
        out.append({"name": r["name"], "kind": r["kind"], "config": cfg, "next_seq": r["next_seq"],
                    "queue": counts.get(r["name"], {})})
    if args.json:
        print(json.dumps(out, sort_keys=True))
        return 0
    if not out:
        print("no forward targets")
    for t in out:
        q = t["queue"]
        print("%s  %s  %s" % (t["name"], t["kind"], _where(t["config"])))
        print("    queue: %d pending, %d delivered, %d refused%s" % (
            q.get("pending", 0), q.get("delivered", 0), q.get("refused", 0),
            "" if t["kind"] != C.DC09 else "; next sequence number %04d" % t["next_seq"]))
    return 0


def cmd_remove(args):
    st = _open(args)
    try:
        n = st.remove_forward_target(args.name, actor=args.actor, drop_pending=args.drop_pending)
    except ReceiverError as e:
        raise UsageError(str(e))
    finally:
        st.close()
    print("removed forward target %s%s" % (args.name, " (%d undelivered message(s) marked refused)" % n if n else ""))
    return 0


def cmd_test(args):
    """Send a 601 manual test (or a NULL link test) to every receiver of
    an ARC target, now, and show each answer."""
    from receiver.forward.forwarder import Dc09Link, Forwarder

    st = _open(args)
    try:
        row = next((r for r in st.forward_targets() if r["name"] == args.name), None)
        if row is None:
            raise UsageError("no forward target %r" % args.name)
        cfg = C.from_row(row)
        if cfg["kind"] != C.DC09:
            raise UsageError("forward test talks to ARCs (dc09 targets); %s is %s" % (args.name, cfg["kind"]))
        key = C.load_key(cfg)
        if args.null:
            msg = D.Message(D.NULL, 0, cfg["account"], "", (), cfg["receiver"], cfg["line"])
        else:
            with st.transaction():
                seq = st.forward_take_seq(args.name)
            msg = D.Message(D.ADM_CID, seq, cfg["account"], D.adm_cid(cfg["account"], 1, 601, cfg["group"], 0), (),
                            cfg["receiver"], cfg["line"])
    except C.ConfigError as e:
        raise UsageError(str(e))
    finally:
        st.close()
    cfg = dict(cfg, ack_timeout_s=args.timeout, connect_timeout_s=args.timeout)

    async def run():
        async def call(fn, *a):
            return fn(*a)

        link = Dc09Link(Forwarder(None, [], call), cfg, key)
        results = []
        for p in link.paths:
            t0 = time.monotonic()
            res = await link.send(p, msg)
            results.append((p, res, time.monotonic() - t0, link.last_answer))
            p.close()
        return results

    ok = 0
    what = "NULL link test" if args.null else "601 manual test seq %04d" % msg.seq
    print("%s, account %s, %s" % (what, cfg["account"], "AES-%d" % (len(key) * 8) if key else "not encrypted"))
    for p, res, dt, ans in asyncio.run(run()):
        if res == D.ACK:
            ok += 1
        detail = res
        if res in (D.ACK, D.DUH) and ans is not None:
            detail = "%s in %.0f ms%s%s" % (res, dt * 1000, "" if ans.time is None else ", receiver time %s" %
                                            time.strftime("%H:%M:%SZ", time.gmtime(ans.time)),
                                            "" if not ans.quirks else " (peer quirks: %s)" % ", ".join(ans.quirks))
        if p.offset:
            detail += "; it NAKed our clock first (offset %+.0f s)" % p.offset
        print("  %-28s %s" % (p.name, detail))
    return 0 if ok == len(cfg["paths"]) else 1


def register(rs):
    """Add `forward` to the `panic receiver` subcommands (rs)."""
    user = os.environ.get("USER", "operator")
    f = rs.add_parser("forward", help="forward alarms to ARC software (SIA DC-09) and a Traccar map")
    fs = f.add_subparsers(dest="forward_cmd", metavar="ACTION")
    fs.required = True

    a = fs.add_parser("add", help="add an ARC (--arc, repeat for the secondary) or a Traccar map (--traccar)")
    a.add_argument("--db", required=True, help="store path (SQLite file)")
    a.add_argument("--name", required=True, help="a name for this target, e.g. arc1")
    a.add_argument("--arc", action="append", metavar="HOST:PORT", help="ARC receiver; the first is the primary")
    a.add_argument("--account", help="DC-09 account (3-16 hex digits): the service's, or unmapped people's")
    a.add_argument("--receiver", help="receiver number (1-6 hex digits; left out of messages if not given)")
    a.add_argument("--line", default="0", help="line prefix (1-6 hex digits, default 0)")
    a.add_argument("--key-file", help="AES key file (hex); without it messages go unencrypted")
    a.add_argument("--key-encoding", default=D.KEY_BINARY, choices=D.KEY_ENCODINGS,
                   help="binary: 32/48/64 hex digits are the key's bytes (the standard); ascii: 16/24/32 "
                        "characters used as the key bytes (pysiaalarm)")
    a.add_argument("--format", default=E.AUTO, choices=E.FORMATS,
                   help="auto: SIA-DCS for located alarms, ADM-CID otherwise (docs/arc.md)")
    a.add_argument("--person-field", default=E.PERSON_ACCOUNT, choices=(E.PERSON_ACCOUNT, E.PERSON_ZONE),
                   help="the person reference maps to an ARC account or to a zone of --account")
    a.add_argument("--person", action="append", metavar="REF=VALUE", help="person reference -> account or zone")
    a.add_argument("--code", action="append", metavar="EVENT=CID[:Q[:SIA]]",
                   help="code override, e.g. alert=120:1:PA (events: %s)" % ", ".join(sorted(E.CODES)))
    a.add_argument("--verify-url", help="[V] link template, e.g. https://console.example/incidents/{incident_id}")
    a.add_argument("--group", type=int, default=0, help="Contact ID group / SIA area (0-99, default 0)")
    a.add_argument("--poll-s", type=float, default=C.DC09_DEFAULTS["poll_s"], help="NULL link test interval")
    a.add_argument("--ack-timeout-s", type=float, default=C.DC09_DEFAULTS["ack_timeout_s"])
    a.add_argument("--failback-s", type=float, default=C.DC09_DEFAULTS["failback_s"])
    a.add_argument("--traccar", metavar="URL", help="Traccar OsmAnd endpoint, e.g. http://traccar.local:5055/")
    a.add_argument("--traccar-id", help="Traccar device identifier template (default {device_id})")
    a.add_argument("--actor", default=user)
    a.set_defaults(func=cmd_add)

    li = fs.add_parser("list", help="targets, their settings and their queues")
    li.add_argument("--db", required=True)
    li.add_argument("--json", action="store_true")
    li.set_defaults(func=cmd_list)

    r = fs.add_parser("remove", help="remove a target (refused while it has undelivered messages)")
    r.add_argument("--db", required=True)
    r.add_argument("--name", required=True)
    r.add_argument("--drop-pending", action="store_true", help="mark its undelivered messages refused")
    r.add_argument("--actor", default=user)
    r.set_defaults(func=cmd_remove)

    t = fs.add_parser("test", help="send a 601 test (or --null) to every receiver of an ARC target now")
    t.add_argument("--db", required=True)
    t.add_argument("--name", required=True)
    t.add_argument("--null", action="store_true", help="a NULL link test instead of a 601 manual test")
    t.add_argument("--timeout", type=float, default=10.0)
    t.set_defaults(func=cmd_test)
