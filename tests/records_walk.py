"""Every JSON document edgetransfer writes is a record: walk a folder and read each through its class."""

from __future__ import annotations

import json
from pathlib import Path

from edgetransfer import records

# JSON that is not ours to type: caches keyed by content (not documents passed between stages).
_NOT_DOCUMENTS = ("feature_cache", "memo")


def every_json_is_a_record(folder: Path) -> dict[str, int]:
    """Read every ``*.json`` under ``folder`` through the record its ``kind`` names; return the kinds seen.

    Fails (``AssertionError`` / ``ConfigError``) on a JSON file without a kind or one its record refuses.
    """
    seen: dict[str, int] = {}
    for path in sorted(folder.rglob("*.json")):
        if any(part in _NOT_DOCUMENTS for part in path.parts):
            continue
        doc = json.loads(path.read_text())
        assert isinstance(doc, dict) and "kind" in doc, f"{path} is not a record (no kind)"
        records.by_kind(doc["kind"]).from_json(doc, str(path))
        seen[doc["kind"]] = seen.get(doc["kind"], 0) + 1
    return seen
