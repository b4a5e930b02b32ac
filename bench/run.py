"""`make bench`: run every bench/bench_*.py in turn and print its figures.

Each bench script is standalone (run with the venv's python from the
repository root) and prints its own lines; a failing bench fails the run.
"""

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main(argv):
    wanted = argv[1:]
    names = sorted(f for f in os.listdir(HERE) if f.startswith("bench_") and f.endswith(".py"))
    failed = 0
    for n in names:
        if wanted and not any(w in n for w in wanted):
            continue
        print("== %s ==" % n[:-3], flush=True)
        p = subprocess.run([sys.executable, os.path.join(HERE, n)], cwd=os.path.dirname(HERE))
        if p.returncode:
            print("bench %s failed with exit code %d" % (n, p.returncode))
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
