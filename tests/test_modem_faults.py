"""The engine against the SIM7600 emulator in virtual time: an ALERT is
delivered and its ACK verified under each fault, one test per fault."""

import socket
import threading
import time

from host_sim.modem import Sim7600
from host_sim.modem_rig import AlertDriver, Rig
from host_sim.network import Network
from host_sim.tcp import SocketTcp
from protocol import frame as F
from protocol import stream
from modem_world import CFG, KEYS, World, alert


def test_default_timings():
    w = World()
    d = w.deliver()
    took = w.assert_delivered(d)
    boot = w.events("boot")[0][0]
    ready = w.events("ready")[0][0]
    assert ready - boot == 12000  # UART ready 11-12 s after PWRKEY (Hardware Design Table 8)
    assert 15000 < took < 25000, took
    assert d.failures == []
    assert w.t.cell() == (234, 15, 0x1A2B, 30125732, -97) and w.t.csq() == 21
    assert w.t.stats()["garbage_lines"] == 0 and w.t.stats()["unknown_urcs"] == 0


def test_modem_already_on_after_esp32_reset():
    w = World(start_on=True)
    d = w.deliver()
    assert w.assert_delivered(d) < 2000
    assert w.events("boot") == []  # no PWRKEY pulse: it answered AT


def test_slow_boot():
    w = World(boot_ms=21000)
    took = w.assert_delivered(w.deliver())
    assert took > 21000 and w.t.stats()["power_cycles"] == 0


def test_slow_registration():
    w = World(reg_ms=45000)
    took = w.assert_delivered(w.deliver())
    assert took > 45000 + 11500


def test_slow_commands():
    w = World(cmd_latency_ms=900)
    w.assert_delivered(w.deliver())
    assert w.t.stats()["power_cycles"] == 0


def test_echo_until_ate0():
    w = World(echo=True)
    w.assert_delivered(w.deliver())
    rx = b"".join(b for (_, d, b) in w.emu.transcript if d == "<")
    i = rx.index(b"ATE0\r")  # the module echoed the ATE0 line itself...
    assert b"AT+CPIN?\r" not in rx[i:]  # ...and nothing after it


def test_sim_missing_on_first_boot_is_power_cycled():
    w = World(sim_missing_boots=1)
    w.assert_delivered(w.deliver())
    assert w.t.stats()["power_cycles"] >= 1
    assert len(w.events("boot")) >= 2


def test_sim_missing_for_good_is_reported_without_spinning():
    w = World(sim="missing")
    d = w.deliver(limit_ms=300000)
    assert d.acked_at is None and d.sms_sent_at is None
    assert w.t.stats()["sim"] == "missing"
    assert 3 <= len(w.events("boot")) <= 8  # backs off 2, 4, 8 ... 120 s


def test_sim_pin_entered_from_configuration():
    w = World(sim="pin", cfg={"pin": "1234"})
    w.assert_delivered(w.deliver())
    assert b'AT+CPIN="1234"\r' in w.sent_lines()


def test_sim_pin_never_guessed_without_configuration():
    w = World(sim="pin")
    d = w.deliver(limit_ms=120000)
    assert d.acked_at is None
    assert not any(b.startswith(b"AT+CPIN=") for b in w.sent_lines())
    assert w.t.stats()["sim"] == "pin_required"
    assert len(w.events("boot")) == 1


def test_no_coverage_until_it_arrives():
    w = World(coverage=[(0, "none"), (90000, "full")])
    took = w.assert_delivered(w.deliver())
    assert took > 90000


def test_coverage_that_comes_and_goes():
    flaps = [(0, "full")]
    for k in range(1, 12):
        flaps.append((16000 + 9000 * k - 9000, "none"))
        flaps.append((16000 + 9000 * k - 4000, "full"))
    net = Network(seed=3, up_ms=700, down_ms=700)
    w = World(net=net, coverage=flaps, reg_ms=1500)
    w.assert_delivered(w.deliver())
    assert w.events("network_lost")
    assert ("link", False) in [e for _, e in w.rig.events]



