"""The calibration scheduler without sockets: a recording responder stands in
for the protocol adapters, so load, keep-alive, the FIFO slot queue, the
prompt cache and every fault are checked on what the scheduler decides.

Timing tolerances are generous (the machine is shared); structure is exact.
"""

from __future__ import annotations

import threading
import time
from itertools import pairwise

import pytest

from perflab.calibration import GenerationRequest, Scheduler, TimingModel
from perflab.calibration.request import Aborted

MODEL = "llama3.1:8b"
FAST = {
    "load_time_s": 0.0,
    "ttft_fixed_s": 0.01,
    "ttft_per_token_s": 0.001,
    "itl_s": 0.004,
    "output_tokens": 5,
    "num_parallel": 1,
    "stall_s": 5.0,
}


class Recorder:
    """A Responder that writes nothing and remembers everything, with times."""

    def __init__(self, stream: bool = True, gone: bool = False):
        self.stream = stream
        self.gone = gone
        self.headers_sent = False
        self.events: list[tuple] = []
        self.entry = None

    def attach(self, entry) -> None:
        self.entry = entry

    def _add(self, *event) -> None:
        self.events.append((*event, time.perf_counter()))

    def reject(self, status: int, message: str) -> None:
        self.headers_sent = True
        self._add("reject", status, message)

    def cut(self) -> None:
        self._add("cut")

    def begin(self) -> None:
        if not self.headers_sent:
            self.headers_sent = True
            self._add("begin")

    def token(self, text: str, reasoning: bool = False) -> None:
        if self.stream:
            self.begin()
        self._add("token", text)

    def malformed(self) -> bool:
        self._add("malformed")
        return not self.stream

    def fail(self, message: str) -> None:
        self._add("fail", message)

    def finish(self, entry, text: str) -> None:
        self._add("finish", text)

    def load_answer(self, entry) -> None:
        self._add("load", entry.done_reason)

    def client_gone(self) -> bool:
        return self.gone

    def kinds(self) -> list[str]:
        return [event[0] for event in self.events]


def scheduler(**fields) -> Scheduler:
    return Scheduler(TimingModel.from_dict({**FAST, **fields}))


def ask(sched: Scheduler, prompt: str | None = "one two three", **fields):
    stream = fields.pop("stream", True)
    request = GenerationRequest(
        endpoint="generate",
        model=fields.pop("model", MODEL),
        stream=stream,
        prompt=prompt,
        **fields,
    )
    out = Recorder(stream=stream)
    entry = sched.handle(request, out)
    return entry, out


def test_one_request_follows_the_script():
    sched = scheduler()
    entry, out = ask(sched, "one two three four five six seven eight nine ten")  # 13 tokens
    assert out.kinds() == ["begin"] + ["token"] * 5 + ["finish"]
    assert (entry.outcome, entry.done_reason, entry.prompt_tokens) == ("ok", "stop", 13)
    assert entry.tokens_sent == entry.output_tokens == 5
    assert entry.scheduled_prefill_s == pytest.approx(0.01 + 0.013)
    assert entry.scheduled_prefill_s - 0.002 <= entry.prefill_s <= entry.scheduled_prefill_s + 0.03
    token_times = [e[-1] for e in out.events if e[0] == "token"]
    # tokens keep absolute deadlines: never early, and lateness does not pile up
    offsets = [t - token_times[0] for t in token_times]
    deadlines = [0.004 * i for i in range(5)]
    assert all(d - 0.001 <= o <= d + 0.03 for o, d in zip(offsets, deadlines)), offsets
    assert entry.total_s == pytest.approx(
        entry.load_s + entry.queue_s + entry.prefill_s + entry.decode_s, abs=0.005
    )
    assert out.events[-1][1] == "".join(e[1] for e in out.events if e[0] == "token")
    assert sched.wait_for_log(1) == [entry]


def test_non_streaming_sends_only_the_whole_answer():
    entry, out = ask(scheduler(), stream=False)
    assert "begin" not in out.kinds() and out.kinds()[-1] == "finish"
    assert len(out.events[-1][1].split()) == entry.tokens_sent == 5


def test_max_tokens_caps_the_output():
    entry, _ = ask(scheduler(), max_tokens=2)
    assert (entry.tokens_sent, entry.done_reason) == (2, "length")


