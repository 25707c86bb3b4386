# Exploratory analysis of both datasets (figures + eda.json), after both validations.


rule eda:
    input:
        radiomapseer=RADIOMAPSEER_ROOT,
        icassp=ICASSP_ROOT,
        reports=["data/validation/radiomapseer.json", "data/validation/icassp.json"],
        code=code("eda"),
    output:
        report(
            directory("results/eda"),
            patterns=["{name}.png"],
            caption="../report/eda.rst",
            category="EDA",
        ),
    log:
        "logs/eda.log",
    params:
        **declared_params("eda"),
    shell:
        "radiodiff eda --radiomapseer {input.radiomapseer} --icassp {input.icassp} --out results/eda --params params.yaml > {log} 2>&1"
