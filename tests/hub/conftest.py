from __future__ import annotations

from collections.abc import Iterator

import pytest

from hub_bridge.bridge import HubBridge


@pytest.fixture
def bridges() -> Iterator[list[HubBridge]]:
    """Bridges started by a test; stopped at teardown, failing on swallowed callback errors."""
    made: list[HubBridge] = []
    yield made
    errors = []
    for b in made:
        b.stop()
        errors.extend(b.errors)
        for c in b.clients:
            errors.extend(c.callback_errors)
    assert not errors, f"bridge errors: {errors!r}"
