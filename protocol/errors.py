"""Two error roots, as in the rest of the project.

ProtocolError (remote): bytes from the wire were rejected. Each subclass
names one reason. The message says why, never what the frame contained:
nothing from a rejected frame leaks out through an exception.

EncodeError (local): our own code asked to build a frame that the spec does
not allow (a field out of range, a body too big). It is a bug on our side.
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


class EncodeError(ValueError):
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
