"""mpy-cross over firmware/ and protocol/: the command line of
panic/mpy_compile.py (where it lives, below tools/ and host_sim/, which
both compile releases).

    python tools/mpy_compile.py firmware protocol [--out DIR]
"""

import os
import sys

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from panic.mpy_compile import compile_all, main, mpy_cross_path, sources  # noqa: E402,F401  (re-exported)

if __name__ == "__main__":
    sys.exit(main())
