"""analysis.nodes_on_lines walks only the statements that span given lines; every node on those
lines must still be found (a collector that narrows its walk to the lines holding its word, like
GPU108's, must see what a walk of the whole tree sees)."""

import ast
import pathlib
import textwrap

from gpufix.analysis import nodes_on_lines

REPO = pathlib.Path(__file__).resolve().parents[2]


def calls_named(nodes, name):
    return {(n.lineno, n.col_offset) for n in nodes
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == name}


def lines_with(text, word):
    return {i for i, line in enumerate(text.split("\n"), 1) if word in line}


TRICKY = textwrap.dedent('''\
    import argparse
    parser = argparse.ArgumentParser()

    @decorate(parser.add_argument("--in-decorator"))
    def f(x=parser.add_argument("--in-default")):
        if parser.add_argument("--in-test"):
            try:
                parser.add_argument("--in-try")
            except ValueError as exc:
                parser.add_argument("--in-handler")
            finally:
                [parser.add_argument(f"--{n}") for n in "ab"]
        match x:
            case 1 if parser.add_argument("--in-guard"):
                parser.add_argument("--in-case")
        return lambda: parser.add_argument("--in-lambda")

    parser \\
        .add_argument("--split")
    with open(parser.add_argument("--in-with")) as fh:
        pass
    ''')


def test_every_call_on_the_lines_is_found():
    tree = ast.parse(TRICKY)
    expected = calls_named(ast.walk(tree), "add_argument")
    assert len(expected) == 11
    assert calls_named(nodes_on_lines(tree, lines_with(TRICKY, "add_argument")), "add_argument") == expected


def test_other_lines_are_not_walked():
    tree = ast.parse(TRICKY)
    found = calls_named(nodes_on_lines(tree, {8}), "add_argument")
    # line 8's statement, and the headers of the blocks around it (decorator, default, test)
    assert found == {(8, 12), (4, 10), (5, 8), (6, 7)}


def test_same_calls_as_a_full_walk_on_the_bundled_files():
    checked = 0
    for path in sorted((REPO / "fixtures").rglob("*.py")) + sorted((REPO / "gpufix").rglob("*.py")):
        text = path.read_text(encoding="utf-8", errors="replace")
        try:
            tree = ast.parse(text)
        except SyntaxError:
            continue
        for word in ("add_argument", "cuda", "device"):
            full = calls_named(ast.walk(tree), word)
            assert calls_named(nodes_on_lines(tree, lines_with(text, word)), word) == full, (path, word)
            checked += bool(full)
    assert checked > 5


OPTIONS = textwrap.dedent('''\
    import argparse
    parser = argparse.ArgumentParser()
    for name in ("lr", "epochs"):
        parser.add_argument(f"--{name}")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument(
        "--gpu_ids", type=str, default="1")
    parser.add_argument("-g", help="which one to use")
    parser.add_argument("--\\x67pu", type=int)
    parser.add_argument("--g" "pu-index", type=int)
    parser.add_argument("--device-index", help="the CUDA card")
    parser.add_argument("--seed"); parser.add_argument("--cuda_device")
    ''')


def test_statements_kept_hold_every_gpu_option():
    """GPU108 walks only the statements whose text may hold a GPU option's flag (a GPU word, an
    escape, two literals): it finds what a walk of the whole tree finds."""
    from gpufix.analysis import Facts
    from gpufix.rules.gpu108_app_gpu_choice import gpu_options

    tree = ast.parse(OPTIONS)
    whole = gpu_options(tree, Facts())
    assert [o.flag for o in whole] == ["--gpu_ids", "--gpu", "--gpu-index", "--device-index", "--cuda_device"]
    assert gpu_options(tree, Facts(), lines_with(OPTIONS, "add_argument"), OPTIONS) == whole
    kept = []
    list(nodes_on_lines(tree, lines_with(OPTIONS, "add_argument"), keep=lambda st: kept.append(st.lineno) or False))
    assert kept == [4, 5, 6, 8, 9, 10, 11, 12, 12]  # simple statements only: the `for` is entered


def test_an_option_whose_call_name_python_reads_nfkc_normalised_is_found():
    """`p.ａｄｄ_argument(...)` is `p.add_argument(...)` to Python: its line is walked."""
    from gpufix.analysis import Facts
    from gpufix.rules.gpu108_app_gpu_choice import GpuOptions

    text = 'import argparse\np = argparse.ArgumentParser()\np.add_argument("--lr")\np.\uff41\uff44\uff44_argument("--gpu_ids")\n'
    facts = Facts()
    GpuOptions().finish(facts, ast.parse(text), text)
    assert [o.flag for o in facts.extra["gpu-options"]] == ["--gpu_ids"]
