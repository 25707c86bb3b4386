"""One face for a trained map model: the typed record of its folder and the interface both
pipelines offer.

A trained map model folder records, beside its networks, what predicting with it needs:
``radiounet.json`` (:class:`MapModelRecord`) or ``radiodiff.json`` (:class:`RadioDiffRecord`,
which adds the latent scales and the diffusion settings). Both are dataclasses that round-trip
to JSON (:class:`~radiodiff.models.persistence.ConfigMixin`), and reading one fills the keys an
older folder lacks in one place (:meth:`MapModelRecord.__post_init__`): the metres per pixel, the
raw-weights note, and RadioDiff's loss weighting, L1 term, skip and t_eps.

:class:`MapModel` is what the rest of the library sees of a trained model, whichever kind:
its dataset, condition, grid and metres per pixel, whether it is the latent model, the sampler
steps it uses by default (:meth:`MapModel.steps_for`), the network it trains, and a copy of the
pipeline around another such network (:meth:`MapModel.with_network`). Nothing outside
``radiodiff.models`` reads a folder's JSON or a pipeline's networks by name.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import ClassVar

import torch

from radiodiff.core.encodings import ICASSP_PIXEL_SIZE_M, RADIOMAPSEER_PIXEL_SIZE_M, RADIOMAPSEER_SIDE_PX
from radiodiff.core.errors import ParamsError, RadiodiffError
from radiodiff.core.io import read_json, write_json
from radiodiff.core.params import schema_defaults
from radiodiff.diffusion import const_sde
from radiodiff.models.persistence import ConfigMixin


@dataclasses.dataclass(kw_only=True)
class MapModelRecord(ConfigMixin):
    """``radiounet.json``: what a trained map model folder records for prediction."""

    config_label: ClassVar[str] = "radiounet.json"

    dataset: str  # radiomapseer | icassp
    condition: str  # RadioMapSeer: static | dynamic | physics; ICASSP: arranged
    image_size: int  # the model's grid (px per side)
    # metres per pixel of that grid; None (older folders): RadioMapSeer's 256 m over image_size,
    # ICASSP's 0.25 m, as the training data had
    metres_per_pixel: float | None = None
    physics_exponent: float | None = None  # RadioMapSeer physics condition: the fitted exponent
    weights: dict | None = None  # which sub-folder holds which weights (EMA, raw); None: EMA only

    def __post_init__(self) -> None:
        if self.metres_per_pixel is None:
            if self.dataset == "radiomapseer":
                self.metres_per_pixel = RADIOMAPSEER_SIDE_PX * RADIOMAPSEER_PIXEL_SIZE_M / int(self.image_size)
            else:
                self.metres_per_pixel = ICASSP_PIXEL_SIZE_M
        self.metres_per_pixel = float(self.metres_per_pixel)
        self.image_size = int(self.image_size)

    @classmethod
    def read(cls, directory: str | os.PathLike) -> MapModelRecord:
        """The record of a model folder; a missing or invalid file is one error naming it."""
        path = Path(directory) / cls.config_label
        try:
            return cls.from_dict(read_json(path))
        except (ParamsError, TypeError) as e:  # an unknown key; a required one missing
            raise RadiodiffError(f"{path}: {e}") from None

    def write(self, directory: str | os.PathLike) -> Path:
        return write_json(Path(directory) / self.config_label, self.to_dict())

    @classmethod
    def of(cls, record: MapModelRecord | dict) -> MapModelRecord:
        """``record`` as this class (a dict is read as its JSON would be)."""
        return record if isinstance(record, cls) else cls.from_dict(dict(record))


@dataclasses.dataclass(kw_only=True)
class RadioDiffRecord(MapModelRecord):
    """``radiodiff.json``: a RadioDiff folder's record, with the latent scales and the diffusion
    settings (RadioDiff §IV; the sampler and loss of :mod:`radiodiff.diffusion.const_sde`)."""

    config_label: ClassVar[str] = "radiodiff.json"

    scale_factor: float  # z0 = scale_factor · VAE latent
    sampling_steps: int  # the model's default sampler steps
    t_eps: float = const_sde.T_EPS
    skip: bool = True  # the skip parameterization of (C, ε)
    weighting: str | None = None  # loss weighting (None, older folders: the schema's default)
    l1: bool | None = None  # the L1 term beside the MSE (None, older folders: the schema's default)
    extra_scale_factors: dict[str, float] = dataclasses.field(default_factory=dict)  # ICASSP condition VAEs
    prior_latent: bool = False  # RadioMapSeer: the physics prior through the target VAE, an extra latent
    imported: dict | None = None  # `radiodiff import`: the original checkpoints it came from

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.weighting is None or self.l1 is None:
            defaults = schema_defaults("$defs/ldm_stage/properties/diffusion")
            self.weighting = defaults["weighting"] if self.weighting is None else self.weighting
            self.l1 = defaults["l1"] if self.l1 is None else self.l1
        self.extra_scale_factors = dict(self.extra_scale_factors or {})


class MapModel(torch.nn.Module):
    """A trained map model: condition images (B, 3, S, S) in [−1, 1] → maps (B, 1, S, S) on the
    dataset's [0, 1] scale (:meth:`forward`), and what the library asks of it."""

    kind: ClassVar[str]  # the method's name in samples and summaries: radiodiff | radiounet
    is_latent: ClassVar[bool]  # RadioDiff samples in a VAE's latent space
    record: MapModelRecord

    @property
    def dataset(self) -> str:
        return self.record.dataset

    @property
    def condition(self) -> str:
        return self.record.condition

    @property
    def physics_exponent(self) -> float | None:
        return self.record.physics_exponent

    @property
    def grid_px(self) -> int:
        """The side of the model's square grid in pixels (its ``image_size``)."""
        return self.record.image_size

    @property
    def metres_per_pixel(self) -> float:
        return self.record.metres_per_pixel

    @property
    def latent_step(self) -> int:
        """Pixels per latent cell (windows and crops align to it); 1 for a pixel-space model."""
        return 1

    @property
    def network(self) -> torch.nn.Module:
        """The network training trains (and exports)."""
        raise NotImplementedError

    def with_network(self, network: torch.nn.Module) -> MapModel:
        """This pipeline around another network of the same kind (e.g. the EMA copy in training)."""
        raise NotImplementedError

    def steps_for(self, steps: int | None) -> int | None:
        """The sampler steps a call with ``steps`` uses (None: the model's own); None for a model
        that does not sample."""
        return None
