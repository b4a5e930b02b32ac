"""Instruction counts from valgrind's callgrind, for the figures wall time
on a shared 2-core machine cannot settle.

    count(argv)            instructions one process executed (user space:
                           the kernel's share, system calls, is not counted)
    per_op(work, dry, n)   (count(work) - count(dry)) / n: the cost of n
                           operations, with start-up, imports and input
                           reading (what `dry` does too) taken out

A count is the same from run to run within a fraction of a percent, and
does not move when other work loads the machine, so a ratio of two counts
says which of two pieces of code does less, where medians of wall time
can disagree by more than the difference. It does not see caches,
branch prediction or the kernel: it confirms the direction of a wall-time
figure, it does not replace it (bench/verdict.py).

Needs `valgrind` on the PATH; available() says whether it is.
"""

import os
import re
import shutil
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_COLLECTED = re.compile(r"Collected : (\d+)")


def available():
    return shutil.which("valgrind") is not None


def count(argv, env=None, cwd=ROOT, timeout=3600):
    """(instructions, stdout) of one run of argv under callgrind."""
    p = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"] + list(argv),
                       cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    m = _COLLECTED.search(p.stderr)
    if p.returncode or not m:
        raise RuntimeError("callgrind run of %s failed (exit %d): %s" % (" ".join(argv), p.returncode,
                                                                         (p.stderr or p.stdout)[-1500:]))
    return int(m.group(1)), p.stdout


def per_op(work, dry, n, env=None):
    """Instructions per operation: work does n operations, dry does all
    the rest of what work does."""
    a, _ = count(work, env=env)
    b, _ = count(dry, env=env)
    return (a - b) / n
