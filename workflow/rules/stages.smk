# One rule per stage of radiodiff's stage table (data → EDA → VAEs → LDM/RadioUNet → sampling →
# evaluation → benchmark → report): the same command, inputs, outputs and params as dvc.yaml.
# Training, sampling and the benchmark take all cores and GPUs (`resources: gpu=1`, training
# `runtime.num_processes`; the default profile allows one at a time); state/ keeps resumable
# training state. The command is a param (set when the rule is defined: a `shell:` expression
# would see the loop's last stage).


for _stage in STAGES.values():

    rule:
        name:
            _stage.name
        input:
            stage_inputs(_stage.name),
        output:
            stage_outputs(_stage.name),
        log:
            f"logs/{_stage.name}.log",
        benchmark:
            f"logs/benchmarks/{_stage.name}.tsv"
        threads: workflow.cores if _stage.accelerator else 1
        resources:
            gpu=stage_gpus(_stage.name),
        params:
            **declared_params(_stage.name),
            command=stage_command(_stage.name),
        shell:
            "{params.command} > {log} 2>&1"
