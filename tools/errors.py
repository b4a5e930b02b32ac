"""Errors of the host tools."""


class UsageError(Exception):
    """Something the user gave us is wrong: printed as one line, exit code 2."""
