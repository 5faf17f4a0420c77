"""Drives a running tollgate gateway with the official `openai` Python SDK.

Usage: python openai_e2e.py http://127.0.0.1:PORT
Each check prints `ok: <name>`; the first failure raises and exits non-zero.
"""

import json
import sys

import openai

BASE = sys.argv[1].rstrip("/") + "/v1"
client = openai.OpenAI(base_url=BASE, api_key="unused-by-an-open-gateway", max_retries=0, timeout=30)
MODEL = "mock/echo"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
CHECKS = []


def check(fn):
    CHECKS.append(fn)
    return fn


@check
def chat():
    r = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hello gateway"}])
    assert r.choices[0].message.role == "assistant"
    assert "hello gateway" in r.choices[0].message.content, r
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0, r.usage
    assert r.model == MODEL


@check
def stream_without_usage():
    chunks = list(
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "stream me"}], stream=True
        )
    )
    assert len(chunks) >= 8, len(chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "stream me" in text, text
    # The gateway asked the provider for usage; the client did not and sees none.
    assert all(c.usage is None for c in chunks), [c.usage for c in chunks]
    assert all(c.choices for c in chunks), "no usage-only chunk"


@check
def stream_with_usage():
    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "count my tokens"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    last = chunks[-1]
    assert last.choices == [], last
    assert last.usage.completion_tokens > 0 and last.usage.prompt_tokens > 0, last.usage
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "count my tokens" in text


@check
def tools():
    r = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "weather in Paris"}], tools=[WEATHER_TOOL]
    )
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"echo": "weather in Paris"}
    # The tool result goes back; the answer uses it.
    r2 = client.chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "user", "content": "weather in Paris"},
            {"role": "assistant", "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21C"},
        ],
        tools=[WEATHER_TOOL],
    )
    assert "sunny, 21C" in r2.choices[0].message.content, r2


@check
def tools_streamed():
    name, args = "", ""
    finish = None
    for c in client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "stream a call"}], tools=[WEATHER_TOOL], stream=True
    ):
        if not c.choices:
            continue
        for tc in c.choices[0].delta.tool_calls or []:
            name += tc.function.name or ""
            args += tc.function.arguments or ""
        finish = c.choices[0].finish_reason or finish
    assert name == "get_weather" and json.loads(args) == {"echo": "stream a call"}, (name, args)
    assert finish == "tool_calls"


@check
def embeddings():
    r = client.embeddings.create(model="mock/embed", input=["red apple pie", "red apple tart", "quantum physics"])
    a, b, c = (d.embedding for d in r.data)
    dot = lambda x, y: sum(p * q for p, q in zip(x, y))
    assert len(a) == len(b) > 0
    assert dot(a, b) > dot(a, c), "texts sharing words are closer"


@check
def models():
    ids = [m.id for m in client.models.list()]
    assert "mock/echo" in ids, ids


@check
def unknown_model_is_404():
    try:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    except openai.NotFoundError as e:
        assert e.code == "model_not_found", e.body
    else:
        raise AssertionError("expected a 404")


@check
def bad_request_is_400():
    try:
        client.chat.completions.create(model=MODEL, messages="not a list")
    except openai.BadRequestError as e:
        assert e.body["param"] == "messages", e.body
    else:
        raise AssertionError("expected a 400")


@check
def provider_rate_limit_is_429():
    try:
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "x"}], extra_headers={"x-mock-status": "429"}
        )
    except openai.RateLimitError as e:
        assert e.response.headers.get("retry-after"), e.response.headers
    else:
        raise AssertionError("expected a 429")


@check
def reset_mid_stream_raises():
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "x"}],
        stream=True,
        extra_headers={"x-mock-reset-after": "2"},
    )
    try:
        for _ in stream:
            pass
    except openai.APIError as e:
        assert "mid-stream" in str(e), e
    else:
        raise AssertionError("expected the stream to raise")


# ----- translated providers: the same SDK against the mock speaking Anthropic and Gemini.
# The mock counts a token per word: "be brief" + "hello translated world" = 5 prompt
# tokens; "Mock answer to: hello translated world" = 6 completion tokens.
TRANSLATED = ["mock-anthropic/echo", "mock-gemini/echo"]
CONVO = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello translated world"}]


@check
def translated_chat():
    for model in TRANSLATED:
        r = client.chat.completions.create(model=model, messages=CONVO, extra_headers={"x-mock-cached-tokens": "2"})
        assert r.choices[0].message.content == "Mock answer to: hello translated world", (model, r)
        assert r.choices[0].finish_reason == "stop", (model, r)
        assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (5, 6), (model, r.usage)
        assert r.usage.prompt_tokens_details.cached_tokens == 2, (model, r.usage)