def test_one_slot_serves_first_come_first_served():
    sched = scheduler(output_tokens=3)
    entries = []
    lock = threading.Lock()

    def client(k: int) -> None:
        time.sleep(0.01 * k)  # arrive in order
        entry, _ = ask(sched, f"prompt {k}")
        with lock:
            entries.append(entry)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    by_start = sorted(entries, key=lambda e: e.t_started)
    assert [e.id for e in by_start] == [e.id for e in sorted(entries, key=lambda e: e.t_queued)]
    for before, after in pairwise(by_start):
        assert after.t_started >= before.t_end - 0.002
        assert after.queue_s > before.queue_s
    assert by_start[0].queue_s < 0.01


def test_load_keep_alive_and_unload():
    sched = scheduler(load_time_s=0.03, keep_alive_s=0.2)
    first, _ = ask(sched)
    second, _ = ask(sched)
    assert (first.loaded, second.loaded) == (True, False)
    assert first.load_s >= 0.03 and second.load_s < 0.01
    assert sched.loaded_models() == [MODEL]
    time.sleep(0.25)
    assert sched.loaded_models() == []
    third, _ = ask(sched, keep_alive=0)
    assert third.loaded and sched.loaded_models() == []
    loaded, out = ask(sched, None)  # Ollama's load-only request
    assert out.kinds() == ["load"] and loaded.done_reason == "load"
    assert sched.loaded_models() == [MODEL]
    unloaded, out = ask(sched, None, keep_alive=0)
    assert unloaded.done_reason == "unload" and sched.loaded_models() == []


@pytest.mark.parametrize(
    ("fields", "status", "outcome"),
    [
        ({"model": ""}, 400, "bad_request"),
        ({"model": "nope:1b"}, 404, "not_found"),
        ({"keep_alive": "300"}, 400, "bad_request"),
        ({"max_tokens": "many"}, 400, "bad_request"),
        ({"problem": "messages must be a list"}, 400, "bad_request"),
        ({"fault": "explode"}, 400, "bad_request"),
    ],
)
def test_bad_requests_are_rejected(fields, status, outcome):
    entry, out = ask(scheduler(), **fields)
    assert out.kinds() == ["reject"] and out.events[0][1] == status
    assert entry.outcome == outcome and entry.tokens_sent == 0


def test_a_full_queue_is_busy():
    sched = scheduler(max_queue=0, output_tokens=20, itl_s=0.01)
    holder = threading.Thread(target=ask, args=(sched,))
    holder.start()
    time.sleep(0.05)
    entry, out = ask(sched)
    holder.join(timeout=10)
    assert entry.outcome == "busy" and out.events[0][1:3] == (503, entry.error)


# -- faults: what the scheduler tells the adapter ------------------------------


@pytest.mark.parametrize(
    ("fault", "stream", "kinds", "sent"),
    [
        ("http_500:boom", True, ["reject"], 0),
        ("busy", True, ["reject"], 0),
        ("disconnect", True, ["cut"], 0),
        ("drop_after:2", True, ["begin", "token", "token", "cut"], 2),
        ("drop_after:0", False, ["cut"], 0),
        (
            "malformed_after:1",
            True,
            ["begin", "token", "malformed"] + ["token"] * 4 + ["finish"],
            5,
        ),
        ("malformed_after:1", False, ["token", "malformed"], 1),
        ("error_after:3:oom", True, ["begin"] + ["token"] * 3 + ["fail"], 3),
        ("stall_after:2:0.05", True, ["begin"] + ["token"] * 5 + ["finish"], 5),
        ("stall:0.05", True, ["begin"] + ["token"] * 5 + ["finish"], 5),
    ],
)
def test_each_fault_is_acted_out(fault, stream, kinds, sent):
    entry, out = ask(scheduler(), fault=fault, stream=stream)
    assert out.kinds() == kinds
    assert entry.fault == fault and entry.tokens_sent == sent
    assert entry.outcome == "fault"
    if fault.startswith("stall"):
        assert entry.stall_s >= 0.05


