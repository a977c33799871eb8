"""prompt_cache: bust gives every request its own prefix, reuse sends the prompt as it is;
checked on what the runner hands the engine and on what the server counted."""

import re

import pytest

from perflab.engines.base import GenerationOptions
from perflab.engines.ollama_engine import OllamaEngine
from perflab.measure.runner import NONCE_SPACE, LoadPlan, PromptNonce, prompt_for_request, run_load

PROMPT = "Explain the concept of machine learning in three short sentences."
NONCE = re.compile(r"^(\d{6}): (.*)$", re.S)


class RecordingEngine:
    """The real ollama engine; the prompts handed to it are kept in order."""

    def __init__(self, engine):
        self.engine = engine
        self.prompts: list[str] = []

    def preflight(self) -> dict:
        return self.engine.preflight()

    def stream(self, prompt, options):
        self.prompts.append(prompt)
        return self.engine.stream(prompt, options)

    def close(self) -> None:
        self.engine.close()


def test_nonces_are_unique_fixed_width_and_differ_from_the_first_digits():
    nonce = PromptNonce()
    values = [nonce.nonce(i) for i in range(20_000)]
    assert len(set(values)) == len(values)
    assert all(re.fullmatch(r"\d{6}:", value) for value in values)
    # consecutive requests differ in their first three digits (the first token)
    assert all(a[:3] != b[:3] for a, b in zip(values, values[1:]))
    # one-to-one over the whole space, whatever the start
    assert len({PromptNonce(start=NONCE_SPACE - 1).nonce(i) for i in range(NONCE_SPACE)}) == (
        NONCE_SPACE
    )


def test_reuse_sends_the_prompt_unchanged_and_a_bad_mode_is_refused():
    assert prompt_for_request(PROMPT, "reuse", PromptNonce(), 5) == PROMPT
    assert NONCE.match(prompt_for_request(PROMPT, "bust", PromptNonce(), 5))[2] == PROMPT
    with pytest.raises(ValueError, match="'bust' or 'reuse'"):
        prompt_for_request(PROMPT, "cache", PromptNonce(), 0)


def run(calibration_server, prompt_cache: str, workers: int = 1):
    engine = RecordingEngine(OllamaEngine(model="llama3.1:8b", host=calibration_server.url))
    plan = LoadPlan(workers=workers, requests=8, warmup_requests=2)
    options = GenerationOptions(max_tokens=4)
    try:
        result = run_load(
            engine, PROMPT, options, plan, experiment_id="pc", prompt_cache=prompt_cache
        )
    finally:
        engine.close()
    assert all(r.status == "ok" for r in result.records)
    log = [e for e in calibration_server.log if e.endpoint.endswith("generate")]
    return engine.prompts, log, result.records


def test_bust_reaches_the_server_with_a_unique_nonce_on_every_request(make_calibration_server):
    server = make_calibration_server(tokens_per_word=1.0)  # the server counts words
    prompts, log, records = run(server, "bust", workers=3)
    assert len(prompts) == len(log) == 10  # warm-ups too
    matches = [NONCE.match(prompt) for prompt in prompts]
    assert all(match and match[2] == PROMPT for match in matches)
    assert len({match[1] for match in matches}) == len(prompts)
    # the server received the nonce: one word more than the prompt, on every request
    words = len(PROMPT.split())
    assert [entry.prompt_tokens for entry in log] == [words + 1] * len(log)
    assert {r.prompt_tokens for r in records} == {words + 1}


def test_reuse_sends_the_identical_prompt_every_time(make_calibration_server):
    server = make_calibration_server(tokens_per_word=1.0)
    prompts, log, _ = run(server, "reuse")
    assert prompts == [PROMPT] * 10
    assert [entry.prompt_tokens for entry in log] == [len(PROMPT.split())] * 10
