"""The report's building blocks (figures from logs, the DAG drawing, style params, errors) and
the workflow finish (lint, snakefmt, the SLURM profile). The whole report is built from a real
pipeline run, and rendered in Chromium, in test_pipeline_e2e.py."""

from __future__ import annotations

import json
import re
import shutil
from functools import partial

import numpy as np
import pandas as pd
import pytest
import yaml

from radiodiff.core.errors import DataError, ParamsError
from radiodiff.core.params import schema_path
from radiodiff.dag.stages import ALL_SECTIONS, STAGES
from radiodiff.report import figures as F
from radiodiff.report.build import build_report
from radiodiff.report.dag import report_dag, to_dot
from radiodiff.report.document import Doc
from radiodiff.report.render import Renderer
from tests.conftest import REPO, env_with_venv, run

STYLE = F.Style(dpi=40, smooth=3)


def vae_log(disc_start=100, steps=200) -> pd.DataFrame:
    step = np.arange(10, steps + 1, 10)
    adv = step >= disc_start
    return pd.DataFrame(
        {
            "step": step,
            "epoch": step // 50,
            "loss/ae": 1.0 / step,
            "ae/train/rec_loss": np.where(adv, 0.1, 0.3) + 1.0 / step,
            "ae/train/kl_loss": 500.0 + step,
            "ae/train/g_loss": np.where(adv, -0.2, 0.0),
            "ae/train/disc_factor": np.where(adv, 1.0, 0.0),
            "ae/train/logvar": np.zeros(len(step)),  # constant: a note, not an axis
            "disc/train/disc_loss": np.where(adv, 1.0, 0.0),
            "lr/ae": 1e-3 * (1 - step / steps) + 1e-5,
            "grad_norm/ae": 5.0 / step,
            "skipped_nonfinite": np.where(step >= 150, 1, 0),
            "step_time_s": np.full(len(step), 0.1),
            "val/rmse": np.where(step % 50 == 0, 0.5 / step, np.nan),
        }
    )


def test_loss_terms_keep_varying_terms_only():
    terms, constant = F.loss_terms(vae_log())
    assert "ae/train/rec_loss" in terms and "disc/train/disc_loss" in terms and "loss/ae" in terms
    assert constant == ["ae/train/logvar"]
    assert not {"step", "epoch", "lr/ae", "grad_norm/ae", "val/rmse", "skipped_nonfinite"} & set(terms)


def marked(ax, step=100) -> bool:
    """The axis has a vertical line at ``step`` (axvline's x data is [step, step])."""
    return any(list(line.get_xdata()) == [step, step] for line in ax.get_lines())


def test_training_figures_have_an_axis_per_term_and_mark_the_phases():
    log = vae_log()
    terms, _ = F.loss_terms(log)
    fig = F.training_terms_figure(log, "VAE", STYLE, disc_start=100)
    titled = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in titled] == [*terms, "val/rmse"]
    for ax in titled:  # dashed line at disc_start on every axis
        assert marked(ax), ax.get_title()
    fig = F.training_overview_figure(log, "VAE", STYLE, disc_start=100)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[:3] == ["terms, min-max normalized", "learning rate", "gradient norm (before clipping)"]
    assert titles[3] == "skipped non-finite steps (total 1)"
    assert fig.axes[1].get_yscale() == "log"
    # no disc_start (LDM, RadioUNet): no phase marks
    fig = F.training_terms_figure(log, "LDM", STYLE)
    assert not any(marked(ax) for ax in fig.axes)


def test_phase_table_compares_the_two_phases():
    rows = F.phase_table(vae_log(), disc_start=100)
    assert [r["steps"] for r in rows] == ["10–90", "100–200"]
    # last quarter of each phase: rec_loss 0.3 + 1/step before, 0.1 + 1/step after
    assert rows[0]["ae/train/rec_loss (last 25%)"] == pytest.approx(0.3 + np.mean(1 / np.array([70, 80, 90])))
    assert rows[1]["ae/train/rec_loss (last 25%)"] == pytest.approx(0.1 + np.mean(1 / np.arange(180, 201, 10)))
    assert rows[1]["val/rmse (last eval)"] == pytest.approx(0.5 / 200)
    assert F.phase_table(vae_log(), disc_start=1000)[1]["steps"] == "not reached"


