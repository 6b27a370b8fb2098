"""The cheap text tests that decide how much work a file needs.

`classify` sorts a file into one of three tiers; each must be a superset of what the full analysis
can find:

* SKIP:   the file can hold no finding (no ordinal shape, no mask variable, no GPU framework name,
          or in `entrypoints` scope no sign of an entrypoint).
* HEADER: the file can hold only the file-level header findings (GPU101/GPU102): it names a GPU
          framework but holds no literal device ordinal in a catalogued form and no mask variable.
          It is parsed with `ast` (so syntax errors are still reported), but only its import
          statements are looked at (and the collectors' whole-tree `finish` hooks run). A file
          `classify` skips is put here by `parse_anyway` when a collector's `parse_tests` ask.
* FULL:   everything else: parse and run the whole analysis.

The FULL tier's tests are the fact collectors' own declarations (gpufix/collectors/: each says
which text its facts need), so the prefilter cannot drift from the analysis. They are handed down:
a `Prefilter` is built from one set of collectors under one catalogue (gpufix.registry.prefilter
builds the shipped collectors' once per catalogue); this module never looks the collectors up.
The device-API ones are derived from the catalogue (rules/apis/*.toml plus the policy's own APIs):
for an API that takes an ordinal, a call of its last name with a literal at the ordinal's position
(or a mention of the name when the position is not the first, or when the name is re-bound with
`as`), and for a keyword, `keyword=` followed by a literal. Tests are a plain substring search
first (fast in C), then a regex only when the substring is there.
"""

from __future__ import annotations

import bisect
import functools
import os
import re

from gpufix import rxcache
from gpufix.apispec import callees_by
from gpufix.catalog import ApiCatalog
from gpufix.lexical import ANYWHERE, CODE, OPENING_QUOTE, Lexed, call_with_args, first_allowed, keyword_of

SKIP, HEADER, FULL = 0, 1, 2

TEST_NAME_RE = re.compile(r"^(test_.*\.py|.*_test\.py|conftest\.py)$")

# Substrings that gate groups of tests: a test whose substring contains a gate runs only when the
# gate occurs (one search instead of one per test in the many files that have none of them).
_GATES = ("device", "Device", "DEVICE", "memory", "cuda", "stream", "DataParallel", "u:", "U:")


class _Lazy:
    """A regex compiled on its first use. Building the tests costs nothing per test: a run over a
    few named files (pre-commit's) compiles only the tests whose substring one of its files holds,
    instead of every test of the catalogue (hundreds of patterns; compiling them was more than
    parsing the files). After the first use its methods are the compiled pattern's own (bound to
    the instance, no indirection left), so the big scans pay nothing for the laziness. The pattern
    and flags are those the eager compile had: the same matches."""

    def __init__(self, pattern: str, flags: int = 0):
        self.pattern = pattern
        self.flags = flags

    def _compile(self):
        rx = rxcache.compile(self.pattern, self.flags)  # from the user's store of compiled regexes, if on
        self.search, self.findall, self.match, self.groups = rx.search, rx.findall, rx.match, rx.groups
        return rx

    def search(self, *args):
        return self._compile().search(*args)

    def findall(self, *args):
        return self._compile().findall(*args)

    def __getattr__(self, name):  # `groups` (or `match`) before the first search
        if name in ("groups", "match"):
            return getattr(self._compile(), name)
        raise AttributeError(name)


