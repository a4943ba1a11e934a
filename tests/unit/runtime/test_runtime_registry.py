"""Every entry of the runtime registry against the runtime contract (tests/registry_templates.py)."""

from __future__ import annotations

import pytest
from registry_templates import RuntimeTemplate

from edgetransfer.runtime import spec as runtime_spec


@pytest.fixture(params=runtime_spec.names())
def runtime_name(request) -> str:
    return request.param


class TestEveryRuntime(RuntimeTemplate):
    pass
