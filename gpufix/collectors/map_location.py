"""`map_location` dicts: their keys name where a checkpoint was saved, not a device to use, so the
'cuda:N' strings among them are no ordinals (runs before the collectors that read literals)."""

from __future__ import annotations

import ast

from gpufix.analysis import walk_tree
from gpufix.collectors import Collector


class MapLocation(Collector):
    name = "map-location"
    priority = 30

    def before(self, walk) -> None:
        # A dict that reaches `map_location` through a name: its keys name where a checkpoint was
        # saved, like the keys of a dict written in the call.
        if "map_location" not in walk.text:
            return
        names = set()
        for node in walk_tree(walk.tree):  # (no names or contexts: nothing here looks at them alone)
            if isinstance(node, ast.Call):
                for kw in node.keywords:
                    if kw.arg == "map_location" and isinstance(kw.value, ast.Name):
                        names.add(kw.value.id)
                if len(node.args) > 1 and isinstance(node.args[1], ast.Name) and walk.qualname(node.func) in (
                    "torch.load", "torch.serialization.load"
                ):
                    names.add(node.args[1].id)
        if names:
            for node in walk.statements():  # (an assignment is a statement)
                if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict) and any(
                    isinstance(t, ast.Name) and t.id in names for t in node.targets
                ):
                    walk.map_location_dicts.add(id(node.value))

    def visit_Call(self, node, walk) -> None:
        for kw in node.keywords:
            if kw.arg == "map_location" and isinstance(kw.value, ast.Dict):
                walk.map_location_dicts.add(id(kw.value))
        if len(node.args) > 1 and isinstance(node.args[1], ast.Dict) and walk.qualname(node.func) in (
            "torch.load", "torch.serialization.load"
        ):
            walk.map_location_dicts.add(id(node.args[1]))

    def visit_Dict(self, node, walk) -> None:
        if id(node) in walk.map_location_dicts:
            for k in node.keys:
                if k is not None:
                    walk.skip_strings.add(id(k))
