rule fetch_vocab:
    output:
        vocab="cache/vocab/ggml-vocab-llama-bpe.gguf",
    log:
        "logs/fetch_vocab.log",
    conda:
        "../../environment.yml"
    shell:
        "python -m perflab fetch-vocab {output.vocab} > {log} 2>&1"


rule build_tiny_model:
    input:
        vocab=rules.fetch_vocab.output.vocab,
    output:
        model=get_tiny_model_path(),
    log:
        "logs/build_tiny_model.log",
    benchmark:
        get_model_build_benchmark()
    conda:
        "../../environment.yml"
    params:
        spec=json.dumps(config["tiny_model"], sort_keys=True),
    shell:
        "python -m perflab build-model --vocab {input.vocab} --out {output.model}"
        " --spec {params.spec:q} > {log} 2>&1"
