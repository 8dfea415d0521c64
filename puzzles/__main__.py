import sys

from puzzles.cli import main

sys.exit(main())
