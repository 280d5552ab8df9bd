"""What a comparison with the baseline said about one benchmark: the judge's one output type."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Verdict:
    """What a comparison with the baseline said about one benchmark (rides on the report)."""

    benchmark: str
    failed: bool
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The ``verdict`` field of this benchmark in the results document."""
        return {"category": self.details.get("category", "inconclusive"), "failed": self.failed,
                "message": self.message, **{k: v for k, v in self.details.items() if k != "category"}}
