"""Imports: the names each import binds (for resolving calls), and GPU framework imports."""

from __future__ import annotations

import ast

from gpufix.collectors import Collector


class Imports(Collector):
    name = "imports"
    priority = 10

    def before(self, walk) -> None:
        walk.collect_imports()

    def visit_Import(self, node, walk) -> None:
        for alias in node.names:
            if walk.catalog.framework_of_module(alias.name):
                walk.gpu_import(node, alias.name)

    def visit_ImportFrom(self, node, walk) -> None:
        if not node.module or node.level:
            return
        if walk.catalog.framework_of_module(node.module):
            walk.gpu_import(node, node.module)
            return
        for alias in node.names:
            full = f"{node.module}.{alias.name}"
            if walk.catalog.framework_of_module(full):
                walk.gpu_import(node, full)
                return


def import_statement(node) -> bool:
    return type(node) is ast.Import or type(node) is ast.ImportFrom
