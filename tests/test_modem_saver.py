"""Power profile "saver": the engine switches the modem off when the device
has nothing to send, and boots it again for the next frame."""

from modem_world import World


def _run(w, pred, limit):
    return w.rig.run_until(pred, limit)


def test_saver_sleep_switches_the_modem_off_and_the_next_frame_boots_it():
    w = World(cfg={"power_profile": "saver"})
    assert _run(w, w.t.data_ready, 120000)
    w.t.sleep(w.rig.now)
    t_sleep = w.rig.now
    # AT+CPOF, then off only once STATUS is seen low, 25-26 s later
    # (Hardware Design Table 9)
    assert _run(w, lambda: not w.emu.on and w.t.engine.off, t_sleep + 40000)
    assert any(b"AT+CPOF" in line for line in w.sent_lines())
    assert w.rig.now - t_sleep >= 26000
    assert not w.t.data_ready() and not w.t.sms_ready()
    off_at = w.rig.now
    # nothing to do: the engine stays off and asks for no polls soon
    assert w.t.poll(w.rig.now) >= 60000
    _run(w, lambda: False, off_at + 300000)
    assert not w.emu.on
    # work arrives: wake boots the modem (RDY 12 s), registers, opens the data path
    w.t.wake(w.rig.now)
    t0 = w.rig.now
    d = w.deliver()
    lat = w.assert_delivered(d)
    assert w.emu.on and d.acked_at - t0 >= 11500
    assert len(w.events("boot")) == 2 and lat < 60000


def test_ready_sleep_keeps_the_modem_registered_and_asleep():
    w = World()
    assert _run(w, w.t.data_ready, 120000)
    w.t.sleep(w.rig.now)
    assert _run(w, lambda: w.emu.asleep(), w.rig.now + 10000)
    assert w.emu.on and not w.t.engine.off
