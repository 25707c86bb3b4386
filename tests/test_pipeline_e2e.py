"""End-to-end: the DAG at the ci scale in a throwaway copy of the repo, under Snakemake and DVC.

Checks what ran (parsed from each engine's log), that a param edit re-runs exactly its stage
and what depends on it (a ``report.*`` edit: the report alone), that the report renders in
headless Chromium, that Snakemake's own report and DVC's metrics and plots work, and that
pointing data.radiomapseer.root at a real folder runs the RadioMapSeer stages on it without
synthesis.
"""

from __future__ import annotations

import html
import json
import re
import shlex
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml

from radiodiff.cli import stage_call, stage_params
from radiodiff.core.io import read_png
from radiodiff.dag.code_deps import closure
from radiodiff.dag.stages import STAGES, resolve
from tests.conftest import ARTIFACTS, chromium, copy_repo, dvc_ran, edit_params, env_with_venv, run, snakemake_ran

pytestmark = pytest.mark.e2e

ALL = set(STAGES)
DATA_STAGES = {
    s for s in STAGES if s.startswith(("synthesize", "validate", "arrange", "crop")) or s in ("edges", "eda")
}
# every stage feeds the report, so every edit below re-runs it too
RMS_MODELS = {"train_ldm_radiomapseer", "sample_radiomapseer", "evaluate_radiomapseer", "benchmark", "report"}
FULL = {"sample_icassp_full", "evaluate_icassp_full"}  # whole buildings
ICASSP_LDM = {"train_ldm_icassp", "sample_icassp", "evaluate_icassp", *FULL, "benchmark", "report"}
SAMPLING = {"sample_radiomapseer", "sample_icassp", "evaluate_radiomapseer", "evaluate_icassp", *FULL, "report"}
VAES = {s for s in STAGES if s.startswith("train_vae_")}
RADIOUNET = {f"{kind}_{ds}" for kind in ("train_radiounet", "sample", "evaluate") for ds in ("radiomapseer", "icassp")}


def edit_code(repo, path: str) -> None:
    """A comment appended to a library file of the copy (its behaviour is unchanged)."""
    with open(repo / path, "a") as f:
        f.write("# an edited comment\n")


def fresh_run(repo, model: str) -> bool:
    """The model's last training started from step 0 (``steps`` equals ``max_steps`` either way)."""
    metrics = json.loads((repo / f"results/{model}/metrics.json").read_text())
    return metrics["resumed_from"] is None and metrics["steps"] == metrics["params"]["train"]["max_steps"]


METRICS = {"nmse", "rmse", "ssim", "psnr", "mae", "rmse_db", "rmse_whole_set", "ms_per_map"}


