"""The button pattern detector's events: the codes ButtonDetector.update()
returns (firmware/button.py), and that any stand-in detector returns too
(the tests' FakeButton, a simulator's own detector).

Owns: the codes only. Apart from button.py so that the App can map them
to the alert controller's events without loading the detector a caller
replaced (firmware/button.py costs about 6 KB of heap even run in place
from ROMFS; the App imports it only to build its own detector).

Must stay in sync with: firmware/button.py (which pattern fires which),
firmware/app.py (the map to the alert controller's events).
"""

try:
    from micropython import const  # pyright: ignore[reportAssignmentType]
except ImportError:  # CPython

    def const(x):
        return x


EV_SOS = const(1)
EV_CANCEL = const(2)
EV_DURESS_CANCEL = const(3)
EV_TEST = const(4)
