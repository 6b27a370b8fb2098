"""Facts come from collectors (gpufix/collectors/): one walk dispatches each node to the collectors
that look at its type; the prefilter's FULL-tier tests and the focused walk's words are the
collectors' own declarations. gpufix.registry finds them and hands them down: a test hands down a
set of its own (`Collectors(...)`), nothing is patched."""

import ast
import sys
import textwrap

import pytest

from gpufix import collectors, registry
from gpufix.analysis import Analyzer
from gpufix.catalog import load_api_catalog
from gpufix.lexical import NAME_OR_CODE
from gpufix.prefilter import FULL, SKIP
from gpufix.registry import Collectors


def test_the_bundled_collectors_in_dispatch_order():
    names = [c.name for c in registry.collectors().all]
    assert names == ["imports", "env-writes", "child-env", "map-location", "device-apis", "gpu-calls", "cuda-strings",
                     "value-flow", "gpu-options", "multi-gpu", "rank-device", "spawn-targets"]
    # a rule's own fact may live in its rule module (GPU108's options); shared ones in gpufix/collectors/
    modules = {c.name: type(c).__module__ for c in registry.collectors().all}
    assert modules["gpu-options"] == "gpufix.rules.gpu108_app_gpu_choice"
    assert modules["spawn-targets"] == "gpufix.rules.gpu105_mask_set_too_late"
    assert modules["multi-gpu"] == "gpufix.collectors.multi_gpu"
    table = registry.collectors().table
    # map_location marks its dict before the literal collectors read the dict's keys
    assert [m.__self__.name for m in table["Dict"]] == ["child-env", "map-location", "device-apis"]
    assert [m.__self__.name for m in table["Call"]] == ["imports", "env-writes", "child-env", "map-location", "device-apis", "gpu-calls", "value-flow"]


def test_prefilter_tests_are_the_collectors_declarations():
    catalog = load_api_catalog()
    declared = registry.collectors().prefilter_tests(catalog)
    from gpufix.collectors._patterns import SPELLED_INDEX

    assert ("cuda:", rf"cuda:{SPELLED_INDEX}", collectors.STRING_START) in declared
    assert ("VISIBLE_DEVICES", None, NAME_OR_CODE) in declared and ("DEVICE_ORDER", None, NAME_OR_CODE) in declared
    assert any(lit == "set_device" and where == collectors.CODE for lit, _, where in declared)


def _fake_collector_package(tmp_path, text):
    pkg = tmp_path / "fakecollectors"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "sleeps.py").write_text(textwrap.dedent(text))
    sys.path.insert(0, str(tmp_path))
    try:
        import importlib

        return importlib.import_module("fakecollectors")
    finally:
        sys.path.remove(str(tmp_path))


NEW_COLLECTOR = """
    from gpufix.collectors import Collector

    class Sleeps(Collector):
        name = "sleeps"
        priority = 70
        def prefilter_tests(self, catalog):
            return (("time.sleep", r"time\\.sleep\\(\\s*[1-9]"),)
        def focus_words(self, catalog, imports):
            return ("sleep",)
        def visit_Call(self, node, walk):
            if walk.call_qual == "time.sleep":
                walk.facts.extra.setdefault("sleeps", []).append(walk.pos(node).line)
"""


def test_a_new_collector_module_is_dispatched_and_feeds_the_prefilter(tmp_path):
    """Adding a fact = adding one module: the walk calls it and the prefilter lets its files through."""
    pkg = _fake_collector_package(tmp_path, NEW_COLLECTOR)
    found = registry.discover_collectors(pkg)
    assert [c.name for c in found] == ["sleeps"]
    combined = Collectors(registry.collectors().all + found)
    try:
        catalog = load_api_catalog()
        text = "import time\nimport os\ntime.sleep(5)\n"
        assert combined.prefilter(catalog).classify(text, "x.py", "gpu-modules") == FULL
        assert combined.prefilter(catalog).classify("import time\nimport os\ntime.sleep(0)\n", "x.py", "gpu-modules") == SKIP
        assert registry.prefilter(catalog).classify(text, "x.py", "gpu-modules") == SKIP  # (the shipped set's own)
        tree = ast.parse(text)
        facts = Analyzer(tree, text.splitlines(), catalog, combined).run()
        assert facts.extra == {"sleeps": [3]}
        assert "sleeps" not in {fn.__self__.name for fn in registry.collectors().table["Call"]}
    finally:
        sys.modules.pop("fakecollectors", None)
        sys.modules.pop("fakecollectors.sleeps", None)


def test_two_collectors_with_one_name_are_refused(tmp_path):
    pkg = _fake_collector_package(tmp_path, NEW_COLLECTOR + NEW_COLLECTOR.replace("class Sleeps", "class Again"))
    with pytest.raises(RuntimeError, match="two collectors are named sleeps"):
        registry.discover_collectors(pkg)
    sys.modules.pop("fakecollectors", None)
    sys.modules.pop("fakecollectors.sleeps", None)


WHOLE_TREE_COLLECTOR = """
    from gpufix.collectors import Collector

    class Todos(Collector):
        name = "todos"
        only_with_policy = True
        def parse_tests(self, catalog):
            return (("TODO(gpu)", r"#\\s*TODO\\(gpu\\)"),)
        def finish(self, facts, tree, text):
            facts.extra[self.name] = [n for n, line in enumerate(text.splitlines(), 1) if "TODO(gpu)" in line]
"""


def test_a_whole_tree_collector_runs_once_per_file_and_only_under_a_policy(tmp_path):
    """`finish` sees the whole text/tree after the walk; `parse_tests` lift a file the prefilter
    would skip; `only_with_policy` turns both off without a policy."""
    from gpufix.config import Policy

    pkg = _fake_collector_package(tmp_path, WHOLE_TREE_COLLECTOR)
    combined = Collectors(registry.collectors().all + registry.discover_collectors(pkg))
    try:
        catalog = load_api_catalog()
        prefilter = combined.prefilter(catalog)
        text = "import os\n\n# TODO(gpu): choose\n"
        assert prefilter.classify(text, "x.py", "gpu-modules") == SKIP
        assert prefilter.parse_anyway(text, has_policy=True)
        assert not prefilter.parse_anyway(text, has_policy=False)
        assert not prefilter.parse_anyway("import os\nTODO(gpu) = 1\n", has_policy=True)  # its regex decides
        assert not registry.prefilter(catalog).parse_anyway(text, has_policy=True)  # (the shipped set's own)
        tree = ast.parse(text)
        facts = Analyzer(tree, text.splitlines(), catalog, combined).run()
        combined.finish(facts, tree, text, Policy(visible_devices="1"))
        assert facts.extra == {"todos": [3]}
        facts = Analyzer(tree, text.splitlines(), catalog, combined).run()
        combined.finish(facts, tree, text, Policy())
        assert facts.extra == {}
    finally:
        sys.modules.pop("fakecollectors", None)
        sys.modules.pop("fakecollectors.sleeps", None)