def check_outputs(repo):
    for ds in ("radiomapseer", "icassp"):
        report = json.loads((repo / f"data/validation/{ds}.json").read_text())
        assert report["ok"] and report["counts"]["samples"] > 0
    n_gain = len(list((repo / "data/raw/radiomapseer/gain/DPM").glob("*.png")))
    assert n_gain == 6 * 3 and len(list((repo / "data/radiomapseer/edges").glob("*.png"))) == n_gain
    assert (repo / "data/icassp/crops/metadata.csv").is_file()
    assert (repo / "data/icassp/arranged/metadata.csv").is_file()
    assert json.loads((repo / "results/eda/eda.json").read_text())
    for name in ("radiomapseer", "building", "antenna", "radio"):
        metrics = json.loads((repo / f"results/vae/{name}/metrics.json").read_text())
        assert metrics["psnr"] > 0 and metrics["latent_shape"][1:] == [8, 8]
        assert (repo / f"results/vae/{name}/model/config.json").is_file()
        assert (repo / f"results/vae/{name}/train_log.csv").read_text().startswith("step")
        # the path-loss VAEs' ceiling: their test reconstruction, scored as the LDM they feed
        assert (metrics.get("ceiling_nmse", 0) > 0) == (name in ("radiomapseer", "radio")), name
    for ds in ("radiomapseer", "icassp"):
        summary = json.loads((repo / f"results/evaluate/{ds}/summary.json").read_text())
        assert {"radiodiff", "radiounet", "physics"} <= set(summary)
        for method in ("radiodiff", "radiounet", "physics"):
            assert METRICS <= set(summary[method]), (ds, method)
            assert 0 <= summary[method]["rmse"] <= 1 and summary[method]["ms_per_map"] > 0
            pngs = sorted(p.name for p in (repo / f"results/samples/{ds}/{method}").glob("*.png"))
            assert len(pngs) == summary["protocol"]["maps"] > 0
        assert summary["radiodiff"]["seed_spread"]["seeds"] == [0, 1]  # ci: sample.seeds 2
        # ci: sample.ensemble, so the spread of the 2 samples and its calibration; the truth for compare
        assert summary["uncertainty"]["k"] == 2 and summary["uncertainty"]["pixels"] > 0
        truth = sorted(p.name for p in (repo / f"results/samples/{ds}/truth").glob("*.png"))
        assert (
            len(truth)
            == summary["protocol"]["maps"]
            == len(list((repo / f"results/samples/{ds}/uncertainty").glob("*.npy")))
        )
        assert "relative_error" in summary["radiodiff"] and "sharpness_ratio" in summary["radiodiff"]
        ratio = summary["ratios"]["radiodiff/radiounet"]["nmse"]  # paired bootstrap over the test images
        assert ratio["ratio"] == pytest.approx(summary["radiodiff"]["nmse"] / summary["radiounet"]["nmse"])
        assert ratio["ci95"][0] <= ratio["ratio"] <= ratio["ci95"][1]
        if ds == "radiomapseer":
            assert summary["protocol"]["split_rule"].startswith("ratios train 0.8 / val 0.1 / test 0.1")
        rows = (repo / f"results/evaluate/{ds}/per_sample.csv").read_text().splitlines()
        scopes = 3 if ds == "radiomapseer" else 2  # all, outdoor, paper / valid, open
        # radiodiff, radiounet, physics, radiodiff_mean (ci: sample.ensemble), radiounet_vae
        methods = {"radiodiff", "radiounet", "physics", "radiodiff_mean", "radiounet_vae"}
        assert methods <= set(summary) and summary["radiodiff_mean"]["k"] == 2
        assert summary["protocol"]["headline"]["radiodiff"] == "radiodiff_mean"
        assert len(rows) == 1 + len(methods) * scopes * summary["protocol"]["maps"]  # methods x scopes x maps
    check_whole_buildings(repo)
    icassp = json.loads((repo / "results/evaluate/icassp/summary.json").read_text())
    assert icassp["radiodiff"]["per_building"] and icassp["radiodiff"]["per_band"]
    bench = json.loads((repo / "results/benchmark.json").read_text())
    assert set(bench["models"]) == {f"{k}/{d}" for k in ("radiodiff", "radiounet") for d in ("radiomapseer", "icassp")}
    assert set(bench["models"]["radiodiff/icassp"]["sample_ms_per_map"]) == {"1", "2"}
    whole = bench["models"]["radiodiff/icassp"]["whole_map"]  # ci: 64×48 px, 32-px windows at 0.25 m
    assert whole["size_px"] == [64, 48] and whole["model_grid"] == [48, 64] and whole["windows"] == 2 * 3
    assert whole["ms_per_map"] > 0 and bench["models"]["radiounet/radiomapseer"]["whole_map"]["ms_per_map"] > 0
    for name in ("ldm/radiomapseer", "ldm/icassp", "radiounet/radiomapseer", "radiounet/icassp"):
        assert json.loads((repo / f"results/{name}/metrics.json").read_text())["steps"] > 0
    report = repo / "results/report"
    assert (report / "index.html").is_file() and (report / "report.md").is_file()
    figures = {p.name for p in (report / "figures").glob("*.png")}
    for name in (
        "samples_radiomapseer",
        "samples_icassp",
        "samples_icassp_full",
        "reliability_radiomapseer",
        "reliability_icassp",
        "train_vae_radio_terms",
        "train_ldm_icassp_overview",
        "dag",
    ):
        assert f"{name}.png" in figures, name
    md = (report / "report.md").read_text()
    assert all(f"figures/{f}" in md for f in figures), "report.md links every figure"
    assert md.count("VAE ceiling (reconstruction)") == 2 and md.count("RadioDiff / RadioUNet") >= 2
    assert not list(repo.glob("data/**/.*.tmp-*")), "no temporary leftovers"
    assert not list(repo.glob("results/**/.*.tmp-*")), "no temporary leftovers"


