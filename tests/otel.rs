//! `GenAiSpanLayer` exported as OpenTelemetry spans through `tracing-opentelemetry` into
//! the SDK's in-memory exporter (no network): names, GenAI attributes, usage recorded
//! when the answer ends, and an upstream attempt's span as its child.
#![cfg(feature = "testing")]

use http::Request;
use http_body_util::BodyExt;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::Value;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tollgate::telemetry::GenAiSpanLayer;
use tollgate::testing::MockProvider;
use tollgate::Body;
use tower::{ServiceBuilder, ServiceExt};
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

fn attribute(span: &SpanData, key: &str) -> Option<Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.clone())
}

#[tokio::test(flavor = "current_thread")]
async fn genai_spans_reach_an_opentelemetry_exporter() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("tollgate-test")));
    let _guard = tracing::subscriber::set_default(subscriber);

    let mock = MockProvider::new();
    let svc = ServiceBuilder::new()
        .layer(GenAiSpanLayer::new())
        .service_fn(move |req: Request<Body>| {
            // One upstream attempt, in its own span, as the example gateway makes them.
            let span = tracing::info_span!("upstream", gen_ai.provider.name = "mock");
            mock.clone().oneshot(req).instrument(span)
        });
    for stream in [false, true] {
        let body = serde_json::json!({"model": "mock/echo", "stream": stream,
            "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "hello there"}]});
        let req = Request::post("/v1/chat/completions")
            .body(Body::from(body.to_string()))
            .unwrap();
        let res = svc.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), 200);
        res.into_body().collect().await.unwrap();
    }
    provider.force_flush().unwrap();

    let spans = exporter.get_finished_spans().unwrap();
    let chats: Vec<&SpanData> = spans
        .iter()
        .filter(|s| s.name == "chat mock/echo")
        .collect();
    assert_eq!(chats.len(), 2, "{spans:#?}");
    for chat in &chats {
        assert_eq!(
            attribute(chat, "gen_ai.operation.name"),
            Some(Value::from("chat"))
        );
        assert_eq!(
            attribute(chat, "gen_ai.request.model"),
            Some(Value::from("mock/echo"))
        );
        // Recorded when the answer ended: the mock counts a token per word.
        assert_eq!(
            attribute(chat, "gen_ai.usage.input_tokens"),
            Some(Value::I64(2))
        );
        assert_eq!(
            attribute(chat, "gen_ai.usage.output_tokens"),
            Some(Value::I64(5))
        );
        assert_eq!(
            attribute(chat, "http.response.status_code"),
            Some(Value::I64(200))
        );
        let attempt = spans
            .iter()
            .find(|s| s.name == "upstream" && s.parent_span_id == chat.span_context.span_id())
            .expect("the attempt's span is a child of the request's");
        assert_eq!(
            attempt.span_context.trace_id(),
            chat.span_context.trace_id()
        );
    }
}
