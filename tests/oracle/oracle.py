"""The semantic oracle for fixes: is `apply`'s output the same program, pinned to the policy GPU?

`judge(raw, path, policy)` lints the file, fixes it as `gpufix apply` does, runs the original and
the fixed program under the recording stubs (tests/oracle/runner.py) and returns the problems
found, each tagged with a family:

- exception   the fixed program raises what the original did not
- stdout      it prints something else
- calls       its framework calls differ other than in device arguments
- device      a device call addresses another physical GPU (through the mask in force before and
              after; index 0 and a bare "cuda" are the default device, which the header
              deliberately makes the policy's first GPU), and it was changed or its finding is gone
- header      at the first framework import the mask is not the policy's / the order not
              PCI_BUS_ID, and no finding says so
- collapse    two device arguments that named different GPUs the policy allows now name one GPU
              (a reordered mask remapped one ordinal and left the other: two models on one
              GPU), and no finding is left on either
- idempotence fixing the fixed file changes it again
- left        a finding shown as safely fixable (`[*]`) is still there after apply, or apply
              removed findings scan did not mark fixable
"""

from __future__ import annotations

import json
from collections import Counter

from gpufix.apply import fix_source
from gpufix.config import Policy, parse_mask
from gpufix.engine import lint_source
from gpufix.source import read_source

from .runner import run_program

HEADER_RULES = ("GPU101", "GPU102", "GPU103", "GPU104", "GPU105", "GPU106", "GPU107")
ORDINAL_RULES = ("GPU001", "GPU002", "GPU003")
PY_CELL_MAGICS = ("time", "timeit", "capture", "prun", "memit")


def notebook_to_python(raw: bytes) -> tuple:
    """(code, {line: (cell, line in cell)}): the code cells as IPython would run them (`%env`
    sets the variable, a `%%time` cell runs its body, other magics and shell escapes do nothing)."""
    nb = json.loads(raw.decode("utf-8-sig"))
    lines, where = [], {}
    for idx, cell in enumerate(nb["cells"], 1):
        if cell.get("cell_type") != "code":
            continue
        src = cell["source"]
        text = "".join(src) if isinstance(src, list) else src
        cell_lines = text.split("\n")
        if cell_lines and cell_lines[-1] == "" and len(cell_lines) > 1:
            cell_lines = cell_lines[:-1]
        whole_cell_magic = False
        for n, ln in enumerate(cell_lines, 1):
            s = ln.strip()
            indent = ln[: len(ln) - len(ln.lstrip())]
            if n == 1 and s.startswith("%%"):
                whole_cell_magic = s[2:].split()[0] not in PY_CELL_MAGICS if s[2:].split() else True
                ln = "pass"
            elif whole_cell_magic:
                ln = "pass"
            elif s.startswith(("%env ", "%set_env ")):
                rest = s.split(None, 1)[1].strip()
                name, _, value = rest.partition("=") if "=" in rest else rest.partition(" ")
                ln = f"{indent}__import__('os').environ[{name.strip()!r}] = {value.strip()!r}"
            elif s.startswith(("%", "!")):
                ln = indent + "pass"
            lines.append(ln)
            where[len(lines)] = (idx, n)
    return "\n".join(lines) + "\n", where


def program_of(raw: bytes, path: str) -> tuple:
    if path.endswith(".ipynb"):
        return notebook_to_python(raw)
    text = read_source(path, raw).text
    return text, {n: (None, n) for n in range(1, text.count("\n") + 2)}


def fix(raw: bytes, path: str, policy: Policy, unsafe: bool = False) -> bytes:
    return fix_source(read_source(path, raw), policy, unsafe)[0]


def lint(raw: bytes, path: str, policy: Policy) -> list:
    res = lint_source(read_source(path, raw), policy)
    if res.errors:
        raise AssertionError(f"lint errors: {res.errors}")
    return res.findings


def _physical(dev: dict, env, before: bool):
    """What GPU a recorded device argument names under the frozen mask `env`."""
    if dev["kind"] == "nvml":
        return ("nvml", dev["index"])  # NVML ignores the mask
    i = dev["index"] or 0
    mask = env[0] if env else None
    entries = parse_mask(mask) if mask is not None else None
    if entries is None:
        return ("gpu", i)
    if i < len(entries):
        return ("gpu", entries[i])
    # Past the end of the mask: the contract reads the original as meaning GPU i; in the fixed
    # program it is an invalid ordinal.
    return ("gpu", i) if before else ("invalid", i)


