"""What people see of a running fleet, for the terminal and the console alike: fleet statistics read
from the wire, the scoreboard and its targets, rollout views, SVG plots and the HTML report.

Imports shared and lepton_tasks only; never lepton_cli or lepton_console.
"""
