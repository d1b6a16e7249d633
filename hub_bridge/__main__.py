from hub_bridge.cli import main
from shared.process.service import end_process

if __name__ == "__main__":  # importing the package tree (tools, import-graph checks) must not run it
    end_process(main())  # no interpreter shutdown: seconds on a loaded box (shared/process/service.py)