def test_stall_gives_up_when_the_client_leaves():
    sched = scheduler()
    request = GenerationRequest("generate", MODEL, True, "hi", fault="stall:5")
    t0 = time.perf_counter()
    entry = sched.handle(request, Recorder(gone=True))
    assert time.perf_counter() - t0 < 1.0
    assert entry.outcome == "fault" and "client went away" in entry.error


@pytest.mark.parametrize(("fault", "sent"), [("kill", 0), ("kill_after:2", 2)])
def test_kill_stops_the_server(fault, sent):
    killed = threading.Event()
    sched = Scheduler(TimingModel.from_dict(FAST), on_kill=killed.set)
    out = Recorder()
    with pytest.raises(Aborted):
        sched.handle(GenerationRequest("generate", MODEL, True, "hi", fault=fault), out)
    assert killed.is_set()
    (entry,) = sched.log
    assert (entry.outcome, entry.tokens_sent) == ("killed", sent)


def test_faults_come_from_the_request_the_queue_the_schedule_and_the_rates():
    sched = scheduler(fault_schedule={2: "http_503"}, output_tokens=1)
    sched.inject_fault("http_500", count=1)
    ask(sched, fault="disconnect")  # the request's own fault wins ...
    ask(sched)  # ... then the queue
    ask(sched)  # ... then the schedule
    ask(sched)
    assert [e.fault for e in sched.wait_for_log(4)] == ["disconnect", "http_500", "http_503", None]


def test_stop_aborts_a_request_in_progress():
    sched = scheduler(itl_s=0.5, output_tokens=10)
    threading.Timer(0.1, sched.stop).start()
    with pytest.raises(Aborted):
        ask(sched)
    assert sched.log[0].outcome == "killed"


# -- the prompt cache ------------------------------------------------------------

PROMPT = " ".join(f"w{i}" for i in range(100))  # 130 tokens


def test_a_repeated_prompt_prefills_one_token_with_the_cache():
    sched = scheduler(prompt_cache=True, ttft_fixed_s=0.0, ttft_per_token_s=0.001)
    first, _ = ask(sched, PROMPT)
    second, _ = ask(sched, PROMPT)
    assert (first.prompt_tokens, first.cached_tokens) == (130, 0)
    assert (second.prompt_tokens, second.cached_tokens) == (130, 129)
    assert first.scheduled_prefill_s == pytest.approx(0.130)
    assert second.scheduled_prefill_s == pytest.approx(0.001)
    assert second.prefill_s < first.prefill_s / 4


def test_a_shared_prefix_pays_only_for_the_new_tokens():
    sched = scheduler(prompt_cache=True, ttft_fixed_s=0.0, ttft_per_token_s=0.001)
    ask(sched, PROMPT)
    longer, _ = ask(sched, PROMPT + " and ten more words here to be read now ok")
    nonce, _ = ask(sched, "nonce-7 " + PROMPT)
    assert longer.cached_tokens == 130
    assert longer.scheduled_prefill_s == pytest.approx(0.001 * (longer.prompt_tokens - 130))
    assert nonce.cached_tokens == 0  # a unique first word busts the cache


def test_without_the_flag_every_prompt_is_prefilled_whole():
    sched = scheduler(ttft_fixed_s=0.0, ttft_per_token_s=0.001)
    ask(sched, PROMPT)
    again, _ = ask(sched, PROMPT)
    assert again.cached_tokens == 0 and again.scheduled_prefill_s == pytest.approx(0.130)


def test_unloading_empties_the_cache():
    sched = scheduler(prompt_cache=True)
    ask(sched, PROMPT, keep_alive=0)
    again, _ = ask(sched, PROMPT)
    assert again.cached_tokens == 0


def test_each_slot_remembers_its_own_prompt():
    sched = scheduler(prompt_cache=True, num_parallel=2, output_tokens=2)
    other = "x " * 50
    ask(sched, PROMPT)  # slot 0
    barrier = threading.Barrier(2)
    results = {}

    def client(name: str, prompt: str) -> None:
        barrier.wait()
        results[name], _ = ask(sched, prompt)

    threads = [
        threading.Thread(target=client, args=("other", other)),
        threading.Thread(target=client, args=("same", PROMPT)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert results["same"].slot == 0 and results["same"].cached_tokens == 129
    assert results["other"].slot == 1 and results["other"].cached_tokens == 0
