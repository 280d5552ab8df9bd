"""Convert a GGUF model source into the model cache ahead of a run, as an install step.

    python -m mmperf_suites.prepare [--cache DIR] [WORKLOAD=SOURCE ...]   # default llm=smollm2

``scripts/setup.sh`` runs it once the bundled SmolLM2 is installed, so the first benchmark of a
fresh clone loads a cached folder instead of de-quantizing the GGUF while the suite's clock and
its xdist workers wait (~25 s on a 2-core VM). A source already cached costs a hash of its file;
a Hugging Face folder needs nothing. Exit 0 when every source is ready, 2 with one line per
source that is not (the suites' own start-up check would refuse it too).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from mmperf_suites import model_sources
from mmperf_suites.plugin import CACHE_ENV


def default_cache(root: Path) -> Path:
    """The cache the suites' plugin uses for a run rooted at ``root``."""
    return Path(os.environ.get(CACHE_ENV) or root / ".mmperf" / "models")


def prepare(source: model_sources.ModelSource, cache: Path) -> tuple[Path, bool]:
    """(the folder the workload loads, whether it was converted now)."""
    if source.kind != "gguf":
        return Path(source.path), False
    from mmperf_suites.workloads import pretrained  # torch and transformers: only for a GGUF

    gguf = Path(source.path)
    converted = not (pretrained.cached_folder(gguf, cache) / pretrained.COMPLETE).is_file()
    return pretrained.convert_gguf(gguf, cache), converted


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sources", nargs="*", default=["llm=smollm2"], metavar="WORKLOAD=SOURCE")
    ap.add_argument("--cache", type=Path, help=f"the model cache (default ${CACHE_ENV} or ./.mmperf/models)")
    args = ap.parse_args(argv)
    cache = args.cache or default_cache(Path.cwd())
    failed = 0
    for text in args.sources:
        workload, sep, spec = text.partition("=")
        try:
            if not sep or not workload or not spec:
                raise model_sources.ModelSourceError(f"{text!r}: expected WORKLOAD=SOURCE")
            source = model_sources.resolve(workload, spec)
            started = time.monotonic()
            folder, converted = prepare(source, cache)
        except (model_sources.ModelSourceError, OSError, ValueError) as exc:
            print(f"mmperf_suites.prepare: {exc}", file=sys.stderr)
            failed += 1
            continue
        if converted:
            print(f"{text}: converted to {folder} in {time.monotonic() - started:.1f} s")
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