def check_whole_buildings(repo):
    """The challenge's files: one PNG per test input per method, named as the input, at its size;
    the weighted score per method."""
    from radiodiff.data.icassp import held_out_rows

    rows = held_out_rows(repo / "data/icassp/arranged")
    summary = json.loads((repo / "results/evaluate/icassp_full/summary.json").read_text())
    methods = {"radiodiff", "radiodiff_independent", "radiounet", "physics"}
    assert methods <= set(summary)
    for method in methods:
        folder = repo / "results/samples/icassp_full" / method
        assert sorted(p.name for p in folder.glob("*.png")) == sorted(f"{r['name']}.png" for r in rows)
        for r in rows:
            assert re.fullmatch(r"B\d+_Ant\d+_f[123]_S\d+", r["name"])
            img = read_png(folder / f"{r['name']}.png", "L")
            assert img.shape == (int(r["height"]), int(r["width"])) and 13 <= img.min() and img.max() <= 160
        assert summary[method]["weighted_rmse_db"] > 0 and summary[method]["tasks"]["T3"]["maps"] == len(rows)
    assert summary["radiodiff"]["seams"]["mode"] == "joint"
    assert summary["radiodiff_independent"]["seams"]["mode"] == "independent"


def snakemake(repo, *targets):
    p = run(["snakemake", "--cores", "2", *targets], cwd=repo)
    return snakemake_ran(p.stdout + p.stderr)


def dvc_repro(repo, *targets):
    p = run(["dvc", "repro", *targets], cwd=repo)
    return dvc_ran(p.stdout + p.stderr)


@pytest.fixture(scope="module")
def smk_repo(tmp_path_factory):
    """A ci-scale copy of the repo where Snakemake has run the whole DAG once."""
    repo = copy_repo(tmp_path_factory.mktemp("smk") / "repo")
    return repo, snakemake(repo)


def test_snakemake_runs_the_dag_and_reruns_only_what_an_edit_touches(smk_repo):
    repo, first = smk_repo
    assert first == ALL
    check_outputs(repo)
    assert snakemake(repo) == set(), "a second run has nothing to do"
    # One edit per kind (report style, data, sampling, runtime; code edits below; a model's
    # train param under DVC): each stage's deps are the same under both engines (test_parity),
    # so each kind checks the engine's mechanism, and every re-run costs CI minutes.
    edit_params(repo, "report.dpi", 45)
    assert snakemake(repo) == {"report"}, "a figure-style edit re-runs the report alone"
    # a data edit that changes no file: the split. Every RadioMapSeer model trains a new run (on
    # main the VAE resumed its finished run and exported the weights that saw today's test maps)
    edit_params(repo, "data.radiomapseer.split.seed", 7)
    assert snakemake(repo) == {"eda", "train_vae_radiomapseer", "train_radiounet_radiomapseer", *RMS_MODELS}
    for model in ("vae/radiomapseer", "ldm/radiomapseer", "radiounet/radiomapseer"):
        assert fresh_run(repo, model), model
    edit_params(repo, "sample.steps", 3)
    assert snakemake(repo) == SAMPLING
    edit_params(repo, "runtime.keep_states", 3)
    assert snakemake(repo) == set(), "runtime settings re-run nothing"


def test_snakemake_code_edits_rerun_only_the_stages_that_run_the_file(smk_repo):
    repo, _ = smk_repo
    edit_code(repo, "radiodiff/benchmark.py")
    assert snakemake(repo) == {"benchmark", "report"}
    edit_code(repo, "radiodiff/report/figures.py")
    assert snakemake(repo) == {"report"}
    edit_code(repo, "radiodiff/models/radiounet.py")
    ran = snakemake(repo)
    assert ran == RADIOUNET | FULL | {"benchmark", "report"} and not ran & VAES
    # the edited code trains: a new run, not a resume of the finished one (issue 26)
    assert fresh_run(repo, "radiounet/radiomapseer") and fresh_run(repo, "radiounet/icassp")


SYS_MODULES_DRIVER = """
import importlib, json, sys
spec = json.loads(open(sys.argv[1]).read())
importlib.import_module(spec["handler"]).run(spec["params"], **spec["kwargs"])
print(json.dumps(sorted(m for m in sys.modules if m == "radiodiff" or m.startswith("radiodiff."))))
"""


