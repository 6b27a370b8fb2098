"""The prefilter builds its tests without compiling them (a run over a few named files compiles only
the tests its files reach), and a lazily compiled test answers as the compiled regex does."""

from __future__ import annotations

import re

from gpufix import registry
from gpufix.catalog import load_api_catalog
from gpufix.prefilter import FULL, SKIP, Prefilter, _Lazy


def test_building_the_tests_compiles_nothing(monkeypatch):
    catalog = load_api_catalog()
    shipped = registry.collectors()
    assert registry.prefilter(catalog).tests  # the collectors' own module-level regexes are not the prefilter's
    compiled = []
    real = re.compile
    monkeypatch.setattr(re, "compile", lambda *a, **k: compiled.append(a[0]) or real(*a, **k))
    fresh = Prefilter(catalog, shipped)
    assert fresh.tests
    assert compiled == []
    # a file without any test's substring compiles no test either (the substring gates first)
    assert fresh.classify("x = 1\n", "a.py", "gpu-modules") == SKIP
    assert compiled == []
    assert fresh.classify("import torch\ntorch.cuda.set_device(1)\n", "a.py", "gpu-modules") == FULL
    monkeypatch.undo()


def test_the_registry_builds_one_prefilter_per_catalogue():
    catalog = load_api_catalog()
    assert registry.prefilter(catalog) is registry.prefilter(catalog) is registry.collectors().prefilter(catalog)
    assert registry.prefilter(catalog).declared is registry.collectors()


def test_lazy_regex_is_the_regex():
    lazy, rx = _Lazy(r"a(b)?c"), re.compile(r"a(b)?c")
    assert lazy.groups == rx.groups == 1  # before any search
    lazy = _Lazy(r"a(b)?c")
    text = "xx ac abc abbc"
    assert lazy.search(text).span() == rx.search(text).span()
    assert lazy.search(text, 4).span() == rx.search(text, 4).span()
    assert lazy.findall(text) == rx.findall(text) and lazy.groups == 1