def test_dag_comes_from_the_stage_table_and_follows_the_roots():
    params = yaml.safe_load((REPO / "params" / "ci.yaml").read_text())
    nodes, edges = report_dag(params)
    assert set(nodes) == set(STAGES), "with the synthetic roots every stage feeds the report"
    assert ("synthesize_radiomapseer", "validate_radiomapseer") in edges and ("benchmark", "report") in edges
    params["data"]["radiomapseer"]["root"] = "/data/RadioMapSeer"  # a real folder: nothing synthesizes it
    nodes, edges = report_dag(params)
    assert "synthesize_radiomapseer" not in nodes and "synthesize_icassp" in nodes
    dot = to_dot(nodes, edges)
    assert dot.count(" -> ") == len(edges) and '"eda" -> "report"' in dot


def test_dag_is_drawn_without_graphviz():
    nodes = {n: n for n in ("all", "validate", "synthesize", "train")}
    edges = [("validate", "train"), ("synthesize", "validate"), ("synthesize", "train"), ("train", "all")]
    fig = F.dag_figure(nodes, edges, STYLE)
    ax = fig.axes[0]
    boxes = {t.get_text(): t.get_position() for t in ax.texts if t.get_text()}
    arrows = [t for t in ax.texts if not t.get_text()]  # one annotation arrow per edge
    assert len(arrows) == len(edges)
    assert set(boxes) == {"all", "validate", "synthesize", "train"}
    # longest-path layers, top to bottom: synthesize, validate, train, all
    assert [boxes[n][1] for n in ("synthesize", "validate", "train", "all")] == [0, -1, -2, -3]


def test_style_params_are_checked():
    assert F.Style.from_params({"dpi": 80, "cmap": "plasma"}).cmap == "plasma"
    with pytest.raises(ParamsError, match=r"report\.cmap.*'nope'"):
        F.Style.from_params({"cmap": "nope"})
    with pytest.raises(ParamsError, match=r"report\.colour"):
        F.Style.from_params({"colour": "red"})


def figures_in(folder, workers: int) -> dict:
    """Two figures drawn by a :class:`Doc` whose renderer has ``workers`` processes: name -> PNG bytes."""
    folder.mkdir()
    with Renderer(STYLE, workers) as renderer:
        doc = Doc(folder, STYLE, renderer)
        doc.figure(partial(F.training_terms_figure, vae_log(), "VAE", STYLE, 100), "terms", "c")
        doc.figure(partial(F.dag_figure, {"a": "a", "b": "b"}, [("a", "b")], STYLE), "dag", "c")
        page = doc.render_html("t")
    assert page.count("data:image/png;base64,") == 2 and doc.figure_names == ["terms.png", "dag.png"]
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_figures_drawn_in_worker_processes_are_the_same_files(tmp_path):
    assert figures_in(tmp_path / "one", 1) == figures_in(tmp_path / "two", 2)


def broken_figure():
    raise ValueError("no such column")


def test_a_figure_that_fails_in_a_worker_fails_the_report(tmp_path):
    with pytest.raises(ValueError, match="no such column"), Renderer(STYLE, 2) as renderer:
        Doc(tmp_path, STYLE, renderer).figure(broken_figure, "broken", "c")


def test_doc_tables_bold_the_best_and_escape(tmp_path):
    doc = Doc(tmp_path, STYLE)
    doc.table([{"method": "a<b", "rmse": 0.5}, {"method": "c|d", "rmse": 0.25}], best={"rmse": 1}, html_id="m")
    page = doc.render_html("t")
    assert '<table id="m">' in page and "a&lt;b" in page and "<b>0.25</b>" in page
    md = doc.render_md("t")
    assert "| c\\|d | **0.25** |" in md