class _Located:
    """A test's regex, all of whose matches start with its literal, searched only at the literal's
    occurrences (`places`, all of them, in order; _Present.places): the leftmost match at or after
    a place is the first of the occurrences from there, in order, where the regex matches (`match`
    at a position reads the text before it too, for a lookbehind or `\\b`). The same answers as
    the regex's own search and findall, without reading the text between the occurrences."""

    __slots__ = ("rx", "places", "groups")

    def __init__(self, rx, places: list):
        self.rx = rx
        self.places = places
        self.groups = rx.groups

    def search(self, text: str, pos: int = 0):
        places = self.places
        match = self.rx.match
        for k in range(bisect.bisect_left(places, pos) if pos else 0, len(places)):
            m = match(text, places[k])
            if m is not None:
                return m
        return None

    def findall(self, text: str) -> list:
        """As re's findall: the non-overlapping matches from the left (none is empty: each holds the
        literal), as group 0, group 1, or the tuple of groups (an unmatched one as "")."""
        out = []
        groups = self.groups
        m = self.search(text)
        while m is not None:
            out.append(m.group() if groups == 0 else (m.group(1) or "") if groups == 1 else m.groups(""))
            m = self.search(text, m.end())
        return out


class _Tests:
    """(substring, regex or None, where) triples: a file passes if the substring occurs and the
    regex matches, at a place the test's `where` allows (see _Lexed)."""

    def __init__(self):
        self.items: dict = {}

    def add(self, literal: str, pattern, where: str = ANYWHERE) -> None:
        entry = self.items.setdefault((literal, where), [])
        if pattern is None:
            entry.insert(0, None)
        elif pattern not in entry:
            entry.append(pattern)

    def compile(self) -> tuple:
        """((substring, regex or None, where), ...)"""
        # Every pattern starts with its substring (after `\\b` when it wants one): factor it out so
        # that the regex engine can use its fast literal-prefix search (a leading \\b or an
        # alternation would defeat it); a word boundary before the substring is a lookbehind placed
        # after it. Only a test that asks for it gets one: "PU:" follows the G of "GPU:".
        groups = []
        for (literal, where), patterns in sorted(self.items.items()):
            if None in patterns:
                rx = None
            else:
                esc = re.escape(literal)
                tails = []
                for p in patterns:
                    boundary = ""
                    if p.startswith(r"\b"):
                        p = p[2:]
                        boundary = rf"(?<!\w{esc})"
                    assert p.startswith(esc), (literal, p)
                    tails.append(boundary + p[len(esc):])
                # Compiled on first use. Every alternative starts with `literal` (asserted above),
                # so a text without the substring holds no match: the `str.find`/`in` gate that
                # runs before the regex (_Present) is a necessary condition of a match, and skipping
                # the regex (and its compile) when the gate fails cannot drop a hit.
                rx = _Lazy(esc + "(?:" + "|".join(tails) + ")")
            groups.append((literal, rx, where))
        return tuple(groups)


class _Spelled:
    """The collectors' string forms (gpufix.collectors.StringForm), found however they are spelled:
    the fallback for a file that no plain test lifted. A form the value starts with is looked for
    only where a literal starts with its first character or an escape (a quote, then that), so the
    regex runs at a few places instead of the whole text."""

    def __init__(self, forms):
        from gpufix.spelling import BREAK, escapes, spelled

        anchored = []
        self.floating = []  # (gate words, regex)
        for form in forms:
            if not form.at_start:
                # one regex per way the value may start, each with a literal first character (the
                # regex engine's fast search): the character in each case, or a backslash
                rest = f"(?:{BREAK})*" + spelled(form.value[1:], form.ignore_case) + form.after
                first = form.value[0]
                starts = {first, first.lower(), first.upper()} if form.ignore_case else {first}
                for c in sorted(starts):
                    self.floating.append((form.gate, _Lazy(re.escape(c) + rest)))
                # every escape starts with a backslash: factored out, it is the literal prefix
                tails = [alt[2:] for c in sorted(starts) for alt in escapes(c).split("|")]
                self.floating.append((form.gate, _Lazy(r"\\(?:" + "|".join(tails) + ")" + rest)))
            else:
                anchored.append(spelled(form.value, form.ignore_case) + form.after)
        # one regex for the forms a literal starts with: a quote, then the value (the scan for
        # quotes runs in the regex engine, not in a loop here)
        firsts = "".join(sorted({re.escape(c) for form in forms if form.at_start
                                 for c in {form.value[0], form.value[0].lower(), form.value[0].upper()}} | {"\\\\"}))
        # the lookahead rejects most quotes at once (the next character starts no value); one regex
        # per quote character, so that the engine's search for its literal first character applies
        body = f"(?=[{firsts}])(?:" + "|".join(anchored) + ")"
        # (quote, gate, regex): the regex starts with the quote, so a text without that quote cannot
        # match. The regex is the costliest of the prefilter to compile (12 ms a quote, more than a
        # small run's parsing), so it is compiled and run only where its gate (_first_irregularity)
        # matches, which every match of it does, at the same place.
        gate = _first_irregularity([f for f in forms if f.at_start], BREAK)
        self.anchored = tuple((q, _Lazy(re.escape(q) + gate), _Lazy(re.escape(q) + body)) for q in "'\"") if anchored else ()

    def search(self, text: str, lexed=None, present=None) -> bool:
        """Whether a form is spelled in `text`; with `lexed`, only where a literal may hold it (an
        anchored form at a literal's opening quote, a floating one in a literal or in code).
        `present`: the text's _Present, which may know the gate words already."""
        for quote, gate, rx in self.anchored:
            if quote in text and gate.search(text) and rx.search(text) and (lexed is None or first_allowed(rx, "", OPENING_QUOTE, text, lexed) >= 0):
                return True
        if present is None:
            present = _Present(text, {})
        for gate, rx in self.floating:
            if (not gate or any(present(w) for w in gate)) and rx.search(text) and (
                    lexed is None or first_allowed(rx, "", ANYWHERE, text, lexed) >= 0):
                return True
        return False


