"""Output-quality drift: did the benchmark's *output* change versus the baseline?

A suite stores an output fingerprint under ``quality["output"]`` of its benchmark record::

    mmperf.quality = {**(mmperf.quality or {}), "output": output_fingerprint(tokens=ids, logits=lg)}

The fingerprint (all keys optional, JSON only, small enough for a reviewable baseline):

``tokens_sha256``  sha256 of the token ids (int64, C order) and their shape: exact equality.
``tokens_shape``   shape of the token array, e.g. ``[2, 32]`` (batch, positions).
``tokens_head``    the first ``HEAD`` ids of each item (a list per item): locates a change.
``logits_summary`` ``{"shape", "argmax_head" (first HEAD argmax ids per item), "values_head"
                   (first VALUES_HEAD values of the first row, rounded), "mean", "std",
                   "abs_max"}``: a changed logit's size, not only its existence. Logits are
                   compared with a tolerance (``LOGITS_RTOL`` of the baseline's max |logit|) so
                   that floating-point reassociation does not count as drift.
``ranking``        the ranked ids (recommenders), first ``RANKING_HEAD`` kept.
``ranking_sha256`` sha256 of the full ranking.
``pass_at_1``      the fraction of problems whose answer passed its tests (trained-model suites),
                   with ``passed_problems`` (their ids): a problem no longer solved is drift.

:func:`compare_outputs` returns one :class:`OutputChange` per difference; an empty list means no
drift. Nothing here imports torch: tensors are read through ``.detach().cpu()`` duck typing.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

KEY = "output"  # where the fingerprint lives in a benchmark's ``quality`` dict
HEAD = 64
VALUES_HEAD = 32
RANKING_HEAD = 100
LOGITS_RTOL = 1e-3  # of the baseline's max |logit|
LOGITS_STAT_RTOL = 1e-3


@dataclass(frozen=True)
class OutputChange:
    what: str  # "tokens", "logits", "ranking", "fingerprint"
    message: str  # one line: what changed and where

    def to_json(self) -> dict[str, str]:
        return {"what": self.what, "message": self.message}


def _array(x: Any, dtype: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor, without importing torch
        x = x.detach().cpu()
        if dtype is np.float64:
            x = x.double()
        x = x.numpy()
    return np.asarray(x, dtype=dtype)


def _sha(arr: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(json.dumps(list(arr.shape)).encode())
    h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def _rows(arr: np.ndarray) -> np.ndarray:
    """Items first: a 1-D array is one item."""
    if arr.ndim == 0:
        return arr.reshape(1, 1)
    if arr.ndim == 1:
        return arr.reshape(1, -1)
    return arr.reshape(arr.shape[0], -1)


def output_fingerprint(tokens: Any = None, logits: Any = None, ranking: Any = None) -> dict[str, Any]:
    """The fingerprint of a benchmark's output; see the module docstring for the keys.

    ``tokens``: ids, shape [batch, positions] or [positions] (tensor, array or nested lists).
    ``logits``: shape [batch, positions, vocab] or [positions, vocab] (teacher-forced, ideally).
    ``ranking``: ranked item ids, shape [k] or [batch, k].
    """
    out: dict[str, Any] = {}
    if tokens is not None:
        t = _array(tokens, np.int64)
        out["tokens_sha256"] = _sha(t)
        out["tokens_shape"] = list(t.shape)
        out["tokens_head"] = [[int(v) for v in row[:HEAD]] for row in _rows(t)]
    if logits is not None:
        lg = _array(logits, np.float64)
        if lg.size == 0 or not np.all(np.isfinite(lg)):
            out["logits_summary"] = {"shape": list(lg.shape), "finite": False}
        else:
            items = lg.reshape(lg.shape[0], -1, lg.shape[-1]) if lg.ndim >= 2 else lg.reshape(1, 1, -1)
            flat = items.reshape(-1)
            out["logits_summary"] = {
                "shape": list(lg.shape),
                "finite": True,
                "argmax_head": [[int(v) for v in item.argmax(-1)[:HEAD]] for item in items],
                "values_head": [_round(v) for v in flat[:VALUES_HEAD]],
                "mean": _round(flat.mean()),
                "std": _round(flat.std()),
                "abs_max": _round(np.abs(flat).max()),
            }
    if ranking is not None:
        r = _array(ranking, np.int64)
        out["ranking_sha256"] = _sha(r)
        out["ranking"] = [int(v) for v in r.reshape(-1)[:RANKING_HEAD]]
    return out


def _round(x: Any) -> float:
    v = float(x)
    return float(f"{v:.7g}")


def _first_difference(a: Sequence[Sequence[int]], b: Sequence[Sequence[int]]) -> tuple[int, int] | None:
    for i, (ra, rb) in enumerate(zip(a, b)):
        for j, (x, y) in enumerate(zip(ra, rb)):
            if x != y:
                return i, j
        if len(ra) != len(rb):
            return i, min(len(ra), len(rb))
    return None


def compare_outputs(baseline: Mapping[str, Any] | None, current: Mapping[str, Any] | None) -> list[OutputChange]:
    """Differences between two output fingerprints (``quality["output"]``); [] when none.

    A fingerprint only on one side is not drift (a suite started or stopped recording it); only
    keys both sides have are compared.
    """
    if not baseline or not current:
        return []
    changes: list[OutputChange] = []
    if "tokens_sha256" in baseline and "tokens_sha256" in current:
        changes.extend(_tokens(baseline, current))
    if "logits_summary" in baseline and "logits_summary" in current:
        changes.extend(_logits(baseline["logits_summary"], current["logits_summary"]))
    if "ranking_sha256" in baseline and "ranking_sha256" in current:
        changes.extend(_ranking(baseline, current))
    if "pass_at_1" in baseline and "pass_at_1" in current:
        changes.extend(_pass_at_1(baseline, current))
    return changes


def _pass_at_1(b: Mapping[str, Any], c: Mapping[str, Any]) -> list[OutputChange]:
    """Functional correctness (the trained-model suites: HumanEval's tests on the answers):
    a problem the baseline's answer solved and this one does not is drift."""
    lost = sorted(set(b.get("passed_problems") or []) - set(c.get("passed_problems") or []))
    if float(c["pass_at_1"]) >= float(b["pass_at_1"]) and not lost:
        return []
    where = f"; no longer passes: {', '.join(lost)}" if lost else ""
    return [OutputChange("pass@1", f"pass@1 {float(b['pass_at_1']):.2f} -> {float(c['pass_at_1']):.2f}{where}")]


def _tokens(b: Mapping[str, Any], c: Mapping[str, Any]) -> list[OutputChange]:
    if b["tokens_sha256"] == c["tokens_sha256"]:
        return []
    if b.get("tokens_shape") != c.get("tokens_shape"):
        shapes = f"{b.get('tokens_shape')} -> {c.get('tokens_shape')}"
        return [OutputChange("tokens", f"output tokens changed shape: {shapes}")]
    bh, ch = b.get("tokens_head") or [], c.get("tokens_head") or []
    where = _first_difference(bh, ch)
    if where is None:
        return [OutputChange("tokens", f"output tokens changed after the first {HEAD} positions (sha256 differs)")]
    i, j = where
    was = bh[i][j] if j < len(bh[i]) else "end"
    now = ch[i][j] if j < len(ch[i]) else "end"
    n_diff = sum(x != y for rb, rc in zip(bh, ch) for x, y in zip(rb, rc))
    total = sum(min(len(rb), len(rc)) for rb, rc in zip(bh, ch))
    return [OutputChange(
        "tokens",
        f"output tokens changed: item {i}, first at position {j} (token {was} -> {now}); "
        f"{n_diff} of the first {total} ids differ",
    )]


def _logits(b: Mapping[str, Any], c: Mapping[str, Any]) -> list[OutputChange]:
    if b.get("shape") != c.get("shape"):
        return [OutputChange("logits", f"logits changed shape: {b.get('shape')} -> {c.get('shape')}")]
    if not b.get("finite", True) or not c.get("finite", True):
        if b.get("finite", True) != c.get("finite", True):
            return [OutputChange("logits", "logits are no longer all finite" if b.get("finite", True)
                                 else "logits are finite again")]
        return []
    scale = max(abs(float(b.get("abs_max", 0.0))), 1e-12)
    out: list[OutputChange] = []
    ba, ca = b.get("argmax_head") or [], c.get("argmax_head") or []
    where = _first_difference(ba, ca)
    if where is not None:
        i, j = where
        out.append(OutputChange("logits", f"teacher-forced argmax changed: item {i}, first at position {j}"))
    bv = np.asarray(b.get("values_head") or [], dtype=float)
    cv = np.asarray(c.get("values_head") or [], dtype=float)
    n = min(bv.size, cv.size)
    deltas = {"max |Δ| of the first logits": float(np.max(np.abs(bv[:n] - cv[:n]))) if n else 0.0}
    for key in ("mean", "std", "abs_max"):
        if key in b and key in c:
            deltas[f"Δ{key}"] = abs(float(c[key]) - float(b[key]))
    worst_key, worst = max(deltas.items(), key=lambda kv: kv[1])
    if worst > LOGITS_RTOL * scale or not math.isfinite(worst):
        out.append(OutputChange(
            "logits",
            f"logits changed: {worst_key} = {worst:.4g} ({worst / scale:.2%} of max |logit| {scale:.4g}; "
            f"tolerance {LOGITS_RTOL:.1%})",
        ))
    return out


def _ranking(b: Mapping[str, Any], c: Mapping[str, Any]) -> list[OutputChange]:
    if b["ranking_sha256"] == c["ranking_sha256"]:
        return []
    br, cr = list(b.get("ranking") or []), list(c.get("ranking") or [])
    where = _first_difference([br], [cr])
    k = min(len(br), len(cr), 10)
    overlap = len(set(br[:k]) & set(cr[:k]))
    if where is None:
        return [OutputChange("ranking", f"ranking changed after the first {RANKING_HEAD} items (sha256 differs)")]
    return [OutputChange(
        "ranking",
        f"ranking changed: first at rank {where[1]}; top-{k} overlap {overlap}/{k}",
    )]
