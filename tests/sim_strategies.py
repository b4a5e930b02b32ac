"""Hypothesis strategies for random scenarios (as TOML text, so every
generated case also goes through the loader). Shared by the world tests
and the whole-simulation property test.

    scenario_texts(max_minutes=60) -> TOML text of a valid scenario
"""

from hypothesis import strategies as st

KINDS = ("sos", "cancel", "duress_cancel", "test")


def _windows(draw, dur_s, n_max, min_len=5):
    out = []
    t = 0
    for _ in range(draw(st.integers(0, n_max))):
        start = t + draw(st.integers(1, max(1, dur_s // 4)))
        length = draw(st.integers(min_len, max(min_len, dur_s // 4)))
        if start + length >= dur_s:
            break
        out.append((start, start + length))
        t = start + length
    return out


@st.composite
def scenario_texts(draw, max_minutes=60):
    dur_s = draw(st.integers(60, max_minutes * 60))
    lines = [
        "[scenario]",
        'name = "generated"',
        "seed = %d" % draw(st.integers(0, 2**31)),
        "duration = %d" % dur_s,
        "clock_unknown_at_boot = %s" % str(draw(st.booleans())).lower(),
        'profile = "%s"' % draw(st.sampled_from(["ready", "saver"])),
        "",
        "[battery]",
        "start_pct = %d" % draw(st.integers(5, 100)),
        "",
    ]
    # the board: the SIM7600's own GNSS, or an external NMEA module of some style
    style = draw(st.sampled_from(["sim7600", "ublox-m8", "quectel-l76", "minimal"]))
    if style != "sim7600":
        lines += ["[device]", 'board = "t-sim7600e-ext-gnss"', ""]
    lines += [
        "[gnss]",
        'style = "%s"' % style,
        'start = "%s"' % draw(st.sampled_from(["auto", "cold", "warm", "hot"])),
        "",
        "[route]",
    ]
    lat = draw(st.floats(-60, 70))
    lon = draw(st.floats(-179, 179))
    pts = ["{ at = 0, lat = %.6f, lon = %.6f }" % (lat, lon)]
    t = 0
    for _ in range(draw(st.integers(0, 4))):
        t += draw(st.integers(10, max(10, dur_s // 3)))
        lat += draw(st.floats(-0.005, 0.005))
        lon += draw(st.floats(-0.005, 0.005))
        sky = draw(st.sampled_from(["open", "urban", "indoor"]))
        pts.append('{ at = %d, lat = %.6f, lon = %.6f, sky = "%s" }' % (t, lat, lon, sky))
    lines.append("points = [ %s ]" % ", ".join(pts))
    for a, b in _windows(draw, dur_s, 2):
        lines += ["", "[[indoor]]", "from = %d" % a, "to = %d" % b]
    cov_t = 0
    for _ in range(draw(st.integers(0, 4))):
        lines += ["", "[[coverage]]", "from = %d" % cov_t, 'mode = "%s"' % draw(st.sampled_from(["data+sms", "sms-only", "none"])),
                  "latency_ms = %d" % draw(st.integers(20, 3000)), "loss = %.2f" % draw(st.floats(0, 0.5))]
        cov_t += draw(st.integers(1, max(1, dur_s // 3)))
        if cov_t >= dur_s:
            break
    act_t = draw(st.integers(1, 30))
    for _ in range(draw(st.integers(0, 4))):
        if act_t >= dur_s - 10:
            break
        kind = draw(st.sampled_from(KINDS + ("raw",)))
        lines += ["", "[[action]]", "at = %d" % act_t, 'kind = "%s"' % kind]
        if kind == "raw":
            ps = []
            off = 0
            for _ in range(draw(st.integers(1, 5))):
                hold = draw(st.integers(20, 1500))
                ps.append("[%d, %d]" % (off, hold))
                off += hold + draw(st.integers(20, 1500))
            lines.append("presses = [%s]" % ", ".join(ps))
        act_t += draw(st.integers(15, max(15, dur_s // 3)))
    for a, b in _windows(draw, dur_s, 2):
        lines += ["", "[[receiver_down]]", "from = %d" % a, "to = %d" % b]
    # a centre of several nodes, one of which dies or is cut off at times
    nodes = draw(st.sampled_from([0, 0, 2, 3]))
    for i in range(nodes):
        lines += ["", "[[receiver]]", 'name = "n%d"' % i]
    for i in range(nodes):
        for a, b in _windows(draw, dur_s, 2):
            lines += ["", "[[receiver_fault]]", 'node = "n%d"' % i, "from = %d" % a, "to = %d" % b,
                      'mode = "%s"' % draw(st.sampled_from(["kill", "cut"]))]
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(1, dur_s - 1))
        lines += ["", "[[power_cut]]", "at = %d" % at]
        if draw(st.booleans()):
            lines.append("at_flash_write = %d" % draw(st.integers(1, 5)))
        lines.append("duration = %s" % draw(st.sampled_from(['"never"', "1", "5", "30"])))
    return "\n".join(lines) + "\n"
