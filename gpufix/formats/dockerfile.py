"""Dockerfiles: `ENV NAME=VALUE ...` and the legacy `ENV NAME VALUE`, and the shell in `RUN`,
`CMD`, `ENTRYPOINT` (shell form: read like a shell script; exec form: `"cuda:N"` items).

Deliberately not followed: `ARG` (build time only), `# escape=` directives other than `\\`.
"""

from __future__ import annotations

import re

from gpufix.formats import shell
from gpufix.formats.facts import MASK_VAR, NO_MASK, ORDER_VAR, EnvSet, FileFacts, Ordinal
from gpufix.formats.text import newline_of

_INSTR_RE = re.compile(r"^[ \t]*([A-Za-z]+)[ \t]*", re.M)
_EXEC_CUDA_RE = re.compile(r'"(cuda:(\d+))"')


def _instructions(text: str):
    """(keyword upper-cased, line start, args start, end) for each instruction."""
    i = 0
    n = len(text)
    while i < n:
        nl = text.find("\n", i)
        line_end = n if nl < 0 else nl
        line = text[i:line_end]
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            i = line_end + 1
            continue
        m = _INSTR_RE.match(text, i, line_end)
        start = i
        # The instruction goes on while a line ends with a backslash (comment lines in between
        # are dropped by Docker and need no backslash).
        end = line_end
        last = start  # the start of the instruction's last line: only it can end with a backslash
        while text[last:end].rstrip(" \t\r").endswith("\\") and end < n:
            last = end + 1
            nxt = text.find("\n", end + 1)
            end = n if nxt < 0 else nxt
        if m:
            yield m.group(1).upper(), start, m.end(), end
        i = end + 1


_FROM_RE = re.compile(r"(?:--\S+[ \t]+)*(\S+)(?:[ \t]+[Aa][Ss][ \t]+(\S+))?")


def scan(text: str) -> FileFacts:
    """Each `FROM` starts a stage with the environment of its base: empty for an image, the stage's
    own for `FROM <earlier stage>` (its ENV carries over). A CUDA_DEVICE_ORDER set in one stage is in
    force only for the mask settings of that stage and of the stages built on it."""
    facts = FileFacts()
    nl = newline_of(text)
    env_mask = NO_MASK  # the mask the last `ENV CUDA_VISIBLE_DEVICES` put in force (a stage's later commands)
    stage = 0
    parent = {0: None}  # stage -> the earlier stage it is built FROM (None: an image)
    named: dict = {}  # stage name (lower case) -> stage
    final_mask = {}  # stage -> the mask in force at its end
    order_stages = set()  # stages whose ENV sets CUDA_DEVICE_ORDER
    env_stage = []  # the stage of each facts.env entry, by index
    for keyword, line_start, args, end in _instructions(text):
        env_stage.extend([stage] * (len(facts.env) - len(env_stage)))
        if keyword == "FROM":
            final_mask[stage] = env_mask
            stage += 1
            m = _FROM_RE.match(text, args, end)
            base = m.group(1).lower() if m else ""
            parent[stage] = named.get(base)
            if m and m.group(2):
                named[m.group(2).lower()] = stage
            env_mask = final_mask.get(parent[stage], NO_MASK) if parent[stage] is not None else NO_MASK
        if keyword == "ENV":
            words = [t for t in shell.tokens(text, args, end) if t != "sep"]
            if not words:
                continue
            if "=" in words[0].value:
                for w in words:
                    got = shell._assignment(text, w)
                    if got:
                        e = got[1]
                        e.form = "ENV"
                        e.order_insert = (w.start, ORDER_VAR + "={order} ")
                        facts.env.append(e)
                        if e.var == MASK_VAR:
                            env_mask = e.value
            else:
                name = words[0].value
                if name not in (MASK_VAR, ORDER_VAR, "NVIDIA_VISIBLE_DEVICES") or len(words) < 2:
                    continue
                rest = words[1:]
                vstart, vend = rest[0].start, rest[-1].end
                raw = text[vstart:vend]
                value = None if any(w.dynamic for w in rest) else " ".join(w.value for w in rest)
                style = raw[0] if len(rest) == 1 and len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"" else ""
                editable = value is not None and len(rest) == 1 and (style or not any(c in raw for c in "'\"\\"))
                indent = text[line_start:args][: len(text[line_start:args]) - len(text[line_start:args].lstrip())]
                facts.env.append(EnvSet(name, value, vstart, vend, style, editable, form="ENV",
                                        order_insert=(line_start, indent + "ENV " + ORDER_VAR + "={order}" + nl)))
                if name == MASK_VAR:
                    env_mask = value
        elif keyword in ("RUN", "CMD", "ENTRYPOINT"):
            body = text[args:end].lstrip()
            if body.startswith("["):
                for m in _EXEC_CUDA_RE.finditer(text, args, end):
                    facts.ordinals.append(Ordinal(m.group(1), int(m.group(2)), m.start(1), m.end(1), "cuda:{}", mask=env_mask))
            else:
                shell.scan(text, args, end, facts, form=keyword, inherited_mask=env_mask)
    env_stage.extend([stage] * (len(facts.env) - len(env_stage)))
    for e, st in zip(facts.env, env_stage):
        if e.var == ORDER_VAR and e.form == "ENV":
            order_stages.add(st)
    for e, st in zip(facts.env, env_stage):
        while st is not None and st not in order_stages:
            st = parent.get(st)
        if st is not None:
            e.order_in_force = True
    return facts
