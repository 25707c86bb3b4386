"""Model folders: ``config.json`` beside ``model.safetensors`` (diffusers' ``save_pretrained``
idea), shared by every radiodiff network through :class:`PretrainedMixin`.

Each file is written atomically; loading checks the folder, the config (and that it describes
this class), the weights file and that the weights fit the config, and raises one
:class:`RadiodiffError` naming the folder for each way it can go wrong. :func:`load_strict` is
the one tensor-by-tensor loader for weights from elsewhere (``train.init_from``, Swin checkpoints,
the original RadioDiff checkpoints): the first missing, extra or mis-shaped tensor is named.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch

from radiodiff.core.errors import ParamsError, RadiodiffError
from radiodiff.core.io import atomic_file, read_json, write_json

CONFIG_NAME = "config.json"
SAFETENSORS_NAME = "model.safetensors"
TORCH_NAME = "model.pt"


def jsonable(v: Any) -> Any:
    """Config values as JSON holds them (tuples become lists)."""
    return list(v) if isinstance(v, tuple) else v


def count_parameters(module: torch.nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters in ``module`` (works on the meta device: only shapes are read)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def has_safetensors() -> bool:
    try:
        import safetensors.torch  # noqa: F401
    except ImportError:
        return False
    return True


class ConfigMixin:
    """``to_dict`` / ``from_dict`` for a dataclass config that round-trips to ``config.json``
    (diffusers' ``ConfigMixin`` idea); ``config_label`` names it in error messages."""

    config_label: ClassVar[str] = "config"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists)."""
        return {f.name: jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        """Build from :meth:`to_dict` output; keys starting with ``_`` (metadata) are ignored."""
        if not isinstance(d, dict):
            raise ParamsError(f"{cls.config_label}: expected a mapping, got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(k for k in d if k not in names and not str(k).startswith("_"))
        if unknown:
            raise ParamsError(f"{cls.config_label}: unknown key(s) {unknown}; expected a subset of {sorted(names)}")
        return cls(**{k: v for k, v in d.items() if k in names})

    @classmethod
    def from_params(cls, section: dict, **derived):
        """From a params ``model`` section plus the fields the data fixes (``derived``); lists
        become tuples and an unknown key is a :class:`ParamsError`."""
        fields = {k: tuple(v) if isinstance(v, list) else v for k, v in section.items()}
        try:
            return cls(**derived, **fields)
        except TypeError as e:
            raise ParamsError(f"{cls.config_label}: {e}") from None


class PretrainedMixin:
    """``save_pretrained`` / ``from_pretrained`` for a module built from ``config_class``.

    Subclasses set ``config_class`` (with ``to_dict``/``from_dict``) and ``display_name``, hold
    ``self.config``, and may override :meth:`_from_config` (e.g. to skip loading a backbone
    checkpoint whose weights the saved state already holds).
    """

    config_class: ClassVar[type]
    display_name: ClassVar[str] = "model"

    def num_parameters(self, trainable_only: bool = False) -> int:
        """Number of parameters (works on the meta device: only shapes are read)."""
        return count_parameters(self, trainable_only)

    def save_pretrained(self, directory: str | os.PathLike, safe_serialization: bool = True) -> Path:
        """Write ``config.json`` and ``model.safetensors`` (or ``model.pt``), each atomically."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        if safe_serialization and has_safetensors():
            from safetensors.torch import save as st_save

            with atomic_file(directory / SAFETENSORS_NAME, "wb") as f:
                f.write(st_save(state, metadata={"format": "pt"}))
            stale = directory / TORCH_NAME
        else:
            with atomic_file(directory / TORCH_NAME, "wb") as f:
                torch.save(state, f)
            stale = directory / SAFETENSORS_NAME
        # A weights file of the other format left from an earlier save would shadow this one.
        stale.unlink(missing_ok=True)
        write_json(directory / CONFIG_NAME, {"_class_name": type(self).__name__, **self.config.to_dict()})
        return directory

    @classmethod
    def _from_config(cls, config):
        return cls(config)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, device: str | torch.device = "cpu"):
        """Rebuild a model saved by :meth:`save_pretrained`, in eval mode; a missing or corrupt
        folder, or one holding another model class, raises RadiodiffError."""
        directory, what = Path(directory), cls.display_name
        if not directory.is_dir():
            raise RadiodiffError(f"{directory}: {what} folder not found")
        try:
            raw = read_json(directory / CONFIG_NAME)
        except RadiodiffError as e:
            raise RadiodiffError(f"{directory}: cannot read the {what} config ({e})") from None
        saved = raw.get("_class_name", cls.__name__) if isinstance(raw, dict) else cls.__name__
        if saved != cls.__name__:
            raise RadiodiffError(f"{directory}: config.json describes a {saved}, not a {cls.__name__}")
        try:
            config = cls.config_class.from_dict(raw)
        except (RadiodiffError, TypeError) as e:
            raise RadiodiffError(f"{directory}: invalid {what} config ({e})") from None
        state = read_weights(directory, what)
        model = cls._from_config(config)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise RadiodiffError(f"{directory}: weights do not match config.json ({first} ...)") from None
        return model.to(device).eval()


RAW_SUFFIX = "_raw"  # a trained model folder's sub-folder of raw (not EMA) weights: ``unet_raw/``


