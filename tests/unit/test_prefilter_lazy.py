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


# -- the gate of the anchored string forms' regex ---------------------------------------------------
from pathlib import Path  # noqa: E402

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from gpufix.prefilter import _Spelled  # noqa: E402

_ANCHORED = _Spelled(registry.collectors().string_forms(load_api_catalog())).anchored
# pieces of literals that spell (or nearly spell) the anchored forms: plain parts, escapes of
# their characters, implicit concatenation and line continuations between them
_PIECES = st.sampled_from([
    "'", '"', '"""', "CUDA_", "VISIBLE_", "DEVICES", "DEVICE_", "ORDER", "device", "_id", "cu", "da", ":", "1", "0",
    "\\x43", "\\x63", "\\u0043", "\\U00000063", "\\N{LATIN SMALL LETTER C}", "\\103", "\\143", "\\x5f", "\\x3a",
    "\\\n", "\" \"", "' '", "\"\n    \"", "\" # c\n r\"", "\\n", "x", " ", "(", "C", "c", "D", "d",
    "UDA_", "uda:", "evice_id", "EVICE_ORDER", "\\x44", "\\x64", "\\u0064", "\\144", "\\104",
])


def _gate_holds(text: str) -> None:
    for _quote, gate, rx in _ANCHORED:
        compiled_gate, compiled_rx = re.compile(gate.pattern), re.compile(rx.pattern)
        for i in range(len(text)):
            if compiled_rx.match(text, i):
                assert compiled_gate.match(text, i), (text, i)


@settings(max_examples=400, deadline=None)
@given(st.lists(_PIECES, max_size=10).map("".join))
def test_every_match_of_the_spelled_forms_matches_their_gate_at_the_same_place(text):
    _gate_holds(text)


def test_the_gate_holds_on_the_bundled_files_and_spares_plain_ones():
    root = Path(__file__).resolve().parents[2]
    for path in sorted((root / "fixtures").rglob("*.py"))[:200]:
        _gate_holds(path.read_text(encoding="utf-8", errors="replace"))
    # the first irregularity at each place: the first character escaped each way, a break after one
    # plain character, after all but the last
    first = ['"\\x63uda:1"', '"\\u0063uda:1"', '"\\U00000063uda:1"', '"\\N{LATIN SMALL LETTER C}uda:1"', '"\\143uda:1"',
             '"\\x43UDA_VISIBLE_DEVICES"', '"\\103UDA_DEVICE_ORDER"', "'\\x64evice_id': 1"]
    breaks = ['"c" "uda:1"', '"C" "UDA_DEVICE_ORDER"', "'d' 'evice_id': 2", '"c\\\nuda:1"', '"cuda" ":1"',
              "'CUDA_VISIBLE_DEVICE' 'S'", '"cud\\x61:1"']
    for text in first + breaks + ['x = "cu" "da:1"', "os.environ['CUDA_VISIBLE_' 'DEVICES']", "{'device\\x5fid': 1}"]:
        _gate_holds(text)
        assert any(re.compile(rx.pattern).search(text) for _, _, rx in _ANCHORED), text
    # a file of ordinary literals ("cuda", "cpu", "\n") never gets the costly regex compiled
    plain = 'device = "cuda" if ok else "cpu"\nprint("\\n".join(["c", "d"]))\n'
    assert not any(re.compile(gate.pattern).search(plain) for _, gate, _ in _ANCHORED)
