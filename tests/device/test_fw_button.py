"""Button pattern detector: false triggers, patterns, timing, config."""

import heap
from buttonsim import edges, kinds, presses, run
from mpcheck import raises

from firmware import button
from firmware.button import (
    EV_CANCEL,
    EV_DURESS_CANCEL,
    EV_SOS,
    EV_TEST,
    ButtonConfig,
    ButtonDetector,
    LocalError,
)

heap.release()


def storm(ms, period=6, start=100):
    """Bounce: the contact toggles every `period` ms (< debounce)."""
    w = [(start, False)]
    for k in range(ms // period):
        w.append((period, k % 2 == 0))
    w.append((1, False))
    return w


def spikes(n, width=20, gap=50, start=100):
    """Pocket noise: n short closures, each shorter than the debounce."""
    w = [(start, False)]
    for _ in range(n):
        w.append((width, True))
        w.append((gap, False))
    return w


def bouncy_press(hold):
    """A real press with contact bounce at both edges."""
    return [(3, True), (4, False), (2, True), (5, False), (hold, True), (3, False), (2, True), (1, False)]


def false_triggers():
    """(name, waveform, alert active, expected events), built on demand
    (the MicroPython heap is small)."""
    return (
        ("bounce storm 400 ms", storm(400), False, []),
        ("bounce storm 400 ms while active", storm(400), True, []),
        ("pocket noise 200 spikes of 20 ms", spikes(200), False, []),
        ("pocket noise 29 ms spikes", spikes(50, width=29, gap=40), False, []),
        ("one long press 2.9 s", presses((0, 2900)), False, []),
        ("one press with a 25 ms release glitch, 1.4 + 1.4 s", presses((0, 1400), (25, 1400)), False, []),
        ("two presses", presses((0, 150), (300, 150)), False, []),
        ("three presses spread over 3.1 s", presses((0, 150), (1350, 150), (1450, 150)), False, []),
        ("six presses 1.4 s apart", presses(*[(1250, 150)] * 6), False, []),
        ("three presses while active (no SOS then)", presses((0, 150), (200, 150), (200, 150)), True, []),
        ("hold 5.9 s while active", presses((0, 5900)), True, []),
        ("four quick presses while active", presses(*[(200, 120)] * 4), True, []),
        ("five presses over 4.5 s while active", presses(*[(1000, 120)] * 5), True, []),
        ("2 presses + 2.5 s hold, test disabled", presses((0, 150), (200, 150), (200, 2500)), False, []),
        ("2 presses + 2 s press, test disabled", presses((0, 150), (200, 150), (200, 2000)), False, []),
    )


def test_false_trigger_table():
    for name, wave, active, want in false_triggers():
        for step in (1, 5, 13, None):
            got = kinds(run(wave, step=step, alert=active))
            assert got == want, "%s (step %r): %r" % (name, step, got)


def patterns():
    """(name, waveform, alert active, expected events)."""
    return (
        ("three presses", presses((0, 150), (200, 150), (200, 150)), False, [EV_SOS]),
        ("three presses, window edge 2.5 s", presses((0, 100), (1150, 100), (1150, 100)), False, [EV_SOS]),
        ("hold 3.2 s", presses((0, 3200)), False, [EV_SOS]),
        ("hold 6 s while active", presses((0, 6100)), True, [EV_CANCEL]),
        ("five presses while active", presses(*[(200, 120)] * 5), True, [EV_DURESS_CANCEL]),
        ("three bouncy presses", [(100, False)] + bouncy_press(150) + [(300, False)] + bouncy_press(150)
          + [(300, False)] + bouncy_press(150), False, [EV_SOS]),
        ("stray press, pause, then three presses", presses((0, 150), (3000, 150), (200, 150), (200, 150)), False,
         [EV_SOS]),
    )


def test_patterns_at_any_sample_rate():
    for name, wave, active, want in patterns():
        for step in (1, 5, 13, None):
            got = kinds(run(wave, step=step, alert=active))
            assert got == want, "%s (step %r): %r" % (name, step, got)


def test_sos_fires_on_third_release_and_hold_at_threshold():
    evs = run(presses((0, 150), (200, 150), (200, 150), start=0), step=1)
    # releases at 150, 500, 850; fires once the release is debounced
    assert evs == [(850 + 30, EV_SOS)], evs
    evs = run(presses((0, 4000), start=0), step=1)
    assert evs == [(3000, EV_SOS)], evs  # without waiting for the release


def test_panicked_burst_gives_one_sos_and_no_duress_cancel():
    # eight fast presses: SOS at the third; the alert becomes active; the
    # other five fall in the re-arm period and are absorbed
    evs = run(presses(*[(150, 100)] * 8), follow=True)
    assert kinds(evs) == [EV_SOS], evs


def test_sos_hold_never_runs_on_into_cancel():
    evs = run(presses((0, 9000)), follow=True)
    assert kinds(evs) == [EV_SOS], evs


def test_cancel_and_duress_after_rearm():
    wave = presses((0, 3200), (2500, 6500))  # SOS by hold, then re-armed, then cancel
    assert kinds(run(wave, follow=True)) == [EV_SOS, EV_CANCEL]
    wave = presses((0, 150), (200, 150), (200, 150), *[(2500 if i == 0 else 200, 120) for i in range(5)])
    assert kinds(run(wave, follow=True)) == [EV_SOS, EV_DURESS_CANCEL]


def test_duress_cancel_looks_exactly_like_cancel():
    # after either, the detector is in the same state and asks for the
    # same wake-ups: nothing observable tells them apart
    a = ButtonDetector()
    b = ButtonDetector()
    ra = run(presses((0, 6100)), alert=True, det=a, tail=100)
    rb = run(presses(*[(200, 120)] * 5), alert=True, det=b, tail=100)
    assert kinds(ra) == [EV_CANCEL] and kinds(rb) == [EV_DURESS_CANCEL]
    assert a.state == b.state == button.S_QUIET
    # both re-arm 2 s after the release that ended the pattern
    assert a.next_deadline(100 + 6100 + 100) == 2000 - 100
    tb = sum(d for d, _ in presses(*[(200, 120)] * 5)) - 1
    assert b.next_deadline(tb + 100) == 2000 - 100


def test_test_pattern_only_when_enabled():
    cfg = ButtonConfig(test_enabled=True)
    wave = presses((0, 150), (200, 150), (200, 2500))
    assert kinds(run(wave, cfg=cfg)) == [EV_TEST]
    assert kinds(run(wave)) == []
    # while an alert is active there is no TEST, the hold counts to CANCEL
    assert kinds(run(presses((0, 150), (200, 150), (200, 6200)), cfg=cfg, alert=True)) == [EV_CANCEL]
    # three presses are still SOS with test enabled
    assert kinds(run(presses((0, 150), (200, 150), (200, 150)), cfg=cfg)) == [EV_SOS]


def test_active_high_pin():
    cfg = ButtonConfig(active_low=False)
    wave = presses((0, 150), (200, 150), (200, 150))
    assert kinds(run(wave, cfg=cfg, active_low=False)) == [EV_SOS]
    # two presses are still nothing on an active-high pin
    assert kinds(run(presses((0, 150), (200, 150)), cfg=cfg, active_low=False)) == []


def test_press_held_at_boot_is_the_wake_press():
    det = ButtonDetector()
    assert det.update(0, 1000) is None  # active-low: pressed at the first sample
    assert det.update(0, 3999) is None
    assert det.update(0, 4000) == EV_SOS


def test_next_deadline():
    det = ButtonDetector()
    assert det.next_deadline(0) is None
    det.update(1, 0)
    assert det.next_deadline(10) is None  # idle: only an edge matters
    det.update(0, 100)  # press begins (not yet debounced)
    assert det.next_deadline(110) == 20
    det.update(0, 130)  # debounced: press from 100
    assert det.next_deadline(130) == 100 + 3000 - 130
    det.set_alert_active(True)
    assert det.next_deadline(130) == 100 + 6000 - 130
    det.update(0, 6100)
    assert det.state == button.S_SPENT
    det.update(1, 6200)
    det.update(1, 6230)
    assert det.state == button.S_QUIET and det.next_deadline(6230) == 6200 + 2000 - 6230
    assert det.next_deadline(9000) == 0


def test_transition_table_and_illegal_inputs():
    rows = button.transitions()
    assert ("IDLE", "press", "DOWN") in rows and len(rows) == 7
    det = ButtonDetector()
    e = raises(LocalError, det._go, button.I_RELEASE)
    assert "IDLE" in str(e) and "release" in str(e)
    det._go(button.I_PRESS)
    e = raises(LocalError, det._go, button.I_REARM)
    assert "DOWN" in str(e) and "rearm" in str(e)


def test_config_defaults_and_validation():
    c = ButtonConfig.from_dict({})
    assert (c.active_low, c.debounce_ms, c.sos_presses, c.sos_window_ms, c.sos_hold_ms, c.cancel_hold_ms,
            c.duress_presses, c.duress_window_ms, c.test_enabled) == (True, 30, 3, 2500, 3000, 6000, 5, 4000, False)
    assert ButtonConfig.from_dict(c.to_dict()).to_dict() == c.to_dict()
    bad = (
        ({"debounce_ms": 0}, "debounce_ms"),
        ({"sos_presses": 1}, "sos_presses"),
        ({"sos_hold_ms": "3000"}, "sos_hold_ms"),
        ({"sos_hold_ms": 3000.0}, "sos_hold_ms"),
        ({"duress_presses": True}, "duress_presses"),
        ({"active_low": 1}, "active_low"),
        ({"test_enabled": "yes"}, "test_enabled"),
        ({"sos_window": 2500}, "sos_window"),
        ({"sos_presses": 10, "sos_window_ms": 300}, "sos_window_ms"),
        ({"test_enabled": True, "test_hold_ms": 3000}, "test_hold_ms"),
    )
    for d, field in bad:
        e = raises(ValueError, ButtonConfig.from_dict, d)
        assert field in str(e), (d, str(e))
    raises(ValueError, ButtonConfig.from_dict, [1, 2])


def test_edges_helper_merges_pieces():
    assert edges([(5, False), (5, False), (3, True)]) == ([(0, False), (10, True)], 13)
