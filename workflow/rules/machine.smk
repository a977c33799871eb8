# The machine's own ceilings (read bandwidth, matmul throughput) at the baseline
# engine's threads, measured once per host and thread count into cache/ (roofline;
# docs/metrics.md "Ceilings"). It holds the server resource so that no experiment
# runs beside it.
rule measure_machine:
    output:
        machine=get_machine_path(),
    log:
        f"{LOGS}/measure_machine.log",
    conda:
        "../../environment.yml"
    resources:
        llm_server=1,
    params:
        threads=get_peer_threads(),
    shell:
        "python -m perflab measure-machine --threads {params.threads} --out {output.machine}"
        " > {log} 2>&1 || (cat {log} >&2; exit 1)"
