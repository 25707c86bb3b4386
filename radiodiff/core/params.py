"""Load and validate params.yaml, and hand each stage only the keys it declares.

``params.yaml`` is the one source of values for DVC, and Snakemake's config file (which
``--config``, ``--configfile`` and profiles override). The schema ships with the package
(``radiodiff/core/params.schema.yaml``); it holds every key's default, so outside a checkout (no
params.yaml) the commands run with those.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from radiodiff.core.errors import ParamsError

SCHEMA_PATH = Path(__file__).with_name("params.schema.yaml")  # package data: installed with radiodiff
PRESETS_RELPATH = Path("params")
DEFAULT_PARAMS = "params.yaml"


def schema_path() -> Path:
    """The JSON schema of params.yaml (every key, its default and description)."""
    return SCHEMA_PATH


def read_yaml(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        with open(path) as f:
            return yaml.safe_load(f)
    except FileNotFoundError:
        raise ParamsError(f"{path}: file not found") from None
    except yaml.YAMLError as e:
        raise ParamsError(f"{path}: not valid YAML ({e})") from None


def _key(path) -> str:
    return ".".join(str(p) for p in path) or "<root>"


def validate_params(params: Any, schema: dict, source: str = "params.yaml") -> None:
    """Raise :class:`ParamsError` naming the first invalid key (schema + cross-key rules)."""
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(
        validator.iter_errors(params), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path)))
    )
    if errors:
        e = errors[0]
        key = _key(e.absolute_path)
        if e.validator == "required":
            missing = e.message.split("'")[1] if "'" in e.message else e.message
            key = _key([*e.absolute_path, missing])
            raise ParamsError(f"{source}: missing key '{key}'")
        if e.validator == "additionalProperties":
            raise ParamsError(f"{source}: {e.message} under '{key}'")
        raise ParamsError(f"{source}: invalid value for '{key}': {e.message}")
    for ds in ("radiomapseer", "icassp"):
        split = params["data"][ds]["split"]
        if isinstance(split, str):  # a published RadioMapSeer split (the schema checks the name)
            continue
        total = split["train"] + split["val"] + split["test"]
        if abs(total - 1.0) > 1e-6:
            raise ParamsError(
                f"{source}: invalid value for 'data.{ds}.split': train + val + test = {total:g}, must be 1"
            )
    for k in ("width_px", "height_px"):
        lo, hi = params["synthesize_icassp"][k]
        if lo > hi:
            raise ParamsError(f"{source}: invalid value for 'synthesize_icassp.{k}': min {lo} > max {hi}")
    e = params["edges"]
    if e["method"] == "canny" and e["low_threshold"] > e["high_threshold"]:
        raise ParamsError(f"{source}: invalid value for 'edges.low_threshold': above edges.high_threshold")
    c = params["crop_icassp"]
    if 2 * c["margin_px"] + 1 > c["size_px"]:
        raise ParamsError(
            f"{source}: invalid value for 'crop_icassp.margin_px': 2*margin+1 exceeds size_px {c['size_px']}"
        )


def load_params(path: str | os.PathLike = "params.yaml") -> dict:
    """Read and validate a params file; errors name the file and key."""
    path = Path(path)
    params = read_yaml(path)
    if not isinstance(params, dict):
        raise ParamsError(f"{path}: expected a mapping of sections, got {type(params).__name__}")
    validate_params(params, read_yaml(schema_path()), source=str(path))
    return params


def schema_default_params() -> dict:
    """A complete params tree of the schema's defaults (validated)."""
    schema = read_yaml(schema_path())

    def resolve(node: dict) -> dict:
        while "$ref" in node:
            target = schema
            for part in node["$ref"].lstrip("#/").split("/"):
                target = target[part]
            node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return node

    def defaults(node: dict):
        node = resolve(node)
        if "default" in node:
            return copy.deepcopy(node["default"])
        if "properties" in node:
            return {k: defaults(v) for k, v in node["properties"].items()}
        raise ParamsError(f"{schema_path()}: a key without a default ({sorted(node)})")

    params = defaults(schema)
    validate_params(params, schema, source=f"{schema_path()} defaults")
    return params


def schema_defaults(pointer: str) -> dict[str, Any]:
    """The ``default`` of every property of the schema object at ``pointer`` (e.g. "$defs/train"):
    the one place defaults live (code that needs a default reads it here)."""
    node: Any = read_yaml(schema_path())
    for part in pointer.strip("/").split("/"):
        node = node[part]
    return {k: copy.deepcopy(v["default"]) for k, v in node["properties"].items() if "default" in v}


def write_params(path: str | os.PathLike, params: dict, source: str = "params") -> Path:
    """Validate ``params`` (errors name ``source`` and the key) and write them to ``path`` as YAML,
    atomically: the values a job computes with when an engine resolved them itself."""
    from radiodiff.core.io import atomic_file

    validate_params(params, read_yaml(schema_path()), source=source)
    path = Path(path)
    with atomic_file(path) as f:
        f.write(f"# The values the jobs compute with ({source}), written by radiodiff; do not edit.\n")
        yaml.safe_dump(params, f, sort_keys=False, default_flow_style=None, width=110)
    return path


def differing_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    """The dotted keys whose values differ between two params trees (sorted)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            key = f"{prefix}.{k}" if prefix else str(k)
            out += differing_keys(a.get(k), b.get(k), key) if k in a and k in b else [key]
        return out
    return [] if a == b else [prefix or "<root>"]


def get_key(params: dict, dotted: str) -> Any:
    """``get_key(p, "data.radiomapseer.root")``; a missing key raises ParamsError naming it."""
    node: Any = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ParamsError(f"params: missing key '{dotted}'")
        node = node[part]
    return node


def select(params: dict, keys: list[str]) -> dict:
    """A nested copy of ``params`` holding only ``keys`` (dotted), so a stage cannot read
    a value it does not declare (reading one raises KeyError)."""
    out: dict = {}
    for dotted in keys:
        parts = dotted.split(".")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = copy.deepcopy(get_key(params, dotted))
    return out


def write_scale(name: str, repo: str | os.PathLike = ".") -> Path:
    """Write the preset ``params/{name}.yaml`` into ``params.yaml`` (validated first)."""
    from radiodiff.core.io import atomic_file

    repo = Path(repo)
    preset = repo / PRESETS_RELPATH / f"{name}.yaml"
    if not preset.is_file():
        known = sorted(p.stem for p in (repo / PRESETS_RELPATH).glob("*.yaml"))
        raise ParamsError(f"{preset}: no such scale preset (known: {', '.join(known) or 'none'})")
    load_params(preset)  # validate before overwriting anything
    text = preset.read_text()
    header = f"# Written by `radiodiff scale {name}` from {PRESETS_RELPATH / preset.name}; edit freely.\n"
    with atomic_file(repo / "params.yaml") as f:
        f.write(header + text)
    return repo / "params.yaml"
