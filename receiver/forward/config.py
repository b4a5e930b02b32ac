"""Forward targets: their settings, checked once, as the store keeps them.

Owns: what a target's JSON may hold, its defaults, and reading its key
file. A DC-09 target is an ARC: receivers in priority order (primary,
secondary, ...), the account, receiver number and line prefix, the key
file and its encoding, the format, the person mapping, code overrides,
the [V] link template and the timers. A Traccar target is a URL and a
device-id template. Keys stay in their files (mode 0600, read at start-up
by `serve`); the store holds only the file's path. No error names a key.
Must stay in sync with: cli.py (the options), docs/arc.md.
"""

import json
import os
import urllib.parse

from receiver.forward import dc09 as D
from receiver.forward import events as E

DC09 = "dc09"
TRACCAR = "traccar"

DC09_DEFAULTS = {
    "receiver": None, "line": "0", "key_file": None, "key_encoding": D.KEY_BINARY, "format": E.AUTO,
    "person_field": E.PERSON_ACCOUNT, "persons": {}, "codes": {}, "verify_url": None, "group": 0,
    "poll_s": 60.0, "ack_timeout_s": 5.0, "connect_timeout_s": 5.0, "failback_s": 60.0, "max_backoff_s": 30.0,
}
TRACCAR_DEFAULTS = {"id_template": "{device_id}", "timeout_s": 10.0, "max_backoff_s": 60.0}


class ConfigError(ValueError):
    """A target setting that cannot work (one line, no secrets)."""


def _hostport(text):
    host, sep, port = str(text).rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError("a receiver address is HOST:PORT, got %r" % (text,))
    return [host.strip("[]"), int(port)]


def _pos(cfg, k):
    try:
        v = float(cfg[k])
    except (TypeError, ValueError):
        raise ConfigError("%s must be a number of seconds" % k)
    if not v > 0:
        raise ConfigError("%s must be above 0" % k)
    cfg[k] = v


def check_dc09(cfg):
    """A complete, checked DC-09 target config (defaults filled in)."""
    c = dict(DC09_DEFAULTS)
    c.update(cfg)
    c["kind"] = DC09
    c["paths"] = [_hostport(p if isinstance(p, str) else "%s:%s" % tuple(p)) for p in c.get("paths") or []]
    if not c["paths"]:
        raise ConfigError("give at least one ARC receiver (HOST:PORT), the primary first")
    try:
        c["account"] = D.check_account(str(c.get("account", "")).upper())
        c["receiver"] = D.check_prefix(c["receiver"], "the receiver number")
        c["line"] = D.check_prefix(c["line"], "the line prefix")
    except D.Dc09Error as e:
        raise ConfigError(str(e))
    if c["key_encoding"] not in D.KEY_ENCODINGS:
        raise ConfigError("key encoding must be one of %s" % ", ".join(D.KEY_ENCODINGS))
    if c["format"] not in E.FORMATS:
        raise ConfigError("format must be one of %s" % ", ".join(E.FORMATS))
    if c["person_field"] not in (E.PERSON_ACCOUNT, E.PERSON_ZONE):
        raise ConfigError("the person maps to 'account' or 'zone'")
    persons = {}
    for ref, v in dict(c["persons"]).items():
        v = str(v).upper()
        if c["person_field"] == E.PERSON_ACCOUNT:
            try:
                D.check_account(v)
            except D.Dc09Error as e:
                raise ConfigError("person %r: %s" % (ref, e))
        elif not v.isdigit() or not 1 <= int(v) <= 999:
            raise ConfigError("person %r: a zone is 1..999" % (ref,))
        persons[str(ref)] = v
    c["persons"] = persons
    codes = {}
    for kind, v in dict(c["codes"]).items():
        if kind not in E.CODES:
            raise ConfigError("no event %r to map (events: %s)" % (kind, ", ".join(sorted(E.CODES))))
        cid, q, sia = (list(v) + [None, None, None])[:3]
        dq, dsia = E.CODES[kind][1:]
        try:
            cid, q, sia = int(cid), int(q if q is not None else dq), str(sia if sia is not None else dsia).upper()
            D.adm_cid("000", q, cid, 0, 0)
            D.sia_dcs("000", sia, 0)
        except (TypeError, ValueError) as e:
            raise ConfigError("event %s: %s" % (kind, e))
        codes[kind] = [cid, q, sia]
    c["codes"] = codes
    if c["verify_url"]:
        try:
            D.ext_block("V", E.verify_link({"incident_id": 1, "device_id": 1, "kind": "alert"}, c["verify_url"]))
        except (KeyError, IndexError, ValueError) as e:
            raise ConfigError("verify URL template: %s (fields: {incident_id}, {device_id}, {kind})" % e)
    try:
        c["group"] = int(c["group"])
        if not 0 <= c["group"] <= 99:
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigError("group (area) is 0..99")
    for k in ("poll_s", "ack_timeout_s", "connect_timeout_s", "failback_s", "max_backoff_s"):
        _pos(c, k)
    if c["key_file"]:
        c["key_file"] = os.path.abspath(c["key_file"])
    return c


def check_traccar(cfg):
    c = dict(TRACCAR_DEFAULTS)
    c.update(cfg)
    c["kind"] = TRACCAR
    u = urllib.parse.urlsplit(str(c.get("url") or ""))
    if u.scheme != "http" or not u.hostname:
        raise ConfigError("a Traccar URL is http://HOST:PORT/ (its OsmAnd port, 5055 by default)")
    try:
        c["id_template"].format(device_id=1)
    except (KeyError, IndexError, ValueError, AttributeError):
        raise ConfigError("the id template may use {device_id} only")
    for k in ("timeout_s", "max_backoff_s"):
        _pos(c, k)
    return c


def check(cfg):
    kind = cfg.get("kind")
    if kind == DC09:
        return check_dc09(cfg)
    if kind == TRACCAR:
        return check_traccar(cfg)
    raise ConfigError("a target is dc09 or traccar")


def to_json(cfg):
    return json.dumps(cfg, sort_keys=True)


def from_row(row):
    """The checked config of a store row (forward_targets)."""
    try:
        cfg = json.loads(row["config"])
    except ValueError:
        raise ConfigError("forward target %s: its stored settings do not parse" % row["name"])
    cfg["name"] = row["name"]
    return check(cfg)


def load_key(cfg):
    """The AES key of a DC-09 target, or None when it sends in the clear."""
    path = cfg.get("key_file")
    if not path:
        return None
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise ConfigError("cannot read key file %s: %s" % (path, e.strerror))
    try:
        return D.key_from_text(text, cfg["key_encoding"])
    except D.Dc09Error as e:
        raise ConfigError("key file %s: %s" % (path, e))
