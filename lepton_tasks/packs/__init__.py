"""Dataset loaders of the shipped task specs (``lepton_tasks/specs``); each reads data installed with a
pip package and downloads nothing. Heavy ones come with the ``data`` extra (pyproject.toml)."""
