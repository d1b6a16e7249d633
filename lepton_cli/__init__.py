"""The umbrella `lepton` command: up, monitor, keys, provision, protocol-doc."""
