"""The agent fixtures of tests/edge, for the tests that run a task's model on an agent."""

from tests.edge.conftest import collect, make_agent  # noqa: F401