@check
def translated_stream():
    for model in TRANSLATED:
        chunks = list(
            client.chat.completions.create(
                model=model, messages=CONVO, stream=True, stream_options={"include_usage": True}
            )
        )
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == "Mock answer to: hello translated world", (model, text)
        assert chunks[0].choices[0].delta.role == "assistant", (model, chunks[0])
        finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        assert finish == ["stop"], (model, finish)
        assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (5, 6), (model, chunks[-1])
        # Without include_usage, no usage chunk.
        plain = list(client.chat.completions.create(model=model, messages=CONVO, stream=True))
        assert all(c.usage is None and c.choices for c in plain), model


@check
def translated_reasoning():
    # `reasoning_effort` becomes Anthropic `thinking`; the mock's thinking comes back as
    # `reasoning_content` (DeepSeek's field, an extra the SDK keeps) and counts as output.
    model = "mock-anthropic/echo"
    r = client.chat.completions.create(model=model, messages=CONVO, reasoning_effort="low")
    message = r.choices[0].message
    assert message.content == "Mock answer to: hello translated world", r
    assert (message.model_extra or {}).get("reasoning_content") == "Thinking about: hello translated world", r
    assert r.usage.completion_tokens == 11, r.usage
    chunks = list(
        client.chat.completions.create(
            model=model, messages=CONVO, reasoning_effort="low", stream=True,
            stream_options={"include_usage": True},
        )
    )
    reasoning = "".join((c.choices[0].delta.model_extra or {}).get("reasoning_content") or "" for c in chunks if c.choices)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert reasoning == "Thinking about: hello translated world", chunks
    assert text == "Mock answer to: hello translated world", chunks
    assert chunks[-1].usage.completion_tokens == 11, chunks[-1]


@check
def translated_tool_loop():
    for model in TRANSLATED:
        messages = [{"role": "user", "content": "weather in Paris"}]
        r = client.chat.completions.create(model=model, messages=messages, tools=[WEATHER_TOOL])
        assert r.choices[0].finish_reason == "tool_calls", (model, r)
        call = r.choices[0].message.tool_calls[0]
        assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"echo": "weather in Paris"}
        # Streamed too: the call's name and arguments arrive as deltas.
        name, args = "", ""
        for c in client.chat.completions.create(model=model, messages=messages, tools=[WEATHER_TOOL], stream=True):
            for tc in (c.choices[0].delta.tool_calls or []) if c.choices else []:
                name += tc.function.name or ""
                args += tc.function.arguments or ""
        assert name == "get_weather" and json.loads(args) == {"echo": "weather in Paris"}, (model, name, args)
        messages += [
            {"role": "assistant", "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21C"},
        ]
        r2 = client.chat.completions.create(model=model, messages=messages, tools=[WEATHER_TOOL])
        assert r2.choices[0].message.content == "Tool said: sunny, 21C", (model, r2)
        # "weather in Paris" + "sunny, 21C" = 5 prompt words; "Tool said: sunny, 21C" = 4.
        assert (r2.usage.prompt_tokens, r2.usage.completion_tokens) == (5, 4), (model, r2.usage)


@check
def translated_errors():
    for model in TRANSLATED:
        try:
            client.chat.completions.create(model=model, messages=CONVO, extra_headers={"x-mock-status": "429"})
        except openai.RateLimitError as e:
            assert e.response.headers.get("retry-after") == "1", e.response.headers
        else:
            raise AssertionError("expected a 429")
    try:
        client.chat.completions.create(model="mock-anthropic/echo", messages=CONVO, n=2)
    except openai.BadRequestError as e:
        assert e.body["param"] == "n", e.body
    else:
        raise AssertionError("expected a 400 naming n")


@check
def cached_stream_replays_as_a_well_formed_stream():
    # temperature 0: deterministic, so the embedded default cache stores it; the second
    # identical request is a hit replayed as an SSE stream the SDK parses the same way.
    messages = [{"role": "user", "content": "cache this stream please"}]
    runs = []
    for _ in range(2):
        raw = client.chat.completions.with_raw_response.create(
            model=MODEL, messages=messages, temperature=0, stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(raw.parse())
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        runs.append((raw.headers.get("x-tollgate-cache"), text, chunks[-1].usage))
    (first, text1, usage1), (second, text2, usage2) = runs
    assert (first, second) == ("miss", "hit"), (first, second)
    assert text1 == text2 and "cache this stream please" in text2, (text1, text2)
    assert usage2 is not None and usage2.completion_tokens == usage1.completion_tokens, (usage1, usage2)
    # The same answer without streaming is served from the same entry, converted.
    raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=messages, temperature=0)
    assert raw.parse().choices[0].message.content == text1


for fn in CHECKS:
    fn()
    print(f"ok: {fn.__name__}", flush=True)
print(f"all {len(CHECKS)} openai SDK checks passed")
