"""Build NMEA test sentences (shared by the NMEA and fix tracker tests)."""


def ck(body):
    """Sentence with its checksum and CRLF: body is the text between $ and *."""
    c = 0
    for b in body.encode():
        c ^= b
    return ("$%s*%02X\r\n" % (body, c)).encode()