def test_network_closed_while_a_socket_open_waits_ends_the_wait_at_once():
    """+CIPEVENT: NETWORK CLOSED while AT+CIPOPEN waits for its +CIPOPEN:
    the open cannot succeed; the emulator (pessimistic: the manual does not
    say) never answers it, and the engine stops waiting then, not at its
    20 s open timeout, and the SMS fallback goes out."""

    def world(cov):
        # the receiver unreachable: the TCP handshake waits out its 7 s
        net = Network(seed=1, jitter_ms=0, outages=[(0, 10 ** 9)])
        return World(net=net, coverage=cov)

    w = world([(0, "full")])
    w.deliver(limit_ms=60000)  # (not delivered: only to learn when the first open goes out)
    t_open = [t for (t, d, b) in w.emu.transcript if d == ">" and b.startswith(b"AT+CIPOPEN")][0]
    w = world([(0, "full"), (t_open + 1000, "sms")])
    d = w.deliver(limit_ms=120000)
    assert [f for _, f in d.failures] == ["open: the network closed"]
    assert d.sms_sent_at is not None  # the fallback went out
    closed = [t for (t, d_, b) in w.emu.transcript if d_ == "<" and b"NETWORK CLOSED" in b][0]
    assert w.t.stats()["timeouts"] == 0
    nxt = [t for (t, d_, b) in w.emu.transcript if d_ == ">" and t > closed][0]
    assert nxt - closed < 1000  # the engine moved on at once


def test_sms_only_coverage_falls_back_to_sms():
    w = World(coverage=[(0, "sms")])
    d = AlertDriver(w.rig, KEYS, alert(), sms_after_ms=60000)
    assert d.run(300000, until_sms=True)
    w.rig.run_until(lambda: w.ep.verified, w.rig.now + 30000)
    (t, via, fr), = w.ep.verified
    assert via == "sms" and fr.seq == 1 and fr.ftype == F.ALERT
    assert not any(e == ("link", True) for _, e in w.rig.events)
    sms = w.events("sms")
    assert sms and sms[0][2] == "+447700900999" and sms[0][3].startswith("PNC1 ")


def test_sms_that_the_network_refuses_is_reported_then_retried():
    w = World(coverage=[(0, "sms"), (18000, "none"), (40000, "sms")])
    # without registration URCs the engine learns of the loss only by trying
    # (with them, "+CREG: 2" at 18 s and nothing is tried until 40 s)
    w.t.engine.d.steps = [s for s in w.t.engine.d.steps if "registration urc" not in s[0]]
    w.rig.run_until(w.t.sms_ready, 30000)
    d = AlertDriver(w.rig, KEYS, alert(), sms_after_ms=0)
    assert d.run(300000, until_sms=True)
    assert ("sms: +CMS ERROR:331") in [r for _, r in d.failures]
    assert d.sms_sent_at > 40000 and len(w.events("sms")) == 1
    assert w.rig.run_until(lambda: w.ep.verified, w.rig.now + 30000)
    assert w.ep.verified[0][1] == "sms" and w.ep.verified[0][2] == d.frame


def test_socket_open_failures():
    w = World(open_fail=2)
    d = w.deliver()
    w.assert_delivered(d)
    assert len(w.events("open_failed")) == 2
    assert [r for _, r in d.failures] == ["open: error 10", "open: error 10"]


def test_remote_close_between_deliveries():
    w = World(remote_close_at=[30000])
    w.assert_delivered(w.deliver(alert(1)))
    w.rig.run_until(lambda: False, 35000)
    assert w.events("remote_close") and not w.t.engine.sock
    w.assert_delivered(w.deliver(alert(2)))
    assert len(w.events("tcp_open")) == 2


def test_server_that_acks_then_closes():
    w = World()
    w.ep.close_after_reply = True
    w.assert_delivered(w.deliver(alert(1)))
    w.assert_delivered(w.deliver(alert(2)))
    assert len(w.events("tcp_open")) == 2 and len(w.events("tcp_closed")) == 2


def test_silent_close_reports_minus_one_and_reopens():
    w = World(silent_close_at=[30000])
    w.assert_delivered(w.deliver(alert(1)))
    w.rig.run_until(lambda: False, 35000)
    d = w.deliver(alert(2))
    w.assert_delivered(d)
    assert any(r.startswith("send: -1") for _, r in d.failures)
    assert len(w.events("tcp_open")) == 2