def test_each_stage_imports_only_its_declared_code(smk_repo, tmp_path):
    """Each stage's handler, called directly at the ci scale in a fresh process (outputs to a
    temporary folder), imports no radiodiff module beyond the code deps both engines declare."""
    repo, _ = smk_repo
    params = yaml.safe_load((repo / "params.yaml").read_text())
    driver = tmp_path / "driver.py"
    driver.write_text(SYS_MODULES_DRIVER)

    def call(name: str) -> subprocess.CompletedProcess:
        stage = STAGES[name]
        argv = shlex.split(resolve(stage.command(), params))[1:]
        called, kwargs = stage_call(argv)
        assert called == name
        kwargs["out"] = str(tmp_path / name / "out")
        p = stage_params(str(repo / "params.yaml"), name)
        p["runtime"] = {**p["runtime"], "state_dir": str(tmp_path / "state")}
        spec = tmp_path / f"{name}.json"
        spec.write_text(json.dumps({"handler": stage.handler, "params": p, "kwargs": kwargs}))
        return subprocess.run(
            [sys.executable, str(driver), str(spec)], cwd=repo, env=env_with_venv(repo), capture_output=True, text=True
        )

    with ThreadPoolExecutor(max_workers=2) as pool:  # the stages are independent; mostly imports
        done = dict(zip(STAGES, pool.map(call, STAGES), strict=True))
    for name, stage in STAGES.items():
        assert done[name].returncode == 0, f"{name}: {done[name].stderr[-3000:]}"
        imported = set(json.loads(done[name].stdout.strip().splitlines()[-1]))
        declared = set(closure(stage.handler))
        assert imported <= declared, f"{name} imported undeclared {sorted(imported - declared)}"
        assert stage.handler in imported


def test_report_renders_in_headless_chromium(smk_repo, tmp_path):
    """Every image of index.html loads from disk with no server, and the metrics tables exist."""
    browser = chromium()
    repo, _ = smk_repo
    index = repo / "results/report/index.html"
    page = index.read_text()
    assert not re.search(r'(src|href)="(?!data:|#)', page), "self-contained: no external src/href"
    checker = index.with_name("browser_check.html")  # beside index.html, same origin and paths
    checker.write_text(page.replace("</body>", CHECK_SCRIPT + "</body>"))
    common = [browser, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}"]
    try:
        p = run([*common, "--virtual-time-budget=20000", "--dump-dom", checker.as_uri()], cwd=tmp_path)
    finally:
        checker.unlink()
    found = re.search(r'<pre id="radiodiff-check">(.*?)</pre>', p.stdout, re.S)
    assert found, f"the check script did not run: {p.stderr[-2000:]}"
    check = json.loads(html.unescape(found.group(1)))
    assert check["images"] >= 20 and check["broken"] == [], check
    assert set(check["metrics_tables"]) >= {"metrics-radiomapseer", "metrics-icassp"}, check
    assert check["metric_rows"] >= 6 and "RadioDiff" in check["methods"], check

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "report_index.png"
    shot.unlink(missing_ok=True)
    run([*common, "--hide-scrollbars", "--window-size=1280,2400", f"--screenshot={shot}", index.as_uri()], cwd=tmp_path)
    assert shot.is_file() and shot.stat().st_size > 20_000, "screenshot written"


CHECK_SCRIPT = """<script>
window.addEventListener('load', () => {
  const imgs = [...document.images];
  const tables = [...document.querySelectorAll('table.metrics')];
  const rows = tables.flatMap(t => [...t.tBodies[0].rows]);
  const out = document.createElement('pre');
  out.id = 'radiodiff-check';
  out.textContent = JSON.stringify({
    images: imgs.length,
    broken: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt),
    metrics_tables: tables.map(t => t.id).filter(Boolean),
    metric_rows: rows.length,
    methods: [...new Set(rows.map(r => r.cells[0].textContent))],
  });
  document.body.appendChild(out);
});
</script>"""


def test_report_reads_outputs_only_and_fails_cleanly(smk_repo, tmp_path):
    """Without any model weights the report still builds; a missing input is one clear error."""
    repo, _ = smk_repo
    results = tmp_path / "results"
    shutil.copytree(repo / "results", results, ignore=shutil.ignore_patterns("model", "report"))
    assert not list(results.rglob("*.safetensors")), "no model weights in the copy"
    cmd = ["radiodiff", "report", "--results", str(results), "--radiomapseer", "data/raw/radiomapseer"]
    cmd += ["--icassp-crops", "data/icassp/crops", "--icassp-arranged", "data/icassp/arranged"]
    cmd += ["--out", str(tmp_path / "report"), "--params", "params.yaml"]
    run(cmd, cwd=repo)
    assert (tmp_path / "report/index.html").is_file()
    (results / "benchmark.json").unlink()
    cmd[cmd.index(str(tmp_path / "report"))] = str(tmp_path / "report2")
    p = run(cmd, cwd=repo, check=False)
    assert p.returncode == 1 and "benchmark.json: file not found" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and not (tmp_path / "report2").exists()