def _is_default(dev: dict) -> bool:
    return dev["kind"] != "nvml" and not dev["index"]


def _literal_values(code: str, where: dict, findings: list) -> dict:
    """{(cell, line, column): value} of the string literals the findings point at."""
    import ast

    lines = code.split("\n")
    back = {v: k for k, v in where.items()}
    out = {}
    for f in findings:
        n = back.get((f.cell, f.line)) if f.cell is not None else f.line
        m = back.get((f.cell, f.end_line)) if f.cell is not None else f.end_line
        if not n or not m or m > len(lines):
            continue
        chunk = "\n".join(lines[n - 1 : m])
        end = len(chunk) - len(lines[m - 1]) + f.end_column - 1
        text = chunk[f.column - 1 : end].strip()
        try:
            node = ast.parse(text, mode="eval").body
        except SyntaxError:
            continue
        if isinstance(node, ast.Constant):
            out[(f.cell, f.line, f.column)] = node.value
        elif isinstance(node, ast.JoinedStr) and all(isinstance(v, ast.Constant) for v in node.values):
            out[(f.cell, f.line, f.column)] = "".join(v.value for v in node.values)  # "cu" f"da:1"
    return out


def _silenced(code: str, line: int) -> bool:
    lines = code.split("\n")
    text = lines[line - 1].lower() if 0 < line <= len(lines) else ""
    return "gpufix: ignore" in text or "noqa" in text


def compare_runs(a: dict, b: dict, policy: Policy, findings_after: list, where_after: dict, code_after: str = "") -> list:
    """Problems in the fixed run `b` compared with the original run `a`."""
    literals = _literal_values(code_after, where_after, findings_after) if code_after else {}
    problems = []
    if b["exception"] and b["exception"] != a["exception"]:
        problems.append(("exception", f"fixed program raises {b['exception']} (original: {a['exception']})"))
    if a["exception"] and not b["exception"]:
        # The fix removed the error (GPU106: `= 1` raises TypeError): compare what the original
        # did before it stopped.
        b = dict(b, stdout=b["stdout"][: len(a["stdout"])], imports=b["imports"][: len(a["imports"])],
                 calls=b["calls"][: len(a["calls"])])
    if a["stdout"] != b["stdout"]:
        problems.append(("stdout", f"output differs: {a['stdout']!r} -> {b['stdout']!r}"))
    if a["imports"] != b["imports"] and not b["exception"]:
        problems.append(("calls", f"framework imports differ: {a['imports']} -> {b['imports']}"))
    if b["import_env"] is not None and b["import_env"] != [policy.visible_devices, policy.device_order]:
        if not any(f.rule in HEADER_RULES for f in findings_after):
            problems.append(("header", f"at the first framework import the env is {b['import_env']}, and no finding says so"))
    ca, cb = a["calls"], b["calls"]
    if len(ca) != len(cb):
        problems.append(("calls", f"{len(ca)} framework calls before, {len(cb)} after"))
    problems += _collapses(ca, cb, a, b, policy, findings_after, where_after, code_after)
    for x, y in zip(ca, cb):
        if (x["name"], x["args"], x["kwargs"]) != (y["name"], y["args"], y["kwargs"]) or len(x["devices"]) != len(y["devices"]):
            problems.append(("calls", f"call {x['name']}{x['args']}{x['kwargs']} became {y['name']}{y['args']}{y['kwargs']}"))
            continue
        for d1, d2 in zip(x["devices"], y["devices"]):
            if d1["kind"] != d2["kind"] or d1.get("prefix") != d2.get("prefix"):
                problems.append(("calls", f"{x['name']}: device {d1['raw']!r} became {d2['raw']!r}"))
                continue
            if _is_default(d1) and _is_default(d2):
                continue
            p1 = _physical(d1, a["frozen_env"], True)
            p2 = _physical(d2, b["frozen_env"], False)
            if p1 == p2:
                continue
            cell, line = where_after.get(y["line"], (None, y["line"]))
            if d1["raw"] == d2["raw"] and (a["frozen_env"] or [None])[0] == (b["frozen_env"] or [None])[0]:
                continue  # the same literal under the same mask: whatever it names, it still does
            # Its finding: on the call's line, or (a string that reached the call through a name)
            # one on a literal with the same value.
            remains = any(
                f.rule in ORDINAL_RULES and ((f.cell == cell and f.line <= line <= f.end_line)
                                             or (isinstance(d2["raw"], str) and literals.get((f.cell, f.line, f.column)) == d2["raw"])
                                             # an int that reached the call through a name, or a formatted string (f"cuda:{gpu}")
                                             or (d2["kind"] in ("cuda", "int") and type(literals.get((f.cell, f.line, f.column))) is int
                                                 and literals.get((f.cell, f.line, f.column)) == d2["index"]))
                for f in findings_after
            )
            if d1["raw"] == d2["raw"] and remains:
                continue  # left alone, and its finding is still reported
            if d1["raw"] == d2["raw"] and _silenced(code_after, y["line"]):
                continue  # left alone on a line whose owner silenced gpufix
            problems.append(("device", f"{x['name']} (line {x['line']}): {d1['raw']!r} = {p1} under mask "
                             f"{(a['frozen_env'] or [None])[0]!r} became {d2['raw']!r} = {p2} under mask "
                             f"{(b['frozen_env'] or [None])[0]!r}" + ("" if remains else ", with no finding left")))
    return problems


