"""Which part of the repository may import which: the structure check
`make lint` runs (and tests/test_layers.py holds to the tree).

Layers, lowest first (docs/architecture.md, "Layers"):

  protocol/   the wire format, on the device and the host: itself only
  firmware/   the device: itself and protocol/; `machine` only in the
              board modules and main.py (the brief: only they touch the
              hardware)
  panic/      the command's dispatcher, errors and argument types: the
              standard library only (its dispatcher imports subcommand
              modules by name, at run time)
  receiver/   the receiving centre: protocol/, panic/
  host_sim/   the simulator: protocol/, firmware/, receiver/, panic/
  tools/      what people run: anything above

Only imports written in the code are checked (import and from-import
statements, at any depth in a module); tests/, bench/ and the
repository's scripts may import anything.

    python -m panic.layers [ROOT]    exit 0 when every import keeps to the
                                     layers, 1 with one line per breach
"""

import ast
import os
import sys

OURS = ("protocol", "firmware", "panic", "receiver", "host_sim", "tools")

ALLOWED = {
    "protocol": {"protocol"},
    "firmware": {"firmware", "protocol"},
    "panic": {"panic"},
    "receiver": {"receiver", "protocol", "panic"},
    "host_sim": {"host_sim", "protocol", "firmware", "receiver", "panic"},
    "tools": set(OURS),
}

# modules that may import the ESP32's `machine` (the board driver and the
# entry point); every other device module reaches hardware through them
MACHINE_OK = ("firmware/main.py", "firmware/board_")


def _imports(tree):
    """(line, top-level name) of each absolute import in a module."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            yield node.lineno, node.module.split(".")[0]


def breaches(root):
    """Lines 'path:line: PART imports NAME (...)' for every import that
    breaks the layers, in path order."""
    out = []
    for part in OURS:
        base = os.path.join(root, part)
        for d, dirs, names in os.walk(base):
            dirs[:] = sorted(x for x in dirs if not x.startswith((".", "__pycache__")))
            for n in sorted(names):
                if not n.endswith(".py"):
                    continue
                path = os.path.join(d, n)
                rel = os.path.relpath(path, root).replace(os.sep, "/")
                try:
                    with open(path, "rb") as f:
                        tree = ast.parse(f.read(), rel)
                except SyntaxError as e:
                    out.append((rel, e.lineno or 0, "%s:%s: does not parse: %s" % (rel, e.lineno, e.msg)))
                    continue
                for line, name in _imports(tree):
                    if name in OURS and name not in ALLOWED[part]:
                        out.append((rel, line, "%s:%d: %s/ imports %s/ (allowed: %s)"
                                    % (rel, line, part, name, ", ".join(sorted(ALLOWED[part])))))
                    elif name == "machine" and part in ("firmware", "protocol") and not rel.startswith(MACHINE_OK):
                        out.append((rel, line, "%s:%d: imports machine (only firmware/main.py and the board "
                                                "modules may)" % (rel, line)))
    return [m for _, _, m in sorted(out)]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    root = argv[0] if argv else os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    bad = breaches(root)
    for b in bad:
        print(b)
    print("layers: %s" % ("%d import(s) break the layers" % len(bad) if bad else "every import keeps to its layer"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
