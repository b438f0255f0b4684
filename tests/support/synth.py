"""The synthesized stack the infra tests look at: the stack object, its Template and its JSON."""

from dataclasses import dataclass
from typing import Any

from aws_cdk.assertions import Template

from infra.stack import BuildlogsStack


@dataclass
class Synth:
    stack: BuildlogsStack
    template: Template
    json: dict[str, Any]

    def resources(self, type_: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.json["Resources"].items() if v["Type"] == type_}

    def logical_id(self, construct: Any) -> str:
        return self.stack.get_logical_id(construct.node.default_child)
