"""Load the CloudFormation templates in infra/ (YAML with ``!Ref``-style short tags)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
TEMPLATES = sorted(INFRA.glob("*.yaml"))


class _Loader(yaml.SafeLoader):
    """SafeLoader that turns ``!Sub x`` into ``{"Fn::Sub": x}`` (``!Ref`` -> ``Ref``)."""


def _short_tag(loader: _Loader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    key = suffix if suffix in ("Ref", "Condition") else f"Fn::{suffix}"
    return {key: value}


_Loader.add_multi_constructor("!", _short_tag)


def load(path: Path) -> dict[str, Any]:
    """One template as plain data."""
    data = yaml.load(path.read_text(), Loader=_Loader)  # a SafeLoader subclass
    assert isinstance(data, dict)
    return data
