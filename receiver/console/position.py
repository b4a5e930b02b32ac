"""The position the console shows for an incident: one function, so the
per-incident position estimate (location truth: source, accuracy radius,
age, and the coarse evidence behind it) replaces it in one place when it
lands.

Today: the incident's newest fix as the core keeps it on the incident row
(receiver/core.py _set_position: a late frame's older fix never replaces
a newer one), with its source, accuracy and age, exactly as `panic
receiver watch` prints it (core._inc_position).

Must stay in sync with: receiver/core.py (_inc_position), watch.py.
"""

from receiver import core


def estimate(incident, now):
    """{lat_e7, lon_e7, lat, lon, source, accuracy_m, fix_time, age_s,
    map} or None when the incident has no position yet."""
    return core._inc_position(incident, now)


def trail(frames):
    """The positions of an incident's frames (rows of
    store.incident_frames, newest first), oldest first:
    [{lat, lon, source, accuracy_m, arrival, seq}]."""
    import json

    out = []
    for f in reversed(frames):
        try:
            d = json.loads(f["decoded"])
        except (TypeError, ValueError):
            continue
        if d.get("source") in (None, "none") or d.get("lat_e7") is None:
            continue
        out.append({"lat": d["lat_e7"] / 1e7, "lon": d["lon_e7"] / 1e7, "source": d["source"],
                    "accuracy_m": d.get("accuracy_m"), "arrival": f["arrival"], "seq": f["seq"]})
    return out
