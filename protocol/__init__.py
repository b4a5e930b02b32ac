"""Wire protocol v1 shared by the device (MicroPython) and the host (CPython).

Pure functions and small objects only: no I/O, no clock, no host imports.
See docs/protocol.md for the spec in this project's words.
"""

VERSION = 1
