# The report: one self-contained HTML page + Markdown from the finished outputs (trains and
# samples nothing). `report.*` params only change figure style, so editing them re-runs this alone.


rule report:
    input:
        radiomapseer=RADIOMAPSEER_ROOT,
        crops="data/icassp/crops",
        validation=["data/validation/radiomapseer.json", "data/validation/icassp.json"],
        eda="results/eda",
        train=[
            f"results/{kind}/{name}/{f}"
            for kind, name in TRAINED_MODELS
            for f in ("metrics.json", "train_log.csv")
        ],
        samples=[f"results/samples/{ds}" for ds in DATASETS],
        evaluation=[
            f"results/evaluate/{ds}/{f}"
            for ds in DATASETS
            for f in ("summary.json", "per_sample.csv")
        ],
        benchmark="results/benchmark.json",
        workflow=[
            "Snakefile",
            *sorted(str(p) for p in Path("workflow/rules").glob("*.smk")),
        ],
        code=code("report"),
    output:
        report(
            directory("results/report"),
            patterns=["figures/{name}.png"],
            caption="../report/report.rst",
            category="Report",
        ),
    log:
        "logs/report.log",
    params:
        **declared_params("report"),
    shell:
        "radiodiff report --results results --radiomapseer {input.radiomapseer} --icassp-crops data/icassp/crops --validation data/validation --snakefile Snakefile --out results/report --params params.yaml > {log} 2>&1"