def _collapses(ca: list, cb: list, a: dict, b: dict, policy: Policy, findings_after: list, where_after: dict,
               code_after: str) -> list:
    allowed = set(parse_mask(policy.visible_devices) or ())
    seen: dict = {}  # physical GPU after -> (physical before, raw before, line)
    for x, y in zip(ca, cb):
        if len(x["devices"]) != len(y["devices"]):
            continue
        for d1, d2 in zip(x["devices"], y["devices"]):
            if d1["kind"] == "nvml" or d1["kind"] != d2["kind"] or d1["index"] is None or d2["index"] is None:
                continue
            if code_after and _silenced(code_after, y["line"]):
                continue  # its owner silenced gpufix there: theirs to judge
            p1, p2 = _physical(d1, a["frozen_env"], True), _physical(d2, b["frozen_env"], False)
            if p1[0] != "gpu" or p1[1] not in allowed or p2[0] != "gpu":
                continue
            first = seen.setdefault(p2, (p1, d1["raw"], y["line"]))
            if first[0] == p1:
                continue
            lines = [where_after.get(n, (None, n)) for n in (first[2], y["line"])]
            if any(f.rule in ORDINAL_RULES and (f.cell, f.line) in lines for f in findings_after):
                continue
            return [("collapse", f"{first[1]!r} ({first[0]}) and {d1['raw']!r} ({p1}) both name {p2} after the fix, "
                                 "with no finding left")]
    return []


def judge(raw: bytes, path: str, policy: Policy) -> tuple:
    """(fixed bytes, problems) for one file under `policy`."""
    before = lint(raw, path, policy)
    fixed = fix(raw, path, policy)
    after = lint(fixed, path, policy)
    problems = []
    code_a, _ = program_of(raw, path)
    code_b, where_b = program_of(fixed, path)
    run_a = run_program(code_a)
    run_b = run_program(code_b)
    problems += compare_runs(run_a, run_b, policy, after, where_b, code_b)
    again = fix(fixed, path, policy)
    if again != fixed:
        problems.append(("idempotence", "fixing the fixed file changes it again"))
    left = [f for f in after if f.fix and f.fix.applicability == "safe"]
    if left:
        problems.append(("left", "still safely fixable after apply: " + "; ".join(f"{f.rule} {f.message}" for f in left)))
    total, fixable, remaining = Counter(), Counter(), Counter()
    for f in before:
        total[f.rule] += 1
        fixable[f.rule] += bool(f.fix and f.fix.applicability == "safe")
    for f in after:
        remaining[f.rule] += 1
    for rule in set(total) | set(remaining):
        if remaining[rule] != total[rule] - fixable[rule]:
            problems.append(("left", f"{rule}: scan showed {total[rule]} ({fixable[rule]} [*]), {remaining[rule]} left after apply"))
    return fixed, problems
