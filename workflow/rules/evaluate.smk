# Few-step sampling of the test split (RadioDiff, RadioUNet and the physics baseline, which
# needs no training), scoring against the ground truth, and the speed/memory benchmark.


rule sample_radiomapseer:
    input:
        root=RADIOMAPSEER_ROOT,
        ldm="results/ldm/radiomapseer/model",
        radiounet="results/radiounet/radiomapseer/model",
        code=code("sample_radiomapseer"),
    output:
        directory("results/samples/radiomapseer"),
    log:
        "logs/sample_radiomapseer.log",
    threads: workflow.cores
    resources:
        gpu=1,
    params:
        **declared_params("sample_radiomapseer"),
    shell:
        "radiodiff sample radiomapseer --root {input.root} --ldm results/ldm/radiomapseer/model --radiounet results/radiounet/radiomapseer/model --out results/samples/radiomapseer --params params.yaml > {log} 2>&1"


rule sample_icassp:
    input:
        crops="data/icassp/crops",
        ldm="results/ldm/icassp/model",
        radiounet="results/radiounet/icassp/model",
        code=code("sample_icassp"),
    output:
        directory("results/samples/icassp"),
    log:
        "logs/sample_icassp.log",
    threads: workflow.cores
    resources:
        gpu=1,
    params:
        **declared_params("sample_icassp"),
    shell:
        "radiodiff sample icassp --crops data/icassp/crops --ldm results/ldm/icassp/model --radiounet results/radiounet/icassp/model --out results/samples/icassp --params params.yaml > {log} 2>&1"


rule evaluate_radiomapseer:
    input:
        root=RADIOMAPSEER_ROOT,
        samples="results/samples/radiomapseer",
        code=code("evaluate_radiomapseer"),
    output:
        summary=report(
            "results/evaluate/radiomapseer/summary.json",
            caption="../report/summary.rst",
            category="Evaluation",
            subcategory="radiomapseer",
        ),
        per_sample=report(
            "results/evaluate/radiomapseer/per_sample.csv",
            caption="../report/per_sample.rst",
            category="Evaluation",
            subcategory="radiomapseer",
        ),
    log:
        "logs/evaluate_radiomapseer.log",
    params:
        **declared_params("evaluate_radiomapseer"),
    shell:
        "radiodiff evaluate radiomapseer --root {input.root} --samples results/samples/radiomapseer --out results/evaluate/radiomapseer --params params.yaml > {log} 2>&1"


rule evaluate_icassp:
    input:
        crops="data/icassp/crops",
        samples="results/samples/icassp",
        code=code("evaluate_icassp"),
    output:
        summary=report(
            "results/evaluate/icassp/summary.json",
            caption="../report/summary.rst",
            category="Evaluation",
            subcategory="icassp",
        ),
        per_sample=report(
            "results/evaluate/icassp/per_sample.csv",
            caption="../report/per_sample.rst",
            category="Evaluation",
            subcategory="icassp",
        ),
    log:
        "logs/evaluate_icassp.log",
    params:
        **declared_params("evaluate_icassp"),
    shell:
        "radiodiff evaluate icassp --crops data/icassp/crops --samples results/samples/icassp --out results/evaluate/icassp --params params.yaml > {log} 2>&1"


rule benchmark:
    input:
        models=[
            f"results/{kind}/{ds}/model"
            for kind in ("ldm", "radiounet")
            for ds in ("radiomapseer", "icassp")
        ],
        code=code("benchmark"),
    output:
        report(
            "results/benchmark.json",
            caption="../report/benchmark.rst",
            category="Benchmark",
        ),
    log:
        "logs/benchmark.log",
    threads: workflow.cores
    resources:
        gpu=1,
    params:
        **declared_params("benchmark"),
    shell:
        "radiodiff benchmark --models results/ldm/radiomapseer/model results/ldm/icassp/model results/radiounet/radiomapseer/model results/radiounet/icassp/model --out results/benchmark.json --params params.yaml > {log} 2>&1"
