# First-stage VAEs (AutoencoderKL + two-phase VAE-GAN) on the shared training engine.
# Each waits for its dataset's validation report; state/ keeps resumable training state.


rule train_vae_radiomapseer:
    input:
        root=RADIOMAPSEER_ROOT,
        report="data/validation/radiomapseer.json",
        edges="data/radiomapseer/edges",
        code=code("train_vae_radiomapseer"),
    output:
        model=directory("results/vae/radiomapseer/model"),
        metrics="results/vae/radiomapseer/metrics.json",
        train_log=report(
            "results/vae/radiomapseer/train_log.csv",
            caption="../report/train_log.rst",
            category="Training",
            subcategory="vae/radiomapseer",
        ),
    log:
        "logs/train_vae_radiomapseer.log",
    benchmark:
        "logs/benchmarks/train_vae_radiomapseer.tsv"
    threads: workflow.cores  # Snakemake sets OMP_NUM_THREADS to a job's threads
    resources:
        gpu=1,
    params:
        **declared_params("train_vae_radiomapseer"),
    shell:
        "radiodiff train vae radiomapseer --root {input.root} --edges data/radiomapseer/edges --out results/vae/radiomapseer --params params.yaml > {log} 2>&1"


rule train_vae_building:
    input:
        crops="data/icassp/crops",
        report="data/validation/icassp.json",
        code=code("train_vae_building"),
    output:
        model=directory("results/vae/building/model"),
        metrics="results/vae/building/metrics.json",
        train_log=report(
            "results/vae/building/train_log.csv",
            caption="../report/train_log.rst",
            category="Training",
            subcategory="vae/building",
        ),
    log:
        "logs/train_vae_building.log",
    benchmark:
        "logs/benchmarks/train_vae_building.tsv"
    threads: workflow.cores  # Snakemake sets OMP_NUM_THREADS to a job's threads
    resources:
        gpu=1,
    params:
        **declared_params("train_vae_building"),
    shell:
        "radiodiff train vae building --crops data/icassp/crops --out results/vae/building --params params.yaml > {log} 2>&1"


rule train_vae_antenna:
    input:
        crops="data/icassp/crops",
        report="data/validation/icassp.json",
        code=code("train_vae_antenna"),
    output:
        model=directory("results/vae/antenna/model"),
        metrics="results/vae/antenna/metrics.json",
        train_log=report(
            "results/vae/antenna/train_log.csv",
            caption="../report/train_log.rst",
            category="Training",
            subcategory="vae/antenna",
        ),
    log:
        "logs/train_vae_antenna.log",
    benchmark:
        "logs/benchmarks/train_vae_antenna.tsv"
    threads: workflow.cores  # Snakemake sets OMP_NUM_THREADS to a job's threads
    resources:
        gpu=1,
    params:
        **declared_params("train_vae_antenna"),
    shell:
        "radiodiff train vae antenna --crops data/icassp/crops --out results/vae/antenna --params params.yaml > {log} 2>&1"


rule train_vae_radio:
    input:
        crops="data/icassp/crops",
        report="data/validation/icassp.json",
        code=code("train_vae_radio"),
    output:
        model=directory("results/vae/radio/model"),
        metrics="results/vae/radio/metrics.json",
        train_log=report(
            "results/vae/radio/train_log.csv",
            caption="../report/train_log.rst",
            category="Training",
            subcategory="vae/radio",
        ),
    log:
        "logs/train_vae_radio.log",
    benchmark:
        "logs/benchmarks/train_vae_radio.tsv"
    threads: workflow.cores  # Snakemake sets OMP_NUM_THREADS to a job's threads
    resources:
        gpu=1,
    params:
        **declared_params("train_vae_radio"),
    shell:
        "radiodiff train vae radio --crops data/icassp/crops --out results/vae/radio --params params.yaml > {log} 2>&1"
