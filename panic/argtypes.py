"""Number options for argparse that say what they must be: a value out of
range is an argparse error (one line naming the option, exit 2), never a
setting the command would run with.

    p.add_argument("--latency", type=number(int, 0, unit="milliseconds"))
"""

import argparse


def number(kind: type = int, low=None, high=None, unit="", off=None):
    """An argparse type: `kind` (int or float) from `low` to `high` (either
    may be None); `off`, if given, is also accepted (e.g. 0 for "never")."""
    what = "whole number" if kind is int else "number"

    def parse(text):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError("not a %s%s: %r" % (what, " of " + unit if unit else "", text))
        if off is not None and v == off:
            return v
        if (low is not None and v < low) or (high is not None and v > high) or v != v:
            if high is None:
                rule = "at least %s" % low
            elif low is None:
                rule = "at most %s" % high
            else:
                rule = "from %s to %s" % (low, high)
            raise argparse.ArgumentTypeError("must be %s%s, got %s" % (rule, " " + unit if unit else "", text))
        return v

    return parse
