"""Where the simulated person truly is at every instant.

Owns: the ground-truth track (time in ms of the run -> latitude, longitude,
altitude, speed, course), built from points with times or from a GPX file
(read with gpxpy), and the sky condition along it ("open", "urban",
"indoor") from per-point flags and time windows.

Never does: add GNSS error (the GNSS emulator does), or read the device.

Rules: positions are linear between points (fine for walking-scale
segments); before the first point the person stands at the first point, after
the last at the last. Integers in 1e-7 degrees at the edges (`true_position`),
floats inside. Distances use an equirectangular approximation around the
pair's mean latitude (error < 0.1 % below 10 km).

Stays in sync with: docs/scenarios.md (route and indoor fields),
host_sim/invariants.py (uses true positions via a callable).
"""

import bisect
import math

from host_sim.errors import InputError

EARTH_R_M = 6371008.8
CONDITIONS = ("open", "urban", "indoor")


class RouteError(InputError):
    """A route that cannot be used (too few points, times going backwards,
    unreadable GPX). The message names the point or file."""


def distance_m(lat1, lon1, lat2, lon2):
    """Metres between two float degree positions (equirectangular)."""
    k = math.pi / 180.0
    x = (lon2 - lon1) * k * math.cos((lat1 + lat2) * 0.5 * k)
    y = (lat2 - lat1) * k
    return EARTH_R_M * math.hypot(x, y)


def offset_deg(lat, dn_m, de_m):
    """(dlat, dlon) in degrees for a north/east offset in metres at lat."""
    dlat = dn_m / EARTH_R_M * 180.0 / math.pi
    dlon = de_m / (EARTH_R_M * math.cos(lat * math.pi / 180.0)) * 180.0 / math.pi
    return dlat, dlon


