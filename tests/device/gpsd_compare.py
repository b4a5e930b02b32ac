"""Compare FixTracker with gpsd on one log of gpsd's regression corpus.

Shared by tests/test_fw_gpsd_corpus.py (CPython) and
tests/device/test_fw_gpsd_all.py (MicroPython, 96 KB heap): both files
are streamed one line at a time, nothing is held whole.

How the two are lined up. NAME.log is the raw receiver stream; NAME.log.chk
is gpsd's output for it: every sentence gpsd accepted, echoed on its own
line, followed by the JSON reports gpsd made after that sentence. The log
is fed to a FixTracker line by line, bytes as they are (line ends, leading
junk and all: the framing is exercised on real data). After each log line,
the sentence it ends with (from its last '$') is matched against the next
echoed sentence of the .chk; when they are equal, the JSON records that
follow the echo are what gpsd reported at exactly this point of the
stream, and every TPV among them is compared with the tracker's state.
Lines gpsd did not echo (it dropped them) advance the tracker only.

What is compared at each TPV (the rules of gpsd's NMEA driver that make
each comparison meaningful are in docs/firmware-sensing.md):
  - TPV with lat/lon (gpsd reports them only with mode >= 2): the tracker's
    mode must equal gpsd's mode, and its lat/lon (the latest trusted
    position) must be within 1e-6 degrees (10 units of 1e-7) of gpsd's.
  - TPV with mode 1 (gpsd says: no fix): the tracker must not claim a fix
    (mode 1, valid False).
  - TPV with mode 0 ("not seen" in gpsd: it cleared its fix because a new
    reporting cycle began, e.g. on a ZDA or a time jump, before any
    sentence of that cycle said anything about the fix): there is no
    claim to compare; counted as not comparable.
The lat/lon text of the JSON is converted to 1e-7 degree integers with the
same integer decimal parser the device uses: no floats on either side.
"""

import os

from firmware.fix import FixTracker
from firmware.nmea import dec

TOL_E7 = 10  # 1e-6 degree

# Logs where exact agreement is not meaningful at a few points, with the
# exact number of (mode, position) disagreements and why. Every other log
# must agree at every compared point; these must disagree exactly this
# often (a change either way means the tracker changed: look, then update).
# At all their other points they are compared like the rest.
EXCEPTIONS = {
    # Telit week-rollover bug: RMC date "2208-1". The device drops a
    # sentence with any malformed field whole; gpsd keeps its position.
    "april6_2019.log": (1, 1, "malformed RMC date field: whole sentence dropped by design"),
    # Ericsson proprietary $PERC,GPavp (an averaged position) is decoded by
    # gpsd and overrides the fix; proprietary sentences are skipped here.
    "ericsson-gru04-02-70sec.log": (0, 2, "gpsd decodes proprietary $PERC,GPavp positions"),
    # GGA quality 1 with 00 satellites used, then a GSA saying 2D: gpsd
    # shows the GGA position; the device never trusts a fix from no
    # satellites.
    "haicom-305N.log": (0, 2, "GGA fix with 0 satellites refused by design"),
    # Magellan proprietary $PMGNST carries the fix mode; gpsd decodes it.
    "eXplorist210.log": (2, 0, "gpsd takes the mode from proprietary $PMGNST"),
    # Garmin proprietary $PGRMZ carries altitude, which makes gpsd say 3D.
    "garmin38.log": (1, 0, "gpsd takes altitude from proprietary $PGRMZ and reports 3D"),
    # Fixes from exactly 3 satellites: gpsd's mode there comes from its
    # reporting-cycle merge (the mode of the fix it last reported and an
    # altitude held over from earlier cycles); the tracker calls a
    # 3-satellite fix 2D (no vertical solution is possible from 3), or, in
    # sl869, keeps the 3D of the RMC of the same epoch. Positions agree.
    "motorola-t805.log": (4, 0, "3-satellite fix: 2D here, 3D in gpsd's cycle merge"),
    "mtk-3301.log": (5, 0, "3-satellite fix: 2D here, 3D in gpsd's cycle merge"),
    "quectel-eg25-g.log": (15, 0, "3-satellite GGA: 2D here, 3D in gpsd's cycle merge"),
    "rgm3800.log": (3, 0, "3-satellite fix: 2D here, 3D in gpsd's cycle merge"),
    "sl869.log": (6, 0, "3-satellite GGA after a 3D RMC of the same epoch: 3D here, 2D in gpsd"),
}


