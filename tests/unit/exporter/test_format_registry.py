"""Every entry of the format registry against the format contract (tests/registry_templates.py)."""

from __future__ import annotations

import pytest
from registry_templates import FormatTemplate

from edgetransfer.exporter import formats


@pytest.fixture(params=formats.names())
def format_name(request) -> str:
    return request.param


class TestEveryFormat(FormatTemplate):
    pass