class Route:
    """Points: list of (t_ms, lat, lon[, alt_m[, condition]]) with strictly
    non-decreasing t_ms. condition applies to the segment that starts at
    that point (default "open")."""

    def __init__(self, points, windows=()):
        if not points:
            raise RouteError("route has no points")
        ts, lats, lons, alts, conds = [], [], [], [], []
        for i, p in enumerate(points):
            if len(p) < 3:
                raise RouteError("route point %d: need (t_ms, lat, lon)" % i)
            t, lat, lon = int(p[0]), float(p[1]), float(p[2])
            alt = float(p[3]) if len(p) > 3 and p[3] is not None else 50.0
            cond = p[4] if len(p) > 4 and p[4] else "open"
            if not (-90.0 <= lat <= 90.0) or not (-180.0 <= lon <= 180.0):
                raise RouteError("route point %d: latitude/longitude out of range (%r, %r)" % (i, lat, lon))
            if cond not in CONDITIONS:
                raise RouteError("route point %d: condition %r is not one of %s" % (i, cond, ", ".join(CONDITIONS)))
            if ts and t < ts[-1]:
                raise RouteError("route point %d: time %d ms is before the previous point's %d ms" % (i, t, ts[-1]))
            ts.append(t)
            lats.append(lat)
            lons.append(lon)
            alts.append(alt)
            conds.append(cond)
        self.t = ts
        self.lat = lats
        self.lon = lons
        self.alt = alts
        self.cond = conds
        self._last_seg = -1  # the segment _seg found last (-1: none)
        self._motion = {}  # segment index -> (speed m/s, course deg): constant along a segment
        # windows: (from_ms, to_ms, condition); later entries win.
        self.windows = []
        for w in windows:
            self.add_window(*w)

    def add_window(self, from_ms, to_ms, condition):
        if condition not in CONDITIONS:
            raise RouteError("condition %r is not one of %s" % (condition, ", ".join(CONDITIONS)))
        if to_ms < from_ms:
            raise RouteError("condition window ends (%d ms) before it starts (%d ms)" % (to_ms, from_ms))
        self.windows.append((int(from_ms), int(to_ms), condition))

    # -- construction ----------------------------------------------------
    @classmethod
    def from_gpx(cls, path_or_text, start_ms=0, windows=()):
        """Load the first track (or route) of a GPX file. Times are taken
        relative to the first point and shifted to start_ms; a GPX without
        times is walked at 1.4 m/s."""
        import gpxpy
        import gpxpy.gpx

        try:
            if "<" in path_or_text[:200]:
                text = path_or_text
            else:
                with open(path_or_text, encoding="utf-8") as f:
                    text = f.read()
            g = gpxpy.parse(text)
        except OSError as e:
            raise RouteError("cannot read GPX %s: %s" % (path_or_text, e.strerror or e))
        except gpxpy.gpx.GPXException as e:
            raise RouteError("bad GPX %s: %s" % (path_or_text if "<" not in path_or_text[:200] else "text", e))
        pts = []
        for trk in g.tracks:
            for seg in trk.segments:
                pts.extend(seg.points)
            if pts:
                break
        if not pts:
            for rte in g.routes:
                pts.extend(rte.points)
                if pts:
                    break
        if not pts:
            raise RouteError("GPX has no track or route points")
        out = []
        t0 = pts[0].time
        dist = 0.0
        for i, p in enumerate(pts):
            if t0 is not None and p.time is not None:
                t = start_ms + int(round((p.time - t0).total_seconds() * 1000))
            else:
                if i:
                    dist += distance_m(pts[i - 1].latitude, pts[i - 1].longitude, p.latitude, p.longitude)
                t = start_ms + int(dist / 1.4 * 1000)
            out.append((t, p.latitude, p.longitude, p.elevation))
        return cls(out, windows)

    # -- queries ---------------------------------------------------------
    @property
    def start_ms(self):
        return self.t[0]

    @property
    def end_ms(self):
        return self.t[-1]

    def _seg(self, t_ms):
        """Index i with t[i] <= t_ms < t[i+1], clamped."""
        ts = self.t
        i = self._last_seg  # time mostly moves on within a segment: the last one answered first
        if 0 < i + 1 < len(ts) and ts[i] <= t_ms < ts[i + 1]:
            return i
        i = bisect.bisect_right(ts, t_ms) - 1
        if i < 0:
            return 0
        if i >= len(ts) - 1:
            return len(ts) - 1
        self._last_seg = i
        return i

    def state(self, t_ms):
        """(lat, lon, alt_m, speed_mps, course_deg) as floats at t_ms."""
        ts = self.t
        i = self._seg(t_ms)
        if i >= len(ts) - 1 or t_ms <= ts[0]:
            j = 0 if t_ms <= ts[0] else len(ts) - 1
            return self.lat[j], self.lon[j], self.alt[j], 0.0, 0.0
        t0, t1 = ts[i], ts[i + 1]
        la0, lo0, la1, lo1 = self.lat[i], self.lon[i], self.lat[i + 1], self.lon[i + 1]
        if t1 == t0:
            return la1, lo1, self.alt[i + 1], 0.0, 0.0
        f = (t_ms - t0) / (t1 - t0)
        lat = la0 + (la1 - la0) * f
        lon = lo0 + (lo1 - lo0) * f
        alt = self.alt[i] + (self.alt[i + 1] - self.alt[i]) * f
        m = self._motion.get(i)
        if m is None:
            d = distance_m(la0, lo0, la1, lo1)
            speed = d / ((t1 - t0) / 1000.0)
            if d > 0:
                k = math.pi / 180.0
                de = (lo1 - lo0) * math.cos((la0 + la1) * 0.5 * k)
                dn = la1 - la0
                course = math.degrees(math.atan2(de, dn)) % 360.0
            else:
                course = 0.0
            m = self._motion[i] = (speed, course)
        return lat, lon, alt, m[0], m[1]

    def true_position(self, t_ms):
        """(lat_e7, lon_e7) ints: where the person truly is at t_ms."""
        lat, lon = self.state(t_ms)[:2]
        return int(round(lat * 1e7)), int(round(lon * 1e7))

    def condition(self, t_ms):
        """Sky condition at t_ms: a matching window (last added wins) or
        the flag of the segment in progress."""
        for f, to, c in reversed(self.windows):
            if f <= t_ms < to:
                return c
        return self.cond[self._seg(t_ms)]

    def length_m(self):
        return sum(
            distance_m(self.lat[i], self.lon[i], self.lat[i + 1], self.lon[i + 1]) for i in range(len(self.t) - 1)
        )

    def samples(self, step_ms=5000, until_ms=None):
        """[(t_ms, lat_e7, lon_e7, condition)] every step_ms over the route,
        for reports."""
        end = self.end_ms if until_ms is None else until_ms
        out = []
        t = self.start_ms if until_ms is None else 0
        while t <= end:
            la, lo = self.true_position(t)
            out.append((t, la, lo, self.condition(t)))
            t += step_ms
        return out