def _first_irregularity(forms, brk: str) -> str:
    """A regex (to follow an opening quote) that matches wherever a literal may start with one of
    the `forms` (gpufix.spelling.spelled): the value spelled plainly; or a plain part of it, then
    the first character that is not plain: a backslash (an escape, a line continuation) or `brk`
    (the end of one literal and the start of the next); or at once an escape of its first
    character (`\\x63`, `\\u0043`, `\\N{...}`, `\\143`). Every spelling is one of these."""
    alternatives = []
    for form in forms:
        flag = "(?i:{})" if form.ignore_case else "(?:{})"
        value = form.value
        prefixes = "|".join(re.escape(value[:i]) for i in range(len(value) - 1, 0, -1))
        alternatives.append(flag.format(re.escape(value)))
        if prefixes:
            alternatives.append(flag.format(prefixes) + rf"(?:\\|{brk})")
    alternatives.append(r"\\[uUNx0-7]")
    return "(?:" + "|".join(alternatives) + ")"


@functools.lru_cache(maxsize=16)
def _catalog_tests(catalog: ApiCatalog) -> tuple:
    """(framework import regex, risky-call tests, their gates): the tests that come from the
    catalogue alone, not from the collectors."""
    roots = sorted({m.split(".")[0] for m in catalog.framework_modules})
    framework_rx = _Lazy(r"\b(?:" + "|".join(map(re.escape, roots)) + r")\b")
    # APIs whose call makes a file a GPU module without a GPU framework import (a bare name, or a
    # module outside the frameworks such as `import numba` then `numba.cuda.select_device()`).
    risky = set()
    for api in catalog.apis:
        if api.kind == "method" or api.name == "*" or api.framework == "nvml":
            continue
        root = api.name.split(".")[0]
        if "." not in api.name or catalog.framework_of_module(root) is None:
            risky.add(api.last_name)
    # each starts with its word: the substring gate (_any) is a necessary condition of a match
    risky_tests = tuple((w, _Lazy(rf"{re.escape(w)}(?<!\w{re.escape(w)})\b")) for w in sorted(risky))
    return framework_rx, risky_tests, _gates([t[0] for t in risky_tests])


