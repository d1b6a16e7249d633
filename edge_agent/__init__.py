"""Lepton edge agent: capture -> preprocess -> ONNX -> decide -> publish, on a Raspberry Pi, without torch.

Entry points: ``lepton-agent`` (edge_agent.cli:main), ``python -m edge_agent``, and
:class:`edge_agent.agent.Agent` for embedding. See docs/AGENT.md.
"""

__version__ = "0.1.0"
