"""The results document: immutable records and their versioned JSON form.

``schema_version`` 1 is the format described in docs/design.md. Loading refuses a newer version (written by a
newer pytest-mmperf) and anything that is not a results document, each with a one-line
:class:`DocumentError`; older versions would be upgraded step by step in ``_UPGRADES``.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pytest_mmperf.results import stats
from pytest_mmperf.results.metrics import Direction, unit_of

SCHEMA_VERSION = 1
WORKLOADS = ("llm", "speech", "text_image", "recommender")


class DocumentError(ValueError):
    """A results document, baseline or history record that cannot be used; one line, no traceback."""


@dataclass(frozen=True)
class MetricRecord:
    name: str
    unit: str
    direction: Direction
    samples: tuple[float, ...]
    median: float
    ci_low: float
    ci_high: float
    confidence: float
    q1: float
    q3: float
    min: float
    max: float
    n: int
    gated: bool = True  # False: informational only, never fails a comparison
    # The measured round each sample belongs to (same length as ``samples``), for metrics with
    # several samples per round (a decode step's ``tpot_ms``, a phase entered many times). None:
    # one sample per round, sample i is round i. Rounds, not samples, are the unit of replication.
    rounds: tuple[int, ...] | None = None

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1

    def per_round(self) -> tuple[float, ...]:
        """One value per measured round: the median of that round's samples (all samples stay
        stored for display; statistical tests use these)."""
        if self.rounds is None:
            return self.samples
        by_round: dict[int, list[float]] = {}
        for r, v in zip(self.rounds, self.samples):
            by_round.setdefault(r, []).append(v)
        return tuple(statistics.median(by_round[r]) for r in sorted(by_round))

    @classmethod
    def pooled(cls, parts: Sequence[MetricRecord]) -> MetricRecord:
        """One metric from several measurements of it (repeats, adaptive extra rounds): samples
        concatenated in order, each part's rounds numbered after the previous part's, so that
        :meth:`per_round` still sees one value per measured round. Name, direction, confidence and
        ``gated`` come from the first part."""
        if not parts:
            raise ValueError("nothing to pool")
        first = parts[0]
        if len(parts) == 1:
            return first
        grouped = any(p.rounds is not None for p in parts)
        samples: list[float] = []
        rounds: list[int] = []
        offset = 0
        for p in parts:
            idx = list(p.rounds) if p.rounds is not None else list(range(len(p.samples)))
            samples.extend(p.samples)
            base = min(idx) if idx else 0
            rounds.extend(offset + r - base for r in idx)
            offset += (max(idx) - base + 1) if idx else 0
        return cls.from_samples(first.name, samples, confidence=first.confidence, direction=first.direction,
                                gated=first.gated, rounds=rounds if grouped else None)

    @classmethod
    def from_samples(
        cls,
        name: str,
        samples: Sequence[float],
        *,
        confidence: float = 0.95,
        direction: Direction | None = None,
        gated: bool = True,
        rounds: Sequence[int] | None = None,
    ) -> MetricRecord:
        unit = unit_of(name)
        s = stats.summarize(samples, confidence)
        if rounds is not None and len(rounds) != len(samples):
            raise ValueError(f"metric {name!r}: {len(rounds)} round indices for {len(samples)} samples")
        return cls(
            name=name,
            unit=unit.unit,
            direction=direction or unit.direction,
            samples=tuple(float(v) for v in samples),
            median=s.median,
            ci_low=s.ci_low,
            ci_high=s.ci_high,
            confidence=confidence,
            q1=s.q1,
            q3=s.q3,
            min=s.min,
            max=s.max,
            n=s.n,
            gated=gated,
            rounds=tuple(int(r) for r in rounds) if rounds is not None else None,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "unit": self.unit,
            "direction": self.direction.value,
            "median": self.median,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "confidence": self.confidence,
            "q1": self.q1,
            "q3": self.q3,
            "iqr": self.iqr,
            "min": self.min,
            "max": self.max,
            "n": self.n,
            "gated": self.gated,
            "samples": list(self.samples),
            **({"rounds": list(self.rounds)} if self.rounds is not None else {}),
        }

    @classmethod
    def from_json(cls, name: str, d: Mapping[str, Any]) -> MetricRecord:
        samples = tuple(float(v) for v in _get(d, "samples", list))
        if not samples:
            raise DocumentError(f"metric {name!r} has no samples")
        if not all(math.isfinite(v) for v in samples):
            raise DocumentError(f"metric {name!r} has a sample that is not a finite number")
        direction = _get(d, "direction", str)
        if direction not in ("lower", "higher"):
            raise DocumentError(f"metric {name!r} has direction {direction!r}")
        rounds = d.get("rounds")
        if rounds is not None and (
            not isinstance(rounds, list) or len(rounds) != len(samples)
            or not all(isinstance(r, int) and not isinstance(r, bool) for r in rounds)
        ):
            raise DocumentError(f"metric {name!r}: 'rounds' must list one integer round index per sample")
        rec = cls.from_samples(
            name,
            samples,
            confidence=float(d.get("confidence", 0.95)),
            direction=Direction(direction),
            gated=bool(d.get("gated", True)),
            rounds=rounds,
        )
        return rec


@dataclass(frozen=True)
class Speedup:
    median: float
    ci_low: float
    ci_high: float
    confidence: float = 0.95
    eager_samples: int = 0
    optimized_samples: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "median": self.median,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "confidence": self.confidence,
            "eager_samples": self.eager_samples,
            "optimized_samples": self.optimized_samples,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Speedup:
        return cls(
            median=float(_get(d, "median", (int, float))),
            ci_low=float(_get(d, "ci_low", (int, float))),
            ci_high=float(_get(d, "ci_high", (int, float))),
            confidence=float(d.get("confidence", 0.95)),
            eager_samples=int(d.get("eager_samples", 0)),
            optimized_samples=int(d.get("optimized_samples", 0)),
        )


@dataclass(frozen=True)
class BenchmarkRecord:
    id: str
    workload: str | None
    task: str | None
    optimizations: tuple[str, ...]
    scale: str
    device: str
    batch_size: int
    metrics: Mapping[str, MetricRecord]
    speedup_vs_eager: Speedup | None = None
    quality: Mapping[str, Any] | None = None
    params: Mapping[str, Any] = field(default_factory=dict)  # facts: parameters, threads, ...
    profile: Mapping[str, Any] | None = None  # operator-class shares (--mmperf-profile)
    roofline: Mapping[str, Any] | None = None
    # what the comparison with the baseline said (--mmperf-compare): category, failed, message,
    # the per-metric comparisons; None when the run was not compared
    verdict: Mapping[str, Any] | None = None

    def metric(self, name: str) -> MetricRecord | None:
        return self.metrics.get(name)

    def to_json(self) -> dict[str, Any]:
        out = {
            "id": self.id,
            "workload": self.workload,
            "task": self.task,
            "optimizations": list(self.optimizations),
            "scale": self.scale,
            "device": self.device,
            "batch_size": self.batch_size,
            "metrics": {k: m.to_json() for k, m in sorted(self.metrics.items())},
            "speedup_vs_eager": self.speedup_vs_eager.to_json() if self.speedup_vs_eager else None,
            "quality": json_safe(dict(self.quality)) if self.quality is not None else None,
            "params": json_safe(dict(self.params)),
            "profile": json_safe(dict(self.profile)) if self.profile is not None else None,
            "roofline": json_safe(dict(self.roofline)) if self.roofline is not None else None,
        }
        if self.verdict is not None:
            out["verdict"] = json_safe(dict(self.verdict))
        return out

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> BenchmarkRecord:
        bid = _get(d, "id", str)
        metrics_raw = _get(d, "metrics", dict)
        try:
            metrics = {k: MetricRecord.from_json(k, v) for k, v in metrics_raw.items()}
        except DocumentError as exc:
            raise DocumentError(f"benchmark {bid!r}: {exc}") from None
        except (ValueError, TypeError, AttributeError) as exc:
            raise DocumentError(f"benchmark {bid!r}: bad metric ({exc})") from None
        sp = d.get("speedup_vs_eager")
        return cls(
            id=bid,
            workload=d.get("workload"),
            task=d.get("task"),
            optimizations=tuple(_get(d, "optimizations", list)),
            scale=str(d.get("scale", "")),
            device=str(d.get("device", "")),
            batch_size=int(d.get("batch_size", 1)),
            metrics=metrics,
            speedup_vs_eager=Speedup.from_json(sp) if sp else None,
            quality=d.get("quality"),
            params=d.get("params") or {},
            profile=d.get("profile"),
            roofline=d.get("roofline"),
            verdict=d.get("verdict") if isinstance(d.get("verdict"), dict) else None,
        )


@dataclass(frozen=True)
class RunDocument:
    environment: Mapping[str, Any]
    benchmarks: tuple[BenchmarkRecord, ...]
    commit: str | None = None
    branch: str | None = None
    created: str = ""  # ISO 8601, UTC
    tool_version: str = ""
    settings: Mapping[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    @property
    def fingerprint(self) -> str:
        return str(self.environment.get("fingerprint", ""))

    def by_id(self) -> dict[str, BenchmarkRecord]:
        return {b.id: b for b in self.benchmarks}

    def with_benchmarks(self, benchmarks: Sequence[BenchmarkRecord]) -> RunDocument:
        return replace(self, benchmarks=tuple(benchmarks))

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "tool": {"name": "pytest-mmperf", "version": self.tool_version},
            "created": self.created,
            "commit": self.commit,
            "branch": self.branch,
            "environment": dict(self.environment),
            "settings": dict(self.settings),
            "benchmarks": [b.to_json() for b in self.benchmarks],
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=1, sort_keys=False, allow_nan=False) + "\n"

    @classmethod
    def from_json(cls, d: Any, *, source: str = "document") -> RunDocument:
        if not isinstance(d, dict):
            raise DocumentError(f"{source}: not a pytest-mmperf results document (top level is not an object)")
        if "schema_version" not in d:
            raise DocumentError(f"{source}: not a pytest-mmperf results document (no schema_version)")
        version = d["schema_version"]
        if not isinstance(version, int) or version < 1:
            raise DocumentError(f"{source}: schema_version {version!r} is not a positive integer")
        if version > SCHEMA_VERSION:
            raise DocumentError(
                f"{source}: schema_version {version} is newer than this pytest-mmperf reads "
                f"({SCHEMA_VERSION}); upgrade pytest-mmperf"
            )
        for step in range(version, SCHEMA_VERSION):
            d = _UPGRADES[step](d)
        try:
            env = _get(d, "environment", dict)
            if "fingerprint" not in env:
                raise DocumentError("environment has no fingerprint")
            benches = tuple(BenchmarkRecord.from_json(b) for b in _get(d, "benchmarks", list))
        except DocumentError as exc:
            raise DocumentError(f"{source}: {exc}") from None
        tool = d.get("tool") or {}
        return cls(
            environment=env,
            benchmarks=benches,
            commit=d.get("commit"),
            branch=d.get("branch"),
            created=str(d.get("created", "")),
            tool_version=str(tool.get("version", "")) if isinstance(tool, dict) else "",
            settings=d.get("settings") or {},
        )

    @classmethod
    def loads(cls, text: str, *, source: str = "document") -> RunDocument:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DocumentError(
                f"{source}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
                "the file is corrupt or truncated"
            ) from None
        return cls.from_json(data, source=source)

    @classmethod
    def load(cls, path: str | Path) -> RunDocument:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise DocumentError(f"{p}: no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise DocumentError(f"{p}: cannot read ({exc})") from None
        return cls.loads(text, source=str(p))


# schema_version N -> N+1 upgrade steps; none yet, version 1 is the first.
_UPGRADES: dict[int, Any] = {}


def json_safe(value: Any) -> Any:
    """Free-form data (quality, params, profile) made strict-JSON: a float that is not finite
    (an SQNR of identical logits is +inf) becomes None; tuples become lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def _get(d: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    if not isinstance(d, Mapping):
        raise DocumentError(f"expected an object where {key!r} should be")
    if key not in d:
        raise DocumentError(f"missing field {key!r}")
    value = d[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind in ((int, float), int)):
        raise DocumentError(f"field {key!r} has the wrong type ({type(value).__name__})")
    return value
