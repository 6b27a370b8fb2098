"""Big files are analysed by focused statements only (gpufix.analysis.focus_lines); the facts and
findings must equal those of the full walk. Each case is padded past the focus threshold."""

import textwrap

import pytest

from conftest import FIXTURES
from gpufix.catalog import load_rule_docs
from gpufix.config import policy_from_table
from gpufix.engine import lint_source
from gpufix.source import read_source

PADDING = "".join(f"\n\ndef helper_{i}(x, y=2):\n    z = [x] * y\n    return sum(z) + {i}\n" for i in range(80))

CASES = {
    "alias-at-the-end": """
        from torch.cuda import set_device as pick
        import torch as T
        {pad}
        class Trainer:
            def start(self, device="cuda:1"):
                if True:
                    pick(1)
                    T.ones(2).to(1)
                try:
                    pass
                except RuntimeError:
                    T.cuda.get_device_properties(1)
        """,
    "mask-write-late-in-a-function": """
        import os
        import torch
        {pad}
        def main():
            torch.cuda.init()
            os.environ["CUDA_VISIBLE_DEVICES"] = "0"
            x = "cuda:1"
        """,
    "environ-alias": """
        from os import environ as env
        import torch
        {pad}
        def pin():
            env["CUDA_VISIBLE_DEVICES"] = 1
        """,
    "no-gpu-import-but-a-helper": """
        from utils.gpu import gpu_device_index
        {pad}
        def choose():
            return gpu_device_index(1)
        """,
    "guarded-import": """
        import logging
        if is_torch_available():
            import torch
        {pad}
        def load():
            import bitsandbytes as bnb
            return torch.cuda.device_count()
        """,
    "nvml-and-lists": """
        import pynvml
        import torch
        {pad}
        def watch(model):
            h = pynvml.nvmlDeviceGetHandleByIndex(torch.cuda.current_device())
            return torch.nn.DataParallel(model, device_ids=[0, 1]), {{"device_map": 1}}
        """,
}

CASES["value-flow-and-child-masks"] = """
        import argparse
        import subprocess
        import lightning as L
        import pynvml
        import tensorflow as tf
        GPU = 1
        parser = argparse.ArgumentParser()
        parser.add_argument("--device-index", type=int, default=0)
        args = parser.parse_args()
        idx = args.device_index
        {pad}
        def train(rank=1):
            t = L.Trainer(devices=[rank])
            pynvml.nvmlDeviceGetHandleByIndex(idx)
            tf.config.set_visible_devices(tf.config.list_physical_devices("GPU")[GPU], "GPU")
            subprocess.run(["x"], env={{"CUDA_VISIBLE_DEVICES": "0"}})
            return f"cuda:{{GPU}}"
        """

# a loader of the file's own, called on a line that names no device word (imports.before's
# extra focus lines): the import it runs is the file's GPU import
CASES["loader-called-late"] = """
        def load_backend():
            import torch
            return torch
        {pad}
        backend = load_backend()
        """

POLICIES = [
    {},
    {"visible-devices": "1"},
    {"visible-devices": "0,1", "header-scope": "all"},
    {"visible-devices": "1", "api": [{"name": "gpu_device_index", "args": [{"position": 0}]}]},
]


def _findings(src, policy, focused):
    res = lint_source(src, policy, focused=focused)
    return [f.to_json() for f in res.findings], [e.to_json() for e in res.errors]


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("table", POLICIES, ids=lambda t: ",".join(f"{k}={v}" for k, v in t.items() if k != "api") or "no-policy")
def test_focused_equals_full_on_big_files(name, table):
    text = textwrap.dedent(CASES[name]).lstrip("\n").format(pad=PADDING)
    assert text.count("\n") > 250
    policy = policy_from_table(table, "<test>", root="/nonexistent")
    src = read_source("big.py", text.encode())
    focused = _findings(src, policy, True)
    assert focused == _findings(src, policy, False)
    if table.get("visible-devices") == "1" and name == "alias-at-the-end":
        assert [f["rule"] for f in focused[0]].count("GPU001") == 4  # really exercised


def test_focused_equals_full_on_padded_fixtures():
    policy = policy_from_table({"visible-devices": "1"}, "<test>", root="/nonexistent")
    files = sorted(p for p in FIXTURES.rglob("*.py"))
    assert len(files) > 40
    for path in files:
        text = path.read_text(encoding="utf-8")
        if "from __future__" in text:
            continue  # padding above a __future__ import would be a syntax error
        big = read_source(path.name, (PADDING + "\n" + text).encode())
        assert _findings(big, policy, True) == _findings(big, policy, False), path


def test_focused_walk_visits_the_calls_of_a_loader():
    # the loader's call names no device word: only imports.before's extra focus lines bring it in
    import ast

    from gpufix import registry
    from gpufix.analysis import analyze
    from gpufix.catalog import catalog_for

    text = textwrap.dedent(CASES["loader-called-late"]).lstrip("\n").format(pad=PADDING)
    tree, lines = ast.parse(text), text.split("\n")
    catalog = catalog_for(policy_from_table({"visible-devices": "1"}, "<test>", root="/nonexistent"))

    def imports(focused):
        facts = analyze(tree, lines, catalog, registry.collectors(), text=text if focused else None)
        return [(g.what, g.pos.line, g.via_call) for g in facts.gpu_imports]

    assert imports(True) == imports(False) == [("import of torch", 2, False), ("import of torch", len(lines) - 1, True)]
