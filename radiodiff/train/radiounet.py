"""Train the RadioUNet-style supervised baseline on the shared engine (MSE on the map).

Same data and condition as the LDM of its dataset: RadioMapSeer [buildings, Tx, third] → gain
map (all pixels, as RadioUNet trains); ICASSP the 3 arranged channels → path loss, scored on
the crop's valid (not padded) pixels. Outputs as the LDM: ``model/`` (a RadioUNetPipeline
folder), ``metrics.json`` (validation split) and ``train_log.csv``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from radiodiff.core.errors import ParamsError
from radiodiff.core.io import write_json
from radiodiff.evaluate.metrics import zero_buildings
from radiodiff.models.autoencoder import count_parameters
from radiodiff.models.pipelines import RadioUNetPipeline
from radiodiff.models.radiounet import RadioUNet, RadioUNetConfig
from radiodiff.train.inputs import icassp_items, physics_exponent, radiomapseer_items
from radiodiff.train.stage import map_metrics, run_report, run_stage


class RadioUNetTask:
    def __init__(self, net: RadioUNet, meta: dict):
        self.model, self.meta = net, meta

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
        def predict(batch):
            pred = ((model(batch["condition"]) + 1) / 2).clamp(0, 1)
            return zero_buildings(pred, batch["buildings"]) if "buildings" in batch else pred

        return map_metrics(predict, loader)

    def export(self, model, out_dir: Path) -> None:
        RadioUNetPipeline(model, self.meta).save_pretrained(out_dir)


def train_radiounet(dataset: str, section: dict, inputs: dict, out_dir: Path, state_root: Path = Path("state")) -> dict:
    """Train the RadioUNet baseline of ``dataset`` from its params ``section`` ({model, train})."""
    out_dir = Path(out_dir)
    tr = dict(section["train"])
    augment = tr.pop("augment", False)
    stage = f"train_radiounet_{dataset}"
    meta: dict = {"dataset": dataset}
    if dataset == "radiomapseer":
        data, condition = inputs["data"], inputs["data"]["condition"]
        exponent = physics_exponent(inputs["root"], data) if condition == "physics" else None
        train_set = radiomapseer_items(inputs["root"], "train", data, condition, exponent or 2.0)
        val_set = radiomapseer_items(inputs["root"], "val", data, condition, exponent or 2.0)
        meta |= {"condition": condition, "physics_exponent": exponent, "image_size": data["image_size"]}
        sources = [Path(inputs["root"])]
    elif dataset == "icassp":
        train_set = icassp_items(inputs["crops"], "train", augment=augment)
        val_set = icassp_items(inputs["crops"], "val")
        meta |= {"condition": "arranged", "image_size": int(train_set.tensors["condition"].shape[-1])}
        sources = [Path(inputs["crops"])]
    else:
        raise ParamsError(f"train_radiounet: unknown dataset {dataset!r}")

    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in section["model"].items()}
    try:
        cfg = RadioUNetConfig(in_channels=3, out_channels=1, image_size=meta["image_size"], **fields)
    except TypeError as e:
        raise ParamsError(f"{stage}.model: {e}") from None
    torch.manual_seed(int(tr.get("seed", 0)))
    net = RadioUNet(cfg)
    task = RadioUNetTask(net, meta)
    key = {"params": section, "data": inputs.get("data")}
    summary = run_stage(stage, task, train_set, val_set, tr, key, sources, out_dir, state_root)
    metrics = {
        **{k: summary["val"].get(k) for k in ("nmse", "rmse", "ssim", "psnr")},
        "split": "val",
        "scale": "[0, 1] maps, data range 1"
        + (", building pixels 0" if dataset == "radiomapseer" else ", valid pixels"),
        "condition": meta["condition"],
        "physics_exponent": meta.get("physics_exponent"),
        "parameters": count_parameters(net),
        "train_items": len(train_set),
        **run_report(summary, section),
    }
    write_json(out_dir / "metrics.json", metrics)
    return metrics
