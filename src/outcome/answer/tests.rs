//! The scanner against the serde structs it replaced, kept here as the oracle: on every
//! body below (existing test bodies, answers of real servers, and generated ones, as
//! built and mutated) both must say the same, `None` or the same `Answer`.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

use super::*;
use crate::providers::openai::WireUsage;
use crate::providers::wire::{self, Str};

// ===== the oracle: the serde read the scanner replaced =====

/// What `Seen::of_openai_json` read before the scanner.
fn oracle(body: &[u8]) -> Option<Answer> {
    let parsed = wire::from_slice::<JsonBody<'_>>(body).ok()?;
    Some(Answer {
        usage: parsed.usage.map(Usage::from),
        output_chars: parsed.choices.output_chars,
        finish_reason: parsed.choices.finish_reason.map(|r| r.0.into_owned()),
    })
}

#[derive(Deserialize)]
struct JsonBody<'a> {
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default, borrow)]
    choices: JsonChoices<'a>,
}

/// What the choices say together: their text's characters, and the last finish reason.
/// Read with `deserialize_seq`, so `null` is refused as a `Vec` would refuse it.
#[derive(Default)]
struct JsonChoices<'a> {
    output_chars: u64,
    finish_reason: Option<Str<'a>>,
}

impl<'de: 'a, 'a> Deserialize<'de> for JsonChoices<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<JsonChoices<'a>>);
        impl<'de> Visitor<'de> for V<'de> {
            type Value = JsonChoices<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of choices")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut all = JsonChoices::default();
                while let Some(choice) = seq.next_element::<JsonChoice<'de>>()? {
                    let content = choice.message.and_then(|m| m.content);
                    all.output_chars += content.map_or(0, |c| c.0);
                    if choice.finish_reason.is_some() {
                        all.finish_reason = choice.finish_reason;
                    }
                }
                Ok(all)
            }
        }
        deserializer.deserialize_seq(V(PhantomData))
    }
}

#[derive(Deserialize)]
struct JsonChoice<'a> {
    #[serde(default)]
    message: Option<JsonMessage>,
    #[serde(default, borrow)]
    finish_reason: Option<Str<'a>>,
}

#[derive(Deserialize)]
struct JsonMessage {
    #[serde(default)]
    content: Option<CharCount>,
}

/// The number of characters of a JSON string, counted where serde_json reads it.
/// Refuses anything but a string, like `String`.
struct CharCount(u64);

impl<'de> Deserialize<'de> for CharCount {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = CharCount;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E>(self, s: &str) -> Result<CharCount, E> {
                Ok(CharCount(s.chars().count() as u64))
            }
        }
        deserializer.deserialize_str(V)
    }
}

// ===== checks =====

/// Fails when the scanner and the oracle disagree on `body` (as an answer, or as any
/// JSON for `is_json`); else whether it was read.
#[track_caller]
fn same(body: &[u8]) -> bool {
    let theirs = oracle(body);
    assert_eq!(
        read(body),
        theirs,
        "the scanner and serde disagree on b\"{}\"",
        body.escape_ascii()
    );
    assert_eq!(
        is_json(body),
        serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok(),
        "is_json and serde disagree on b\"{}\"",
        body.escape_ascii()
    );
    theirs.is_some()
}

/// Whether `body` is read, after checking that both readers agree.
#[track_caller]
fn accepted(body: &str) -> bool {
    same(body.as_bytes())
}

#[test]
fn the_mock_answer_is_read() {
    let body = br#"{"choices":[{"finish_reason":"stop","index":0,"logprobs":null,"message":{"content":"Mock answer to: hello there","refusal":null,"role":"assistant"}}],"created":1795506118,"id":"chatcmpl-mock-30012","model":"bench-model","object":"chat.completion","system_fingerprint":"fp_mock","usage":{"completion_tokens":5,"prompt_tokens":2,"prompt_tokens_details":{"cached_tokens":0},"total_tokens":7}}"#;
    assert!(same(body));
    let answer = read(body).unwrap();
    assert_eq!(answer.usage, Some(Usage::new(2, 5)));
    assert_eq!(answer.output_chars, 27);
    assert_eq!(answer.finish_reason.as_deref(), Some("stop"));
}

