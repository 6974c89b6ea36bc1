import sys

from hasvc.cli import main

sys.exit(main())
