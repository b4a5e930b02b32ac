"""docs/hardware.md's pin table says what firmware/boards/t_sim7600e.py
holds: a change to one without the other fails here."""

import os

from firmware.boards import t_sim7600e as T

DOC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "hardware.md")


def _doc_pins():
    text = open(DOC).read()
    block = text.split("<!-- pins:", 1)[1].split("<!-- /pins -->", 1)[0]
    rows = [r for r in block.splitlines() if r.startswith("| ") and not r.startswith("| name") and "---" not in r]
    out = {}
    for r in rows:
        f = [c.strip() for c in r.strip("|").split("|")]
        out[f[0]] = (int(f[1]), f[2], 1 if f[3] == "high" else 0, f[4] == "yes")
    return out


def test_the_pin_table_in_the_docs_is_the_boards_table():
    doc = _doc_pins()
    code = {k: v[:4] for k, v in T.PINS.items()}
    assert doc == code


def test_every_light_the_firmware_could_drive_is_never_driven_high():
    for name in T.LIGHTS:
        if name in T.PINS:
            assert T.PINS[name][3] is False, name