/// The corners of serde's rules, each stated (and checked against serde as well).
#[test]
fn corners_are_read_as_serde_reads_them() {
    let read_ok = [
        "{}",
        // serde's derive reads a struct from an array, by field order.
        "[]",
        "[null]",
        r#"[null, [{"message": ["hi"]}]]"#,
        r#"[[1, 2, [3, 4], 5, [6, 7]], [[["ab"], "stop"]]]"#,
        r#"{"usage": []}"#,
        r#"{"choices": [[]]}"#,
        // Optional fields take null; skipped fields anything.
        r#"{"usage": null, "choices": [{"message": null, "finish_reason": null}]}"#,
        r#"{"usage": {"prompt_tokens_details": null, "prompt_cache_hit_tokens": null}}"#,
        r#"{"choices": [{"message": {"content": null, "refusal": 5}}], "x": [1e999, -0.0e-0]}"#,
        // Keys are unescaped before they are matched.
        r#"{"us\u0061ge": {"prompt_tokens": 3}, "\u0063hoices": []}"#,
        // A duplicate key of a skipped field is fine.
        r#"{"id": 1, "id": 2}"#,
        // Counts at the edge of u64.
        r#"{"usage": {"prompt_tokens": 18446744073709551615, "completion_tokens": 0}}"#,
        // A key escaped whole, and one longer than any name once unescaped.
        r#"{"\u0075\u0073\u0061\u0067\u0065": {"c\u006fmpletion_tokens": 1}}"#,
        r#"{"\u0075sage_and_then_a_good_deal_more_than_thirty_two": 1, "choices": []}"#,
        // Surrogate pairs in read strings; lone ones in skipped strings.
        r#"{"choices": [{"message": {"content": "\ud83d\ude00"}, "finish_reason": "\u0073top"}]}"#,
        r#"{"id": "\udc00\ud800", "choices": []}"#,
        // Whitespace of the four JSON kinds.
        " \t\r\n{ \"choices\" : [ ] } \n",
    ];
    for body in read_ok {
        assert!(accepted(body), "{body}");
    }
    let refused = [
        "",
        " ",
        "null",
        "[1]",
        "[null, null, null]",
        "{}x",
        "{},",
        r#"{"choices": null}"#,
        r#"{"choices": {}}"#,
        r#"{"choices": [null]}"#,
        r#"{"choices": [1]}"#,
        r#"{"choices": [[null, null, null]]}"#,
        r#"{"choices": [], "choices": []}"#,
        r#"{"usage": null, "usage": null}"#,
        r#"{"usage": null, "us\u0061ge": null}"#,
        r#"{"choices": [{"message": {"content": 5}}]}"#,
        r#"{"choices": [{"finish_reason": 5}]}"#,
        r#"{"usage": {"prompt_tokens": null}}"#,
        r#"{"usage": {"prompt_tokens": -1}}"#,
        r#"{"usage": {"prompt_tokens": -0}}"#,
        r#"{"usage": {"prompt_tokens": 1.0}}"#,
        r#"{"usage": {"prompt_tokens": 1e3}}"#,
        r#"{"usage": {"prompt_tokens": 01}}"#,
        r#"{"usage": {"prompt_tokens": 18446744073709551616}}"#,
        r#"{"usage": {"prompt_tokens": "1"}}"#,
        r#"{"usage": {"prompt_tokens_details": {"cached_tokens": 1.5}}}"#,
        r#"{"x": 01}"#,
        r#"{"x": 1.}"#,
        r#"{"x": -}"#,
        r#"{"x": .5}"#,
        r#"{"x": +1}"#,
        r#"{"x": 1e}"#,
        r#"{"x": nul}"#,
        r#"{"x": [1,]}"#,
        r#"{"x": {"a":1,}}"#,
        r#"{"x": {1: 2}}"#,
        r#"{"x": "\x"}"#,
        r#"{"x": "\u12"}"#,
        "{\"x\": \"\t\"}",
        r#"{"choices": [{"message": {"content": "\ud800"}}]}"#,
        r#"{"choices": [{"message": {"content": "\udc00"}}]}"#,
        r#"{"choices": [{"message": {"content": "\ud800\u0041"}}]}"#,
        r#"{"choices": [{"finish_reason": "\ud800x"}]}"#,
        r#"{"\ud800": 1}"#,
        r#"{"choices": [],}"#,
        "{\"choices\": []}\u{0c}",
    ];
    for body in refused {
        assert!(!accepted(body), "{body}");
    }
}

