# Data half of the DAG: synthesize → validate → {edges | arrange → crop}.
# synthesize_* only feed the pipeline while data.*.root points at their output folder.


rule synthesize_radiomapseer:
    input:
        code=code("synthesize_radiomapseer"),
    output:
        directory("data/raw/radiomapseer"),
    params:
        **declared_params("synthesize_radiomapseer"),
    log:
        "logs/synthesize_radiomapseer.log",
    benchmark:
        "logs/benchmarks/synthesize_radiomapseer.tsv"
    shell:
        "radiodiff synthesize radiomapseer data/raw/radiomapseer --params params.yaml > {log} 2>&1"


rule synthesize_icassp:
    input:
        code=code("synthesize_icassp"),
    output:
        directory("data/raw/icassp"),
    params:
        **declared_params("synthesize_icassp"),
    log:
        "logs/synthesize_icassp.log",
    benchmark:
        "logs/benchmarks/synthesize_icassp.tsv"
    shell:
        "radiodiff synthesize icassp data/raw/icassp --params params.yaml > {log} 2>&1"


rule validate_radiomapseer:
    input:
        root=RADIOMAPSEER_ROOT,
        code=code("validate_radiomapseer"),
    output:
        "data/validation/radiomapseer.json",
    params:
        **declared_params("validate_radiomapseer"),
    log:
        "logs/validate_radiomapseer.log",
    shell:
        "radiodiff validate radiomapseer {input.root} --out data/validation/radiomapseer.json --params params.yaml > {log} 2>&1"


rule validate_icassp:
    input:
        root=ICASSP_ROOT,
        code=code("validate_icassp"),
    output:
        "data/validation/icassp.json",
    params:
        **declared_params("validate_icassp"),
    log:
        "logs/validate_icassp.log",
    shell:
        "radiodiff validate icassp {input.root} --out data/validation/icassp.json --params params.yaml > {log} 2>&1"


rule edges:
    input:
        root=RADIOMAPSEER_ROOT,
        report="data/validation/radiomapseer.json",
        code=code("edges"),
    output:
        directory("data/radiomapseer/edges"),
    params:
        **declared_params("edges"),
    log:
        "logs/edges.log",
    shell:
        "radiodiff edges {input.root} data/radiomapseer/edges --params params.yaml > {log} 2>&1"


rule arrange_icassp:
    input:
        root=ICASSP_ROOT,
        report="data/validation/icassp.json",
        code=code("arrange_icassp"),
    output:
        directory("data/icassp/arranged"),
    params:
        **declared_params("arrange_icassp"),
    log:
        "logs/arrange_icassp.log",
    shell:
        "radiodiff arrange {input.root} data/icassp/arranged --params params.yaml > {log} 2>&1"


rule crop_icassp:
    input:
        arranged="data/icassp/arranged",
        code=code("crop_icassp"),
    output:
        directory("data/icassp/crops"),
    params:
        **declared_params("crop_icassp"),
    log:
        "logs/crop_icassp.log",
    shell:
        "radiodiff crop data/icassp/arranged data/icassp/crops --params params.yaml > {log} 2>&1"
