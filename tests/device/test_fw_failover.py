"""The receiver failover rule (firmware/failover.py) and the two forms of
its configuration (firmware/config.py): the lists, and the single-receiver
form of boards provisioned before them."""

from mpcheck import raises

from firmware import config as C
from firmware import failover as FO
from fw_fakes import CONFIG


def test_a_failure_moves_to_the_next_and_wraps_to_the_first_after_the_last():
    f = FO.Failover(3, 10000, 600000)
    assert f.i == 0 and f.state == FO.FIRST
    assert f.failed(100) and f.i == 1 and f.state == FO.OTHER
    assert f.failed(200) and f.i == 2
    assert f.failed(300) and f.i == 0 and f.state == FO.FIRST  # every one failed: round again
    assert f.moves == 3


def test_no_ack_within_the_timeout_after_a_send_moves_and_an_ack_in_time_does_not():
    f = FO.Failover(2, 10000, 600000)
    f.sent(1000)
    f.sent(5000)  # the wait runs from the oldest unanswered send
    assert not f.poll(10999)
    assert f.next_deadline(10999) == 1
    assert f.poll(11000) and f.i == 1
    f.sent(12000)
    assert not f.acked(12500)  # an ACK: the peer works, nothing waits
    assert not f.poll(12000 + 10000) and f.i == 1


def test_back_to_the_first_after_the_return_time_but_never_while_an_ack_is_awaited():
    f = FO.Failover(2, 10000, 600000)
    f.failed(0)
    assert f.i == 1 and f.next_deadline(0) == 600000
    f.sent(599000)  # a frame in flight to the secondary at the return time
    assert not f.poll(600000) and f.i == 1
    f.acked(600500)
    assert f.poll(600500) and f.i == 0 and f.state == FO.FIRST
    assert f.next_deadline(600500) == 3600000  # on the first, with nothing awaited: nothing to do


def test_one_peer_never_moves():
    f = FO.Failover(1, 10000, 600000)
    assert not f.failed(0)
    f.sent(0)
    assert not f.poll(20000) and f.i == 0 and f.moves == 0


def test_an_event_the_table_does_not_hold_is_our_misuse():
    f = FO.Failover(2, 10000, 600000)
    raises(FO.LocalError, f.fire, FO.E_RETURN, 0)  # already on the first
    raises(FO.LocalError, FO.Failover, 0, 10000, 600000)


def test_every_state_has_a_row_for_failure_timeout_and_ack():
    for s in (FO.FIRST, FO.OTHER):
        for e in (FO.E_FAILED, FO.E_TIMEOUT, FO.E_ACKED):
            assert (s, e) in FO.TABLE


def _cfg(**over):
    d = dict(CONFIG)
    for k in ("receiver_host", "receiver_port", "sms_number"):
        d.pop(k)
    d.update(over)
    return C.validate(d)


def test_the_lists_are_read_in_order_and_fill_the_single_fields():
    cfg = _cfg(receivers=["arc1.example.org:7700", "10.0.0.2:7701", "2001:db8::5:7702"],
               sms_numbers=["+447700900001", "+447700900003"])
    assert cfg.errors == [], cfg.errors
    assert cfg.receivers == [("arc1.example.org", 7700), ("10.0.0.2", 7701), ("2001:db8::5", 7702)]
    assert (cfg.receiver_host, cfg.receiver_port) == ("arc1.example.org", 7700)
    assert cfg.sms_numbers == ["+447700900001", "+447700900003"] and cfg.sms_number == "+447700900001"


def test_a_board_provisioned_with_one_receiver_boots_with_it():
    cfg = C.validate(CONFIG)  # receiver_host / receiver_port / sms_number
    assert cfg.usable and cfg.errors == []
    assert (cfg.receiver_host, cfg.receiver_port, cfg.sms_number) == ("arc.example.org", 7400, "+447700900001")
    assert len(cfg.receivers) < 2 and len(cfg.sms_numbers) < 2  # no failover: one of each
    one = _cfg(receivers=["arc.example.org:7400"], sms_numbers=["+447700900001"])  # a list of one: the same
    assert one.errors == [] and (one.receiver_host, one.receiver_port, one.sms_number) == (
        "arc.example.org", 7400, "+447700900001")
    assert len(one.receivers) < 2 and len(one.sms_numbers) < 2


def test_bad_lists_are_named_errors_and_never_crash():
    for bad in ([], "arc:1", ["arc"], ["arc:0"], ["arc:65536"], ["arc:77x"], [":7700"], ["a b:1"], [7700],
                ["a:1", "b:2", "c:3", "d:4", "e:5"]):
        cfg = _cfg(receivers=bad)
        assert cfg.usable  # the key is fine: the device still runs (and reports FAULT_CONFIG)
        assert len(cfg.errors) == 1 and cfg.errors[0].startswith("receivers: must be"), (bad, cfg.errors)
        assert "arc" not in cfg.errors[0]  # a value is never echoed
        assert len(cfg.receivers) == 0
    for bad in ("+447700900001", [""], ["12"], ["+44x"], [1]):
        cfg = _cfg(receivers=["a:1"], sms_numbers=bad)
        assert len(cfg.errors) == 1 and cfg.errors[0].startswith("sms_numbers: must be"), (bad, cfg.errors)
        assert len(cfg.sms_numbers) == 0 and cfg.sms_number == ""


def test_both_forms_at_once_is_an_error_and_the_list_wins():
    d = dict(CONFIG)
    d["receivers"] = ["b.example.org:1", "c.example.org:2"]
    d["sms_numbers"] = ["+447700900005"]
    cfg = C.validate(d)
    assert len(cfg.errors) == 2, cfg.errors
    assert cfg.receivers[0] == ("b.example.org", 1) and cfg.receiver_host == "b.example.org"
    assert cfg.sms_number == "+447700900005"


def test_the_failover_timings_have_ranges():
    cfg = _cfg(receivers=["a:1"], timings={"ack_timeout_s": 1, "failover_return_s": 29})
    assert len(cfg.errors) == 2
    assert cfg.t("ack_timeout_s") == 10 and cfg.t("failover_return_s") == 600