#[test]
fn invalid_utf8_is_refused_only_where_serde_reads_the_string() {
    let with = |before: &str, after: &str| {
        let mut body = before.as_bytes().to_vec();
        body.push(0xff);
        body.extend_from_slice(after.as_bytes());
        body
    };
    // Skipped strings and keys of skipped objects: not checked.
    assert!(same(&with(r#"{"id": ""#, r#"", "choices": []}"#)));
    assert!(same(&with(r#"{"x": {""#, r#"": 1}}"#)));
    assert!(same(&with(
        r#"{"choices": [{"message": {"role": ""#,
        r#""}}]}"#
    )));
    // Read strings and the keys of the structs read: checked.
    assert!(!same(&with(r#"{""#, r#"": 1}"#)));
    assert!(!same(&with(r#"{"usage": {""#, r#"": 1}}"#)));
    assert!(!same(&with(
        r#"{"choices": [{"finish_reason": ""#,
        r#""}]}"#
    )));
    assert!(!same(&with(
        r#"{"choices": [{"message": {"content": "a\n"#,
        r#"b"}}]}"#
    )));
}

#[test]
fn skipped_values_nest_without_serdes_recursion_limit() {
    // serde_json counts only the containers it deserializes: skipped ones may nest
    // past 128, and arrays past the 64 levels the scanner keeps in one word.
    for depth in [1, 63, 64, 65, 127, 128, 129, 200, 5000] {
        let nested = |open: &str, close: &str| {
            format!(
                r#"{{"x": {}1{}, "choices": []}}"#,
                open.repeat(depth),
                close.repeat(depth)
            )
        };
        assert!(accepted(&nested("[", "]")), "{depth}");
        assert!(accepted(&nested(r#"{"a":"#, "}")), "{depth}");
        assert!(accepted(&nested(r#"[{"a":"#, "}]")), "{depth}");
        assert!(!accepted(&nested("[", "}")), "{depth}");
        let unclosed = nested("[", "]").replacen(']', "", 1);
        assert!(!accepted(&unclosed), "{depth}");
    }
}

// ===== real answers =====

/// Answers as servers send them (OpenAI, Azure, DeepSeek, vLLM, Ollama, Groq,
/// OpenRouter, Mistral, Gemini's OpenAI endpoint, the mock), and the bodies of the
/// observer's own tests.
const CORPUS: &[&str] = &[
    r#"{"choices":[{"finish_reason":"stop","index":0,"logprobs":null,"message":{"content":"Mock answer to: hello there","refusal":null,"role":"assistant"}}],"created":1795506118,"id":"chatcmpl-mock-30012","model":"bench-model","object":"chat.completion","system_fingerprint":"fp_mock","usage":{"completion_tokens":5,"prompt_tokens":2,"prompt_tokens_details":{"cached_tokens":0},"total_tokens":7}}"#,
    r#"{"choices":[{"finish_reason":"stop","index":0,"logprobs":null,"message":{"content":"caf\u00e9 \"q\"","refusal":null,"role":"assistant"}},{"finish_reason":"length","message":{"content":"ab"}},{"message":null},{"message":{"content":null},"finish_reason":null}],"created":1,"id":"x","usage":{"completion_tokens":5,"prompt_tokens":2,"prompt_tokens_details":{"cached_tokens":1},"total_tokens":7}}"#,
    r#"{"choices":[{"message":{"content":"cut"#,
    r#"{"choices":[],"usage":{"prompt_tokens":1}} trailing"#,
    r#"{"choices":[{"message":{"content":5}}]}"#,
    r#"{"choices":[{"message":{"content":"hello"},"finish_reason":"stop"}],"usage":{"prompt_tokens":2,"completion_tokens":1}}"#,
    r#"{"choices":[{"finish_reason":"tool_calls","index":0,"logprobs":null,"message":{"content":null,"refusal":null,"role":"assistant","tool_calls":[{"function":{"arguments":"{\"city\":\"Paris\"}","name":"get_weather"},"id":"call_mock_7","type":"function"}]}}],"created":1795506118,"id":"chatcmpl-mock-7","model":"bench-model","object":"chat.completion","system_fingerprint":"fp_mock","usage":{"completion_tokens":9,"prompt_tokens":12,"prompt_tokens_details":{"cached_tokens":0},"total_tokens":21}}"#,
    "{\n  \"id\": \"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG\",\n  \"object\": \"chat.completion\",\n  \"created\": 1741570283,\n  \"model\": \"gpt-4o-2024-08-06\",\n  \"choices\": [\n    {\n      \"index\": 0,\n      \"message\": {\n        \"role\": \"assistant\",\n        \"content\": \"The image shows a wooden boardwalk path running through a lush green field or meadow. The sky is bright blue with some scattered clouds.\",\n        \"refusal\": null,\n        \"annotations\": []\n      },\n      \"logprobs\": null,\n      \"finish_reason\": \"stop\"\n    }\n  ],\n  \"usage\": {\n    \"prompt_tokens\": 1117,\n    \"completion_tokens\": 46,\n    \"total_tokens\": 1163,\n    \"prompt_tokens_details\": {\n      \"cached_tokens\": 0,\n      \"audio_tokens\": 0\n    },\n    \"completion_tokens_details\": {\n      \"reasoning_tokens\": 0,\n      \"audio_tokens\": 0,\n      \"accepted_prediction_tokens\": 0,\n      \"rejected_prediction_tokens\": 0\n    }\n  },\n  \"service_tier\": \"default\",\n  \"system_fingerprint\": \"fp_fc9f1d7035\"\n}\n",
    "{\n  \"id\": \"chatcmpl-abc123\",\n  \"object\": \"chat.completion\",\n  \"created\": 1699896916,\n  \"model\": \"gpt-4o-mini\",\n  \"choices\": [\n    {\n      \"index\": 0,\n      \"message\": {\n        \"role\": \"assistant\",\n        \"content\": null,\n        \"tool_calls\": [\n          {\n            \"id\": \"call_abc123\",\n            \"type\": \"function\",\n            \"function\": {\n              \"name\": \"get_current_weather\",\n              \"arguments\": \"{\\n\\\"location\\\": \\\"Boston, MA\\\"\\n}\"\n            }\n          }\n        ]\n      },\n      \"logprobs\": null,\n      \"finish_reason\": \"tool_calls\"\n    }\n  ],\n  \"usage\": {\n    \"prompt_tokens\": 82,\n    \"completion_tokens\": 17,\n    \"total_tokens\": 99,\n    \"completion_tokens_details\": {\n      \"reasoning_tokens\": 0,\n      \"accepted_prediction_tokens\": 0,\n      \"rejected_prediction_tokens\": 0\n    }\n  }\n}\n",
    r#"{"id":"chatcmpl-lp","object":"chat.completion","created":1702685778,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I assist you today?"},"logprobs":{"content":[{"token":"Hello","logprob":-0.31725305,"bytes":[72,101,108,108,111],"top_logprobs":[{"token":"Hello","logprob":-0.31725305,"bytes":[72,101,108,108,111]},{"token":"Hi","logprob":-1.3190403,"bytes":[72,105]}]},{"token":"!","logprob":-0.02380986,"bytes":[33],"top_logprobs":[{"token":"!","logprob":-0.02380986,"bytes":[33]},{"token":" there","logprob":-3.787621,"bytes":[32,116,104,101,114,101]}]}],"refusal":null},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":9,"total_tokens":18,"completion_tokens_details":{"reasoning_tokens":0}},"system_fingerprint":null}"#,
    r#"{"choices":[{"content_filter_results":{"hate":{"filtered":false,"severity":"safe"},"self_harm":{"filtered":false,"severity":"safe"},"sexual":{"filtered":false,"severity":"safe"},"violence":{"filtered":false,"severity":"safe"}},"finish_reason":"stop","index":0,"logprobs":null,"message":{"annotations":[],"content":"Azure says hi.","refusal":null,"role":"assistant"}}],"created":1740000000,"id":"chatcmpl-az","model":"gpt-4o-2024-11-20","object":"chat.completion","prompt_filter_results":[{"prompt_index":0,"content_filter_results":{"hate":{"filtered":false,"severity":"safe"},"jailbreak":{"filtered":false,"detected":false}}}],"system_fingerprint":"fp_ee1d74bde0","usage":{"completion_tokens":4,"completion_tokens_details":{"accepted_prediction_tokens":0,"audio_tokens":0,"reasoning_tokens":0,"rejected_prediction_tokens":0},"prompt_tokens":11,"prompt_tokens_details":{"audio_tokens":0,"cached_tokens":0},"total_tokens":15}}"#,
    r#"{"id":"930c60df-bf64-41c9-a88e-3ec75f81e00e","object":"chat.completion","created":1738000000,"model":"deepseek-reasoner","choices":[{"index":0,"message":{"role":"assistant","content":"9.11 < 9.8\n\n**Answer:** 9.8 is larger.","reasoning_content":"Compare decimals: 9.11 vs 9.80 \u2014 the tenths digit decides."},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":20,"completion_tokens":70,"total_tokens":90,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":60},"prompt_cache_hit_tokens":0,"prompt_cache_miss_tokens":20},"system_fingerprint":"fp_7e73fd9a08"}"#,
    r#"{"id":"ds-2","object":"chat.completion","created":1738000001,"model":"deepseek-chat","choices":[{"index":0,"message":{"role":"assistant","content":"你好！很高兴见到你。"},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":64,"completion_tokens":8,"total_tokens":72,"prompt_cache_hit_tokens":64,"prompt_cache_miss_tokens":0},"system_fingerprint":"fp_3a5770e1b4_prod0225"}"#,
    r#"{"id":"chatcmpl-8a1f","object":"chat.completion","created":1739000000,"model":"meta-llama/Llama-3.1-8B-Instruct","choices":[{"index":0,"message":{"role":"assistant","reasoning_content":null,"content":"vLLM here \ud83d\ude80.","tool_calls":[]},"logprobs":null,"finish_reason":"length","stop_reason":null}],"usage":{"prompt_tokens":42,"total_tokens":58,"completion_tokens":16,"prompt_tokens_details":null},"prompt_logprobs":null,"kv_transfer_params":null}"#,
    r#"{"id":"chatcmpl-vl","object":"chat.completion","created":1739000002,"model":"Qwen/Qwen3-8B","choices":[{"index":0,"message":{"role":"assistant","reasoning_content":"The user asks for a tool.","content":null,"tool_calls":[{"id":"chatcmpl-tool-1","type":"function","function":{"name":"search","arguments":"{\"q\": \"tollgate\"}"}}]},"logprobs":null,"finish_reason":"tool_calls","stop_reason":128008}],"usage":{"prompt_tokens":300,"total_tokens":340,"completion_tokens":40,"prompt_tokens_details":{"cached_tokens":256}},"prompt_logprobs":null}"#,
    r#"{"id":"chatcmpl-417","object":"chat.completion","created":1739000003,"model":"llama3.2","system_fingerprint":"fp_ollama","choices":[{"index":0,"message":{"role":"assistant","content":"The sky is blue because of Rayleigh scattering."},"finish_reason":"stop"}],"usage":{"prompt_tokens":26,"completion_tokens":10,"total_tokens":36}}"#,
    r#"{"id":"chatcmpl-ol","object":"chat.completion","created":1739000004,"model":"qwen3","system_fingerprint":"fp_ollama","choices":[{"index":0,"message":{"role":"assistant","content":"","reasoning":"Thinking about it…","tool_calls":[{"id":"call_x1","index":0,"type":"function","function":{"name":"get_time","arguments":"{}"}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":150,"completion_tokens":22,"total_tokens":172}}"#,
    r#"{"id":"chatcmpl-groq","object":"chat.completion","created":1739000005,"model":"llama-3.3-70b-versatile","choices":[{"index":0,"message":{"role":"assistant","content":"Fast inference."},"logprobs":null,"finish_reason":"stop"}],"usage":{"queue_time":0.017839,"prompt_tokens":48,"prompt_time":0.002,"completion_tokens":3,"completion_time":0.0025,"total_tokens":51,"total_time":0.0045},"usage_breakdown":null,"system_fingerprint":"fp_3f3b593e33","x_groq":{"id":"req_01j"},"service_tier":"on_demand"}"#,
    r#"{"id":"gen-17","provider":"Anthropic","model":"anthropic/claude-sonnet-4","object":"chat.completion","created":1739000006,"choices":[{"logprobs":null,"finish_reason":"stop","native_finish_reason":"end_turn","index":0,"message":{"role":"assistant","content":"OpenRouter \"quoted\" \\ path","refusal":null,"reasoning":null}}],"usage":{"prompt_tokens":14,"completion_tokens":9,"total_tokens":23,"cost":0.000177,"is_byok":false,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"cost_details":{"upstream_inference_cost":null},"completion_tokens_details":{"reasoning_tokens":0,"image_tokens":0}}}"#,
    r#"{"id":"cmpl-e5cc","object":"chat.completion","created":1702256327,"model":"mistral-large-latest","choices":[{"index":0,"message":{"role":"assistant","content":"Bonjour ! Ça va très bien.","tool_calls":null,"prefix":false},"finish_reason":"stop"}],"usage":{"prompt_tokens":16,"total_tokens":34,"completion_tokens":18}}"#,
    r#"{"choices":[{"finish_reason":"stop","index":0,"message":{"content":"Gemini via OpenAI.\n","role":"assistant","extra_content":{"google":{"thought_signature":"Cq0B"}}}}],"created":1739000007,"id":"gmn-1","model":"gemini-2.5-flash","object":"chat.completion","usage":{"completion_tokens":5,"prompt_tokens":7,"total_tokens":40,"completion_tokens_details":{"reasoning_tokens":28}}}"#,
    r#"{"id":"multi","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"one"},"finish_reason":"stop"},{"index":1,"message":{"role":"assistant","content":"two \t tabs \/ slash \b\f\r"},"finish_reason":"length"},{"index":2,"message":{"role":"assistant","content":"\u0000\u001f\u00ff\uffff\ud7ff\ue000"},"finish_reason":null}],"usage":{"prompt_tokens":3,"completion_tokens":6}}"#,
];

#[test]
fn real_answers_are_read_as_serde_reads_them() {
    let read = CORPUS.iter().filter(|body| accepted(body)).count();
    assert_eq!(read, CORPUS.len() - 3, "all but the three broken ones");
}

// ===== generated answers =====

/// splitmix64: deterministic, so a failure is reproduced by rerunning.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

/// What a value of the answer is, to serde.
#[derive(Clone, Copy)]
enum Kind {
    Answer,
    Usage,
    Details,
    Choices,
    Choice,
    Message,
    Count,
    Text,
    /// `null` or the kind.
    Optional(&'static Kind),
    /// Any value, as skipped.
    Skipped,
}

/// The fields of a struct kind, in declaration order, then keys servers send besides.
fn fields(kind: Kind) -> (&'static [(&'static str, Kind)], &'static [&'static str]) {
    use Kind::*;
    match kind {
        Answer => (
            &[("usage", Optional(&Usage)), ("choices", Choices)],
            &[
                "id",
                "object",
                "created",
                "model",
                "system_fingerprint",
                "service_tier",
                "prompt_logprobs",
                "x_groq",
                "Usage",
                "choice",
            ],
        ),
        Usage => (
            &[
                ("prompt_tokens", Count),
                ("completion_tokens", Count),
                ("prompt_tokens_details", Optional(&Details)),
                ("prompt_cache_hit_tokens", Optional(&Count)),
                ("completion_tokens_details", Optional(&Details)),
            ],
            &[
                "total_tokens",
                "prompt_cache_miss_tokens",
                "queue_time",
                "cost",
                "prompt_tokens_detail",
            ],
        ),
        Details => (
            &[
                ("cached_tokens", Optional(&Count)),
                ("reasoning_tokens", Optional(&Count)),
            ],
            &["audio_tokens", "accepted_prediction_tokens"],
        ),
        Choice => (
            &[
                ("message", Optional(&Message)),
                ("finish_reason", Optional(&Text)),
            ],
            &["index", "logprobs", "stop_reason", "delta", "content"],
        ),
        Message => (
            &[("content", Optional(&Text))],
            &[
                "role",
                "refusal",
                "tool_calls",
                "reasoning_content",
                "reasoning",
                "annotations",
            ],
        ),
        _ => (&[], &[]),
    }
}

/// Numbers for counts and skipped values: JSON numbers first (not all of them `u64`s),
/// then what is not a JSON number.
const NUMBERS: &[&str] = &[
    "0",
    "1",
    "7",
    "42",
    "1117",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999",
    "-0",
    "-1",
    "-42",
    "1.0",
    "0.5",
    "-0.0",
    "1e3",
    "1E3",
    "1e+3",
    "1e-3",
    "0e0",
    "2.5E-10",
    "1e400",
    "-1e400",
    "9007199254740993",
    "01",
    "00",
    "-01",
    "1.",
    ".5",
    "+1",
    "1e",
    "1e+",
    "-",
    "0x10",
    "NaN",
    "Infinity",
];

/// How many of [`NUMBERS`] are JSON.
const GOOD_NUMBERS: usize = 23;

/// Pieces of string text: plain, unicode, every escape, and what serde refuses in read
/// strings only (lone surrogates, bad UTF-8) or everywhere (bad escapes, control bytes).
const PIECES: &[&[u8]] = &[
    b"hello",
    b" ",
    b"stop",
    b"Mock answer to: hello there",
    "café".as_bytes(),
    "日本語".as_bytes(),
    "😀".as_bytes(),
    "—".as_bytes(),
    br#"\n"#,
    br#"\""#,
    br#"\\"#,
    br#"\/"#,
    br#"\b\f\r\t"#,
    br#"\u00e9"#,
    br#"\u00E9"#,
    br#"\u0000"#,
    br#"\u0041"#,
    br#"\uffff"#,
    br#"\ud83d\ude00"#,
    br#"\uD83D\uDE00"#,
    // Refused in read strings, some in skipped ones too:
    br#"\ud83d"#,
    br#"\ude00"#,
    br#"\ud83d\u0041"#,
    br#"\ud83d\ud83d\ude00"#,
    br#"\ud83dx"#,
    br#"\ud83d\n"#,
    br#"\u12"#,
    br#"\u00zz"#,
    br#"\x"#,
    br#"\'"#,
    b"\x01",
    b"\x1f",
    b"\t",
    b"\x7f",
    b"\xff",
    b"\xc3",
    b"\x80",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
    b"\xc0\xaf",
];

/// How many of [`PIECES`] any string may hold.
const GOOD_PIECES: usize = 20;

/// Builds answer-shaped documents: well formed in the shapes serde's rules are about
/// (keys in any order, escaped keys, structs as arrays, nulls, deep skipped values), with
/// slips at a rate chosen per document (none for a quarter of them).
struct Gen {
    rng: Rng,
    out: Vec<u8>,
    /// One slip in this many chances; 0 for none.
    slips: usize,
}

impl Gen {
    fn push(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    /// Whether to slip here.
    fn slip(&mut self) -> bool {
        self.slips != 0 && self.rng.one_in(self.slips)
    }

    fn ws(&mut self) {
        if self.slip() && self.rng.one_in(10) {
            // Not JSON whitespace.
            let ws: &[u8] = self.rng.pick(&[b"\x0c", b"\x0b", "\u{a0}".as_bytes()]);
            self.push(ws);
        } else if self.rng.one_in(5) {
            let ws: &[u8] = self.rng.pick(&[
                b" ",
                b"\n",
                b"\t",
                b"\r",
                b"\n  ",
                b"\r\n    ",
                b"\n        ",
                b"\n           \t ",
                b"  \n",
            ]);
            self.push(ws);
        }
    }

    /// A key: mostly as is, sometimes escaped (the same key to serde) or, as a slip,
    /// followed by string text.
    fn key(&mut self, key: &str) {
        self.push(b"\"");
        if self.rng.one_in(30) {
            for c in key.bytes() {
                if self.rng.one_in(3) {
                    self.push(format!("\\u{c:04x}").as_bytes());
                } else {
                    self.push(&[c]);
                }
            }
        } else if self.slip() {
            let piece = self.rng.pick(PIECES);
            self.push(key.as_bytes());
            self.push(piece);
        } else {
            self.push(key.as_bytes());
        }
        self.push(b"\"");
        self.ws();
        self.push(b":");
        self.ws();
    }

    fn string(&mut self) {
        self.push(b"\"");
        for _ in 0..self.rng.below(5) {
            let piece = if self.slip() {
                self.rng.pick(PIECES)
            } else {
                self.rng.pick(&PIECES[..GOOD_PIECES])
            };
            self.push(piece);
        }
        self.push(b"\"");
    }

    fn number(&mut self) {
        let n = if self.slip() {
            self.rng.pick(NUMBERS)
        } else {
            self.rng.pick(&NUMBERS[..GOOD_NUMBERS])
        };
        self.push(n.as_bytes());
    }

    fn value(&mut self, kind: Kind, depth: usize) {
        self.ws();
        // A value of any kind where a typed one goes.
        if !matches!(kind, Kind::Skipped) && self.slip() {
            return self.value(Kind::Skipped, depth);
        }
        match kind {
            Kind::Optional(inner) => {
                if self.rng.one_in(4) {
                    self.push(b"null");
                } else {
                    self.value(*inner, depth);
                }
            }
            Kind::Count => {
                if self.slip() {
                    self.number();
                } else if self.rng.one_in(20) {
                    let edge = self.rng.pick(&["0", "18446744073709551615"]);
                    self.push(edge.as_bytes());
                } else {
                    let n = self.rng.below(5000).to_string();
                    self.push(n.as_bytes());
                }
            }
            Kind::Text => self.string(),
            Kind::Choices => {
                self.push(b"[");
                for i in 0..self.rng.below(4) {
                    if i > 0 {
                        self.push(b",");
                    }
                    self.value(Kind::Choice, depth + 1);
                }
                self.push(b"]");
            }
            Kind::Skipped => self.skipped(depth),
            _ => self.structure(kind, depth),
        }
        self.ws();
    }

    /// A struct kind, as an object or (now and then) an array.
    fn structure(&mut self, kind: Kind, depth: usize) {
        let (known, extra) = fields(kind);
        if self.rng.one_in(20) {
            self.push(b"[");
            let n = self.rng.below(known.len() + 1) + usize::from(self.slip());
            for (i, slot) in known.iter().chain(known).take(n).enumerate() {
                if i > 0 {
                    self.push(b",");
                }
                self.value(slot.1, depth + 1);
            }
            self.push(b"]");
            return;
        }
        // Each field (known or not) at most once, in any order; as a slip, one twice.
        let rng = &mut self.rng;
        let mut keys: Vec<(&str, Kind)> =
            known.iter().copied().filter(|_| rng.below(4) > 0).collect();
        keys.extend(
            extra
                .iter()
                .filter(|_| rng.one_in(2))
                .map(|name| (*name, Kind::Skipped)),
        );
        if !keys.is_empty() && self.slip() {
            let again = self.rng.pick(&keys);
            keys.push(again);
        }
        for i in (1..keys.len()).rev() {
            keys.swap(i, self.rng.below(i + 1));
        }
        self.push(b"{");
        self.ws();
        for (i, (name, kind)) in keys.into_iter().enumerate() {
            if i > 0 {
                self.push(b",");
                self.ws();
            }
            self.key(name);
            self.value(kind, depth + 1);
        }
        self.push(b"}");
    }

    /// Any JSON value, sometimes deeply nested.
    fn skipped(&mut self, depth: usize) {
        if self.rng.one_in(300) {
            let levels = self.rng.pick(&[64, 65, 127, 128, 129, 300]);
            let (open, close): (&[u8], &[u8]) =
                self.rng
                    .pick(&[(b"[", b"]"), (br#"{"a":"#, b"}"), (br#"[{"":"#, b"}]")]);
            for _ in 0..levels {
                self.push(open);
            }
            self.push(b"0");
            for _ in 0..levels {
                self.push(close);
            }
            return;
        }
        let choice = if depth > 4 {
            self.rng.below(6)
        } else {
            self.rng.below(9)
        };
        match choice {
            0 => self.push(b"null"),
            1 => {
                let literal: &[u8] = if self.slip() {
                    self.rng.pick(&[b"tru", b"nul", b"False", b"nan"])
                } else {
                    self.rng.pick(&[b"true", b"false"])
                };
                self.push(literal);
            }
            2 | 3 => self.number(),
            4 | 5 => self.string(),
            6 => {
                self.push(b"[");
                for i in 0..self.rng.below(4) {
                    if i > 0 {
                        self.push(b",");
                    }
                    self.ws();
                    self.skipped(depth + 1);
                    self.ws();
                }
                self.push(b"]");
            }
            7 => {
                self.push(b"{");
                for i in 0..self.rng.below(4) {
                    if i > 0 {
                        self.push(b",");
                    }
                    self.ws();
                    self.string();
                    self.ws();
                    self.push(b":");
                    self.ws();
                    self.skipped(depth + 1);
                }
                self.push(b"}");
            }
            _ => {
                // A struct of the answer where it is skipped.
                let kind = self.rng.pick(&[Kind::Usage, Kind::Choice, Kind::Message]);
                self.structure(kind, depth + 1);
            }
        }
    }

    fn answer(&mut self) -> Vec<u8> {
        self.out.clear();
        self.slips = self.rng.pick(&[0, 500, 100, 20]);
        self.ws();
        if self.slip() {
            self.skipped(0);
        } else {
            self.value(Kind::Answer, 0);
        }
        if self.slip() {
            let tail: &[u8] = self.rng.pick(&[b"x" as &[u8], b"{}", b",", b"\0"]);
            self.push(tail);
        }
        self.out.clone()
    }
}

/// Bytes a mutation writes: JSON's structure, number and string bytes, and non-ASCII.
const SPICE: &[&[u8]] = &[
    b"\"",
    b"\\",
    b",",
    b":",
    b"{",
    b"}",
    b"[",
    b"]",
    b"0",
    b"1",
    b"9",
    b"-",
    b"+",
    b".",
    b"e",
    b"E",
    b"n",
    b"u",
    b" ",
    b"\n",
    b"\0",
    b"\x1f",
    b"\x7f",
    b"\x80",
    b"\xbf",
    b"\xc3",
    b"\xe2",
    b"\xed",
    b"\xf0",
    b"\xff",
    b"null",
    br#"\u"#,
    br#"\ud800"#,
    br#"\udc00"#,
    br#""usage":null,"#,
    br#""choices":[],"#,
    br#""content":"x","#,
    br#"{"a":"#,
];

/// One to three slips: truncation, overwritten, inserted, deleted, doubled or swapped bytes.
fn mutate(rng: &mut Rng, body: &[u8]) -> Vec<u8> {
    let mut b = body.to_vec();
    for _ in 0..=rng.below(3) {
        let at = rng.below(b.len() + 1);
        match rng.below(7) {
            0 => b.truncate(at),
            1 if at < b.len() => {
                let spice = rng.pick(SPICE);
                b[at] = spice[0];
            }
            2 => {
                let spice = rng.pick(SPICE);
                b.splice(at..at, spice.iter().copied());
            }
            3 => {
                let to = (at + 1 + rng.below(8)).min(b.len());
                b.drain(at.min(to)..to);
            }
            4 => {
                let to = (at + 1 + rng.below(40)).min(b.len());
                let copy = b[at.min(to)..to].to_vec();
                let into = rng.below(b.len() + 1);
                b.splice(into..into, copy);
            }
            5 if at < b.len() => b[at] = rng.next() as u8,
            _ if b.len() > 1 => {
                let other = rng.below(b.len());
                let at = at.min(b.len() - 1);
                b.swap(at, other);
            }
            _ => {}
        }
    }
    b
}

/// How many documents to generate: `ANSWER_DIFF_CASES` sets it (a long run), else a count
/// that keeps the test to seconds.
fn cases() -> usize {
    std::env::var("ANSWER_DIFF_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000)
}

#[test]
fn generated_answers_are_read_as_serde_reads_them() {
    let mut gen = Gen {
        rng: Rng(0x7011_6a7e),
        out: Vec::new(),
        slips: 0,
    };
    let mut mutations = Rng(0xa115_0e4d);
    // Bodies checked and read: as generated, mutated, real answers mutated.
    let mut counts = [[0usize; 2]; 3];
    let mut check = |set: usize, body: &[u8]| {
        counts[set][0] += 1;
        counts[set][1] += usize::from(same(body));
    };
    let n = cases();
    for _ in 0..n {
        let body = gen.answer();
        check(0, &body);
        for _ in 0..4 {
            check(1, &mutate(&mut mutations, &body));
        }
    }
    for body in CORPUS {
        for _ in 0..(n / 4).max(1) {
            check(2, &mutate(&mut mutations, body.as_bytes()));
        }
    }
    eprintln!(
        "[checked, read]: generated {:?}, mutated {:?}, real answers mutated {:?}",
        counts[0], counts[1], counts[2]
    );
    // Both sides of the line are well covered.
    for [checked, read] in counts {
        assert!(read * 20 > checked, "{read} of {checked} read");
        assert!(read * 20 < checked * 19, "{read} of {checked} read");
    }
}