def corpus_path(name=None):
    """The gpsd corpus folder ($PANIC_GPSD_CORPUS, else the copy kept in
    the repository at tests/data/gpsd), or a file in it. Raises OSError
    with a clear message when absent."""
    d = os.getenv("PANIC_GPSD_CORPUS") if hasattr(os, "getenv") else None
    if not d:
        try:  # CPython: relative to this file, whatever the working directory
            from os import path

            d = path.normpath(path.join(path.dirname(path.abspath(__file__)), "..", "data", "gpsd"))
        except ImportError:  # MicroPython: the runner works from the repository root
            d = "tests/data/gpsd"
    p = d if name is None else d + "/" + name
    try:
        os.stat(p)
    except OSError:
        raise OSError("gpsd corpus not found at %r: set PANIC_GPSD_CORPUS to the folder holding gpsd's "
                      "test/daemon *.log and *.log.chk files" % p)
    return p


def corpus_dir():
    """(folder, sorted *.log names) of the gpsd corpus; OSError if absent."""
    d = corpus_path()
    names = os.listdir(d)
    logs = sorted(n for n in names if n.endswith(".log"))
    if not logs:
        raise OSError("gpsd corpus at %r holds no *.log files" % d)
    return d, logs


def _field(line, key):
    """Text value of "key": in a one-line JSON object, or None."""
    i = line.find(key)
    if i < 0:
        return None
    i += len(key)
    j = i
    n = len(line)
    while j < n and line[j] not in ",}":
        j += 1
    return line[i:j]


def _lines(f):
    """Lines of a binary file, each with its line ending, read in small
    chunks so no allocation grows with the file: a "line" longer than
    512 bytes (binary junk in a log) comes out in pieces."""
    rest = b""
    while True:
        chunk = f.read(256)
        if not chunk:
            if rest:
                yield rest
            return
        data = rest + chunk if rest else chunk
        start = 0
        while True:
            j = data.find(b"\n", start)
            if j < 0:
                break
            yield data[start:j + 1]
            start = j + 1
        rest = data[start:]
        if len(rest) > 512:
            yield rest
            rest = b""


def _heads(f):
    """Lines of the .chk, only the first 512+ bytes of each: long SKY
    records are cut (mode, lat and lon come early in a TPV record)."""
    whole = True
    for piece in _lines(f):
        if whole:
            yield piece
        whole = piece.endswith(b"\n")


class Result:
    def __init__(self, name):
        self.name = name
        self.tpv = 0  # TPV records seen
        self.compared = 0  # TPV records compared
        self.not_comparable = 0  # mode 0
        self.mismatches = 0
        self.mode_mismatches = 0
        self.pos_mismatches = 0
        self.refused = 0  # gpsd reported a position the receiver disowned
        self.first = None  # first mismatch, as text
        self.unmatched_echo = 0  # .chk echoes never found in the log

    def fail(self, what):
        self.mismatches += 1
        if self.first is None:
            self.first = what

    def __repr__(self):
        return "%s: %d TPV, %d compared, %d mode-0, %d refused, %d mode / %d position mismatches%s" % (
            self.name, self.tpv, self.compared, self.not_comparable, self.refused, self.mode_mismatches,
            self.pos_mismatches,
            "" if self.first is None else " (first: %s)" % self.first)


