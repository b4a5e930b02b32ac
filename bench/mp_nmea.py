"""Runs on MicroPython and CPython: one NMEA parser over the sentences of a
file (one sentence a line, as bench/bench_nmea.py writes them), for the
rate on MicroPython, the allocation per sentence, and callgrind
instruction counts on either interpreter.

    python bench/mp_nmea.py CONTENDER PASSES FILE [dry]
    micropython bench/mp_nmea.py fw PASSES FILE [dry]
        -> "n N us T": sentences parsed and microseconds spent in the
           parser (only the parse calls are timed)
    micropython bench/mp_nmea.py alloc 1 FILE
        -> "n N bytes B": heap bytes allocated by parse_line, in total

CONTENDER (what "to a position" means for each; bench_nmea.py's header),
each from the line as bytes, as they come off a UART:
  fw          firmware.nmea.parse_line(line), then s.lat_e7, s.lon_e7
  pynmea2     pynmea2.parse(line.decode(), check=True)      (CPython)
  pynmea2-ll  the same, then .latitude, .longitude           (CPython)
  pynmeagps   NMEAReader.parse(line), then .lat, .lon        (CPython)
bench_nmea.py times the same functions (parser()) in process.

`dry` imports the same modules and reads the same lines but parses
nothing: callgrind's count with `dry` subtracted from the count without
it is the parser's own cost. The file is read in 4 KB pieces and each
piece's lines parsed in turn, so a 96 KB MicroPython heap holds it.
"""

import gc
import sys

try:
    from time import ticks_diff, ticks_us
except ImportError:  # CPython
    from time import perf_counter_ns

    def ticks_us():
        return perf_counter_ns() // 1000

    def ticks_diff(a, b):
        return a - b


def pieces(path):
    """Lists of lines (bytes, no line ending), a few KB of the file each."""
    rest = b""
    with open(path, "rb") as f:
        while True:
            b = f.read(4096)
            if not b:
                break
            data = rest + b
            cut = data.rfind(b"\n") + 1
            rest = data[cut:]
            yield [ln for ln in data[:cut].split(b"\n") if ln]
    if rest:
        yield [rest]


def parser(name):
    """fn(line) parsing one sentence to a position, the way `name` does."""
    if name == "alloc":
        from firmware.nmea import parse_line

        return parse_line
    if name == "fw":
        from firmware.nmea import parse_line

        def fw(ln):
            s = parse_line(ln)
            return s.lat_e7, s.lon_e7

        return fw
    if name == "pynmea2":
        import pynmea2

        def p2(ln):
            return pynmea2.parse(ln.decode(), check=True)

        return p2
    if name == "pynmea2-ll":
        import pynmea2

        llf = pynmea2.LatLonFix

        def p2ll(ln):
            m = pynmea2.parse(ln.decode(), check=True)
            if isinstance(m, llf):
                return m.latitude, m.longitude
            return m

        return p2ll
    if name == "pynmeagps":
        from pynmeagps import VALCKSUM, VALMSGID, NMEAReader

        val = VALCKSUM | VALMSGID

        def gps(ln):
            m = NMEAReader.parse(ln, validate=val)
            return getattr(m, "lat", None), getattr(m, "lon", None)

        return gps
    raise SystemExit("unknown contender %r" % name)


def main(argv):
    name, passes, path = argv[1], int(argv[2]), argv[3]
    dry = len(argv) > 4 and argv[4] == "dry"
    fn = parser(name)
    n = 0
    us = 0
    alloc = 0
    mem = getattr(gc, "mem_alloc", None)
    for _ in range(passes):
        for lines in pieces(path):
            if dry:
                n += len(lines)
                continue
            if name == "alloc":
                for ln in lines:
                    gc.collect()
                    gc.disable()
                    a = mem()
                    fn(ln)
                    alloc += mem() - a
                    gc.enable()
                n += len(lines)
                continue
            t = ticks_us()
            for ln in lines:
                fn(ln)
            us += ticks_diff(ticks_us(), t)
            n += len(lines)
    if name == "alloc":
        print("n %d bytes %d" % (n, alloc))
    else:
        print("n %d us %d" % (n, us))


if __name__ == "__main__":
    main(sys.argv)
