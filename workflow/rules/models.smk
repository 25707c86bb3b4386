# RadioDiff's latent diffusion model and the RadioUNet baseline, on the shared training engine.
# Each waits for its dataset's validation report; state/ keeps resumable training state.


rule train_ldm_radiomapseer:
    input:
        root=RADIOMAPSEER_ROOT,
        report="data/validation/radiomapseer.json",
        vae="results/vae/radiomapseer/model",
        code=code("train_ldm_radiomapseer"),
    output:
        model=directory("results/ldm/radiomapseer/model"),
        metrics="results/ldm/radiomapseer/metrics.json",
        train_log=report(
            "results/ldm/radiomapseer/train_log.csv",
            caption="../report/train_log.rst",
            category="Training",
            subcategory="ldm/radiomapseer",
        ),
    log:
        "logs/train_ldm_radiomapseer.log",
    benchmark:
        "logs/benchmarks/train_ldm_radiomapseer.tsv"
    threads: workflow.cores  # Snakemake sets OMP_NUM_THREADS to a job's threads
    resources:
        gpu=1,
    params:
        **declared_params("train_ldm_radiomapseer"),
    shell:
        "radiodiff train ldm radiomapseer --root {input.root} --vae results/vae/radiomapseer/model --out results/ldm/radiomapseer --params params.yaml > {log} 2>&1"


rule train_ldm_icassp:
    input:
        crops="data/icassp/crops",
        report="data/validation/icassp.json",
        vae_radio="results/vae/radio/model",
        vae_building="results/vae/building/model",
        vae_antenna="results/vae/antenna/model",
        code=code("train_ldm_icassp"),
    output:
        model=directory("results/ldm/icassp/model"),
        metrics="results/ldm/icassp/metrics.json",
        train_log=report(
            "results/ldm/icassp/train_log.csv",
            caption="../report/train_log.rst",
            category="Training",
            subcategory="ldm/icassp",
        ),
    log:
        "logs/train_ldm_icassp.log",
    benchmark:
        "logs/benchmarks/train_ldm_icassp.tsv"
    threads: workflow.cores  # Snakemake sets OMP_NUM_THREADS to a job's threads
    resources:
        gpu=1,
    params:
        **declared_params("train_ldm_icassp"),
    shell:
        "radiodiff train ldm icassp --crops data/icassp/crops --vae-radio results/vae/radio/model --vae-building results/vae/building/model --vae-antenna results/vae/antenna/model --out results/ldm/icassp --params params.yaml > {log} 2>&1"


rule train_radiounet_radiomapseer:
    input:
        root=RADIOMAPSEER_ROOT,
        report="data/validation/radiomapseer.json",
        code=code("train_radiounet_radiomapseer"),
    output:
        model=directory("results/radiounet/radiomapseer/model"),
        metrics="results/radiounet/radiomapseer/metrics.json",
        train_log=report(
            "results/radiounet/radiomapseer/train_log.csv",
            caption="../report/train_log.rst",
            category="Training",
            subcategory="radiounet/radiomapseer",
        ),
    log:
        "logs/train_radiounet_radiomapseer.log",
    benchmark:
        "logs/benchmarks/train_radiounet_radiomapseer.tsv"
    threads: workflow.cores  # Snakemake sets OMP_NUM_THREADS to a job's threads
    resources:
        gpu=1,
    params:
        **declared_params("train_radiounet_radiomapseer"),
    shell:
        "radiodiff train radiounet radiomapseer --root {input.root} --out results/radiounet/radiomapseer --params params.yaml > {log} 2>&1"


rule train_radiounet_icassp:
    input:
        crops="data/icassp/crops",
        report="data/validation/icassp.json",
        code=code("train_radiounet_icassp"),
    output:
        model=directory("results/radiounet/icassp/model"),
        metrics="results/radiounet/icassp/metrics.json",
        train_log=report(
            "results/radiounet/icassp/train_log.csv",
            caption="../report/train_log.rst",
            category="Training",
            subcategory="radiounet/icassp",
        ),
    log:
        "logs/train_radiounet_icassp.log",
    benchmark:
        "logs/benchmarks/train_radiounet_icassp.tsv"
    threads: workflow.cores  # Snakemake sets OMP_NUM_THREADS to a job's threads
    resources:
        gpu=1,
    params:
        **declared_params("train_radiounet_icassp"),
    shell:
        "radiodiff train radiounet icassp --crops data/icassp/crops --out results/radiounet/icassp --params params.yaml > {log} 2>&1"
