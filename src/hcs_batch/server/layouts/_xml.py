"""Parse vendor XML with the standard library's expat, refusing DTDs and entity declarations.

A plate folder is untrusted input: an Index XML with a ``<!DOCTYPE>`` could declare entities that expand without
bound ("billion laughs") or name external files. Plate exports never need one, so any DTD is refused.
Namespaces are dropped: ``{http://...HarmonyV6}Image`` becomes ``Image``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any
from xml.parsers import expat

__all__ = ["UnsafeXmlError", "parse_xml"]


class UnsafeXmlError(ValueError):
    """The XML declares a DTD or entities."""


def _refuse(*_args: Any) -> None:
    raise UnsafeXmlError("XML with a DTD or entity declarations is refused")


def parse_xml(data: bytes) -> ET.Element:
    """The root element of ``data``.

    Raises:
        UnsafeXmlError: a DOCTYPE or an entity declaration.
        ValueError: malformed XML (the message has the line and column).
    """
    builder = ET.TreeBuilder()
    parser = expat.ParserCreate(namespace_separator="}")
    parser.StartDoctypeDeclHandler = _refuse
    parser.EntityDeclHandler = _refuse
    parser.ExternalEntityRefHandler = _refuse  # type: ignore[assignment]

    def start(tag: str, attrs: dict[str, str]) -> None:
        builder.start(tag.rpartition("}")[2], {k.rpartition("}")[2]: v for k, v in attrs.items()})

    def end(tag: str) -> None:
        builder.end(tag.rpartition("}")[2])

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        message = expat.errors.messages[exc.code]
        raise ValueError(f"malformed XML: {message} at line {exc.lineno}, column {exc.offset}") from None
    root = builder.close()
    return root
