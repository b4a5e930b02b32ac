"""The modelled floor of a delivery over the SIM7600, part by part: what
the least the emulated hardware allows from "send" to a verified ACK (the
parts and their sources: bench/README.md "bench_wake"). Used by
bench_modem.py (engine alone) and bench_wake.py (whole firmware)."""

from protocol import stream

DTR_WAKE_MS = 20  # SIM7600 UART AppNote V2.00 3.1.4: DTR low, then wait before the first command


def parts(emu, n_up, n_down, one_way_ms, wake=False, sock_open=True, host="203.0.113.5", port=5000):
    """[(name, ms)] for a frame of n_up bytes answered by one of n_down
    bytes (both before the stream's length prefix), with the emulator's own
    UART time (10 bits a byte, rounded up per chunk) and answer time."""
    u = emu._xfer
    lat = emu.f["cmd_latency_ms"]
    n = len(stream.pack(bytes(n_up)))
    m = len(stream.pack(bytes(n_down)))
    out = []
    if wake:
        out.append(("dtr", DTR_WAKE_MS))
        out.append(("at", u(3) + lat + u(6)))  # AT\r, \r\nOK\r\n
    if not sock_open:
        # AT+CIPOPEN: the command, then the TCP handshake's round trip; its
        # OK comes back meanwhile; +CIPOPEN: 0,0 when connected (AT manual 11.2)
        cmd = 'AT+CIPOPEN=0,"TCP","%s",%d\r' % (host, port)
        out.append(("open", u(len(cmd)) + lat + 2 * one_way_ms + u(len("\r\n+CIPOPEN: 0,0\r\n"))))
    out.append(("prompt", u(len("AT+CIPSEND=0,%d\r" % n)) + lat + u(3)))  # \r\n>
    out.append(("payload", u(n) + lat + u(6)))  # the data, then OK (AT manual 11.2 AT+CIPSEND)
    out.append(("network", 2 * one_way_ms))
    out.append(("urc", u(len("\r\n+CIPRXGET: 1,0\r\n"))))  # AT manual 11.2.6, mode 1
    reply = "\r\n+CIPRXGET: 3,0,%d,0\r\n" % m
    out.append(("read", u(len("AT+CIPRXGET=3,0,300\r")) + lat + u(len(reply)) + u(2 + 2 * m + 2) + u(6)))
    return out


def text(ps):
    return " + ".join("%s %d" % p for p in ps)
