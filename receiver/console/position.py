"""Where the console says the person is: the incident's position estimate
(receiver/estimate.py, location truth, issue 14) and the trail of the
incident's frames. The one place the console asks; views.py and app.py
never read position columns themselves.

shown(incident, now) is estimate.view at `now` (the rules depend on the
time: a fix older than estimate.STALE_S gives way to newer coarse
evidence): the estimate with its source, accuracy radius, age, what a
resolved position rests on (cell id or BSSIDs, data set and licence) and
whether it is stale, plus the evidence beside it (the finer fix the
estimate moved on from, newer coarse positions, an observation the
location database does not know) and the count of (0, 0) placeholders
an older firmware sent. `panic receiver watch` prints the same view
(watch.format_incident).

trail(frames): the positions the device itself sent, one per frame,
oldest first. A cell or Wi-Fi source at (0, 0) is a placeholder, never a
position (estimate.py), so it is left out.

Must stay in sync with: receiver/estimate.py (view, the position and
evidence dicts), templates/_status.html, _row.html, summary.html,
static/map.js (what the map draws), watch.py.
"""

import json
from typing import Final

from receiver import estimate as E


def shown(incident, now):
    """{"position": dict or None, "evidence": [items], "placeholders": n}
    (receiver/estimate.py view)."""
    return E.view(incident, now)


def estimate(incident, now):
    """The estimate alone: {lat_e7, lon_e7, lat, lon, source, accuracy_m,
    fix_time, age_s, map, note, seq, stale} or None."""
    return E.view(incident, now)["position"]


def frame_position(d):
    """The position a decoded frame (protocol/jsonform.to_dict) carries:
    {lat, lon, source, accuracy_m}, PLACEHOLDER for a cell or Wi-Fi
    source at (0, 0) (older firmware; estimate.py ignores and counts it),
    or None when it carries none."""
    src = d.get("source")
    lat, lon = d.get("lat_e7"), d.get("lon_e7")
    if src in (None, "none") or lat is None or lon is None:
        return None
    if E.CLASS_OF.get(src) != E.GNSS and lat == 0 and lon == 0:
        return PLACEHOLDER
    return {"lat": lat / 1e7, "lon": lon / 1e7, "source": src, "accuracy_m": d.get("accuracy_m")}


PLACEHOLDER: Final = "placeholder"


def trail(frames):
    """The positions of an incident's frames (rows of
    store.incident_frames, newest first), oldest first:
    [{lat, lon, source, accuracy_m, arrival, seq}]."""
    out = []
    for f in reversed(frames):
        try:
            p = frame_position(json.loads(f["decoded"]))
        except (TypeError, ValueError):
            continue
        if not isinstance(p, dict):  # none, or a placeholder
            continue
        p["arrival"], p["seq"] = f["arrival"], f["seq"]
        out.append(p)
    return out