class Prefilter:
    """The prefilter of one set of collectors (`declared`: what gpufix.registry.Collectors offers,
    `prefilter_tests`, `string_forms` and `parse_tests`) under one catalogue. Its tests are built
    on first use (a run whose files all come from the cache builds none), and each regex is
    compiled the first time a file holds its substring (_Lazy)."""

    def __init__(self, catalog: ApiCatalog, declared):
        self.catalog = catalog
        self.declared = declared
        self._parse: dict = {}  # has_policy -> the parse tests

    @functools.cached_property
    def tests(self) -> tuple:
        """(ordinal tests by root, framework regex, risky tests, named-sink tests by root, gates,
        string forms)."""
        catalog = self.catalog
        ordinal = _Tests()
        for literal, pattern, where in self.declared.prefilter_tests(catalog):
            ordinal.add(literal, pattern, where)
        framework_rx, risky_tests, _ = _catalog_tests(catalog)
        named = _Tests()
        for literal, pattern, where in named_sink_tests(catalog):
            named.add(literal, pattern, where)
        ordinal_tests, named_tests = ordinal.compile(), named.compile()
        gates = _gates([t[0] for t in (*ordinal_tests, *risky_tests, *named_tests)])
        return (_by_root(ordinal_tests, gates), framework_rx, risky_tests, _by_root(named_tests, gates), gates,
                _Spelled(self.declared.string_forms(catalog)))

    def classify(self, text: str, path: str, scope: str, confirm: bool = True) -> int:
        """The file's tier. `confirm`: a test's hit counts only where its declaration says it may
        (gpufix.lexical: a call shape in code, never in a docstring or a comment); off for a text
        whose comments may be more than comments (a notebook's masked `%env` magics)."""
        ordinal, _, risky, named, gates, spelled = self.tests
        present = _Present(text, gates)
        lexed = Lexed(text) if confirm else None
        if _any_confirmed(ordinal, present, lexed):
            return FULL
        if spelled.search(text, lexed, present):
            return FULL  # `"cuda:\\x31"`, `"cu" "da:1"`: a value the plain tests cannot see
        if _FLOW_SOURCE_RX.search(text) and _named_sink_may_resolve(named, present, lexed) and _flow_source(text, lexed):
            return FULL  # a name at a device argument, and a literal it may hold (gpufix.valueflow)
        if scope == "all":
            return HEADER
        if not imports_framework(text, self.catalog) and not _any(risky, present):
            return SKIP
        if scope == "gpu-modules":
            return HEADER
        if is_entrypoint_name(path) or text.startswith("#!") or "__main__" in text:
            return HEADER
        return SKIP

    def irregular_spelling(self, text: str) -> bool:
        """Whether a string form the collectors read may be spelled with escapes or implicit
        concatenation in `text` (the focused walk, which looks for words, must then walk it whole)."""
        return self.tests[5].search(text)

    def parse_anyway(self, text: str, has_policy: bool) -> bool:
        """Whether a collector's `parse_tests` want a file parsed (in the HEADER tier) that `classify`
        would skip: whole-tree facts (an app's GPU option) may sit in a file that imports no GPU
        framework. `has_policy`: a policy is set (collectors that run only under one count)."""
        tests = self._parse.get(has_policy)
        if tests is None:
            tests = self._parse[has_policy] = tuple(
                (literal, _Lazy(rx) if isinstance(rx, str) else rx) for literal, rx in self.declared.parse_tests(self.catalog, has_policy))
        return any(literal in text and (rx is None or rx.search(text)) for literal, rx in tests)


def _gates(literals: list) -> dict:
    """literal -> the longest other literal (or _GATES word) inside it: a literal whose gate is absent
    from a text is absent too, so each file's text is searched once per present gate, not once per
    literal (`cuda:` before `cuda:"`, `cuda:'`, ...; `device` before its 17 compounds)."""
    words = sorted(set(literals) | set(_GATES), key=len)
    out = {}
    for lit in words:
        inner = [w for w in words if len(w) < len(lit) and w in lit]
        if inner:
            out[lit] = max(inner, key=len)
    return _Gates(out)


