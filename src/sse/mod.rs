//! Incremental server-sent events: a decoder that takes frames as they arrive and an
//! encoder for the events the gateway writes itself.
//!
//! Providers, metering and the cache read streams with the same [`Decoder`]. It is fed
//! whatever the network delivers (events split across frames, several events in one
//! frame, `\n`, `\r\n` or `\r` line ends, multi-line `data:`, comments) and yields
//! complete events. Every event keeps its exact [`raw`](Event::raw) bytes, so a
//! consumer that drops or rewrites one event forwards all the others untouched.
//! Garbage never panics: unknown lines are ignored, invalid UTF-8 is replaced, and an
//! event larger than the configured cap is handed on as an opaque block.
//!
//! ```
//! use tollgate::sse::Decoder;
//!
//! let mut decoder = Decoder::new();
//! decoder.push(b"data: {\"a\":");
//! assert!(decoder.next_event().is_none()); // incomplete
//! decoder.push(b"1}\r\n\r\ndata: [DONE]\n\n");
//! assert_eq!(decoder.next_event().unwrap().data(), Some("{\"a\":1}"));
//! assert_eq!(decoder.next_event().unwrap().data(), Some("[DONE]"));
//! assert!(decoder.next_event().is_none());
//! ```

mod decoder;
mod encoder;

pub use decoder::{Decoder, Event};
pub use encoder::{encode, encode_json};