def test_send_that_reports_fewer_bytes():
    w = World(short_send=1)
    d = w.deliver()
    w.assert_delivered(d)
    assert [r for _, r in d.failures] == ["send: %d of %d bytes" % ((len(d.raw) + 2) // 2, len(d.raw) + 2)]
    assert len(w.events("tcp_open")) == 2
    assert w.ep.rejected == []  # the half frame never decodes as anything


def test_garbage_on_the_uart():
    w = World(garbage_p=0.15, seed=11)
    w.assert_delivered(w.deliver())
    s = w.t.stats()
    assert s["garbage_lines"] + s["unknown_urcs"] > 0


def test_truncated_lines_on_the_uart():
    w = World(truncate_p=0.1, seed=5)
    w.assert_delivered(w.deliver())
    assert w.t.stats()["unknown_urcs"] > 0  # the cut lines were seen, counted and dropped


def test_modem_that_stops_answering_until_power_cycled():
    w = World(hang_after_cmds=12)
    d = w.deliver()
    w.assert_delivered(d)
    (t_hang, _), = w.events("hang")
    # no supply switch: a PWRKEY hold >= 2.5 s switches it off (Hardware
    # Design Table 9), seen off on STATUS, then a press brings it back
    t_off, = [e[0] for e in w.events("shutdown") if e[0] > t_hang]
    holds = [(a, b) for a, b in w.rig.pwrkey_presses() if a < t_off <= b + 1]
    assert holds and holds[0][1] - holds[0][0] >= 2500
    t_down, = [e[0] for e in w.events("off") if e[0] > t_off]
    assert t_down - t_off == 26000  # STATUS low 26 s later (Table 9 Toff(status))
    assert [e for e in w.events("boot") if e[0] >= t_down]
    assert w.t.stats()["power_cycles"] == 1


def test_modem_that_restarts_by_itself_is_reinitialised_without_a_power_cycle():
    w = World(reset_at=[17460])  # between the socket opening and the ACK
    d = w.deliver()
    w.assert_delivered(d)
    assert w.events("self_reset") and len(w.events("boot")) == 2
    assert w.t.stats()["power_cycles"] == 0 and not w.events("off")[1:]


def test_restart_without_rdy_is_noticed_by_the_echo_coming_back():
    w = World(quiet_reset_at=[25000])
    w.assert_delivered(w.deliver(alert(1)))
    w.rig.run_until(lambda: False, 40000)
    d = w.deliver(alert(2))
    w.assert_delivered(d)
    assert w.t.stats()["power_cycles"] == 0 and w.t.stats()["boots"] == 2
    assert w.sent_lines().count(b"ATE0\r") == 2


def test_modem_that_babbles_noise_is_power_cycled():
    w = World(babble_at_ms=15000)
    d = w.deliver()
    w.assert_delivered(d)
    assert w.events("babble") and w.t.stats()["power_cycles"] == 1
    assert w.t.stats()["unknown_urcs"] > 0


def test_hung_modem_cycled_by_pwrkey_without_a_power_pin():
    w = World(hang_after_cmds=12, cfg={"has_power_pin": False})
    w.assert_delivered(w.deliver())
    assert w.events("off") and not w.events("power")


def test_network_loss_and_jitter():
    net = Network(seed=9, up_ms=120, down_ms=90, jitter_ms=300, loss=0.3)
    w = World(net=net)
    w.assert_delivered(w.deliver())
    assert net.retransmits > 0


def test_network_outage_on_a_schedule():
    net = Network(seed=2, outages=[(15000, 70000)])
    w = World(net=net)
    took = w.assert_delivered(w.deliver())
    assert took > 70000 - 1000


def test_covert_voice_call_recorded():
    w = World()
    w.rig.run_until(w.t.sms_ready, 60000)
    assert w.t.start_call("+447700900111", w.rig.now)
    w.rig.run_until(lambda: b"AT+VMUTE=1\r" in w.sent_lines(), w.rig.now + 20000)
    assert w.events("call")[0][2] == "+447700900111"
    lines = w.sent_lines()
    assert lines.index(b"AT+CLVL=0\r") < lines.index(b"ATD+447700900111;\r")
    w.t.hang_up(w.rig.now)
    assert w.rig.run_until(lambda: ("call", "ended") in [e for _, e in w.rig.events], w.rig.now + 10000)
    assert w.events("hangup")


def test_sleep_then_wake_for_an_alert():
    w = World()
    w.rig.run_until(w.t.data_ready, 60000)
    w.rig.run_until(lambda: not w.t.busy() and w.t.engine._job is None, w.rig.now + 10000)
    w.t.sleep(w.rig.now)
    w.rig.run_until(lambda: w.emu.asleep(), w.rig.now + 5000)
    assert w.emu.asleep()
    w.assert_delivered(w.deliver())
    assert not w.emu.asleep()



def test_the_ack_is_read_before_status_polls_and_gnss_set_up_that_fell_due():
    """After a send, the CIPRXGET read of the reply goes first: a status
    poll or the GNSS start that fell due meanwhile waits (four commands on
    the UART would hold the ACK back by ~100 ms)."""
    w = World(net=Network(seed=1, jitter_ms=0), start_on=True)
    w.rig.run_until(w.t.data_ready, 60000)
    w.assert_delivered(w.deliver(alert(1)))
    w.rig.run_until(lambda: not w.t.busy() and w.t.engine._job is None, w.rig.now + 10000)
    n0 = len(w.emu.transcript)
    e = w.t.engine
    d = AlertDriver(w.rig, KEYS, alert(2))
    w.rig.run_until(lambda: any(b"CIPSEND: 0" in b for (_, _, b) in w.emu.transcript[n0:]), w.rig.now + 5000)
    e._status_at = w.rig.now + 1  # a status poll falls due
    w.t.gnss(True)  # and the modem's GNSS is wanted
    d.run(60000)
    w.assert_delivered(d)
    sent = [b for (_, dr, b) in w.emu.transcript[n0:] if dr == ">"]
    i_send = next(i for i, b in enumerate(sent) if b.startswith(b"AT+CIPSEND"))
    i_read = next(i for i, b in enumerate(sent) if i > i_send and b.startswith(b"AT+CIPRXGET=3"))
    assert not any(b.startswith((b"AT+CSQ", b"AT+CREG", b"AT+CGPS", b"AT+CVAUX")) for b in sent[i_send:i_read])
    w.rig.run_until(lambda: e.gnss_on, w.rig.now + 10000)
    later = [b for (_, dr, b) in w.emu.transcript[n0:] if dr == ">"][i_read + 1:]
    assert any(b.startswith(b"AT+CGPS=1") for b in later) and any(b.startswith(b"AT+CREG") for b in later)


def _receiver(server, seen):
    conn, _ = server.accept()
    with conn:
        conn.settimeout(10)
        d = stream.Deframer()
        while True:
            data = conn.recv(512)
            if not data:
                return
            for raw in d.feed(data):
                fr = F.decode(KEYS, raw, F.UPLINK)
                seen.append(fr)
                ack = F.Frame(F.ACK, fr.device_id, 1, fr.time, F.Ack(fr.seq))
                conn.sendall(stream.pack(F.encode(KEYS, ack)))


def test_real_socket_backend_in_real_time():
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    seen = []
    th = threading.Thread(target=_receiver, args=(server, seen), daemon=True)
    th.start()
    tcp = SocketTcp(redirect={("203.0.113.5", 5000): ("127.0.0.1", port)})
    emu = Sim7600(None, Network(seed=1), tcp=tcp, start_on=True)
    rig = Rig(emu, CFG)
    d = AlertDriver(rig, KEYS, alert())
    t0 = time.monotonic()
    while d.acked_at is None and time.monotonic() - t0 < 10:
        rig.clock.now = int((time.monotonic() - t0) * 1000)
        d.tick()
        rig.transport.poll(rig.clock.now)
        for ev in rig.transport.events():
            d._event(rig.clock.now, ev)
        time.sleep(0.002)
    server.close()
    assert d.acked_at is not None
    assert seen and seen[0] == d.frame


def test_a_long_gap_in_data_coverage_is_polled_ever_more_slowly_and_its_end_still_seen():
    """Without registration URCs (a modem that refuses AT+CxREG=1),
    registration is asked every second for one 120 s round (a network found
    after a boot or a move is seen at once), then every 2, 4, 8, 10 s: not
    three commands a second for a whole gap. Data that returns is found
    within one slow poll."""
    w = World(coverage=[(0, "sms"), (600000, "full")])
    w.t.engine.d.steps = [s for s in w.t.engine.d.steps if "registration urc" not in s[0]]
    w.rig.run_until(lambda: False, 600000)
    assert w.t.engine.reg_urcs == 0
    creg = [t for (t, dr, b) in w.emu.transcript if dr == ">" and b.startswith(b"AT+CGREG?")]
    first = [t for t in creg if t < creg[0] + 120000]
    assert len(first) >= 100  # fast at the start
    late = [b - a for a, b in zip(creg, creg[1:]) if a > creg[0] + 150000]
    assert late and min(late) >= 5000 and sorted(late)[len(late) // 2] >= 10000  # slow once the gap is long
    assert len(creg) < 200  # (it was about 600 at one a second)
    w.rig.run_until(w.t.data_ready, 700000)
    assert w.t.data_ready() and w.rig.now - 600000 < 20000  # the data path found within a slow poll
    w.assert_delivered(w.deliver(limit_ms=800000))


def test_with_registration_urcs_a_gap_is_polled_every_30_s_and_its_end_seen_as_it_comes():
    """AT+CREG=1, AT+CGREG=1, AT+CEREG=1 at bring-up (manual 4.2.1, 8.2.1,
    4.2.16): the modem says when registration changes, so a gap is only
    polled as a backstop and the data path opens when the network comes."""
    w = World(coverage=[(0, "sms"), (600000, "full")])
    w.rig.run_until(lambda: False, 600000)
    assert w.t.engine.reg_urcs == 3
    sent = [b for (_, dr, b) in w.emu.transcript if dr == ">"]
    assert [b for b in sent if b[:10] in (b"AT+CREG=1\r", b"AT+CGREG=1", b"AT+CEREG=1")] == [
        b"AT+CREG=1\r", b"AT+CGREG=1\r", b"AT+CEREG=1\r"]
    creg = [t for (t, dr, b) in w.emu.transcript if dr == ">" and b.startswith(b"AT+CGREG?")]
    assert 10 <= len(creg) <= 25  # one round in 30 s
    w.rig.run_until(w.t.data_ready, 700000)
    urcs = [(t, b) for (t, dr, b) in w.emu.transcript if dr == "<" and b"+CEREG: 1" in b and t >= 600000]
    assert urcs and w.rig.now - urcs[0][0] < 2000  # NETOPEN right after the URC, not a poll later
    w.assert_delivered(w.deliver(limit_ms=800000))


def test_a_reply_whose_urc_is_lost_is_polled_for_and_once_read_the_polls_stop():
    """After a send the engine polls for the reply (3, 9, 21 s) in case its
    +CIPRXGET: 1 was lost; once a reply is read they stop: each was a wake
    of the modem and the ESP32 for nothing."""
    w = World(net=Network(seed=1, jitter_ms=0), start_on=True)
    w.rig.run_until(w.t.data_ready, 60000)
    w.assert_delivered(w.deliver(alert(1)))
    t_ack = w.rig.now
    w.rig.run_until(lambda: False, t_ack + 30000)
    reads = [t for (t, dr, b) in w.emu.transcript if dr == ">" and b.startswith(b"AT+CIPRXGET=") and t > t_ack]
    assert reads == []
    # the URC of the next reply is lost: a poll still finds the ACK
    e = w.t.engine
    real = e._urc

    def lose_data_urc(line):
        if not line.replace(" ", "").startswith("+CIPRXGET:1"):
            real(line)

    e.ch._urc = lose_data_urc
    n0 = len(w.emu.transcript)
    took = w.assert_delivered(w.deliver(alert(2), limit_ms=w.rig.now + 60000))
    assert 3000 <= took < 8000, took
    assert any(b.startswith(b"AT+CIPRXGET=") for (_, dr, b) in w.emu.transcript[n0:] if dr == ">")


def test_with_registration_urcs_no_sms_is_tried_while_the_network_is_gone():
    w = World(coverage=[(0, "sms"), (18000, "none"), (40000, "sms")])
    w.rig.run_until(w.t.sms_ready, 30000)
    d = AlertDriver(w.rig, KEYS, alert(), sms_after_ms=0)
    assert d.run(300000, until_sms=True)
    assert d.failures == [] and d.sms_sent_at > 40000 and len(w.events("sms")) == 1
    assert not [b for (t, dr, b) in w.emu.transcript if dr == ">" and b.startswith(b"AT+CMGS") and 18000 < t < 40000]
