# The IOS experiment pipeline: graphs -> optimize -> measure -> baselines -> figures -> MLflow.
#   snakemake --cores 1 all                      # on CPU: every number simulated (analytical model), labelled so
#   snakemake --cores 2 --resources gpu=2 all --config device=h100   # measured, one GPU per running job
#   snakemake --report report.html               # every figure with its caption and configuration
# See workflow/README.md (GPU machines, SLURM).
import sys

from snakemake.utils import min_version, validate

min_version("8.20")


configfile: "config/config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/optimize.smk"
include: "workflow/rules/measure.smk"
include: "workflow/rules/baselines.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/track.smk"


rule all:
    input:
        final_outputs(),
    default_target: True
