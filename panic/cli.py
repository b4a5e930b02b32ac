"""`panic`: the one command for people who use this project.

This dispatcher sits below every part it dispatches to: it names their
modules as strings and imports them when the parser is built, so
receiver/ and host_sim/ never import tools/ to be a subcommand
(docs/architecture.md, "Layers"). Each subcommand lives in its own module, which provides
`register(subparsers)` and sets `func` on its parser(s); `func(args)`
returns the exit code. Errors a user can cause are reported as one clear
line on stderr, never a traceback, with the exit code of the one
convention in panic/errors.py (0 done, 1 refused or failed, 2 usage,
3 environment unavailable; docs/tools.md).
"""

import argparse
import importlib
import sys

# (subcommand, module). Each module's register() adds its parser.
COMMANDS = [
    ("frame", "tools.framecmd"),
    ("sim", "host_sim.cli"),
    ("receiver", "receiver.cli"),
    ("flash", "tools.flash"),
    ("provision", "tools.provision"),
    ("field", "tools.field"),
    ("modem", "tools.modemcmd"),
]


from panic.errors import EXIT_INTERRUPTED, PanicError, Refused, Unavailable, UsageError  # noqa: E402,F401  (re-exported for subcommands)


def build_parser():
    ap = argparse.ArgumentParser(prog="panic", description="wearable-panic: covert panic alarm tools")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for _name, modname in COMMANDS:
        importlib.import_module(modname).register(sub)
    return ap


def main(argv=None):
    ap = build_parser()
    args = ap.parse_args(argv)
    try:
        return args.func(args) or 0
    except PanicError as e:
        print("panic: %s" % e, file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
