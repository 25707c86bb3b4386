"""Train the RadioUNet-style supervised baseline on the shared engine (MSE on the map).

Same data and condition as the LDM of its dataset: RadioMapSeer [buildings, Tx, third] → gain
map (all pixels, as RadioUNet trains); ICASSP the 3 arranged channels → path loss, scored on
the crop's valid (not padded) pixels. Outputs as the LDM: ``model/`` (a RadioUNetPipeline
folder), ``metrics.json`` (validation split) and ``train_log.csv``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from radiodiff.core.io import write_json
from radiodiff.data.items import stage_source
from radiodiff.metrics import loader_means, zero_buildings
from radiodiff.models.map_model import MapModelRecord
from radiodiff.models.radiounet import RadioUNet, RadioUNetConfig, RadioUNetPipeline
from radiodiff.train.runs import map_model_metrics, run_fields, run_training


class RadioUNetTask:
    """The supervised baseline as the engine sees it: ``pipe`` is the pipeline being trained (its
    network and the record its folder keeps)."""

    def __init__(self, pipe: RadioUNetPipeline):
        self.pipe, self.model = pipe, pipe.network

    def param_groups(self):
        return [("net", list(self.model.parameters()), {})]

    def modules(self):
        return {"net": self.model}

    def loss(self, batch, step: int, opt_index: int):
        err = (self.model(batch["condition"]) - batch["target"]) ** 2
        if "valid" in batch:  # ICASSP: padded pixels carry no target
            m = batch["valid"].to(err.dtype)
            mse = (err * m).sum() / m.sum().clamp_min(1.0)
        else:
            mse = err.mean()
        return mse, {"mse": mse.detach()}

    @torch.no_grad()
    def evaluate(self, model, loader) -> dict[str, float]:
        pipe = self.pipe.with_network(model)

        def predict(batch):
            pred = pipe(batch["condition"])
            return zero_buildings(pred, batch["buildings"]) if "buildings" in batch else pred

        return loader_means(predict, loader)

    def export(self, model, out_dir: Path, raw=None) -> None:
        self.pipe.with_network(model).save_pretrained(out_dir, raw_net=raw)


def run(params: dict, dataset: str, out, root=None, crops=None, arranged=None) -> dict:
    """The ``train_radiounet_{dataset}`` stage: RadioMapSeer (``root``) or ICASSP (``crops``;
    ``arranged`` for random windows); writes ``model/``, ``metrics.json`` and ``train_log.csv``
    into ``out``."""
    source = stage_source(f"train radiounet {dataset}", dataset, params, root, crops, arranged)
    stage = f"train_radiounet_{dataset}"
    section = params[stage]
    train_set, val_set, recorded = source.training_sets(section["data"], f"{stage}.data", section["train"]["seed"])
    record = MapModelRecord(dataset=dataset, **recorded)
    cfg = RadioUNetConfig.from_params(section["model"], in_channels=3, out_channels=1, image_size=record.image_size)
    torch.manual_seed(int(section["train"]["seed"]))
    net = RadioUNet(cfg)
    task = RadioUNetTask(RadioUNetPipeline(net, record))
    summary = run_training(stage, __name__, task, train_set, val_set, params, source.sources, Path(out))
    metrics = {
        **map_model_metrics(summary, section, record, net, len(train_set)),
        **run_fields(summary, section),
    }
    write_json(Path(out) / "metrics.json", metrics)
    return {"stage": stage, **{k: metrics[k] for k in ("nmse", "rmse", "ssim", "psnr", "steps", "steps_per_s")}}
