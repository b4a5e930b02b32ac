"""The model of MicroPython's ESP32 port (host_sim/esp32.py) that the
virtual-time runner puts under the real board driver: what the silicon does
that the firmware must live with. Each test drives the modules the driver
imports (machine, esp32, time, select) the way firmware/board_esp32.py
does, against the SIM7600 emulator on the chip's UART."""

import pytest

from firmware.boards import t_sim7600e as T
from firmware.fs import PowerCut
from host_sim import runner
from host_sim import scenario as SC
from host_sim.esp32 import WatchdogReset
from host_sim.runner import Runner

BASE = """
[scenario]
name = "chip"
duration = "30m"

[route]
points = [ { at = "0s", lat = 54.3, lon = -2.7, sky = "indoor" } ]
"""


def rig(extra="", **faults):
    """A Runner used only for its world, emulator and chip (the firmware is
    not started): the chip's modules, and a modem already up."""
    sc = SC.loads(BASE + extra, "chip.toml")
    r = Runner(sc)
    r.world.start({"button": r._h_button, "end": r._h_end})
    for k, v in dict(start_on=True, echo=False, **faults).items():
        r.emu.f[k] = v
    r.emu.__init__(r.receiver, r.net, seed=1, **dict(r.emu.f, start_on=True, echo=False))
    r.emu.record = True
    return r, r.chip.modules


def uart(m):
    g = T.PINS
    return m["machine"].UART(1, baudrate=115200, tx=g["modem_tx"][0], rx=g["modem_rx"][0], rxbuf=1024, timeout=0)


def test_a_reply_that_arrives_in_light_sleep_is_lost_and_one_in_idle_is_not():
    # esp-idf#8098: the UART's clock is gated in light sleep; bytes are lost
    r, m = rig()
    u = uart(m)
    u.write(b"AT\r")  # the emulator answers "OK" ~20 ms later
    m["machine"].lightsleep(200)
    assert u.any() == 0 and u.read() is None
    assert r.chip.uart_lost >= len(b"\r\nOK\r\n")
    # the same command with the CPU awake (idle in select.poll): the answer is there
    p = m["select"].poll()
    p.register(u, 1)
    u.write(b"AT\r")
    assert p.poll(200)
    assert u.read() == b"\r\nOK\r\n"


def test_modem_output_does_not_wake_light_sleep_only_ri_does_once_cfgri_is_set():
    r, m = rig()
    mc, e = m["machine"], m["esp32"]
    ri = mc.Pin(T.PINS["modem_ri"][0], mc.Pin.IN, mc.Pin.PULL_UP)
    e.wake_on_ext1((ri,), e.WAKEUP_ALL_LOW)
    u = uart(m)
    # a URC without AT+CFGRI=1: RI does not move (Sleep Mode application note 5)
    t0 = r.clock.now
    r.emu._urc(t0 + 100, "+CIPRXGET: 1,0")
    mc.lightsleep(5000)
    assert r.clock.now - t0 == 5000 and mc.wake_reason() == mc.TIMER_WAKE
    assert u.read() is None  # and the URC was lost
    # with AT+CFGRI=1 the next URC pulses RI low for 60 ms: ext1 wakes the chip
    u.write(b"AT+CFGRI=1\r")
    p = m["select"].poll()
    p.register(u, 1)
    assert p.poll(500) and u.read() == b"\r\nOK\r\n"
    t1 = r.clock.now
    r.emu._urc(t1 + 300, "+IPCLOSE: 0,1")
    mc.lightsleep(5000)
    assert mc.wake_reason() == mc.EXT1_WAKE and r.clock.now == t1 + 300
    assert u.read() is None  # woken, but the URC itself came while the UART was off


def test_a_wake_pad_reads_zero_after_light_sleep_until_a_pin_is_built_on_it():
    # esp-idf#245, micropython#3835: the pad stays on the RTC mux
    r, m = rig()
    mc, e = m["machine"], m["esp32"]
    btn = mc.Pin(T.PINS["button"][0], mc.Pin.IN)
    assert btn.value() == 1  # released (active low, external pull-up)
    e.wake_on_ext0(btn, e.WAKEUP_ALL_LOW)
    mc.lightsleep(1000)
    assert btn.value() == 0  # stuck: the firmware would see a held button
    btn = mc.Pin(T.PINS["button"][0], mc.Pin.IN)
    assert btn.value() == 1


def test_a_press_during_a_blocking_scan_queues_its_handlers_and_a_full_queue_drops_them():
    # soft interrupts only (machine_pin.c); 8 queued at most (MICROPY_SCHEDULER_DEPTH)
    r, m = rig("\n[[action]]\nat = \"100ms\"\nkind = \"raw\"\npresses = [[0, 50], [100, 50], [200, 50], [300, 50], [400, 50]]\n")
    mc, n = m["machine"], m["network"]
    btn = mc.Pin(T.PINS["button"][0], mc.Pin.IN)
    seen = []
    btn.irq(handler=lambda p: seen.append(r.clock.now), trigger=mc.Pin.IRQ_FALLING | mc.Pin.IRQ_RISING)
    pcnt = m["esp32"].PCNT
    pc = pcnt(0, pin=btn, falling=pcnt.INCREMENT, rising=pcnt.IGNORE, filter=1023)
    w = n.WLAN(n.STA_IF)
    w.active(True)
    w.scan()  # blocks 2 s: ten edges happen meanwhile
    assert seen == []
    m["time"].sleep_ms(0)  # the next point where scheduled handlers run
    assert len(seen) == 8 and r.chip.irq_dropped == 2
    assert all(t == seen[0] for t in seen)  # they all run after the scan, at one instant
    # the pulse counter counted every press-down in hardware meanwhile
    assert pc.value(0) == 5 and pc.value() == 0