def _by_root(tests: tuple, gates: dict) -> tuple:
    """The tests grouped by the root of their gate chain (literal -> its gate -> ... -> a literal
    without one): ((root, ((position in `tests`, test), ...)), ...). Each gate is a substring of
    the literal it gates, so a text without a root holds none of the literals under it: one
    search of the root rules out its whole group (on torch's 801 files: 150,079 literal lookups
    -> 65,775). The positions keep the tests' own order where it matters (_named_sink_may_resolve)."""
    groups: dict = {}
    for i, test in enumerate(tests):
        root = test[0]
        while root in gates:
            root = gates[root]
        groups.setdefault(root, []).append((i, test))
    return tuple((root, tuple(group)) for root, group in groups.items())


def _present_tests(batches: tuple, present) -> list:
    """The tests whose literal the text holds, in their original order."""
    out = []
    for root, group in batches:
        if present(root):
            out.extend(entry for entry in group if present(entry[1][0]))
    out.sort(key=_first)
    return [test for _, test in out]


def _first(entry):
    return entry[0]


class _Gates(dict):
    """literal -> its gate (_gates), and for a gate that many literals sit under, how far around
    one of its occurrences those literals reach (`reach`: gate -> (before, after))."""

    def __init__(self, gates: dict):
        super().__init__(gates)
        under: dict = {}
        for literal, gate in gates.items():
            under.setdefault(gate, []).append(literal)
        # A literal holds its gate: each of its occurrences holds one of the gate's, `literal.find(gate)`
        # characters after its start. So a literal occurs in a text iff it occurs in the text's
        # slices [p - before, p + after) around every occurrence p of its gate.
        self.reach = {gate: (max(lit.find(gate) for lit in lits), max(len(lit) - lit.find(gate) for lit in lits))
                      for gate, lits in under.items() if len(lits) >= _MIN_UNDER}
        assert not any("\0" in lit for lit in gates), "a literal holds the separator of _Present's slices"


# A gate with at least so many literals under it is searched for its occurrences (_Present.around):
# the search of its literals then reads only the text around those.
_MIN_UNDER = 2
# ... unless it occurs so often that the slices around its occurrences would be more than this share
# of the text (the literals are then searched in the whole text)
_AROUND_SHARE = 4


class _Present:
    """Which literals a text holds, each searched at most once and only when its gate is there."""

    __slots__ = ("text", "gates", "known", "around", "at")

    def __init__(self, text: str, gates: dict):
        self.text = text
        self.gates = gates
        self.known: dict = {}
        self.around: dict = {}  # gate -> the text's slices around its occurrences (or the text)
        self.at: dict = {}  # gate -> all its occurrences, in order (only where `around` has slices)

    def __call__(self, literal: str) -> bool:
        got = self.known.get(literal)
        if got is None:
            gate = self.gates.get(literal)
            if gate is None:
                got = literal in self.text
            else:
                got = self(gate) and literal in self._around(gate)
            self.known[literal] = got
        return got

    def _around(self, gate: str) -> str:
        """The slices of the text around each occurrence of `gate` (a present gate), joined by NUL,
        which no literal holds (so no match spans two slices, and each match is one of the text's);
        or the whole text when `gate` has few literals under it or too many occurrences."""
        got = self.around.get(gate)
        if got is None:
            text = self.text
            got = text
            reach = getattr(self.gates, "reach", {}).get(gate)
            if reach is not None:
                before, after = reach
                budget = len(text) // _AROUND_SHARE
                find = text.find
                parts = []
                places = []
                p = find(gate)
                while p >= 0:
                    budget -= before + after
                    if budget < 0:
                        parts = None
                        break
                    places.append(p)
                    parts.append(text[max(0, p - before):p + after])
                    p = find(gate, p + 1)
                if parts is not None:
                    got = "\0".join(parts)
                    self.at[gate] = places
            self.around[gate] = got
        return got

    def located(self, literal: str, rx):
        """`rx` (a test's regex, whose matches start with `literal`, a present literal), searched
        only at the literal's occurrences (_Located) where they are known: those of a gate with
        slices, and of the literals under it (each of its occurrences holds the gate at one offset)."""
        gate = literal
        reach = getattr(self.gates, "reach", {})
        while gate is not None and gate not in reach:
            gate = self.gates.get(gate)
        if gate is None or (gate not in self.at and self._around(gate) is self.text):
            return rx  # no gate with slices above it, or too many occurrences for them
        places = self.at[gate]
        if gate != literal:
            offset = literal.find(gate)
            starts = self.text.startswith
            places = [q for q in (p - offset for p in places) if q >= 0 and starts(literal, q)]
        return _Located(rx, places)