def test_snakemakes_own_report(smk_repo, tmp_path):
    repo, _ = smk_repo
    out = tmp_path / "snakemake_report.html"
    run(["snakemake", "--cores", "1", "--report", str(out)], cwd=repo)
    text = out.read_text()
    for marker in ("radiodiff", "train_log.csv", "per_sample.csv", "benchmark.json", "samples_icassp.png"):
        assert marker in text, marker


def dvc_clean(repo) -> bool:
    return "Data and pipelines are up to date" in run(["dvc", "status"], cwd=repo).stdout


def test_one_record_for_both_engines(smk_repo, tmp_path):
    """A Snakemake run with params.yaml's values leaves DVC up to date; after DVC restores or
    re-runs outputs, `snakemake --touch` adopts them, and neither engine has anything to do."""
    repo, _ = smk_repo
    snakemake(repo)  # the record of the last edits above
    assert dvc_clean(repo) and dvc_repro(repo) == set(), "DVC adopted what Snakemake made"
    edit_params(repo, "eda.dpi", 40)
    assert dvc_repro(repo) == {"eda", "report"}, "one edit, then DVC re-runs what it touches"

    def nothing_to_do(dvc_ran: bool = False) -> None:
        p = run(["snakemake", "--touch", "--cores", "1"], cwd=repo)
        # a `dvc repro` moved dvc.lock: Snakemake says its own record may be stale
        assert ("dvc.lock changed since Snakemake's last run" in p.stdout + p.stderr) == dvc_ran
        assert snakemake(repo) == set() and dvc_clean(repo)

    nothing_to_do(dvc_ran=True)  # after `dvc repro` following a param edit
    shutil.rmtree(repo / "results")
    run(["dvc", "checkout", "--quiet"], cwd=repo)
    assert (repo / "results/report/index.html").is_file()
    nothing_to_do()  # after `dvc checkout`
    run(["dvc", "remote", "add", "--default", "store", str(tmp_path / "remote")], cwd=repo)
    run(["dvc", "push", "--quiet"], cwd=repo)
    shutil.rmtree(repo / "results")
    shutil.rmtree(repo / ".dvc/cache")
    run(["dvc", "pull", "--quiet"], cwd=repo)
    assert (repo / "results/ldm/icassp/model/radiodiff.json").is_file()
    nothing_to_do()  # after `dvc pull` from a remote


def test_snakemake_overrides_reach_the_jobs(repo_copy):
    """`--configfile` values are the values the jobs compute with; such a run leaves DVC's record alone."""
    run(["radiodiff", "scale", "quick"], cwd=repo_copy)
    p = run(
        ["snakemake", "--cores", "2", "data/validation/radiomapseer.json", "--configfile", "params/ci.yaml"], repo_copy
    )
    assert json.loads((repo_copy / "data/validation/radiomapseer.json").read_text())["counts"]["maps"] == 6
    assert "values differ from params.yaml" in p.stdout + p.stderr and not (repo_copy / "dvc.lock").exists()
    target = "results/vae/building/metrics.json"
    run(["snakemake", "--cores", "2", target, "--configfile", "params/ci.yaml"], repo_copy)
    metrics = json.loads((repo_copy / target).read_text())
    ci = yaml.safe_load((repo_copy / "params/ci.yaml").read_text())["train_vae_building"]
    assert metrics["params"]["train"]["max_steps"] == ci["train"]["max_steps"] == metrics["steps"]
    p = run(["snakemake", "-n", "--cores", "1", "--config", "colour=red"], repo_copy, check=False)
    assert p.returncode != 0 and "radiodiff: error:" in p.stderr and "'colour'" in p.stderr


