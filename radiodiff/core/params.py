"""Load and validate params.yaml, and hand each stage only the keys it declares.

``params.yaml`` is the one source of values for Snakemake and DVC. The schema lives at
``workflow/schemas/params.schema.yaml`` (Snakemake validates against the same file).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from radiodiff.core.errors import ParamsError

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA_RELPATH = Path("workflow/schemas/params.schema.yaml")
PRESETS_RELPATH = Path("params")


def schema_path(near: Path | None = None) -> Path:
    """The schema next to a params file's repo, else the one of this checkout."""
    for base in ([near] if near is not None else []) + [REPO_ROOT]:
        p = base / SCHEMA_RELPATH
        if p.is_file():
            return p
    raise ParamsError(f"{SCHEMA_RELPATH}: schema not found (looked beside the params file and in {REPO_ROOT})")


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
    schema = read_yaml(schema_path(path.resolve().parent))
    validate_params(params, schema, source=str(path))
    return params


def schema_defaults(pointer: str) -> dict[str, Any]:
    """The ``default`` of every property of the schema object at ``pointer`` (e.g. "$defs/train"):
    the one place defaults live (code that needs a default reads it here)."""
    node: Any = read_yaml(schema_path())
    for part in pointer.strip("/").split("/"):
        node = node[part]
    return {k: copy.deepcopy(v["default"]) for k, v in node["properties"].items() if "default" in v}


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