def _any(tests, present: _Present) -> bool:
    text = present.text
    for literal, rx in tests:
        if present(literal) and (rx is None or rx.search(text)):
            return True
    return False


def _any_confirmed(batches, present: _Present, lexed) -> bool:
    """Whether a test matches at a place its `where` allows (gpufix.lexical); `lexed` None: anywhere.
    An answer over all tests: their order does not change it, so the groups (_by_root) are
    taken as they come, and a group whose root the text lacks is passed over whole."""
    text = present.text
    for root, group in batches:
        if not present(root):
            continue
        for _, (literal, rx, where) in group:
            if not present(literal):
                continue
            if rx is not None:
                rx = present.located(literal, rx)
            if lexed is None:
                if rx is None or rx.search(text):
                    return True
            elif first_allowed(rx, literal, where, text, lexed) >= 0:
                return True
    return False


def _import_lines(text: str) -> str:
    """The physical lines that hold the word `import` (with their backslash continuations): an
    import statement names its module's top package on the line of its keyword."""
    out = []
    find = text.find
    pos = find("import")
    n = len(text)
    while pos >= 0:
        start = text.rfind("\n", 0, pos) + 1
        while start >= 2 and (text[start - 2] == "\\" or (text[start - 2] == "\r" and start >= 3 and text[start - 3] == "\\")):
            start = text.rfind("\n", 0, start - 1) + 1  # `from torch \\<newline> import x`
        end = find("\n", pos)
        if end < 0:
            end = n
        while end < n and text[end - 1] == "\\" or (end < n and text[end - 1] == "\r" and text[end - 2] == "\\"):
            nxt = find("\n", end + 1)
            end = n if nxt < 0 else nxt
        out.append(text[start:end])
        pos = find("import", end)
    return "\n".join(out)


def imports_framework(text: str, catalog: ApiCatalog) -> bool:
    """Whether the text may import a GPU framework (a superset: comments and strings count too)."""
    if "import" not in text:
        return False
    return bool(_catalog_tests(catalog)[0].search(_import_lines(text)))


def is_entrypoint_name(path: str) -> bool:
    return path.endswith(".ipynb") or bool(TEST_NAME_RE.match(os.path.basename(path)))


# Value flow (gpufix.valueflow): a device argument that is a name matters only when some literal
# is bound with `=` somewhere in the file (an assignment, a default, argparse's `default=`), or
# follows a comma after an `=` on its line (`b, gpu = f(x), 1`: the last target's element; the
# scan from an `=` stops at the next one, so the search stays linear) ...
_FLOW_LITERAL = r"(?:\d|\[(?:\s|\(|#[^\n]*)*\d|[rRuU]?['\"](?:\s*\d|[^'\"\n]*[Pp][Uu]:\d))"
_FLOW_SOURCE_RX = re.compile(
    r"=(?:(?:\s|\\|\(|#[^\n]*)*" + _FLOW_LITERAL + r"|(?!=)[^\n=]*?,[ \t]*(?:\(\s*)*" + _FLOW_LITERAL + ")"
)
_CALL = r"(?:[\s\\)]|#[^\r\n]*(?=[\r\n]|\Z))*\("
_ARGS_BEFORE = r"(?:[^()]|\([^()]*\))*"
_NAMED_VALUE = r"(?:\s|\\|\(|#[^\n]*)*([A-Za-z_][\w.]*)"  # captured: the name the flow gate looks up


