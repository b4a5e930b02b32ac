"""Errors of the host tools, and the one exit-code convention of every
`panic` command (docs/tools.md, "Exit codes"):

  0  done: the command did what was asked; the check passed
  1  the command ran and the answer is no: a check or a self-test failed,
     a frame or an SMS was rejected, a scenario failed, an alert was not
     delivered, or the state of the board or the receiver refused the
     request (already provisioned, already registered, not registered,
     not enough flash)                                       -> Refused
  2  usage: what was typed is wrong on its face (an option missing or
     malformed, a value out of range, JSON or hex that does not parse, a
     person reference that breaks the rule); found before anything outside
     the command line was touched                             -> UsageError
  3  environment: something the command needs could not be reached or
     opened (a serial port, a board that does not answer, a file or a
     folder, the receiver store, the master key, an address already in
     use)                                                    -> Unavailable
  130 interrupted (Ctrl-C)

Why these four: a script (or a field engineer) must tell "the unit failed
its test" (1: fix or replace the unit) from "I typed it wrong" (2: fix the
command) from "the cable, the port or the file is not there" (3: fix the
bench and run it again), without reading the message. argparse already
exits 2 for what it catches, so 2 stays usage.

Each error is one line on stderr, never a traceback, and never holds key
material.
"""

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_INTERRUPTED = 130


class PanicError(Exception):
    """An error a user can cause: printed as one line, exit code below."""

    exit_code = EXIT_REFUSED


class Refused(PanicError):
    """The command ran and the answer is no (exit 1)."""

    exit_code = EXIT_REFUSED


class UsageError(PanicError):
    """Something the user typed is wrong: exit code 2."""

    exit_code = EXIT_USAGE


class Unavailable(PanicError):
    """Something the command needs cannot be reached or opened: exit code 3."""

    exit_code = EXIT_UNAVAILABLE


def exit_code_of(e):
    """The exit code for an exception (1 for one without its own)."""
    return getattr(e, "exit_code", EXIT_REFUSED)
