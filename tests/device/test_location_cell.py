"""The serving cell a frame carries is one the modem reported recently
(firmware/app.py App.cell): after a standby the modem's last answer to
AT+CPSI? may be hours old, and the receiver resolves a cell TLV to a
position "now" (docs/protocol.md, "Position semantics"). Its own file: the
App module is too big to load beside the alert controller's test
environment in a 96 KB heap."""

CELL = (234, 15, 0x1A2B, 0x01234567, -95)
def test_a_frame_carries_only_a_recently_read_cell():
    """After a standby the modem's last serving cell may be hours old: a
    frame carries it only if read within the last 90 s (the console still
    shows whatever the modem last said)."""
    from firmware import app

    class T:
        at = 1000

        def cell(self):
            return CELL

        def cell_read_at(self):
            return self.at

    class Me:
        transport = T()

    me = Me()
    fresh = 90000  # firmware/app.py App.cell
    assert app.App.cell(me, 1000 + fresh) == CELL
    assert app.App.cell(me, 1001 + fresh) is None
    assert app.App.cell(me) == CELL
    me.transport.at = None  # never read since the modem started
    assert app.App.cell(me, 5000) is None
