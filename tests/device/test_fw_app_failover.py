"""A whole device with two receivers and two SMS numbers: the alert's frame
(same bytes, same seq) goes to the second node when the first refuses or
stays silent, and the device is back on the first after the return time.
(Its own file so each fits the MicroPython heap: fw_child.py.)"""

from fw_child import IN_PLACE, delegate
from fw_fakes import make_config
from fw_world import FakeReceiver, make_app, presses, run_until

from protocol import frame as F

if IN_PLACE:  # else the tests run in a child VM (fw_child.py)
    from firmware.fs import MemFs

A = ("arc1.example.org", 7700)
B = ("arc2.example.org", 7700)


def _device(**timings):
    from fake_transport import FakeTransport

    rx = FakeReceiver()
    tr = FakeTransport(rx.deliver, rx.deliver_sms, latency_ms=50)
    tr.set_receiver(*A)  # where the modem engine connects first (config receivers[0])
    tr.refused, tr.silent = set(), set()
    cfg = make_config(receivers=[A, B], sms_numbers=["+447700900001", "+447700900003"],
                      receiver_host=A[0], receiver_port=A[1], timings=timings)
    app, board, tr = make_app(MemFs(), rx, cfg=cfg, tr=tr)
    run_until(app, board, 3000)
    return rx, app, board, tr


def _alert_sends(tr):
    return [(to, raw) for (_, raw), to in zip(tr.sent, tr.sent_to) if F.peek(raw)[0] == F.ALERT]


def test_a_refused_connection_sends_the_same_alert_to_the_second_node_at_once():
    rx, app, board, tr = _device()
    tr.refused.add(A)  # the first node's process is dead: connections refused
    end = presses(app, board, 3, 5000)
    run_until(app, board, end + 3000)
    sends = _alert_sends(tr)
    assert [to for to, _ in sends] == [B], sends  # refused before any byte left; then B at once
    (alert,) = rx.of(F.ALERT)
    assert app.outbox.count(F.ALERT) == 0  # ACKed
    assert app.ctl.state == 2  # TRACKING
    assert app.fo.i == 1 and tr.target == B


def test_a_silent_node_costs_one_ack_timeout_then_the_same_frame_same_seq_goes_to_the_other():
    rx, app, board, tr = _device(ack_timeout_s=10)
    tr.silent.add(A)  # cut off: the frame goes out, nothing ever comes back
    end = presses(app, board, 3, 5000)
    run_until(app, board, end + 30000)
    sends = _alert_sends(tr)
    to_a = [raw for to, raw in sends if to == A]
    to_b = [raw for to, raw in sends if to == B]
    assert to_a and to_b, sends
    assert set(to_a + to_b) == {to_a[0]}  # byte for byte the same sealed frame
    alerts = rx.of(F.ALERT)
    assert len({a.seq for a in alerts}) == 1  # one alert, never a second one
    assert app.outbox.count(F.ALERT) == 0 and app.fo.i == 1
    # delivered within the ACK timeout plus one round trip of the fake
    t_first = [t for (t, raw) in tr.sent if F.peek(raw)[0] == F.ALERT][0]
    t_b = [t for (t, raw), to in zip(tr.sent, tr.sent_to) if to == B and F.peek(raw)[0] == F.ALERT][0]
    assert t_b - t_first <= 10000 + 1000, (t_first, t_b)


def test_an_open_failure_with_the_data_path_gone_is_the_networks_and_moves_nothing():
    from firmware.transport import EV_SEND_FAILED

    rx, app, board, tr = _device()
    tr.data_up = False  # the PDP context went with it (+CIPEVENT, CIPOPEN error 1)
    tr._queue.append((board.now, (EV_SEND_FAILED, "open: error 1")))
    run_until(app, board, board.now + 1000)
    assert app.fo.i == 0 and app.fo.moves == 0
    tr.data_up = True
    tr.refused.add(A)
    tr._queue.append((board.now, (EV_SEND_FAILED, "open: error 10")))  # the receiver refused: that moves
    run_until(app, board, board.now + 1000)
    assert app.fo.i == 1 and tr.target == B


def test_back_on_the_first_node_after_the_return_time():
    rx, app, board, tr = _device(failover_return_s=60)
    tr.refused.add(A)
    end = presses(app, board, 3, 5000)
    run_until(app, board, end + 3000)
    assert tr.target == B
    tr.refused.clear()  # the first node is back
    run_until(app, board, end + 3000 + 61000)
    assert tr.target == A and app.fo.i == 0
    n = len(tr.sent)
    run_until(app, board, end + 3000 + 61000 + 31000)  # the next TRACK goes to the first
    assert tr.sent_to[n:] and all(to == A for to in tr.sent_to[n:]), tr.sent_to[n:]


def test_the_sms_fallback_moves_to_the_next_number_when_the_first_sms_brings_no_ack():
    rx, app, board, tr = _device(sms_fallback_s=20)
    tr.data_up = False  # no data at all: only SMS
    end = presses(app, board, 3, 5000)
    run_until(app, board, end + 20000 + 2000)
    assert [n for _, n, _ in tr.sms] == ["+447700900001"]
    run_until(app, board, end + 40000 + 2000)  # still no ACK (SMS is one way): the next number
    nums = [n for _, n, _ in tr.sms]
    assert nums[:2] == ["+447700900001", "+447700900003"], nums
    texts = [t for _, n, t in tr.sms]
    assert texts[0] == texts[1]  # the same frame, same seq
    run_until(app, board, end + 120000)
    alerts = [t for _, _, t in tr.sms if t == texts[0]]
    assert len(alerts) == 2  # once per number, never more


def test_an_sms_the_modem_refuses_for_a_while_still_moves_one_number_only():
    rx, app, board, tr = _device(sms_fallback_s=20)
    tr.data_up = False
    end = presses(app, board, 3, 5000)
    run_until(app, board, end + 20000 + 2000)  # the first SMS went to the first number
    real = tr.send_sms
    tr.send_sms = lambda number, text, now: False  # ready, yet each request refused for a while
    run_until(app, board, end + 50000)
    tr.send_sms = real
    run_until(app, board, end + 60000)
    first = tr.sms[0][2]
    assert [n for _, n, t in tr.sms if t == first] == ["+447700900001", "+447700900003"], tr.sms  # the ALERT's
    assert app.outbox.sms_fo.i == 1 and app.outbox.sms_fo.moves == 1  # one move, not one per refusal


def test_a_failed_sms_moves_to_the_next_number():
    rx, app, board, tr = _device(sms_fallback_s=20)
    tr.data_up = False
    tr.fail_sms = 1
    end = presses(app, board, 3, 5000)
    run_until(app, board, end + 40000)
    assert tr.sms and tr.sms[0][1] == "+447700900003", tr.sms


delegate(globals(), "test_fw_app_failover")
