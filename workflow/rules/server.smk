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
        out_dir=LLAMA_TOOLS,
    shell:
        "python -m perflab build-llama-tools {params.sdist} --out-dir {params.out_dir}"
        " --jobs {threads} > {log} 2>&1 || (tail -n 40 {log} >&2; exit 1)"
