"""Error roots of the receiver, as in the rest of the project.

ReceiverError (local): the receiver cannot do its job as configured (no
master key, a wrong master key, a duplicate device id, a store it cannot
open). The message is one clear line for the operator and never contains
key material. Its kinds, which `panic` turns into its exit codes
(docs/tools.md):
  - Unavailable: something the receiver needs cannot be opened or used:
    the store's files (missing, unreadable, open to other users, not a
    store), the master key (absent, unreadable, not this store's), a
    listening address
  - DuplicateDevice, UnknownDevice: the registry's state refuses the request
  - anything else (a malformed key, a person reference that breaks the
    rule, a value out of range): what was given is wrong

Rejected wire input is not an exception here: the core counts and logs it
and returns an Outcome with status "rejected" (see core.py). Protocol
errors from protocol/errors.py never escape the core.
"""


class ReceiverError(Exception):
    """Local misuse or misconfiguration: one line, no secrets."""


class Unavailable(ReceiverError):
    """Something the receiver needs cannot be opened or used."""


class MasterKeyError(ReceiverError):
    pass


class MasterKeyUnavailable(MasterKeyError, Unavailable):
    """No master key, an unreadable or exposed key file, or not this store's key."""


class DuplicateDevice(ReceiverError):
    pass


class UnknownDevice(ReceiverError):
    pass
