"""Boards as data: one module per supported board, each a table of its
pins (what each does on that board, its active level, whether the firmware
may ever drive it high, and the document each fact comes from), read by
the board driver on the device (firmware/board_esp32.py) and by the
simulator (host_sim/esp32.py), so both believe the same board.

A board module has: NAME; PINS {name: (gpio, kind, active, drive_high,
source)} where kind is "out", "in", "uart", "adc" and active is the level
that means "on/pressed/asserted"; LIGHTS, the lights on the board, each
(what drives it, source), hard-wired ones included; FACTS, timings and
limits other parts read (each with its source). boot-only: firmware/main.py
reads it, builds the board and drops the module.

Must stay in sync with: firmware/board_esp32.py, host_sim/esp32.py,
docs/hardware.md.
"""

KINDS = ("out", "in", "uart", "adc")


def load(name):
    """The board module for a config's "board" name; ValueError if none."""
    if name == "t-sim7600e":
        from firmware.boards import t_sim7600e as m
    elif name == "t-sim7600e-ext-gnss":
        from firmware.boards import t_sim7600e_ext_gnss as m
    else:
        raise ValueError("board: unknown")
    return m


def gpio_map(board, overrides=None):
    """{pin name: gpio} of a board table with a config's "pins" overrides
    (-1: not fitted)."""
    out = {}
    for k, v in board.PINS.items():
        out[k] = v[0]
    if overrides:
        for k, v in overrides.items():
            if k in out:
                out[k] = v
    return out
