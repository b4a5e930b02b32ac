"""The one rule for person references (issue 15), enforced where every
registration is written (store.SqliteStore.add_device: `panic receiver
device add`, `panic provision`, the simulator and any import) and checked
early by `panic provision` through tools/registry.py.

A person reference ties a device to the person at risk in the records of
the police or the receiving centre. It is shown to operators with every
alert and stored in clear with the frames, so it must be an opaque case
reference, never a name or an address. Police reference styles are valid:
`URN-2026-0042`, `URN 01/1234/26`, `CAD 4821 03/12/26`, `urn:arc:case:A-1001`.

The rule (docs/receiver.md, "Person references", says the same):
  1. 3 to 64 characters: ASCII letters, digits and the separators
     space - / : . _ ; starting and ending with a letter or a digit,
     never two separators together
  2. at least one digit (every reference style numbers its cases)
  3. every word (a run of letters) is all capitals or all small letters:
     "URN", "urn", "case", never "Jane" or "Acacia"
  4. never two words separated by a space alone: "jane doe", "HIGH STREET"
It refuses names and addresses as people write them; it cannot prove that
a string is not one, so staff must still never put one there.
"""

from receiver.errors import ReceiverError

MIN_LEN = 3
MAX_LEN = 64
_SEPARATORS = " -/:._"

EXAMPLES = "URN-2026-0042 or URN 01/1234/26"


class PersonRefError(ReceiverError):
    """A person reference that breaks the rule (the message says which part)."""


def problem(ref):
    """Why `ref` is not a valid person reference, or None."""
    if not isinstance(ref, str) or not ref:
        return "a person reference is needed (a case reference such as %s)" % EXAMPLES
    if not MIN_LEN <= len(ref) <= MAX_LEN:
        return "a person reference must be %d to %d characters long, this one is %d" % (MIN_LEN, MAX_LEN, len(ref))
    for c in ref:
        if not (c.isascii() and (c.isalnum() or c in _SEPARATORS)):
            return "a person reference may hold only letters, digits, spaces and - / : . _, not %r" % c
    if ref[0] in _SEPARATORS or ref[-1] in _SEPARATORS:
        return "a person reference must start and end with a letter or a digit"
    for a, b in zip(ref, ref[1:]):
        if a in _SEPARATORS and b in _SEPARATORS:
            return "a person reference must not have two separators together"
    if not any(c.isdigit() for c in ref):
        return "a person reference must have a number in it, like %s: a name or an address is not a reference" % EXAMPLES
    runs = []  # [kind, text]: "a" a word, "d" digits, "s" one separator
    for c in ref:
        k = "a" if c.isalpha() else "d" if c.isdigit() else "s"
        if runs and runs[-1][0] == k:
            runs[-1][1] += c
        else:
            runs.append([k, c])
    for k, w in runs:
        if k == "a" and not (w.isupper() or w.islower()):
            return "%r looks like part of a name or an address: a person reference is a case reference such as %s" % (
                w, EXAMPLES)
    for a, s, b in zip(runs, runs[1:], runs[2:]):
        if a[0] == "a" and s == ["s", " "] and b[0] == "a":
            return "%r looks like a name or an address: a person reference is a case reference such as %s" % (
                a[1] + " " + b[1], EXAMPLES)
    return None


def check(ref):
    """`ref` if it is a valid person reference; PersonRefError otherwise."""
    why = problem(ref)
    if why is not None:
        raise PersonRefError(why)
    return ref