def test_missing_input_is_one_clear_error_and_writes_nothing(tmp_path):
    params = yaml.safe_load((REPO / "params" / "ci.yaml").read_text())
    out = tmp_path / "report"
    with pytest.raises(DataError, match=r"validation[/\\]radiomapseer\.json: file not found"):
        build_report(tmp_path / "results", tmp_path / "rms", tmp_path / "crops", tmp_path / "validation", out, params)
    assert not out.exists() and not list(tmp_path.glob(".*tmp*"))


def test_report_stage_declares_every_params_section():
    schema = yaml.safe_load(schema_path().read_text())
    assert [*ALL_SECTIONS, "runtime"] == schema["required"], "every section but the undeclared runtime"
    assert STAGES["report"].params == ALL_SECTIONS
    for preset in ("quick", "ci", "paper"):
        assert "report" in yaml.safe_load((REPO / "params" / f"{preset}.yaml").read_text()), preset


# --------------------------------------------------------------------------------------------- workflow


def test_snakemake_lint_finds_only_the_documented_conda_finding():
    p = run(["snakemake", "--lint"], cwd=REPO, check=False)
    findings = set(re.findall(r"^\s*\* (.+?):\s*$", p.stdout + p.stderr, flags=re.M))
    assert findings == {"Specify a conda environment or container for each rule."}, p.stdout + p.stderr
    readme = " ".join((REPO / "README.md").read_text().split())
    assert "conda environment or container" in readme, "the README explains it"


def test_rules_are_snakefmt_formatted():
    if not shutil.which("snakefmt", path=env_with_venv()["PATH"]):
        pytest.skip("snakefmt is not installed")
    run(["snakefmt", "--check", "Snakefile", "workflow/rules"], cwd=REPO)


def test_slurm_profile_dry_run():
    profile = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    assert profile["executor"] == "slurm"
    rules = set(STAGES)
    assert set(profile["set-resources"]) <= rules and set(profile["set-threads"]) <= rules
    gpu_rules = {r for r, res in profile["set-resources"].items() if res.get("slurm_partition") == "gpu"}
    assert {s for s in STAGES if s.startswith(("train_", "sample_"))} | {"benchmark"} == gpu_rules
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        pytest.skip("snakemake-executor-plugin-slurm is not installed")
    p = run(["snakemake", "--profile", "profiles/slurm", "--dry-run", "--forceall"], cwd=REPO)
    assert "report" in p.stdout and "train_ldm_icassp" in p.stdout


def test_learning_curves_charge_radiodiff_its_vaes_and_count_flops(tmp_path):
    """The quality-per-cost figure's data: validation NMSE rows of each map model's log, RadioDiff's
    clock offset by its VAE's training seconds, FLOPs = step × batch × the benchmark's per item."""
    from radiodiff.report import figures as F
    from radiodiff.report.results import learning_curves

    def write(rel, obj):
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(obj, pd.DataFrame):
            obj.to_csv(path, index=False)
        else:
            path.write_text(json.dumps(obj))

    log = pd.DataFrame({"step": [10, 20, 30], "wall_s": [1.0, 2.0, 3.0], "val/nmse": [float("nan"), 0.5, 0.25]})
    for kind in ("ldm", "radiounet"):
        write(f"{kind}/radiomapseer/train_log.csv", log)
        write(f"{kind}/radiomapseer/metrics.json", {"params": {"train": {"batch_size": 8}}})
    write("vae/radiomapseer/metrics.json", {"train_seconds": 100.0, "seconds": 40.0})
    bench = {"models": {"radiodiff/radiomapseer": {"train": {"flops_per_step": 1600, "batch_size": 16}}}}
    write("benchmark.json", bench)
    curves = learning_curves(tmp_path, "radiomapseer", {"radiodiff": {"nmse": 0.2}, "radiounet": {"nmse": 0.1}})
    diff, unet = curves
    assert (
        diff["method"] == "radiodiff" and list(diff["wall_s"]) == [102.0, 103.0] and list(diff["nmse"]) == [0.5, 0.25]
    )
    assert list(diff["flops"]) == [20 * 8 * 100, 30 * 8 * 100] and diff["test_nmse"] == 0.2
    assert list(unet["wall_s"]) == [2.0, 3.0] and unet["flops"] is None  # no benchmark entry: no FLOPs axis
    fig = F.learning_curves_figure(curves, 0.05, STYLE, "t")
    assert len(fig.axes) == 2 and any(line.get_linestyle() == "--" for line in fig.axes[0].lines)
    write("radiounet/radiomapseer/train_log.csv", log.drop(columns="wall_s"))  # a log from before wall_s
    assert learning_curves(tmp_path, "radiomapseer", {}) == []


