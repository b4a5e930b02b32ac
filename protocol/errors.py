"""The two error roots of the code that runs on the device (protocol/ and
firmware/ raise nothing else of their own):

ProtocolError (remote): bytes from the wire were rejected. Each subclass
names one reason. The message says why, never what the frame contained:
nothing from a rejected frame leaks out through an exception.

LocalError (local): our own code misused a part: it asked to build a frame
that the spec does not allow (EncodeError: a field out of range, a body too
big) or drove a state machine through a transition its table does not have
(firmware/alert.py, firmware/button.py). It is a bug on our side, never
caused by bytes from outside. A ValueError, as callers that check
arguments expect.
"""


class ProtocolError(Exception):
    reason = "rejected"


class BadLength(ProtocolError):
    reason = "bad length"


class UnknownVersion(ProtocolError):
    reason = "unknown version"


class UnknownType(ProtocolError):
    reason = "unknown type"


class BadTag(ProtocolError):
    reason = "bad tag"


class BadBody(ProtocolError):
    reason = "bad body"


class BadTLV(ProtocolError):
    reason = "bad tlv"


class BadSms(ProtocolError):
    reason = "bad sms"


class LocalError(ValueError):
    pass


class EncodeError(LocalError):
    pass


ERRORS = {
    "BadLength": BadLength,
    "UnknownVersion": UnknownVersion,
    "UnknownType": UnknownType,
    "BadTag": BadTag,
    "BadBody": BadBody,
    "BadTLV": BadTLV,
    "BadSms": BadSms,
}
