"""Property tests of the button detector (host only: hypothesis).

A sequence is real presses plus noise. Noise is what the debounce must
swallow: closures shorter than debounce_ms in the gaps (pocket noise),
openings shorter than debounce_ms inside presses (contact chatter), and
bounce of a few sub-debounce toggles at each real edge. The pin is
sampled every `step` ms (1..13) or, as the main loop does, on every pin
change and at next_deadline().

1. Without the SOS pattern, never SOS. "Without" keeps a margin from every
   threshold, because bounce may shift an edge by up to ~20 ms: every press
   lasts <= 2.7 s (the hold is 3 s) and any three consecutive press-downs
   span >= 2.8 s (the window is 2.5 s).
2. With the pattern anywhere in the sequence (three taps within 2.2 s,
   each <= 1.2 s, or one hold >= 3.3 s), always at least one SOS.

PANIC_PROPS_EXAMPLES raises the example count for long runs.
"""

import os

from buttonsim import kinds, run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware.button import EV_SOS

DEBOUNCE = 30
EXAMPLES = int(os.environ.get("PANIC_PROPS_EXAMPLES", "60"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

samplers = st.one_of(st.none(), st.integers(1, 13))


@st.composite
def noise_pieces(draw, span, pressed):
    """Pieces filling `span` ms at level `pressed`, sprinkled with blips of
    the other level shorter than the debounce, kept a debounce away from
    the ends and from each other."""
    out = []
    left = span
    lead = min(left, DEBOUNCE + 1)
    out.append((lead, pressed))
    left -= lead
    while left > 3 * DEBOUNCE and draw(st.booleans()):
        blip = draw(st.integers(1, DEBOUNCE - 1))
        room = left - blip - DEBOUNCE - 1
        if room < DEBOUNCE + 1:
            break
        before = draw(st.integers(DEBOUNCE + 1, room))
        out.append((blip, not pressed))
        out.append((before, pressed))
        left -= blip + before
    if left > 0:
        out.append((left, pressed))
    return out


@st.composite
def bounce(draw, pressed):
    """A few toggles shorter than the debounce before settling at `pressed`."""
    out = []
    for _ in range(draw(st.integers(0, 3))):
        out.append((draw(st.integers(1, 5)), pressed))
        out.append((draw(st.integers(1, 5)), not pressed))
    return out


@st.composite
def waveform(draw, timeline):
    """Waveform from [(gap_ms, hold_ms)] with noise and bounce added."""
    w = [(200, False)]
    for gap, hold in timeline:
        if gap:
            w += draw(noise_pieces(gap, False))
        w += draw(bounce(True))
        w += draw(noise_pieces(hold, True))
        w += draw(bounce(False))
    w.append((50, False))
    return w


@st.composite
def no_pattern(draw):
    n = draw(st.integers(0, 8))
    tl = []
    downs = []
    t = 0
    for i in range(n):
        gap = draw(st.integers(100, 3000)) if i else 0
        hold = draw(st.integers(80, 2700))
        down = t + gap
        if len(downs) >= 2 and down - downs[-2] < 2800:
            gap += 2800 - (down - downs[-2])  # keep any 3 downs >= 2.8 s apart
            down = t + gap
        downs.append(down)
        tl.append((gap, hold))
        t = down + hold
    return tl


@st.composite
def with_pattern(draw):
    before = draw(no_pattern())
    if draw(st.booleans()):
        taps = [(draw(st.integers(60, 500)), draw(st.integers(80, 600))) for _ in range(3)]
        taps[0] = (draw(st.integers(3000, 6000)), taps[0][1])  # clear of what came before
        while sum(g + h for g, h in taps[1:]) + taps[0][1] > 2200:
            taps = [(g, h // 2 if h > 160 else h) for g, h in taps]
            taps = [(g if i == 0 else max(60, g // 2), h) for i, (g, h) in enumerate(taps)]
        pattern = taps
    else:
        pattern = [(draw(st.integers(3000, 6000)), draw(st.integers(3300, 5000)))]
    after = draw(no_pattern())
    if after:
        after[0] = (max(after[0][0], 3000), after[0][1])
    return before + pattern + after


@SETTINGS
@given(st.data(), samplers)
def test_no_pattern_never_sos(data, step):
    wave = data.draw(waveform(data.draw(no_pattern())))
    evs = run(wave, step=step)
    assert EV_SOS not in kinds(evs), (wave, evs)


@SETTINGS
@given(st.data(), samplers)
def test_pattern_always_sos(data, step):
    wave = data.draw(waveform(data.draw(with_pattern())))
    evs = run(wave, step=step)
    assert EV_SOS in kinds(evs), (wave, evs)


@SETTINGS
@given(st.data(), samplers)
def test_noise_alone_never_fires_anything(data, step):
    wave = [(100, False)] + data.draw(noise_pieces(data.draw(st.integers(100, 20000)), False))
    assert run(wave, step=step) == []
