"""Fixtures shared by the integration modules. Each module defines its own `agent`
(the flags differ); `tail` follows whichever agent the module started."""
import pytest

from tincture_harness import Tail


@pytest.fixture
def tail(agent):
    t = Tail(agent)
    yield t
    t.close()
