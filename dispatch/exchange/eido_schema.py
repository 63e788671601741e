"""The shipped NENA-STA-021 EIDO JSON schema (``schemas/eido``), loaded once, and the
check of a document against it. Draft 4 semantics (OpenAPI 3.0 schemas are a Draft 4
dialect); the schema's own cross-file references resolve inside the repository."""

from __future__ import annotations

import functools
from pathlib import Path, PurePosixPath
from typing import Any

import yaml
from jsonschema import Draft4Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

SCHEMA_DIR = Path(__file__).parent / "schemas" / "eido"
_ROOT_URI = "urn:erss:eido-schema/openapi.yaml"
_EIDO_TYPE = "EmergencyIncidentDataObjectType"


class EidoInvalid(ValueError):
    """A document that is not a valid EIDO; ``errors`` names each problem and where."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors[:5]) + (" ..." if len(errors) > 5 else ""))
        self.errors = errors


def _fix_glitches(node: Any) -> Any:
    """Upstream ``minItems: 1,`` (YAML reads the string "1,"): read it as the integer 1."""
    if isinstance(node, dict):
        return {
            k: int(v.rstrip(","))
            if k in ("minItems", "maxItems") and isinstance(v, str)
            else _fix_glitches(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_fix_glitches(v) for v in node]
    return node


def _path_of(uri: str) -> Path:
    # The upstream spells one reference NIEMComponents//j.yaml: the empty segment goes.
    name = uri.removeprefix("urn:erss:eido-schema/")
    parts = [p for p in PurePosixPath(name).parts if p not in ("", ".")]
    if ".." in parts:
        raise LookupError(f"schema reference {uri!r} leaves the schema folder")
    return SCHEMA_DIR.joinpath(*parts)


@functools.cache
def _document(uri: str) -> Any:
    # libyaml's safe loader reads the 3 MB of NIEM types in a fraction of a second;
    # PyYAML built without libyaml falls back to its own (slower, same result).
    with _path_of(uri).open("rb") as handle:
        if hasattr(yaml, "CSafeLoader"):
            return _fix_glitches(yaml.load(handle, Loader=yaml.CSafeLoader))
        return _fix_glitches(yaml.safe_load(handle))


def _retrieve(uri: str) -> Resource[Any]:
    return Resource.from_contents(_document(uri.replace("//", "/")), default_specification=DRAFT4)


@functools.cache
def validator() -> Draft4Validator:
    """The validator of a whole EIDO (built once per process: the NIEM files are large)."""
    registry: Registry[Any] = Registry(retrieve=_retrieve)  # type: ignore[call-arg]
    schema = {"$ref": f"{_ROOT_URI}#/components/schemas/{_EIDO_TYPE}"}
    return Draft4Validator(schema, registry=registry)


def problems(document: Any) -> list[str]:
    """Every way ``document`` breaks the schema, each as "<where>: <what>" (none if valid)."""
    found = []
    for error in validator().iter_errors(document):
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        found.append(f"{where}: {error.message[:300]}")
    return sorted(found)


def check(document: Any) -> None:
    """Raise EidoInvalid unless ``document`` is a valid EIDO."""
    found = problems(document)
    if found:
        raise EidoInvalid(found)
