import sys

from panic.cli import main

sys.exit(main())