def test_the_watchdog_resets_a_chip_that_is_not_fed():
    r, m = rig()
    m["machine"].WDT(timeout=60000)
    with pytest.raises(WatchdogReset):
        m["time"].sleep_ms(61000)


def test_a_power_cut_reaches_the_firmware_wherever_it_waits():
    r, m = rig("\n[[power_cut]]\nat = \"10s\"\nduration = \"5s\"\n")
    r.world._h["power"] = r._h_power
    with pytest.raises(PowerCut):
        m["machine"].lightsleep(60000)
    assert r.clock.now == 10000


def test_input_only_pins_refuse_output_and_pulls():
    r, m = rig()
    mc = m["machine"]
    with pytest.raises(ValueError):
        mc.Pin(34, mc.Pin.OUT)
    with pytest.raises(ValueError):
        mc.Pin(39, mc.Pin.IN, mc.Pin.PULL_UP)
    with pytest.raises(ValueError):
        mc.Pin(7, mc.Pin.IN)  # wired to the flash


def _answer_time(m, u, irq):
    """When select.poll returns with the modem's answer to AT, from the write."""
    mc = m["machine"]
    calls = []
    if irq:
        u.irq(handler=lambda x: calls.append(x), trigger=mc.UART.IRQ_RX)
    p = m["select"].poll()
    p.register(u, 1)
    t0 = m["time"].ticks_ms()
    u.write(b"AT\r")
    assert p.poll(500)
    took = m["time"].ticks_diff(m["time"].ticks_ms(), t0)
    assert u.read() == b"\r\nOK\r\n"
    return took, calls


def test_a_uart_rx_interrupt_wakes_poll_when_the_answer_arrives_not_at_the_next_tick():
    # machine_uart.c uart_event_task: with IRQ_RX and a handler, UART_DATA
    # schedules the handler and wakes the main task; without, poll looks
    # once per FreeRTOS tick (10 ms)
    r, m = rig()
    u = uart(m)
    m["time"].sleep_ms(3)  # start between two ticks
    plain, _ = _answer_time(m, u, irq=False)
    with_irq, calls = _answer_time(m, u, irq=True)
    assert plain % 10 == 0 and with_irq < plain
    assert plain - with_irq < 10  # the answer arrived within the tick the plain poll waited out
    assert calls == [u]  # one burst, one scheduled handler run, given the UART


def test_a_uart_interrupt_without_a_character_time_of_timeout_char_is_counted_as_one_per_byte():
    # machine_uart.c: RX timeout = timeout_char / (12000 // baud + 1) symbols;
    # under one (timeout_char left at 0) the RX FIFO threshold is set to 1 and
    # the driver posts UART_DATA, and wakes the main task, for every byte:
    # the model delivers one event per line, so it says so instead
    r, m = rig()
    mc = m["machine"]
    g = T.PINS
    u = uart(m)  # timeout=0 only, as the board driver opened it before
    u.irq(handler=lambda x: None, trigger=mc.UART.IRQ_RX)
    assert r.chip.uart_byte_events == {1}
    u = mc.UART(1, baudrate=115200, tx=g["modem_tx"][0], rx=g["modem_rx"][0], rxbuf=1024, timeout=0,
                timeout_char=12000 // 115200 + 1)
    u.irq(handler=lambda x: None, trigger=mc.UART.IRQ_RX)
    assert r.chip.uart_byte_events == set()


def test_the_board_driver_opens_its_uarts_so_the_modem_wakes_it_once_a_burst():
    for board in ("t-sim7600e", "t-sim7600e-ext-gnss"):
        sc = SC.loads(BASE.replace('duration = "30m"', 'duration = "20s"') + '[device]\nboard = "%s"\n' % board, "b.toml")
        res = runner.run(sc)
        assert res["summary"]["uart_byte_events"] == [], board


def test_a_uart_interrupt_is_soft_and_shares_the_pins_queue_of_eight():
    r, m = rig()
    mc, n = m["machine"], m["network"]
    u = uart(m)
    with pytest.raises(ValueError):
        u.irq(handler=lambda x: None, trigger=mc.UART.IRQ_RX, hard=True)
    with pytest.raises(ValueError):
        u.irq(handler=lambda x: None, trigger=0x8000)
    ran = []
    u.irq(handler=lambda x: ran.append("uart"), trigger=mc.UART.IRQ_RX)
    w = n.WLAN(n.STA_IF)
    w.active(True)
    u.write(b"AT\r" * 10)  # ten answers, one burst each, all during the scan
    w.scan()  # blocks 2 s: nothing drains the queue
    assert ran == [] and len(r.chip.sched) == 8 and r.chip.irq_dropped == 2
    m["time"].sleep_ms(0)
    assert ran == ["uart"] * 8
    assert u.read() == b"\r\nOK\r\n" * 10  # the bytes themselves are all in the driver's buffer
    # with the trigger off (what the board driver does around a blocking scan) nothing is queued
    u.irq(handler=lambda x: ran.append("uart"), trigger=0)
    u.write(b"AT\r" * 3)
    w.scan()
    m["time"].sleep_ms(0)
    assert len(ran) == 8 and r.chip.irq_dropped == 2 and u.read().count(b"\r\nOK\r\n") == 3
