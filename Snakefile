from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/experiment_jobs.smk"
include: "workflow/rules/model.smk"
include: "workflow/rules/server.smk"
include: "workflow/rules/machine.smk"
include: "workflow/rules/benchmark.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/compare.smk"


# On a cluster these run where Snakemake runs: the vocabulary and model downloads
# need the network, and the others read every experiment's results in seconds, quicker
# than a turn in the queue.
localrules:
    fetch_vocab,
    fetch_llama_sdist,
    fetch_smollm2,
    aggregate,
    findings,
    charts,
    report,
    comparison,
    compare_runs,


rule all:
    default_target: True
    input:
        get_final_outputs(),
