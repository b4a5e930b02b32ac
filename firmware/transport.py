"""The transport interface between the outbox / alert controller and
whatever carries frames off the device (the modem engine on a board, a fake
in tests).

Owns: the contract only. A transport is polled, never blocks, and reports
what happened as events; the outbox decides what to retry. Frames are whole
protocol v1 frames (no length prefix: the transport adds and strips the TCP
framing of protocol/stream.py). A transport never interprets frames: it
hands every downlink frame to the caller, which authenticates it.

Methods (all take `now`, a monotonic ms count, where timing matters):

    poll(now) -> int           advance; return ms until it next wants a poll
    data_ready() -> bool       TCP path believed usable (or worth trying)
    sms_ready() -> bool        an SMS can be attempted now
    busy() -> bool             a request is in progress; new ones are refused
    send_frame(raw, now) -> bool   start delivering one frame by TCP
    send_sms(number, text, now) -> bool   start sending one SMS
    start_call(number, now) -> bool       covert voice call, speaker muted
    hang_up(now) -> None
    set_receiver(host, port) -> None   where the next connection goes (optional:
                               a device with one receiver never calls it); a
                               connection open to another one is closed first
    sleep(now) / wake(now)     nothing for the modem until wake(): it may
                               sleep (or, in the saver profile, switch off)
    quiet() -> bool            no command outstanding or queued: the board
                               may stop the UART clock (light sleep)
    ri_wake(now)               the board woke from light sleep on the
                               modem's RI: a URC was lost (optional)
    gnss(on) / nmea() -> bytes or None   the modem's own GNSS, and the NMEA
                               it reported since the last call (optional:
                               boards whose GNSS is the modem's)
    cell() -> (mcc, mnc, tac, cell_id, rsrp_dbm) or None   serving cell
    cell_read_at() -> ms or None   when cell() was read from the modem
                               (optional: without it a cell counts as current)
    csq() -> int               AT+CSQ rssi 0..31, 99 unknown
    events() -> list           drains events since the last call:
        ("frame", raw)               a downlink frame arrived
        ("sent", n)                  a send_frame() was accepted by the network
        ("send_failed", reason)      it was not (reason: short str, no secrets;
                                     one starting with "open" means the
                                     receiver could not be reached: the
                                     failover rule, firmware/failover.py)
        ("sms_sent", ref)            an SMS left (ref: the modem's +CMGS number)
        ("sms_failed", reason)
        ("call", state)              "dialling", "active", "ended"
        ("link", up)                 data path came up (True) or went (False)

The event names are the EV_* constants below: every transport (the modem
engine, the tests' FakeTransport) and every caller (the outbox, the App)
uses them from here, never a literal of its own. The host side (the
simulator's runner, tests) compares the same strings.
"""

# Event names, shared by every transport and its callers.
EV_FRAME = "frame"
EV_SENT = "sent"
EV_SEND_FAILED = "send_failed"
EV_SMS_SENT = "sms_sent"
EV_SMS_FAILED = "sms_failed"
EV_CALL = "call"
EV_LINK = "link"