def read_weights(directory: Path, what: str = "model") -> dict[str, torch.Tensor]:
    """The state dict in a model folder's weights file (safetensors, else ``model.pt``), on the
    CPU; a missing or unreadable file is a :class:`RadiodiffError` naming the folder."""
    st_path, pt_path = Path(directory) / SAFETENSORS_NAME, Path(directory) / TORCH_NAME
    try:
        if st_path.is_file():
            from safetensors.torch import load_file

            return load_file(str(st_path), device="cpu")
        if pt_path.is_file():
            return torch.load(pt_path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt or truncated weights: any loader error is the file's fault
        raise RadiodiffError(f"{directory}: unreadable {what} weights ({type(e).__name__}: {e})") from None
    raise RadiodiffError(f"{directory}: no {SAFETENSORS_NAME} or {TORCH_NAME} weights file")


def _saved_class(folder: Path) -> str | None:
    try:
        raw = read_json(folder / CONFIG_NAME)
    except RadiodiffError:
        return None
    return raw.get("_class_name") if isinstance(raw, dict) else None


def network_folder(directory: str | os.PathLike, class_name: str) -> Path:
    """The folder holding a ``class_name`` network in the model folder ``directory``: the folder
    itself (a VAE's), or its one sub-folder of that class (a pipeline's ``unet/`` or ``net/``;
    raw-weight sub-folders aside). Anything else is a clear error naming what the folder holds."""
    directory = Path(directory)
    if not directory.is_dir():
        raise RadiodiffError(f"{directory}: model folder not found")
    if _saved_class(directory) == class_name:
        return directory
    subs = sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.endswith(RAW_SUFFIX))
    held = {p: _saved_class(p) for p in [directory, *subs] if _saved_class(p)}
    matches = [p for p, c in held.items() if c == class_name]
    if len(matches) == 1:
        return matches[0]
    found = ", ".join(f"{c} in {p.relative_to(directory).as_posix() or '.'}/" for p, c in held.items()) or "none"
    if matches:
        raise RadiodiffError(
            f"{directory}: several {class_name} networks ({found}); give the sub-folder of the one to start from"
        )
    raise RadiodiffError(f"{directory}: no {class_name} network to start from (it holds: {found})")


def load_network_weights(model: torch.nn.Module, directory: str | os.PathLike) -> Path:
    """Load into ``model`` the weights of the network of its class in the model folder
    ``directory`` (``train.init_from``); returns the folder read. A folder of another class, or
    a tensor missing, extra or of another shape, is a :class:`RadiodiffError` naming the first
    mismatching tensor (in the model's order; :func:`load_strict`)."""
    folder = network_folder(directory, type(model).__name__)
    load_strict(model, read_weights(folder, type(model).__name__), str(folder))
    return folder


def check_state(
    own: Mapping[str, torch.Tensor],
    state: Mapping[str, Any],
    where: str,
    *,
    what: str = "the model",
    skip_prefixes: tuple[str, ...] = (),
    skip_suffixes: tuple[str, ...] = (),
    names: Mapping[str, str] | None = None,
    error: type[RadiodiffError] = RadiodiffError,
) -> dict[str, Any]:
    """Check ``state`` against ``own`` (a module's state dict, meta tensors will do) tensor by
    tensor; returns ``state`` without the skipped names.

    The first tensor missing, not a tensor or of another shape (in ``own``'s order), else the
    first extra one (in ``state``'s order), is one ``error`` that names ``where`` (the folder or
    file), that tensor, and how many are missing, extra and of another shape in all. Names
    starting with ``skip_prefixes`` or ending with ``skip_suffixes`` are left out on both sides
    (e.g. a checkpoint's classifier head, or buffers the module computes itself). ``names`` maps
    a name of ``own`` to the name the messages give it, where the caller renamed the file's
    tensors (e.g. ``model.``-prefixed original names).
    """

    def kept(name: str) -> bool:
        return not (name.startswith(skip_prefixes) or name.endswith(skip_suffixes))

    def label(name: str) -> str:
        return repr((names or {}).get(name, name))

    own = {k: v for k, v in own.items() if kept(k)}
    state = {k: v for k, v in state.items() if kept(k)}
    missing = [k for k in own if k not in state]
    wrong = [
        k
        for k in own
        if k in state and not (isinstance(state[k], torch.Tensor) and tuple(state[k].shape) == tuple(own[k].shape))
    ]
    extra = [k for k in state if k not in own]
    if not (missing or wrong or extra):
        return state
    bad = set(missing) | set(wrong)
    first = next((k for k in own if k in bad), None)
    if first is None:
        problem = f"tensor {label(extra[0])} is not in {what}"
    elif first not in state:
        problem = f"no tensor {label(first)} ({what} has it, shape {list(own[first].shape)})"
    elif not isinstance(state[first], torch.Tensor):
        problem = f"entry {label(first)} is not a tensor"
    else:
        theirs = f"{what}'s" if label(first) == repr(first) else f"{what}'s {first!r}"
        problem = f"tensor {label(first)} has shape {list(state[first].shape)}, {theirs} is {list(own[first].shape)}"
    raise error(
        f"{where}: {problem}; it does not fit {what} "
        f"({len(missing)} missing, {len(extra)} extra, {len(wrong)} of another shape or type)"
    )


def load_strict(module: torch.nn.Module, state: Mapping[str, Any], where: str, **check) -> None:
    """Load ``state`` into ``module`` after :func:`check_state` (same keyword arguments): every
    tensor present with its shape, none extra; the skipped names of ``module`` keep their values."""
    module.load_state_dict(check_state(module.state_dict(), state, where, **check), strict=False)


def weights_folder(directory: Path, name: str, ema: bool) -> Path:
    """The sub-folder of a trained model folder holding network ``name``'s EMA weights (``name/``)
    or its raw training weights (``name_raw/``, exported beside them by the training stages);
    a folder without raw weights is a clear error."""
    folder = Path(directory) / (name if ema else name + RAW_SUFFIX)
    if not ema and not folder.is_dir():
        raise RadiodiffError(
            f"{directory}: no raw weights ({folder.name}/; the folder predates them or was not written by a "
            "training stage); use the EMA weights (sample.use_ema: true) or retrain"
        )
    return folder
