# radiodiff: the whole study, end to end. `snakemake --cores all` (README).
# Values come from params.yaml only (also read by DVC); select a scale with `radiodiff scale NAME`.
# The rules are radiodiff's stage table (radiodiff/pipeline/stages.py), one per stage.
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "params.yaml"


validate(config, "workflow/schemas/params.schema.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/stages.smk"


rule all:
    default_target: True
    input:
        all_targets(),
