"""Rebuild walk_home.gpx: a made-up 1.6 km evening walk across Kendal,
Cumbria (station to a residential street), one point every 5 s at walking
pace. Run from the repository root: `.venv/bin/python
host_sim/scenarios/gen_walk_home.py`. Deterministic: same bytes every run.
"""

import datetime
import math
import os

import gpxpy.gpx

# Corners of the walk (lat, lon, elevation m); straight lines between them.
CORNERS = [
    (54.33210, -2.73990, 42.0),  # station forecourt
    (54.33120, -2.74180, 41.0),
    (54.32990, -2.74420, 40.0),  # over the river
    (54.32850, -2.74600, 45.0),
    (54.32700, -2.74680, 48.0),  # high street
    (54.32500, -2.74750, 52.0),
    (54.32330, -2.74900, 58.0),
    (54.32200, -2.75120, 66.0),
    (54.32120, -2.75350, 72.0),  # front door
]
START = datetime.datetime(2026, 3, 14, 21, 40, 0, tzinfo=datetime.timezone.utc)
SPEED = 1.35  # m/s
STEP_S = 5


def dist(a, b):
    k = math.pi / 180
    x = (b[1] - a[1]) * k * math.cos((a[0] + b[0]) / 2 * k)
    y = (b[0] - a[0]) * k
    return 6371008.8 * math.hypot(x, y)


def main():
    g = gpxpy.gpx.GPX()
    g.creator = "wearable-panic host_sim"
    trk = gpxpy.gpx.GPXTrack(name="walk home")
    g.tracks.append(trk)
    seg = gpxpy.gpx.GPXTrackSegment()
    trk.segments.append(seg)
    t = 0.0
    for a, b in zip(CORNERS, CORNERS[1:], strict=False):
        d = dist(a, b)
        dur = d / SPEED
        n = max(1, int(dur // STEP_S))
        for i in range(n):
            f = i / n
            seg.points.append(
                gpxpy.gpx.GPXTrackPoint(
                    round(a[0] + (b[0] - a[0]) * f, 7),
                    round(a[1] + (b[1] - a[1]) * f, 7),
                    elevation=round(a[2] + (b[2] - a[2]) * f, 1),
                    time=START + datetime.timedelta(seconds=round(t + dur * f)),
                )
            )
        t += dur
    last = CORNERS[-1]
    seg.points.append(gpxpy.gpx.GPXTrackPoint(last[0], last[1], elevation=last[2], time=START + datetime.timedelta(seconds=round(t))))
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "walk_home.gpx")
    with open(out, "w", encoding="utf-8") as f:
        f.write(g.to_xml())
    print("%s: %d points, %.0f m, %.0f s" % (out, len(seg.points), sum(dist(a, b) for a, b in zip(CORNERS, CORNERS[1:], strict=False)), t))


if __name__ == "__main__":
    main()
