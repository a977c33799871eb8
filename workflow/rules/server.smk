# llama-server and llama-bench, built from the llama.cpp tree that the installed
# llama-cpp-python's sdist vendors, only when a config launches llama-server
# (docs/servers.md). The build keeps its CMake tree outside cache/ when
# PERFLAB_BUILD_CACHE says where; PERFLAB_LLAMA_SERVER_DIR links prebuilt tools.
rule fetch_llama_sdist:
    output:
        sdist=f"cache/sdist/{LLAMA_SDIST}",
    log:
        "logs/fetch_llama_sdist.log",
    conda:
        "../../environment.yml"
    shell:
        "python -m perflab fetch-llama-sdist --out {output.sdist} > {log} 2>&1"


rule build_llama_tools:
    input:
        unpack(get_llama_build_inputs),
    output:
        server=f"{LLAMA_TOOLS}/llama-server",
        bench=f"{LLAMA_TOOLS}/llama-bench",
    log:
        "logs/build_llama_tools.log",
    benchmark:
        f"{LLAMA_TOOLS}/build.tsv"
    priority: get_preflight_priority()
    conda:
        "../../environment.yml"
    threads: 2
    params:
        sdist=get_llama_sdist_arg,
        out_dir=subpath(output.server, parent=True),
    shell:
        "python -m perflab build-llama-tools {params.sdist} --out-dir {params.out_dir}"
        " --jobs {threads} > {log} 2>&1 || (tail -n 40 {log} >&2; exit 1)"


# llama-bench on the baseline target's GGUF and threads, at the prompt sizes and
# output length its basic suite had (peer.llama_bench; docs/metrics.md). It runs
# after the experiments, holding the server resource like one.
rule peer_llama_bench:
    input:
        unpack(get_peer_model_input),
        requests=f"{RESULTS}/requests.parquet",
        bench=rules.build_llama_tools.output.bench,
    output:
        peer=f"{RESULTS}/peer/llama-bench.json",
    log:
        f"{LOGS}/peer_llama_bench.log",
    benchmark:
        f"{RESULTS}/setup/peer-llama-bench.tsv"
    conda:
        "../../environment.yml"
    resources:
        llm_server=1,
    params:
        threads=get_peer_threads(),
        target=get_peer_target_arg(),
        repetitions=config["peer"]["repetitions"],
    shell:
        "python -m perflab peer-bench --bench {input.bench} --model {input.model}"
        " --threads {params.threads} --requests {input.requests} {params.target}"
        " --repetitions {params.repetitions} --out {output.peer} > {log} 2>&1"
        " || (cat {log} >&2; exit 1)"


# llama-bench -t over the threads suite's counts, on the baseline target's GGUF, at
# the prompt size and output length the suite had (suites.threads; docs/metrics.md).
# It runs after the experiments, holding the server resource like one.
rule threads_llama_bench:
    input:
        unpack(get_peer_model_input),
        requests=f"{RESULTS}/requests.parquet",
        bench=rules.build_llama_tools.output.bench,
    output:
        peer=f"{RESULTS}/threads/llama-bench.json",
    log:
        f"{LOGS}/threads_llama_bench.log",
    benchmark:
        f"{RESULTS}/setup/threads-llama-bench.tsv"
    conda:
        "../../environment.yml"
    resources:
        llm_server=1,
    params:
        threads=get_threads_counts(),
        target=get_peer_target_arg(),
        repetitions=config["peer"]["repetitions"],
    shell:
        "python -m perflab peer-bench --bench {input.bench} --model {input.model}"
        " --threads {params.threads} --requests {input.requests} {params.target}"
        " --suite threads --repetitions {params.repetitions} --out {output.peer}"
        " > {log} 2>&1 || (cat {log} >&2; exit 1)"
