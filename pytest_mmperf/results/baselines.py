"""Baselines: results documents stored as ``<baseline_dir>/<fingerprint>.json``.

One file per environment fingerprint (:mod:`pytest_mmperf.measure.environment`), in the results document's
versioned format, written atomically with sorted keys and indentation so that a change to a
baseline reads as a reviewable diff.

Saving never loses data:

* the write goes through :func:`pytest_mmperf.results.atomic.write_text`: an interrupted save leaves the
  previous file;
* saving a partial run (one shard, ``-k``) **merges** by benchmark id into the existing baseline
  of that fingerprint: entries of this run replace theirs, other entries are kept. ``replace=True``
  (``mmperf baseline promote --replace``) writes exactly the given run instead;
* an existing file that cannot be read (corrupt, newer schema, another environment) is never
  overwritten by a merge: :class:`DocumentError` says so and the file stays as it is.

Where each entry came from (commit, date) is kept per benchmark in the document's
``settings["baseline_entries"]``, so a merged baseline still names the commit of each entry.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pytest_mmperf.results import atomic
from pytest_mmperf.results.fingerprint import differences
from pytest_mmperf.results.records import DocumentError, RunDocument

ENTRIES = "baseline_entries"  # settings key: benchmark id -> {"commit", "created"}


@dataclass(frozen=True)
class BaselineInfo:
    path: Path
    fingerprint: str
    device: str
    commit: str | None
    created: str
    benchmarks: int
    error: str | None = None  # set when the file cannot be read
    clock: str = "time"  # what its numbers are: "time" or "instructions" (counts)


def path_for(fingerprint: str, directory: str | Path) -> Path:
    if not fingerprint or "/" in fingerprint or "\\" in fingerprint or fingerprint.startswith("."):
        raise DocumentError(f"environment fingerprint {fingerprint!r} cannot name a baseline file")
    return Path(directory) / f"{fingerprint}.json"


def dumps(doc: RunDocument) -> str:
    """Stable text: sorted keys, two-space indent, benchmarks by id."""
    doc = doc.with_benchmarks(sorted(doc.benchmarks, key=lambda b: b.id))
    return json.dumps(doc.to_json(), indent=2, sort_keys=True, allow_nan=False) + "\n"


def load(path: str | Path) -> RunDocument:
    """A stored baseline; a bad file raises DocumentError naming it (one line)."""
    doc = RunDocument.load(path)
    if not doc.fingerprint:
        raise DocumentError(f"{path}: the environment has no fingerprint")
    return doc


def load_for(environment: Mapping[str, Any], directory: str | Path) -> RunDocument | None:
    """The baseline for this environment's fingerprint, or None when there is none.

    Raises DocumentError when the file exists but is unusable, or when it was written for another
    environment (its fingerprint or comparable keys differ from ``environment``).
    """
    path = path_for(str(environment.get("fingerprint", "")), directory)
    if not path.exists():
        return None
    doc = load(path)
    check_environment(doc, environment, path)
    return doc


def check_environment(doc: RunDocument, environment: Mapping[str, Any], path: str | Path) -> None:
    diff = differences(doc.environment, environment)
    if diff or doc.fingerprint != environment.get("fingerprint"):
        keys = ", ".join(f"{k} {a!r} vs {b!r}" for k, (a, b) in sorted(diff.items())) or (
            f"fingerprint {doc.fingerprint!r} vs {environment.get('fingerprint')!r}"
        )
        raise DocumentError(f"{path}: measured on a different environment ({keys})")


def _entries(doc: RunDocument) -> dict[str, dict[str, Any]]:
    known = doc.settings.get(ENTRIES)
    known = dict(known) if isinstance(known, Mapping) else {}
    return {
        b.id: dict(known.get(b.id) or {"commit": doc.commit, "created": doc.created})
        for b in doc.benchmarks
    }


def entry_commit(doc: RunDocument, benchmark_id: str) -> str | None:
    """The commit a baseline entry was measured at (merged baselines mix commits)."""
    entry = _entries(doc).get(benchmark_id)
    return entry.get("commit") if entry else doc.commit


def merge(old: RunDocument, new: RunDocument) -> RunDocument:
    """``new``'s entries replace ``old``'s with the same id; the others are kept."""
    entries = _entries(old)
    fresh = {b.id: {"commit": new.commit, "created": new.created} for b in new.benchmarks}
    entries.update(fresh)
    by_id = old.by_id()
    by_id.update(new.by_id())
    settings = dict(new.settings)
    settings[ENTRIES] = dict(sorted(entries.items()))
    return replace(new, benchmarks=tuple(by_id[k] for k in sorted(by_id)), settings=settings)


def _stamped(doc: RunDocument) -> RunDocument:
    settings = dict(doc.settings)
    settings[ENTRIES] = dict(sorted(_entries(doc).items()))
    return replace(doc, settings=settings)


def save(doc: RunDocument, directory: str | Path, *, replace_existing: bool = False) -> Path:
    """Store ``doc`` as the baseline of its fingerprint; merges unless ``replace_existing``."""
    if not doc.benchmarks:
        raise DocumentError("nothing to save: the run has no benchmark results")
    path = path_for(doc.fingerprint, directory)
    if path.exists() and not replace_existing:
        try:
            old = load(path)
        except DocumentError as exc:
            raise DocumentError(f"{exc}; not overwritten (fix or remove it, or replace it explicitly)") from None
        check_environment(old, doc.environment, path)
        doc = merge(old, doc)
    else:
        doc = _stamped(doc)
    # validate what we write by reading it back before it replaces anything
    text = dumps(doc)
    RunDocument.loads(text, source=str(path))
    atomic.write_text(path, text)
    return path


def promote(results: str | Path, directory: str | Path, *, replace_existing: bool = False) -> Path:
    """Make a results document (``--mmperf-json``) the baseline for its environment."""
    return save(RunDocument.load(results), directory, replace_existing=replace_existing)


def list_baselines(directory: str | Path) -> list[BaselineInfo]:
    d = Path(directory)
    if not d.is_dir():
        return []
    out: list[BaselineInfo] = []
    for path in sorted(d.glob("*.json")):
        try:
            doc = RunDocument.load(path)
        except DocumentError as exc:
            out.append(BaselineInfo(path, path.stem, "", None, "", 0, str(exc)))
            continue
        error = None if doc.fingerprint == path.stem else (
            f"{path}: holds fingerprint {doc.fingerprint!r}, not {path.stem!r}"
        )
        out.append(BaselineInfo(path, doc.fingerprint, str(doc.environment.get("device", "")),
                                doc.commit, doc.created, len(doc.benchmarks), error,
                                str(doc.environment.get("clock") or "time")))
    return out


def resolve(spec: str, directory: str | Path) -> Path:
    """A baseline named by path or by fingerprint."""
    p = Path(spec)
    if p.suffix == ".json" and p.exists():
        return p
    return path_for(spec, directory)


def prune(
    directory: str | Path,
    *,
    fingerprints: Collection[str] = (),
    keep_ids_from: RunDocument | None = None,
    dry_run: bool = False,
) -> list[str]:
    """Remove whole baselines (``fingerprints``) and/or the entries of ``keep_ids_from``'s
    environment that are not in that (complete) run. Returns one line per removal."""
    done: list[str] = []
    for fp in fingerprints:
        path = path_for(fp, directory)
        if not path.exists():
            raise DocumentError(f"{path}: no such baseline")
        done.append(f"removed {path}")
        if not dry_run:
            path.unlink()
    if keep_ids_from is not None:
        path = path_for(keep_ids_from.fingerprint, directory)
        if not path.exists():
            raise DocumentError(f"{path}: no baseline for {keep_ids_from.fingerprint}")
        old = load(path)
        keep = set(keep_ids_from.by_id())
        stale = [b.id for b in old.benchmarks if b.id not in keep]
        if stale:
            done.extend(f"removed entry {i} from {path}" for i in stale)
            if not dry_run:
                kept = [b for b in old.benchmarks if b.id in keep]
                settings = dict(old.settings)
                settings[ENTRIES] = {k: v for k, v in _entries(old).items() if k in keep}
                doc = replace(old, benchmarks=tuple(kept), settings=settings)
                if kept:
                    atomic.write_text(path, dumps(doc))
                else:
                    path.unlink()
    return done
