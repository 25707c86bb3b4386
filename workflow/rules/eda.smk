# Exploratory analysis of both datasets (figures + eda.json), after both validations.


rule eda:
    input:
        radiomapseer=RADIOMAPSEER_ROOT,
        icassp=ICASSP_ROOT,
        reports=["data/validation/radiomapseer.json", "data/validation/icassp.json"],
        code=code("eda"),
    output:
        directory("results/eda"),
    log:
        "logs/eda.log",
    params:
        **declared_params("eda"),
    shell:
        "radiodiff eda --radiomapseer {input.radiomapseer} --icassp {input.icassp} --out results/eda --params params.yaml > {log} 2>&1"
