"""Output-quality drift: fingerprints and what a change reports."""

import numpy as np
import torch

from pytest_mmperf.judge.drift import compare_outputs, output_fingerprint


def test_same_output_no_drift_and_json_only():
    import json

    tokens = torch.arange(200).reshape(2, 100)
    logits = torch.randn(2, 5, 11, generator=torch.Generator().manual_seed(0))
    fp = output_fingerprint(tokens=tokens, logits=logits, ranking=[5, 3, 1])
    assert json.loads(json.dumps(fp)) == fp
    assert len(fp["tokens_head"]) == 2 and len(fp["tokens_head"][0]) == 64
    again = output_fingerprint(tokens=tokens.tolist(), logits=logits.numpy(), ranking=np.array([5, 3, 1]))
    assert compare_outputs(fp, again) == []


def test_token_change_names_item_and_first_position():
    a = [[1, 2, 3, 4], [5, 6, 7, 8]]
    b = [[1, 2, 3, 4], [5, 6, 9, 8]]
    (change,) = compare_outputs(output_fingerprint(tokens=a), output_fingerprint(tokens=b))
    assert change.what == "tokens"
    assert "item 1, first at position 2 (token 7 -> 9)" in change.message


def test_token_change_beyond_the_head_and_shape_change():
    a = list(range(100))
    b = [*range(99), 7]
    (c,) = compare_outputs(output_fingerprint(tokens=a), output_fingerprint(tokens=b))
    assert "after the first 64 positions" in c.message
    (c,) = compare_outputs(output_fingerprint(tokens=a), output_fingerprint(tokens=a[:50]))
    assert "shape" in c.message


def test_logits_tolerate_rounding_but_report_the_size_of_a_change():
    rng = np.random.default_rng(0)
    lg = rng.standard_normal((1, 4, 16)) * 5
    base = output_fingerprint(logits=lg)
    assert compare_outputs(base, output_fingerprint(logits=lg + 1e-7)) == []
    moved = lg.copy()
    moved[0, 0, 3] += 0.5
    changes = compare_outputs(base, output_fingerprint(logits=moved))
    assert changes and changes[-1].what == "logits"
    assert "logits changed" in changes[-1].message and "0.5" in changes[-1].message


def test_ranking_change_and_one_sided_fingerprints():
    a, b = output_fingerprint(ranking=[1, 2, 3, 4]), output_fingerprint(ranking=[1, 3, 2, 4])
    (c,) = compare_outputs(a, b)
    assert "first at rank 1" in c.message
    assert compare_outputs(None, b) == []
    assert compare_outputs(output_fingerprint(tokens=[1]), b) == []  # nothing in common
