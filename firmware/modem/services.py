"""Rarely used engine jobs, loaded on first use to keep the engine's
resident size down: SIM PIN entry, covert voice call, hang-up, UART sleep
(power profile "saver": sleep switches the modem off). Each is a generator
run as an engine job (see engine.py). None sets an engine field: each
returns what it found (the SIM's state, or O_* outcome bits of
firmware/modem/at.py) and the engine changes its own state.

Must stay in sync with: firmware/modem/engine.py (job protocol), docs/modem.md.
"""

from firmware.modem.at import O_ASLEEP, O_CALL_ENDED, O_DIALLING, O_OFF, OKERR, R_END, R_INFOS, R_LINE, Fail


def enter_pin(e):
    """The SIM asks for its PIN: enter the configured one, once. Returns
    the SIM's state: "ready", "pin_required" (no PIN configured) or
    "pin_rejected" (never retried: three wrong PINs lock the SIM)."""
    if not e.sim_pin:
        return "pin_required"
    r = yield e.cmd('AT+CPIN="%s"' % e.sim_pin, OKERR, (), 5000)
    if r[R_END] != 0:
        return "pin_rejected"
    for _ in range(10):
        yield e.wait(1000)
        r = yield e.cmd("AT+CPIN?", OKERR, ("+CPIN:",), 5000)
        if r[R_END] == 0 and r[R_INFOS] and r[R_INFOS][0].endswith("READY"):
            return "ready"
    return "pin_rejected"


def j_call(e, number):
    # Covert: speaker volume to its lowest before dialling (AT+CLVL, stored
    # in the module, manual 5.2.22); AT+CMUT and AT+VMUTE can only be written
    # during a connected call (manual: "If there is not a connected call,
    # write command can't be used"), so the speaker is muted when VOICE
    # CALL: BEGIN arrives (j_mute) and the microphone is never muted (CMUT
    # resets to 0, unmuted, after every call): the centre hears the room.
    yield e.cmd("AT+CLVL=0")
    r = yield e.cmd("ATD%s;" % number, OKERR + ("NO CARRIER", "BUSY", "NO ANSWER"), (), e.timings["call_timeout_ms"])
    if r[R_END] != 0:
        raise Fail("dial: %s" % (r[R_LINE] or "timeout"))
    return O_DIALLING


def j_mute(e):
    yield e.cmd("AT+VMUTE=1")


def j_hangup(e):
    # AT+CHUP ends a voice call whatever AT+CVHU says (ATH is ignored with
    # CVHU=1, manual 5.2.1-5.2.2); its maximum response time is 120 s
    yield e.cmd("AT+CHUP", OKERR, (), e.timings["hangup_timeout_ms"])
    return O_CALL_ENDED


def j_sleep(e):
    """The caller has nothing for the modem. Saver profile: switch it off
    (AT+CPOF, STATUS seen low). Ready profile: UART sleep (AT+CSCLK=1, DTR
    high: Sleep Mode application note 3.1); it stays registered and keeps
    its data path, and wakes the host by RI for every URC (AT+CFGRI=1, set
    at boot by the dialect). Waking is the engine's own job (_j_wake)."""
    if e.saver:
        yield from e.power_off(True)
        return O_OFF
    r = yield e.cmd("AT+CSCLK=1")
    if r[R_END] == 0:
        yield e.pin("dtr", 1)
        return O_ASLEEP
    return 0
