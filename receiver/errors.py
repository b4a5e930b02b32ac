"""Error roots of the receiver, as in the rest of the project.

ReceiverError (local): the receiver cannot do its job as configured (no
master key, a wrong master key, a duplicate device id, a store it cannot
open). The message is one clear line for the operator and never contains
key material.

Rejected wire input is not an exception here: the core counts and logs it
and returns an Outcome with status "rejected" (see core.py). Protocol
errors from protocol/errors.py never escape the core.
"""


class ReceiverError(Exception):
    """Local misuse or misconfiguration: one line, no secrets."""


class MasterKeyError(ReceiverError):
    pass


class DuplicateDevice(ReceiverError):
    pass


class UnknownDevice(ReceiverError):
    pass
