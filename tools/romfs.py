"""A ROMFS image of one release: the compiled firmware/ and protocol/ as a
read-only filesystem that MicroPython mounts at /rom and imports from in
place (bytecode and constant strings stay in flash, not in the heap).

Owns: turning {board path: .mpy bytes} (tools/flash.build) into image
bytes, with mpremote's writer (mpremote.romfs.VfsRomWriter, the format
`mpremote romfs deploy` writes to a board's ROM partition). Never does:
talk to a board, compile.

Used by bench/bench_firmware.py (the heap the firmware needs when run
from ROMFS, on the unix port and on the 32-bit webassembly port). Stays in
sync with: tools/flash.py (PACKAGES, build), docs/firmware.md.
"""

from mpremote.romfs import VfsRomWriter


def image(files):
    """ROMFS image bytes holding every file of {"a/b/c.mpy": bytes}."""
    tree = {}
    for path, data in files.items():
        parts = path.strip("/").split("/")
        node = tree
        for d in parts[:-1]:
            node = node.setdefault(d, {})
            if not isinstance(node, dict):
                raise ValueError("%s: a file and a folder share a name" % path)
        if parts[-1] in node:
            raise ValueError("%s: given twice" % path)
        node[parts[-1]] = bytes(data)
    w = VfsRomWriter()

    def add(node):
        for name in sorted(node):
            item = node[name]
            if isinstance(item, dict):
                w.opendir(name)
                add(item)
                w.closedir()
            else:
                w.mkfile(name, item)

    add(tree)
    return w.finalise()


def image_of_tree(root, tops):
    """ROMFS image of every .mpy file under root/<top> for each top."""
    import os

    files = {}
    for top in tops:
        for d, _, names in os.walk(os.path.join(root, top)):
            for n in names:
                if n.endswith(".mpy"):
                    p = os.path.join(d, n)
                    with open(p, "rb") as f:
                        files[os.path.relpath(p, root).replace(os.sep, "/")] = f.read()
    if not files:
        raise ValueError("no .mpy files under %s" % ", ".join(os.path.join(root, t) for t in tops))
    return image(files)


def main(argv=None):
    """python tools/romfs.py ROOT OUT TOP [TOP ...]: image the .mpy files
    under ROOT/TOP... (as compiled by tools/mpy_compile.py --out ROOT)."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) < 3:
        print("usage: python tools/romfs.py ROOT OUT TOP [TOP ...]", file=sys.stderr)
        return 2
    try:
        data = image_of_tree(args[0], args[2:])
    except (OSError, ValueError) as e:
        print("romfs: %s" % e, file=sys.stderr)
        return 1
    with open(args[1], "wb") as f:
        f.write(data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