def test_departures_follow_the_runs_block_style():
    """The Swin and U-Net rows describe the blocks the run trained (issue 26: the paper presets run
    the original's blocks, and the report described the light ones)."""
    from radiodiff.report.texts import departures

    def unet_rows(styles):
        return {r[0]: r[2] for r in departures(styles) if r[0].startswith(("U-Net", "Swin"))}

    light = unet_rows({"radiomapseer": "light", "icassp": "light"})
    assert set(light) == {"Swin condition encoder", "U-Net details"} and "space-to-depth" in light["U-Net details"]
    original = unet_rows({"radiomapseer": "original", "icassp": "original"})
    assert "original's blocks" in original["U-Net details"] and "torchvision" in original["Swin condition encoder"]
    mixed = unet_rows({"radiomapseer": "original", "icassp": "light"})
    assert "original's blocks" in mixed["U-Net details (RadioMapSeer)"]
    assert "space-to-depth" in mixed["U-Net details (ICASSP 2025 (indoor))"]


def test_structure_scores_uncertainty_and_its_grid_column(tmp_path):
    """The structure table (LPIPS left out, as the protocol says), the uncertainty section with
    RadioUNet and physics marked as having no spread, the reliability figure, and the sample
    grid's column of RadioDiff's std; without a calibration, the section says why."""
    import torch

    from radiodiff.evaluate.uncertainty import Calibration
    from radiodiff.report import results

    cal = Calibration(3, 99.16, "outdoor", "radiodiff_mean")
    torch.manual_seed(0)
    target = torch.rand(4, 1, 8, 8)
    std = torch.rand(4, 1, 8, 8) * 0.05
    cal.add(target, target + std * torch.randn(4, 1, 8, 8), std, None)
    scores = {"relative_error": 0.2, "peak_distance_m": 4.0, "peak_hit": 0.5, "sharpness_ratio": 0.7}
    summary = {
        "radiodiff": {"nmse": 0.1, **scores},
        "radiounet": {"nmse": 0.2, **scores, "peak_hit": 0.25, "sharpness_ratio": 1.1},
        "uncertainty": cal.result(),
        "protocol": {"lpips": "left out (evaluate.lpips: false)", "fid_kid": "left out (evaluate.fid_weights: null)"},
    }
    doc = Doc(tmp_path, STYLE)
    results._structure_table(doc, "radiomapseer", summary)
    results._uncertainty(doc, "radiomapseer", summary)
    results._uncertainty(doc, "icassp", {"protocol": {"uncertainty": "none: needs sample.ensemble"}})
    md = doc.render_md("t")
    assert "LPIPS: left out (evaluate.lpips: false)" in md and "FID and KID: left out" in md
    assert "| RadioDiff | **0.2** | **4** | **0.5** | 0.7 |" in md  # peak_hit: higher is better; the ratio unranked
    assert "| RadioUNet | none: a deterministic network" in md and "| physics | none: a formula" in md
    assert "Student's t with 2 degrees of freedom" in md and "No per-pixel uncertainty: none: needs" in md
    assert (tmp_path / "reliability_radiomapseer.png").is_file()
    row = {"name": "0_1", "condition": np.zeros((8, 8)), "tx": (1, 1), "truth": np.full((8, 8), -100.0)}
    row |= {"radiodiff": np.full((8, 8), -98.0), "radiounet": np.full((8, 8), -101.0), "uncertainty": np.ones((8, 8))}
    fig = F.sample_grid_figure([row], "dB", STYLE, -147, -47)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles[-1] == "std of RadioDiff's samples" and len(titles) == 6
    del row["uncertainty"]
    assert len([ax for ax in F.sample_grid_figure([row], "dB", STYLE, -147, -47).axes if ax.get_title()]) == 5
