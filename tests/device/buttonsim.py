"""Drive a ButtonDetector with a pin waveform (shared by the device tests
and the host property tests).

A waveform is a list of (duration_ms, pressed) pieces from t=0. The pin
is sampled either every `step` ms or, with step=None, the way the main
loop does it: at every pin change (the edge interrupt wakes it) and at
each next_deadline(). Events come back as [(t, EV_*)].
"""

from firmware.button import EV_CANCEL, EV_DURESS_CANCEL, EV_SOS, ButtonDetector


def presses(*spec, start=100):
    """Waveform from (gap_ms, hold_ms) pairs: released gap, then a press."""
    w = [(start, False)]
    for gap, hold in spec:
        if gap:
            w.append((gap, False))
        w.append((hold, True))
    w.append((1, False))  # released at the end
    return w


def edges(wave):
    """[(t, pressed)] at every change, merging equal neighbours."""
    out = []
    t = 0
    for dur, p in wave:
        if not out or out[-1][1] != p:
            out.append((t, p))
        t += dur
    return out, t


def run(wave, cfg=None, step=5, alert=False, follow=False, tail=12000, active_low=True, det=None):
    """Events from feeding the waveform (its last piece lasts through the
    tail, so waveforms end released unless a held pin is the point). follow=True plays the alert
    controller: SOS makes the alert active, (duress) cancel ends it."""
    if det is None:
        det = ButtonDetector(cfg)
    det.set_alert_active(alert)
    ch, end = edges(wave)
    end += tail
    evs = []
    i = 0  # index of the piece in force
    n = len(ch)

    def level_at(t):
        nonlocal i
        while i + 1 < n and ch[i + 1][0] <= t:
            i += 1
        p = ch[i][1]
        return (0 if p else 1) if active_low else (1 if p else 0)

    def feed(t):
        ev = det.update(level_at(t), t)
        if ev is not None:
            evs.append((t, ev))
            if follow:
                if ev == EV_SOS:
                    det.set_alert_active(True)
                elif ev == EV_CANCEL or ev == EV_DURESS_CANCEL:
                    det.set_alert_active(False)

    if step:
        t = 0
        while t <= end:
            feed(t)
            t += step
        return evs
    # edge + deadline driven
    t = 0
    k = 0  # next change to wake on
    while t <= end:
        feed(t)
        while k < n and ch[k][0] <= t:
            k += 1
        d = det.next_deadline(t)
        nxt = end + 1 if k >= n else ch[k][0]
        if d is not None and t + max(d, 1) < nxt:
            nxt = t + max(d, 1)
        if nxt > end:
            break
        t = nxt
    return evs


def kinds(evs):
    return [e for _, e in evs]
