# radiodiff: the whole study, end to end. `snakemake --cores all` (README).
# Values: params.yaml (the file DVC reads), which --config, --configfile and profiles override as
# usual; the jobs compute with exactly the values Snakemake resolved (common.smk validates and
# writes them for the jobs). Select a scale with `radiodiff scale NAME`.
# The rules are radiodiff's stage table (radiodiff/dag/stages.py), one per stage.
from snakemake.utils import min_version

min_version("9.0")


configfile: "params.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/stages.smk"


rule all:
    default_target: True
    input:
        all_targets(),


onsuccess:
    record_in_dvc()