def named_sink_tests(catalog):
    """... and a catalogued device argument that is a name: the same shapes as the device-apis
    collector's literal tests, with a captured name where they expect a literal."""
    keyword_apis = []  # as the literal tests' (device_apis): a keyword counts in its APIs' calls
    for api in catalog.apis:
        name = api.last_name
        for spec in api.args:
            if spec.keyword:
                keyword_apis.append((spec.keyword, api))
            if spec.position is not None and name != "*":
                if spec.position == 0:
                    yield name, rf"\b{re.escape(name)}{_CALL}{_NAMED_VALUE}", CODE
                elif spec.when_position is not None:
                    yield name, rf"\b{re.escape(name)}{_CALL}{_ARGS_BEFORE},{_NAMED_VALUE}", CODE
                else:
                    # after arbitrary arguments: any call with enough of them
                    yield name, rf"\b{re.escape(name)}{_CALL}", call_with_args(spec.position + 1)
    for keyword, callees in callees_by(keyword_apis).items():
        yield (keyword, rf"\b{re.escape(keyword)}(?:\s|\\)*={_NAMED_VALUE}",
               CODE if callees is None else keyword_of(callees))


def _flow_source(text: str, lexed) -> bool:
    """Whether some literal is bound with `=` in code (an `=` in a docstring binds nothing)."""
    if lexed is None:
        return _FLOW_SOURCE_RX.search(text) is not None
    return first_allowed(_FLOW_SOURCE_RX, "=", CODE, text, lexed) >= 0


def _named_sink_may_resolve(batches, present: _Present, lexed=None) -> bool:
    """Whether a name at a device argument may be bound to a literal (gpufix.valueflow's own text
    gate, on the names the catalogue's patterns capture). With `lexed`, only a match that starts
    in code counts: the answer without it comes first (one findall per test), and only when it is
    yes are the matches of the tests that made it yes confirmed, overlapping ones too (a
    docstring's match may run into the code after it)."""
    from gpufix.valueflow import _TextGate, name_node

    text = present.text
    named: dict = {}  # name -> the tests that captured it
    any_call = []  # tests that matched without a name (an argument after others: any call)
    for test in _present_tests(batches, present):  # in the tests' order: the gate's memo depends on it
        literal, rx, where = test
        if rx is None:
            continue
        rx = present.located(literal, rx)
        test = (literal, rx, where)  # confirmed (_confirmed_match) at the same occurrences
        found = rx.findall(text)
        if not found:
            continue
        if rx.groups == 0:
            any_call.append(test)
            continue
        for groups_ in found:
            captured = [g for g in ((groups_,) if isinstance(groups_, str) else groups_) if g]
            if not captured and test not in any_call:
                any_call.append(test)
            for n in captured:
                named.setdefault(n, []).append(test)
    if any_call and (lexed is None or any(_confirmed_match(t, text, lexed, lambda captured: not captured) for t in any_call)):
        return True
    if not named:
        return False
    flow_gate = _TextGate(text)
    for n, found_by in named.items():  # the gate's own searches are the cost: one name at a time
        if flow_gate.may_resolve(name_node(n)) and (lexed is None or any(
                _confirmed_match(t, text, lexed, lambda captured, n=n: n in captured) for t in found_by)):
            return True
    return False


def _confirmed_match(test, text: str, lexed, good) -> bool:
    """Whether a match of `test` that starts where its `where` allows has captured names `good` takes."""
    _literal, rx, where = test
    m = rx.search(text)
    while m is not None:
        nxt = lexed.resume(m.start(), where)
        if nxt < 0:
            if good([g for g in m.groups() if g]):
                return True
            nxt = m.start() + 1
        m = rx.search(text, nxt)
    return False


def may_call_device_api(text: str, catalog: ApiCatalog) -> bool:
    """Whether a file without a GPU framework import may still call a catalogued device API."""
    _, risky, gates = _catalog_tests(catalog)
    return _any(risky, _Present(text, gates))
