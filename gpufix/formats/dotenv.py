"""`.env` files (docker `--env-file`, compose `env_file:`, python-dotenv): `NAME=VALUE` lines,
optionally `export `-prefixed, values bare or quoted, `#` comments."""

from __future__ import annotations

import re

from gpufix.formats.facts import ENV_VARS, ORDER_VAR, EnvSet, FileFacts
from gpufix.formats.text import newline_of

_LINE_RE = re.compile(
    r"^(?P<indent>[ \t]*)(?P<export>export[ \t]+)?(?P<name>[A-Za-z_][A-Za-z0-9_]*)[ \t]*=[ \t]*"
    r"(?P<value>\"[^\"\n]*\"|'[^'\n]*'|[^\s#'\"]*)",
    re.M,
)


def scan(text: str) -> FileFacts:
    facts = FileFacts()
    nl = newline_of(text)
    for m in _LINE_RE.finditer(text):
        name = m.group("name")
        if name not in ENV_VARS:
            continue
        raw = m.group("value")
        style = raw[0] if raw[:1] in ("'", '"') else ""
        value = raw[1:-1] if style else raw
        dynamic = "$" in value and style != "'"
        prefix = m.group("indent") + (m.group("export") or "")
        facts.env.append(EnvSet(
            name, None if dynamic else value, m.start("value"), m.end("value"), style, not dynamic, form=".env",
            order_insert=(m.start(), prefix + ORDER_VAR + "={order}" + nl),
        ))
    if any(e.var == ORDER_VAR for e in facts.env):
        for e in facts.env:
            e.order_in_force = True
    return facts
