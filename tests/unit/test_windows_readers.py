"""The PowerShell and batch readers on generated scripts: they never raise, every span they
report lies inside the text, fixing is idempotent and leaves nothing safely fixable, and every line
no fix targets survives (CRLF included)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpufix.apply import fix_source
from gpufix.config import Policy
from gpufix.engine import lint_source
from gpufix.formats import batch, powershell
from gpufix.source import read_source

POLICY = Policy(visible_devices="1")
SETTINGS = settings(max_examples=int(os.environ.get("GPUFIX_PROP_EXAMPLES", "100")), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

PS_LINES = [
    '$env:CUDA_VISIBLE_DEVICES = "0"', "$env:CUDA_VISIBLE_DEVICES='2'", "${env:CUDA_VISIBLE_DEVICES} = 0",
    "$Env:cuda_visible_devices=3; python a.py --device cuda:1", "Set-Item env:CUDA_VISIBLE_DEVICES 0",
    "Set-Item -Path Env:\\CUDA_VISIBLE_DEVICES -Value '0'", '$env:CUDA_DEVICE_ORDER = "FASTEST_FIRST"',
    '[Environment]::SetEnvironmentVariable("CUDA_VISIBLE_DEVICES", "0", "User")', "setx CUDA_VISIBLE_DEVICES 0",
    "python train.py --device=cuda:2", "$env:CUDA_VISIBLE_DEVICES = $gpu", '# $env:CUDA_VISIBLE_DEVICES = "0"',
    'if ($x) { $env:CUDA_VISIBLE_DEVICES = "0" }', "Get-ChildItem | Where-Object { $_.Name }", '<# "#>',
    '@"', '"@', "`", '"unterminated', "'", "$(", "${", "[Environment]::SetEnvironmentVariable(",
]
BAT_LINES = [
    "@echo off", "set CUDA_VISIBLE_DEVICES=0", 'set "CUDA_VISIBLE_DEVICES=2"', "SET cuda_device_order=FASTEST_FIRST",
    "set CUDA_VISIBLE_DEVICES=0 & python a.py --device cuda:1", 'if "%1"=="x" (set CUDA_VISIBLE_DEVICES=0)',
    "if not defined G set CUDA_VISIBLE_DEVICES=3", "setx CUDA_VISIBLE_DEVICES 0 /M", "set /a CUDA_VISIBLE_DEVICES=0",
    "set CUDA_VISIBLE_DEVICES=%GPU%", "REM set CUDA_VISIBLE_DEVICES=0", ":: x", "^", '"', "(", ")", "&&", "||",
    "python x.py ^", "set", 'set "', "set CUDA_VISIBLE_DEVICES=0 & REM gpufix: ignore[GPU103]",
]


def scripts(lines):
    return st.tuples(st.lists(st.sampled_from(lines), max_size=12), st.sampled_from(["\n", "\r\n"])).map(
        lambda t: t[1].join(t[0]) + t[1])


def _check(name: str, text: str, reader):
    facts = reader.scan(text)
    for e in facts.env:
        assert 0 <= e.start <= e.end <= len(text)
        if e.order_insert:
            assert 0 <= e.order_insert[0] <= len(text)
    for o in facts.ordinals:
        assert text[o.start:o.end] == o.what
    raw = text.encode()
    src = read_source(name, raw)
    once, _ = fix_source(src, POLICY)
    again, _ = fix_source(read_source(name, once), POLICY)
    assert again == once  # idempotent
    left = lint_source(read_source(name, once), POLICY)
    assert not [f for f in left.findings if f.fix and f.fix.applicability == "safe"]
    # every line the fixes do not target is still there, in order (inserted lines aside)
    nl = "\r\n" if "\r\n" in text else "\n"
    after = once.decode().split(nl)
    targeted = {f.line for f in lint_source(src, POLICY).findings if f.fix}
    kept = [line for i, line in enumerate(text.split(nl), 1) if i not in targeted]
    it = iter(after)
    assert all(any(line == a for a in it) for line in kept)


@SETTINGS
@given(scripts(PS_LINES))
def test_powershell_reader_and_fixes(text):
    _check("run.ps1", text, powershell)


@SETTINGS
@given(scripts(BAT_LINES))
def test_batch_reader_and_fixes(text):
    _check("run.bat", text, batch)
