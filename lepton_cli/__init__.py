"""lepton_cli"""
