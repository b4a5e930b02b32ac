"""SIM7600 AT engine (sans-I/O) behind the firmware transport contract.

make_transport(board, cfg) is what firmware/loop.py calls: the board's
modem UART stream and control pins, the device config (apn, receiver host
and port, timings). Another dialect (SIM7080G) would be chosen here.
"""


def make_transport(board, cfg):
    from firmware.modem.transport import ModemTransport

    return ModemTransport(board.modem, board, cfg)
