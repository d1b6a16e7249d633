import sys

from hub_bridge.cli import main

sys.exit(main())