def _check_tpv(res, tr, line, where):
    res.tpv += 1
    mode = int(_field(line, '"mode":'))
    lat = _field(line, '"lat":')
    lon = _field(line, '"lon":')
    if lat is not None and lon is not None:
        res.compared += 1
        glat = dec(lat.encode(), 7)
        glon = dec(lon.encode(), 7)
        rj = tr.rejected
        if (tr.mode == 1 and rj is not None and abs(rj[1] - glat) <= TOL_E7 and abs(rj[2] - glon) <= TOL_E7):
            # gpsd used a position its receiver marked invalid (GGA
            # quality 0, FAA mode N); the device refuses it by design
            res.refused += 1
        else:
            if tr.mode != mode:
                res.mode_mismatches += 1
                res.fail("%s: mode %d, gpsd %d" % (where, tr.mode, mode))
            if tr.lat_e7 is None or abs(tr.lat_e7 - glat) > TOL_E7 or abs(tr.lon_e7 - glon) > TOL_E7:
                res.pos_mismatches += 1
                res.fail("%s: %r,%r gpsd %d,%d" % (where, tr.lat_e7, tr.lon_e7, glat, glon))
    elif mode == 1:
        res.compared += 1
        if tr.mode != 1 or tr.valid:
            res.mode_mismatches += 1
            res.fail("%s: mode %d valid %r, gpsd no fix" % (where, tr.mode, tr.valid))
    elif mode == 0:
        res.not_comparable += 1
    else:
        # mode 2/3 from a GSA before any position: compare the mode
        res.compared += 1
        if tr.mode != mode:
            res.mode_mismatches += 1
            res.fail("%s: mode %d, gpsd %d (no position yet)" % (where, tr.mode, mode))


def compare_log(d, name):
    """Run one log through a FixTracker and compare with its .chk."""
    res = Result(name)
    tr = FixTracker(min_year=1980)
    now = 0
    with open(d + "/" + name, "rb") as logf, open(d + "/" + name + ".chk", "rb") as chkf:
        chk = _heads(chkf)
        pending = None  # next echoed sentence of the .chk, stripped
        for c in chk:
            if not c.startswith(b"{"):
                pending = c.rstrip(b"\r\n")
                break
        lineno = 0
        for raw in _lines(logf):
            lineno += 1
            if raw.startswith(b"#"):
                continue  # gpsd's log header, not receiver output
            now += 100
            tr.feed(raw, now)
            if pending is None:
                continue
            s = raw.rstrip(b"\r\n")
            k = s.rfind(b"$")
            if k >= 0:
                if s[k:] != pending:
                    continue
            elif not (s and pending.endswith(s)):
                # (gpsd's lexer rejoins a sentence that another one
                # interrupted mid-line; the echo then ends with this line)
                continue
            # gpsd echoed this sentence: read its reports up to the next echo
            pending = None
            for c in chk:
                if c.startswith(b"{"):
                    if c.startswith(b'{"class":"TPV"'):
                        _check_tpv(res, tr, c.decode(), "%s:%d" % (name, lineno))
                else:
                    pending = c.rstrip(b"\r\n")
                    break
        if pending is not None:
            res.unmatched_echo += 1
            for c in chk:
                if not c.startswith(b"{"):
                    res.unmatched_echo += 1
    return res

# Logs where gpsd reports nothing comparable (no TPV with a mode >= 1):
# they still run through the reader and the line-up check.
NOTHING_TO_COMPARE = {
    "hp58534a.log": "no checksums at all: gpsd's output is empty, the reader counts them bad_checksum",
    "skytraq-err.log": "only $STI error lines, no navigation sentences",
    "pypilot.log": "autopilot heading/attitude sentences only (gpsd reports mode 0)",
    "tnt-revolution.log": "compass sentences only (gpsd reports mode 0)",
}


def check_result(r):
    """Assert one log's result: all agree, or exactly the known divergences;
    nothing compared only where NOTHING_TO_COMPARE says why."""
    assert (r.compared == 0) == (r.name in NOTHING_TO_COMPARE), "%s: %d points compared" % (r.name, r.compared)
    want_mode, want_pos = EXCEPTIONS.get(r.name, (0, 0, ""))[:2]
    assert r.unmatched_echo == 0, "%s: %d gpsd sentences not lined up with the log" % (r.name, r.unmatched_echo)
    assert (r.mode_mismatches, r.pos_mismatches) == (want_mode, want_pos), repr(r)
