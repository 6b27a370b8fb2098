"""Value flow indexes only the statements that name what its sinks can reach
(gpufix.valueflow.Flow._restricted_index): every literal found, its `via` and why its fix is blocked
must be those of the whole module's index, on programs whose answers hinge on statements far from
the sink (links, a second binding, a `global`, a field's positional construction, an argparse
dest spelled with dashes, decorators, a fullwidth name)."""

import ast
import textwrap

import pytest

from gpufix import valueflow
from gpufix.valueflow import Flow, Sink

PROGRAMS = {
    "link-then-literal": """
        import torch
        FIRST = 1
        unrelated = 2
        chosen = FIRST
        def run():
            torch.cuda.set_device(chosen)
        """,
    "assigned-twice-far-away": """
        GPU = 1
        def a():
            pass
        def b():
            global GPU
            GPU = 2
        def use():
            set_device(GPU)
        """,
    "read-elsewhere": """
        GPU = 1
        x = 2
        def use():
            set_device(GPU)
        print(GPU)
        """,
    "dataclass-field-built-positionally": """
        from dataclasses import dataclass
        @dataclass
        class Cfg:
            gpu_id: int = 1
        other = 3
        cfg = Cfg(2)
        def use(cfg):
            set_device(cfg.gpu_id)
        """,
    "argparse-dest-from-dashed-flag": """
        import argparse
        p = argparse.ArgumentParser()
        p.add_argument("--gpu-id", type=int,
                       default=1)
        args = p.parse_args()
        set_device(args.gpu_id)
        """,
    "default-in-decorated-def": """
        def deco(f):
            return f
        @deco
        def run(
            gpu=1,
        ):
            x = 0
            set_device(gpu)
        """,
    "read-in-a-decorator": """
        GPU = 1
        @register(GPU)
        def helper():
            pass
        set_device(GPU)
        """,
    "nested-scopes-and-unpacking": """
        def outer():
            a, gpu = 0, 1
            def inner():
                y = 2
                set_device(gpu)
            return inner
        """,
    "walrus-used": """
        if (gpu := 1):
            pass
        set_device(gpu)
        """,
    "fullwidth-read": """
        gpu = 1
        z = 0
        print(ｇｐｕ)
        set_device(gpu)
        """,
}


def _sinks(tree):
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "set_device":
            for arg in node.args:
                if isinstance(arg, (ast.Name, ast.Attribute)):
                    out.append(Sink("ordinal", arg, "set_device", arg.lineno))
    return out


def _reach(tree, text, whole):
    flow = Flow(tree, text)
    if whole:
        flow._index = valueflow._Index(tree)
    src = lambda node: ast.get_source_segment(text, node) or "?"  # noqa: E731
    return [(r.literal.lineno, r.literal.col_offset, r.via, r.blocked) for _, r in flow.reach(_sinks(tree), src)]


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_restricted_index_answers_as_the_whole_index(name, monkeypatch):
    text = textwrap.dedent(PROGRAMS[name]).lstrip("\n")
    tree = ast.parse(text)
    built = []
    real = valueflow._Index.__init__

    def init(self, tree, lines=None):
        built.append(lines)
        real(self, tree, lines)

    monkeypatch.setattr(valueflow._Index, "__init__", init)
    restricted = _reach(tree, text, whole=False)
    assert restricted == _reach(tree, text, whole=True)
    assert restricted, "a literal reaches the sink"
    read_at = {"read-elsewhere": 5, "fullwidth-read": 3, "read-in-a-decorator": 2}
    if name in read_at:
        assert restricted[0][3].endswith(f"also used on line {read_at[name]} as something other than a device")
    if name != "assigned-twice-far-away":  # (a `global` of a sink's name: the whole index)
        assert built[0] is not None and len(built[0]) < text.count("\n")  # statements were left out
