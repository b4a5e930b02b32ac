"""`python -m tools` and older scripts: the `panic` command itself is
panic/cli.py (below tools/, receiver/ and host_sim/)."""

from panic.cli import COMMANDS, build_parser, main  # noqa: F401  (re-exported)
from panic.errors import EXIT_INTERRUPTED, PanicError, Refused, Unavailable, UsageError  # noqa: F401

if __name__ == "__main__":
    import sys

    sys.exit(main())
