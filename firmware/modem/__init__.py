"""The cellular modem: AT engine (engine.py), SIM7600 dialect (sim7600.py)
and the transport contract on top (transport.py).

make_transport(board, cfg) is the one factory firmware/main.py calls: the
board's modem UART stream and modem pins under a ModemTransport. Imports
are inside the function so importing the package costs no heap.
"""


def make_transport(board, cfg):
    from firmware.modem.transport import ModemTransport

    return ModemTransport(board.modem, board, cfg)
