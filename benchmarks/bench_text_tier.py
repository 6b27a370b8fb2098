"""CPU seconds of one cold pass of the prefilter's text tier over a corpus, in this process (run it
in a fresh process per checkout, alternately, from a neutral folder):

    PYTHONPATH=CHECKOUT python benchmarks/bench_text_tier.py CORPUS

Per .py file: `classify` in the gpu-modules scope with confirmation (as a scan with a policy),
then what the engine asks next (`irregular_spelling` for a file to analyse, `parse_anyway` for one
it skips). The files are read before the clock starts; the first pass pays every regex compile,
as a scan's process does. Then how many files (and MB) the tier sends to the full analysis and to
the header-only reading."""
import os
import sys
import time

texts = []
for d, dirs, files in os.walk(sys.argv[1]):
    dirs.sort()
    for f in sorted(files):
        if f.endswith(".py"):
            try:
                with open(os.path.join(d, f), encoding="utf-8") as fh:
                    texts.append((os.path.join(d, f), fh.read()))
            except (OSError, UnicodeDecodeError):
                pass
t0 = time.process_time()
from gpufix.catalog import load_api_catalog

catalog = load_api_catalog()
try:
    from gpufix import registry
except ImportError:  # a checkout from before gpufix.registry (the prefilter's functions took the catalogue)
    from gpufix import prefilter as old
    from gpufix.collectors import load_collectors

    load_collectors()
    classify = lambda text, path, scope: old.classify(text, path, scope, catalog)  # noqa: E731
    irregular_spelling = lambda text: old.irregular_spelling(text, catalog)  # noqa: E731
    parse_anyway = lambda text, has_policy: old.parse_anyway(text, catalog, has_policy)  # noqa: E731
else:
    registry.collectors()
    pf = registry.prefilter(catalog)
    classify, irregular_spelling, parse_anyway = pf.classify, pf.irregular_spelling, pf.parse_anyway
t1 = time.process_time()
tiers = []
for path, text in texts:
    tier = classify(text, path, "gpu-modules")
    tiers.append(tier)
    if tier:
        irregular_spelling(text)
    else:
        parse_anyway(text, True)
t2 = time.process_time()
print(f"{len(texts)} files, {sum(len(t) for _, t in texts) / 1e6:.1f} MB: imports and catalogue {t1 - t0:.3f} s, "
      f"text tier {t2 - t1:.3f} s CPU")
# What the tier sends on: the full analysis (the costliest stage per file), the header-only reading.
for name, value in (("full analysis", 2), ("header only", 1)):
    picked = [t for (_, t), tier in zip(texts, tiers) if tier == value]
    print(f"  {name}: {len(picked)} files, {sum(map(len, picked)) / 1e6:.2f} MB")
