"""Convert a GGUF model source into the model cache ahead of a run, as an install step.

    python -m mmperf_suites.prepare [--cache DIR] [WORKLOAD=SOURCE[,...] ...]   # default llm=smollm2

``scripts/setup.sh`` runs it once the bundled SmolLM2 is installed, so the first benchmark of a
fresh clone loads a cached folder instead of de-quantizing the GGUF while the suite's clock and
its xdist workers wait (~25 s on a 2-core VM). A source already cached costs a hash of its file
(torch is imported only to convert); a Hugging Face folder needs nothing. Exit 0 when every
source is ready, 2 with one line per source that is not (the suites' own start-up check would
refuse it too).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from mmperf_suites import model_sources
from mmperf_suites.workloads import pretrained
from pytest_mmperf.settings import model_sources as parse_pairs


def prepare(source: model_sources.ModelSource, cache: Path) -> tuple[Path, bool]:
    """(the folder the workload loads, whether it was converted now)."""
    if source.kind != "gguf":
        return Path(source.path), False
    gguf = Path(source.path)
    converted = not (pretrained.cached_folder(gguf, cache) / pretrained.COMPLETE).is_file()
    return pretrained.convert_gguf(gguf, cache), converted


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sources", nargs="*", default=["llm=smollm2"], metavar="WORKLOAD=SOURCE[,...]")
    ap.add_argument("--cache", type=Path,
                    help=f"the model cache (default ${model_sources.CACHE_ENV} or ./.mmperf/models)")
    args = ap.parse_args(argv)
    cache = args.cache or model_sources.model_cache(Path.cwd())
    failed = 0
    for text in args.sources:
        try:  # --mmperf-model's own syntax
            pairs = parse_pairs(text)
        except ValueError as exc:
            print(f"mmperf_suites.prepare: {text!r}: {exc}", file=sys.stderr)
            failed += 1
            continue
        for workload, spec in pairs:
            if spec == model_sources.RANDOM:
                continue
            try:  # the suites' own check of the source (its messages name it)
                started = time.monotonic()
                folder, converted = prepare(model_sources.resolve(workload, spec), cache)
            except (model_sources.ModelSourceError, OSError, ValueError) as exc:
                print(f"mmperf_suites.prepare: {exc}", file=sys.stderr)
                failed += 1
                continue
            if converted:
                print(f"{workload}={spec}: converted to {folder} in {time.monotonic() - started:.1f} s")
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