def test_dvc_repro_runs_the_dag_and_reruns_only_what_an_edit_touches(repo_copy):
    assert dvc_repro(repo_copy) == ALL
    check_outputs(repo_copy)
    assert dvc_repro(repo_copy) == set()
    edit_params(repo_copy, "report.smooth", 3)
    assert dvc_repro(repo_copy) == {"report"}, "a figure-style edit re-runs the report alone"
    # DVC re-runs a stage when an input's content changed, and training is deterministic, so the
    # edit must change the training maps' edges (a lower Canny threshold may touch only test maps)
    edit_params(repo_copy, "edges.method", "sobel")
    assert dvc_repro(repo_copy) == {"edges", "train_vae_radiomapseer", *RMS_MODELS}
    # (a RadioUNet code edit is checked under Snakemake: the two engines' deps are the same,
    # test_parity, and each re-run costs CI minutes)
    edit_params(repo_copy, "train_vae_radio.train.lr", 1.0e-3)
    ran = dvc_repro(repo_copy)
    assert ran == {"train_vae_radio", *ICASSP_LDM} and not ran & DATA_STAGES
    assert dvc_repro(repo_copy, "report") == set(), "`dvc repro report` after a full run does nothing"
    edit_params(repo_copy, "runtime.keep_states", 1)
    assert dvc_repro(repo_copy) == set(), "runtime settings re-run nothing"
    edit_code(repo_copy, "radiodiff/benchmark.py")
    assert dvc_repro(repo_copy) == {"benchmark", "report"}
    edit_code(repo_copy, "radiodiff/report/document.py")
    assert dvc_repro(repo_copy) == {"report"}

    metrics = json.loads(run(["dvc", "metrics", "show", "--json"], cwd=repo_copy).stdout)
    files = {f for rev in metrics.values() for f in rev.get("data", {})}
    assert {"results/evaluate/radiomapseer/summary.json", "results/benchmark.json"} <= files, files
    diff = run(["dvc", "metrics", "diff", "--all"], cwd=repo_copy).stdout
    assert "results/evaluate/icassp/summary.json" in diff
    run(["dvc", "plots", "show", "--out", "plots"], cwd=repo_copy)
    plots = (repo_copy / "plots/index.html").read_text()
    assert "train_log.csv" in plots and "per_sample.csv" in plots


def test_real_radiomapseer_root_runs_without_synthesis(repo_copy, real_root):
    edit_params(repo_copy, "data.radiomapseer.root", str(real_root))
    assert snakemake(repo_copy, "data/radiomapseer/edges") == {"validate_radiomapseer", "edges"}
    assert not (repo_copy / "data/raw/radiomapseer").exists()
    assert len(list((repo_copy / "data/radiomapseer/edges").glob("*.png"))) == 4
    report = json.loads((repo_copy / "data/validation/radiomapseer.json").read_text())
    assert report["root"] == str(real_root) and report["counts"] == {"maps": 1, "samples": 4, "tx_per_map": [4]}

    assert dvc_repro(repo_copy, "edges") == set(), "Snakemake's run is DVC's record too"
    p = run(["dvc", "repro", "--force", "edges"], cwd=repo_copy)
    assert dvc_ran(p.stdout + p.stderr) == {"validate_radiomapseer", "edges"}
    assert not (repo_copy / "data/raw/radiomapseer").exists()


def test_irt4_layout_runs_the_radiomapseer_stages(repo_copy, tmp_path):
    """A multi-map folder in the real IRT4 layout: every Tx listed in antenna/*.json, gain maps for
    Tx 0-1 only (their numbers kept). Validation reports the coverage; the stages use those Tx."""
    from radiodiff.synthetic.radiomapseer import synthesize

    root = tmp_path / "irt4"
    synthesize(root, maps=10, tx_per_map=4, seed=3, size_px=64)
    (root / "gain/IRT4").mkdir()
    for p in (root / "gain/DPM").glob("*_[01].png"):
        shutil.copy(p, root / "gain/IRT4" / p.name)
    edit_params(repo_copy, "data.radiomapseer.root", str(root))
    edit_params(repo_copy, "data.radiomapseer.simulation", "IRT4")
    ran = snakemake(repo_copy, "results/evaluate/radiomapseer/summary.json")
    assert ran == {
        "validate_radiomapseer",
        "edges",
        "train_vae_radiomapseer",
        "train_ldm_radiomapseer",
        "train_radiounet_radiomapseer",
        "sample_radiomapseer",
        "evaluate_radiomapseer",
    }
    report = json.loads((repo_copy / "data/validation/radiomapseer.json").read_text())
    assert report["coverage"]["IRT4"] == {"maps": 10, "samples": 20, "listed": 40, "fraction": 0.5}
    assert report["counts"]["samples"] == 20
    names = sorted(p.stem for p in (repo_copy / "data/radiomapseer/edges").glob("*.png"))
    assert len(names) == 20 and {n.split("_")[1] for n in names} == {"0", "1"}
    summary = json.loads((repo_copy / "results/evaluate/radiomapseer/summary.json").read_text())
    assert summary["protocol"]["simulation"] == "IRT4" and summary["protocol"]["maps"] == 2  # 1 test map × Tx 0-1
    samples = sorted(p.stem for p in (repo_copy / "results/samples/radiomapseer/radiodiff").glob("*.png"))
    assert len(samples) == 2 and {n.split("_")[1] for n in samples} == {"0", "1"}
