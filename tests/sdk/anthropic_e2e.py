"""Drives a running tollgate gateway's /v1/messages with the official `anthropic` SDK,
against the OpenAI-dialect mock (`mock/...`) and the Anthropic-dialect mock.

Usage: python anthropic_e2e.py http://127.0.0.1:PORT
Each check prints `ok: <name>`; the first failure raises and exits non-zero.
The mock counts a token per word, so the expected usage is known exactly.
"""

import sys

import anthropic

client = anthropic.Anthropic(base_url=sys.argv[1].rstrip("/"), api_key="unused-by-an-open-gateway", max_retries=0, timeout=30)
MODELS = ["mock/echo", "mock-anthropic/echo", "mock-gemini/echo"]
SYSTEM = "be brief"
HELLO = [{"role": "user", "content": "hello messages world"}]
WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
CHECKS = []


def check(fn):
    CHECKS.append(fn)
    return fn


@check
def message():
    for model in MODELS:
        m = client.messages.create(model=model, max_tokens=100, system=SYSTEM, messages=HELLO,
                                   extra_headers={"x-mock-cached-tokens": "2"})
        assert m.type == "message" and m.role == "assistant", m
        assert m.content[0].type == "text" and m.content[0].text == "Mock answer to: hello messages world", (model, m)
        assert m.stop_reason == "end_turn", (model, m)
        # 5 prompt words, 2 of them cached: input_tokens excludes cache reads.
        u = m.usage
        assert (u.input_tokens, u.cache_read_input_tokens, u.output_tokens) == (3, 2, 6), (model, u)


@check
def stream():
    for model in MODELS:
        with client.messages.stream(model=model, max_tokens=100, system=SYSTEM, messages=HELLO,
                                    extra_headers={"x-mock-cached-tokens": "2"}) as s:
            text = "".join(s.text_stream)
            final = s.get_final_message()
        assert text == "Mock answer to: hello messages world", (model, text)
        assert final.stop_reason == "end_turn", (model, final)
        u = final.usage
        assert (u.input_tokens, u.cache_read_input_tokens, u.output_tokens) == (3, 2, 6), (model, u)


@check
def tools():
    for model in MODELS:
        messages = [{"role": "user", "content": "weather in Paris"}]
        m = client.messages.create(model=model, max_tokens=100, messages=messages, tools=[WEATHER])
        assert m.stop_reason == "tool_use", (model, m)
        use = next(b for b in m.content if b.type == "tool_use")
        assert use.name == "get_weather" and use.input == {"echo": "weather in Paris"}, (model, use)
        messages += [
            {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in m.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny, 21C"}]},
        ]
        m2 = client.messages.create(model=model, max_tokens=100, messages=messages, tools=[WEATHER])
        assert m2.content[0].text == "Tool said: sunny, 21C", (model, m2)
        assert (m2.usage.input_tokens, m2.usage.output_tokens) == (5, 4), (model, m2.usage)


@check
def tools_streamed():
    for model in MODELS:
        with client.messages.stream(model=model, max_tokens=100, tools=[WEATHER],
                                    messages=[{"role": "user", "content": "stream a call"}]) as s:
            final = s.get_final_message()
        use = next(b for b in final.content if b.type == "tool_use")
        assert use.name == "get_weather" and use.input == {"echo": "stream a call"}, (model, final)
        assert final.stop_reason == "tool_use", (model, final)
        assert final.usage.output_tokens == 3, (model, final.usage)


@check
def errors():
    try:
        client.messages.create(model="mock/echo", max_tokens=10, messages=HELLO, extra_headers={"x-mock-status": "429"})
    except anthropic.RateLimitError as e:
        assert e.response.headers.get("retry-after") == "1"
        assert e.body["type"] == "error", e.body
    else:
        raise AssertionError("expected a 429")
    try:
        client.messages.create(model="no-such-model", max_tokens=10, messages=HELLO)
    except anthropic.NotFoundError as e:
        assert e.body["error"]["type"] == "not_found_error", e.body
    else:
        raise AssertionError("expected a 404")


@check
def reset_mid_stream_raises():
    try:
        with client.messages.stream(model="mock/echo", max_tokens=10, messages=HELLO,
                                    extra_headers={"x-mock-reset-after": "2"}) as s:
            for _ in s.text_stream:
                pass
    except anthropic.APIError as e:
        assert "mid-stream" in str(e), e
    else:
        raise AssertionError("expected the stream to raise")


@check
def cached_stream_replays_with_its_event_names():
    # temperature 0: the default cache stores it; the second identical stream is a hit
    # replayed byte for byte, which the SDK must parse the same (event lines included).
    messages = [{"role": "user", "content": "cache this anthropic stream"}]
    for model in MODELS:
        runs = []
        for _ in range(2):
            with client.messages.with_streaming_response.create(
                model=model, max_tokens=100, messages=messages, stream=True,
                extra_body={"temperature": 0},
            ) as raw:
                status = raw.headers.get("x-tollgate-cache")
                text, usage = "", None
                for event in raw.parse():
                    if event.type == "content_block_delta" and event.delta.type == "text_delta":
                        text += event.delta.text
                    if event.type == "message_delta":
                        usage = event.usage
            runs.append((status, text, usage))
        (first, text1, usage1), (second, text2, usage2) = runs
        assert (first, second) == ("miss", "hit"), (model, first, second)
        assert text1 == text2 == "Mock answer to: cache this anthropic stream", (model, text1, text2)
        assert usage2.output_tokens == usage1.output_tokens == 7, (model, usage1, usage2)


for fn in CHECKS:
    fn()
    print(f"ok: {fn.__name__}", flush=True)
print(f"all {len(CHECKS)} anthropic SDK checks passed")
