"""Trained weights from a local Hugging Face folder or a GGUF file, for the llm workload.

A GGUF file is de-quantized to float32 by transformers (``from_pretrained(folder,
gguf_file=...)``, which needs the ``gguf`` package): ~15-25 s for SmolLM2-135M's 272 tensors on
a 2-core VM. That happens once per file: the result is written with ``save_pretrained``
(safetensors, config, tokenizer, chat template) to ``<cache_dir>/<sha256 of the file>/``, and
every later build loads that folder (well under a second: safetensors are memory-mapped). The
folder is written under a temporary name and renamed when complete, so an interrupted
conversion is never read; a changed file has another hash, so a stale cache is never used.
Processes that need the same file at once (pytest-xdist workers) convert it once: the others
wait on a lock file beside the folder and then load what the first one wrote.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmperf_levers.contract import PretrainedOptions

if TYPE_CHECKING:  # torch is imported where a model is converted or loaded: checking the cache needs none
    import torch

COMPLETE = "mmperf-converted.txt"  # written last into a finished cache folder


@lru_cache(maxsize=16)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def sha256_of(path: Path) -> str:
    """sha256 of a file, computed once per process for an unchanged file (size, mtime)."""
    st = path.stat()
    return _sha256(str(path), st.st_size, st.st_mtime_ns)


def cached_folder(gguf: Path, cache_dir: Path) -> Path:
    return cache_dir / sha256_of(gguf)


def convert_gguf(gguf: Path, cache_dir: Path) -> Path:
    """The Hugging Face folder converted from ``gguf`` (converting now if it is not cached)."""
    target = cached_folder(gguf, cache_dir)
    if (target / COMPLETE).is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _exclusive(cache_dir / f".{target.name}.lock"):
        if (target / COMPLETE).is_file():  # converted by another process while this one waited
            return target
        _convert(gguf, target, cache_dir)
    return target


@contextlib.contextmanager
def _exclusive(lock: Path) -> Iterator[None]:
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file is closed, even on a crash
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _convert(gguf: Path, target: Path, cache_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # the de-quantized model is an ordinary float32 model; transformers refuses to save a model
    # it still marks as GGUF-quantized
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=cache_dir))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / COMPLETE).write_text(f"converted from {gguf} (sha256 {target.name})\n")
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished first: keep its folder
            if not (target / COMPLETE).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def folder_of(options: PretrainedOptions) -> Path:
    path = Path(options.path)
    return convert_gguf(path, Path(options.cache_dir)) if options.kind == "gguf" else path


def load(options: PretrainedOptions, attention: str, dtype: torch.dtype, device: torch.device,
         seed: int = 0) -> tuple[Any, Any]:
    """(model in eval mode, tokenizer) from the source; a fresh model every call (levers change
    it in place). ``random_weights``: the source's config with weights drawn from ``seed``."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder = folder_of(options)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if options.random_weights:
        config = AutoConfig.from_pretrained(folder)
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=attention)
    else:
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, attn_implementation=attention)
    return model.to(device).eval(), tokenizer
