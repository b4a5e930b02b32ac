"""The exit-code error root of every `panic` command, as tools/ modules
import it: it lives in panic/errors.py, below tools/, receiver/ and
host_sim/ (docs/architecture.md, "Layers")."""

from panic.errors import (  # noqa: F401  (re-exported)
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    PanicError,
    Refused,
    Unavailable,
    UsageError,
    exit_code_of,
)
