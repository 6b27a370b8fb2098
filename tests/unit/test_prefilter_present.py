"""The prefilter's literal lookups (prefilter._Present) answer exactly as `literal in text`, however
they search: under a present gate, only in the text around the gate's occurrences."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gpufix import registry
from gpufix.catalog import load_api_catalog
from gpufix.prefilter import _Present

GATES = registry.prefilter(load_api_catalog()).tests[4]
LITERALS = sorted(set(GATES) | set(GATES.values()))
# pieces a text is made of: whole literals, their heads and tails (a literal cut at a slice's edge),
# the separator of the slices, blanks and letters
PIECES = sorted({lit for lit in LITERALS} | {lit[:i] for lit in LITERALS for i in (1, len(lit) // 2, len(lit) - 1)}
                | {lit[i:] for lit in LITERALS for i in (1, len(lit) // 2, len(lit) - 1)} | {"\0", " ", "\n", "x", "_", "(", "="})


def _check(text: str) -> None:
    # as given, and long enough for the slices (a short text is searched whole: the slices around a
    # few occurrences would be more than a quarter of it)
    for text in (text, text + " " * 4000):
        # in two orders: a literal asked before its gate, and after it
        for order in (LITERALS, LITERALS[::-1]):
            present = _Present(text, GATES)
            assert {lit for lit in order if present(lit)} == {lit for lit in LITERALS if lit in text}, text


def test_the_shipped_gates_search_around_their_occurrences():
    assert GATES.reach, "no gate is searched around its occurrences: the test below checks nothing"
    assert "device" in GATES.reach


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=40))
def test_present_is_substring_search(pieces):
    _check("".join(pieces))


def test_present_at_the_edges_and_overlapping():
    for gate, (before, after) in GATES.reach.items():
        under = [lit for lit, g in GATES.items() if g == gate]
        for lit in under:
            _check(lit)  # the literal is the whole text: its gate's slice is cut at both ends
            _check(lit + "\0" + gate)
            _check(gate + lit[:-1] + " " + lit[1:])  # neither whole: no slice may join them
            _check(gate * 3 + lit)
    # a gate that occurs too often for slices: the whole text is searched
    _check("device " * 5000 + "set_device")
    _check("device " * 5000 + "set_devic")


def test_no_literal_is_found_across_two_slices():
    # a literal's head at the end of one occurrence's slice, its tail at the start of the next one's
    crafted = 0
    for gate, (before, after) in GATES.reach.items():
        for lit in [lit for lit, g in GATES.items() if g == gate]:
            for j in range(1, len(lit)):
                head, tail = lit[:j], lit[j:]
                if after < len(gate) + len(head) or before < len(tail):
                    continue
                text = gate + "x" * (after - len(gate) - len(head)) + head + "x" * 50 + tail + "x" * (before - len(tail)) + gate
                if lit not in text:
                    crafted += 1
                    _check(text)
    assert crafted > 10


_PF = registry.prefilter(load_api_catalog())
def _chain(literal: str):
    while literal is not None:
        yield literal
        literal = GATES.get(literal)


# every test with a regex whose literal lies under a gate with slices, or is one (ordinal, named)
LOCATED = [(lit, rx) for batches in (_PF.tests[0], _PF.tests[3]) for _root, group in batches for _, (lit, rx, _where) in group
           if rx is not None and any(g in GATES.reach for g in _chain(lit))]
CODE_PIECES = PIECES + ["(", ")", "1", "0", "[", ",", " ", "#c\n", "\\\n", "x", " as y", "=", "'", '"', ".", "dev"]


def _check_located(text: str) -> None:
    for text in (text, text + " " * 4000):
        present = _Present(text, GATES)
        for lit, rx in LOCATED:
            if not present(lit):
                continue
            located = present.located(lit, rx)
            assert located is not rx or len(text) < 4000, lit  # a long text with few occurrences: located
            assert located.findall(text) == rx.findall(text), (lit, text)
            for pos in (0, 1, len(text) // 3, len(text) // 2):
                m, want = located.search(text, pos), rx.search(text, pos)
                assert (m and (m.span(), m.groups())) == (want and (want.span(), want.groups())), (lit, pos, text)


def test_the_located_searches_cover_the_device_tests():
    assert len(LOCATED) > 20 and {"device", "set_device", "device_ids"} <= {lit for lit, _ in LOCATED}


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(CODE_PIECES), max_size=30))
def test_located_search_is_the_regex_search(pieces):
    _check_located("".join(pieces))


def test_located_search_at_the_edges():
    for lit, _rx in LOCATED:
        for text in (lit + "(1)", "x." + lit + "(1, 2)", lit + "=1 " + lit + " (\\\n 1) " + lit + "(a, b, c)", lit + lit + "(1)",
                     lit + "(" + lit + "(x", lit + "=" + lit + "=x", "(" + lit + "=" + lit + "=1"):
            _check_located(text)


def test_a_device_string_spelled_with_escapes_or_concatenation_is_analysed():
    # the string forms read anywhere in a literal (`PU:` of `/GPU:1`, gated on the word `device`)
    from gpufix.prefilter import FULL

    for literal in (r'"/GPU:\x31"', r'"/gpu:\u0031"', '"/GPU:" "1"', '"/device:GP" "U:1"', r'"/G\x50U:1"'):
        text = f"import tensorflow as tf\n\nwith tf.device({literal}):\n    pass\n"
        assert _PF.classify(text, "m.py", "gpu-modules") == FULL, literal
