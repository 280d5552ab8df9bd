"""Merging results documents: the shards of a CI matrix, or the repeats of one A/B side.

Two operations on :class:`records.RunDocument`, both pure (no pytest, no torch):

* :func:`merge_shards`: the shards of one run (``--mmperf-shard I/N``, one xdist worker per GPU
  written separately, ...) become one document equal in content to an unsharded run: the union of
  the benchmarks, sorted by id. A benchmark id in two inputs is an error naming the ids, since a
  shard split never measures one benchmark twice; with ``pool=True`` such repeats are pooled.
* :func:`pool`: repeats of the same benchmarks (``mmperf ab`` runs each side K times, alternating
  with the other side) become one record per id whose samples are the concatenation of the
  repeats' samples, every summary recomputed from them (:meth:`MetricRecord.from_samples`).

Inputs must come from the same environment (same fingerprint): merging runs from two machines
would make one document that neither machine measured. ``force=True`` merges anyway and keeps
the first input's environment, noting the others' fingerprints.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from pytest_mmperf.results import stats
from pytest_mmperf.results.metrics import EAGER_LATENCY
from pytest_mmperf.results.records import BenchmarkRecord, MetricRecord, RunDocument, Speedup


class MergeError(ValueError):
    """Documents that cannot be merged; the message is one line."""


def _check_environments(docs: Sequence[RunDocument], sources: Sequence[str], force: bool) -> list[str]:
    first = docs[0].fingerprint
    odd = [f"{src} ({doc.fingerprint})" for doc, src in zip(docs, sources) if doc.fingerprint != first]
    if not odd:
        return []
    text = f"different environments: {sources[0]} is {first}, but " + ", ".join(odd)
    if not force:
        raise MergeError(f"{text}; use --force to merge anyway")
    return [f"WARNING merged across environments (forced): {text}"]


def _settings(docs: Sequence[RunDocument]) -> dict[str, Any]:
    """The first input's settings, less what differs per shard."""
    settings = dict(docs[0].settings)
    settings.pop("shard", None)
    settings.pop("json_path", None)
    return settings


def merge_shards(
    docs: Sequence[RunDocument],
    sources: Sequence[str] | None = None,
    *,
    force: bool = False,
    pool_repeats: bool = False,
) -> tuple[RunDocument, list[str]]:
    """(merged document, one-line notes). Raises :class:`MergeError`."""
    if not docs:
        raise MergeError("nothing to merge: no input documents")
    names = list(sources) if sources is not None else [f"input {i + 1}" for i in range(len(docs))]
    notes = _check_environments(docs, names, force)
    commits = sorted({d.commit for d in docs if d.commit})
    if len(commits) > 1:
        if not force:
            raise MergeError(f"inputs were measured at different commits ({', '.join(commits)}); "
                             "use --force to merge anyway")
        notes.append(f"WARNING merged across commits (forced): {', '.join(commits)}")
    seen: dict[str, list[str]] = {}
    for doc, src in zip(docs, names):
        for b in doc.benchmarks:
            seen.setdefault(b.id, []).append(src)
    dupes = {bid: srcs for bid, srcs in seen.items() if len(srcs) > 1}
    if dupes and not pool_repeats:
        listed = "; ".join(f"{bid} (in {', '.join(srcs)})" for bid, srcs in sorted(dupes.items()))
        raise MergeError(f"{len(dupes)} benchmark id(s) in more than one input: {listed}; shards never "
                         "overlap (use --pool to pool repeats of the same benchmarks)")
    groups: dict[str, list[BenchmarkRecord]] = {}
    for doc in docs:
        for b in doc.benchmarks:
            groups.setdefault(b.id, []).append(b)
    benchmarks = [pool_records(recs) for _, recs in sorted(groups.items())]
    created = min((d.created for d in docs if d.created), default="")
    merged = RunDocument(
        environment=docs[0].environment,
        benchmarks=tuple(benchmarks),
        commit=docs[0].commit,
        branch=docs[0].branch,
        created=created,
        tool_version=docs[0].tool_version,
        settings=_settings(docs),
    )
    if dupes:
        notes.append(f"pooled repeats of {len(dupes)} benchmark(s)")
    return merged, notes


def pool(docs: Sequence[RunDocument], sources: Sequence[str] | None = None, *, force: bool = False) -> RunDocument:
    """Repeats of one run pooled per benchmark and metric (see the module docstring)."""
    merged, _ = merge_shards(docs, sources, force=force, pool_repeats=True)
    return merged


def pool_records(records: Sequence[BenchmarkRecord]) -> BenchmarkRecord:
    """One record from repeats of the same benchmark: samples concatenated in order, summaries
    recomputed; descriptive fields, quality and parameters from the first repeat."""
    first = records[0]
    if len(records) == 1:
        return first
    metrics: dict[str, MetricRecord] = {}
    names = sorted({name for r in records for name in r.metrics})
    for name in names:
        # rounds stay grouped (numbered on across repeats): the round is the unit of replication
        metrics[name] = MetricRecord.pooled([r.metrics[name] for r in records if name in r.metrics])
    return replace(first, metrics=metrics, speedup_vs_eager=_pooled_speedup(records, metrics))


def _pooled_speedup(records: Sequence[BenchmarkRecord], metrics: dict[str, MetricRecord]) -> Speedup | None:
    """The speedup of pooled repeats, recomputed from the pooled arms as the fixture computes it."""
    sps = [r.speedup_vs_eager for r in records if r.speedup_vs_eager is not None]
    if not sps:
        return None
    eager, opt = metrics.get(EAGER_LATENCY), metrics.get("latency_ms")
    if eager is None or opt is None:
        return sps[0]
    confidence = sps[0].confidence
    try:
        r = stats.ratio_of_medians(eager.samples, opt.samples, confidence)
    except ValueError:
        return sps[0]
    return Speedup(r.ratio, r.ci_low, r.ci_high, confidence, len(eager.samples), len(opt.samples))
