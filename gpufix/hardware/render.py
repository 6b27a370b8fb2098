"""Renderers for `gpufix check`: the contract's JSON, and a text table (rich, text renderer only)."""

from __future__ import annotations

import io
import json

from gpufix.hardware.checks import Report
from gpufix.hardware.model import gib


def report_json(report: Report) -> dict:
    from gpufix import __version__

    p = report.policy
    policy = dict(p.to_report())
    policy.update({
        "min-memory-gib": p.min_memory_gib,
        "expect-name": p.expect_name,
        "expect-uuid": p.expect_uuid,
        "source": p.source,
    })
    inv = report.inventory
    cuda = None
    if report.cuda is not None:
        c = report.cuda.to_json()
        cuda = {k: c[k] for k in ("torch_version", "torch_cuda", "arch_list", "device_count_before_init",
                                  "init_error", "device_count", "devices", "device_errors", "precision", "smoke",
                                  "smoke_error", "unavailable", "unavailable_kind", "error", "env")}
    return {
        "tool": "gpufix",
        "version": __version__,
        "schema": 1,
        "status": report.status,
        "cause": report.cause,
        "policy": policy,
        "driver_version": inv.driver_version if inv else None,
        "cuda_driver_version": inv.cuda_driver_version if inv else None,
        "gpus": report.gpus,
        "mask": report.resolution.to_json() if report.resolution else None,
        "cuda": cuda,
        "checks": [c.to_json() for c in report.checks],
        "notes": list(report.notes),
        "guard": report.guard,
    }


def render_json(report: Report) -> str:
    return json.dumps(report_json(report), indent=2, default=str) + "\n"


_MARK = {"pass": "pass", "fail": "FAIL", "skip": "skip", "unavailable": "UNAVAILABLE"}


def render_text(report: Report, quiet: bool = False, ascii_only: bool = False) -> str:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    buf = io.StringIO()
    console = Console(file=buf, width=160, color_system=None, force_terminal=False, highlight=False,
                      emoji=False, markup=False, soft_wrap=True)
    p = report.policy
    if not quiet:
        mask = "unset (no policy)" if p.visible_devices is None else repr(p.visible_devices)
        console.print(f"gpufix check: CUDA_VISIBLE_DEVICES {mask}, CUDA_DEVICE_ORDER={p.device_order}, "
                      f"min-memory-gib {p.min_memory_gib:g}"
                      + (f", expect-name {p.expect_name!r}" if p.expect_name else "")
                      + (f", expect-uuid {p.expect_uuid!r}" if p.expect_uuid else "")
                      + (f" (from {p.source})" if p.source else ""))
        if report.guard is not None:
            from gpufix.hardware.guardinfo import guard_line

            console.print(guard_line(report.guard))
        inv = report.inventory
        if inv is not None:
            console.print(f"driver {inv.driver_version or '?'}"
                          + (f", CUDA {inv.cuda_driver_version}" if inv.cuda_driver_version else "")
                          + f", {len(inv.gpus)} GPU(s)")
        if report.gpus:
            table = Table(box=box.ASCII if ascii_only else box.SIMPLE_HEAD, show_edge=False)
            for col in ("nvml", "name", "uuid", "pci bus id", "memory", "free", "cc", "ecc", "visible", "cuda"):
                table.add_column(col)
            for g in report.gpus:
                if g["state"] != "ok":
                    table.add_row(str(g["nvml_index"]), "inaccessible",
                                  "; ".join(dict.fromkeys(g["errors"].values())) or "n/a",
                                  "n/a", "n/a", "n/a", "n/a", "n/a", "no", "-")
                    continue
                ecc = g["ecc"] if isinstance(g["ecc"], str) else g["ecc"].get("mode", "?")
                vis = "?" if g["visible"] is None else ("yes" if g["visible"] else "no")

                def na(v, fmt=str):
                    return "n/a" if v is None else fmt(v)

                table.add_row(str(g["nvml_index"]), na(g["name"]), na(g["uuid"]), na(g["pci_bus_id"]),
                              na(g["memory_total_bytes"], gib), na(g["memory_free_bytes"], gib),
                              na(g["compute_capability"]), ecc, vis,
                              "-" if g["cuda_index"] is None else f"cuda:{g['cuda_index']}")
            console.print(table)
    width = max(len(c.name) for c in report.checks) if report.checks else 0
    for c in report.checks:
        if quiet and c.status in ("pass", "skip"):
            continue
        console.print(f"{_MARK.get(c.status, c.status):<11} {c.name:<{width}}  {c.detail}")
    if not quiet:
        for n in report.notes:
            console.print(f"note: {n}")
    counts = {s: sum(1 for c in report.checks if c.status == s) for s in ("pass", "fail", "skip", "unavailable")}
    summary = ", ".join(f"{v} {k}" for k, v in counts.items() if v)
    line = f"status: {report.status} ({summary})"
    if report.status == "unavailable" and report.cause:
        line += f": {report.cause}"
    console.print(line)
    return buf.getvalue()
