import sys

from edge_agent.cli import main

if __name__ == "__main__":  # importing the package tree (tools, import-graph checks) must not run it
    sys.exit(main())
