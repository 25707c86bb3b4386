# Data half of the DAG: synthesize → validate → {edges | arrange → crop}.
# synthesize_* only feed the pipeline while data.*.root points at their output folder.


rule synthesize_radiomapseer:
    input:
        code=code("synthesize_radiomapseer"),
    output:
        directory("data/raw/radiomapseer"),
    log:
        "logs/synthesize_radiomapseer.log",
    benchmark:
        "logs/benchmarks/synthesize_radiomapseer.tsv"
    params:
        **declared_params("synthesize_radiomapseer"),
    shell:
        "radiodiff synthesize radiomapseer data/raw/radiomapseer --params params.yaml > {log} 2>&1"


rule synthesize_icassp:
    input:
        code=code("synthesize_icassp"),
    output:
        directory("data/raw/icassp"),
    log:
        "logs/synthesize_icassp.log",
    benchmark:
        "logs/benchmarks/synthesize_icassp.tsv"
    params:
        **declared_params("synthesize_icassp"),
    shell:
        "radiodiff synthesize icassp data/raw/icassp --params params.yaml > {log} 2>&1"


rule validate_radiomapseer:
    input:
        root=RADIOMAPSEER_ROOT,
        code=code("validate_radiomapseer"),
    output:
        "data/validation/radiomapseer.json",
    log:
        "logs/validate_radiomapseer.log",
    params:
        **declared_params("validate_radiomapseer"),
    shell:
        "radiodiff validate radiomapseer {input.root} --out data/validation/radiomapseer.json --params params.yaml > {log} 2>&1"


rule validate_icassp:
    input:
        root=ICASSP_ROOT,
        code=code("validate_icassp"),
    output:
        "data/validation/icassp.json",
    log:
        "logs/validate_icassp.log",
    params:
        **declared_params("validate_icassp"),
    shell:
        "radiodiff validate icassp {input.root} --out data/validation/icassp.json --params params.yaml > {log} 2>&1"


rule edges:
    input:
        root=RADIOMAPSEER_ROOT,
        report="data/validation/radiomapseer.json",
        code=code("edges"),
    output:
        directory("data/radiomapseer/edges"),
    log:
        "logs/edges.log",
    params:
        **declared_params("edges"),
    shell:
        "radiodiff edges {input.root} data/radiomapseer/edges --params params.yaml > {log} 2>&1"


rule arrange_icassp:
    input:
        root=ICASSP_ROOT,
        report="data/validation/icassp.json",
        code=code("arrange_icassp"),
    output:
        directory("data/icassp/arranged"),
    log:
        "logs/arrange_icassp.log",
    params:
        **declared_params("arrange_icassp"),
    shell:
        "radiodiff arrange {input.root} data/icassp/arranged --params params.yaml > {log} 2>&1"


rule crop_icassp:
    input:
        arranged="data/icassp/arranged",
        code=code("crop_icassp"),
    output:
        directory("data/icassp/crops"),
    log:
        "logs/crop_icassp.log",
    params:
        **declared_params("crop_icassp"),
    shell:
        "radiodiff crop data/icassp/arranged data/icassp/crops --params params.yaml > {log} 2>&1"
