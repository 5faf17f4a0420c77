//! The [`ContentCheck`] policy and what it finds.

use std::borrow::Cow;
use std::ops::Range;

/// Which text a check is looking at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Side {
    /// The client's prompt (messages, system prompt, embedding inputs).
    Request,
    /// The model's answer (message text, streamed deltas).
    Response,
}

/// What to do about a [`Finding`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Refuse: 400 `content_policy_violation` in the client's dialect (a stream ends with
    /// an error event). The reason is shown to the client: never put the matched text in
    /// it.
    Block(Cow<'static, str>),
    /// Replace the matched text with this one.
    Replace(Cow<'static, str>),
}

/// A piece of text a check objects to: its byte range in the text it was given, and
/// what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Byte range of the match (on `char` boundaries).
    pub range: Range<usize>,
    /// What to do.
    pub action: Action,
}

/// A content check for [`GuardrailLayer`](super::GuardrailLayer): finds what must be
/// blocked or replaced in a piece of text.
///
/// Findings are returned in order and do not overlap. While an answer streams, the
/// layer holds back the last [`window`](ContentCheck::window) characters so that a match
/// split across events is seen whole; a match longer than the window may be cut.
pub trait ContentCheck: Send + Sync + 'static {
    /// What is wrong in `text`, on `side`.
    fn scan(&self, text: &str, side: Side) -> Vec<Finding>;

    /// Characters of a streamed answer held back until more text arrives (default 64).
    fn window(&self) -> usize {
        64
    }
}

impl<C: ContentCheck + ?Sized> ContentCheck for std::sync::Arc<C> {
    fn scan(&self, text: &str, side: Side) -> Vec<Finding> {
        (**self).scan(text, side)
    }

    fn window(&self) -> usize {
        (**self).window()
    }
}

/// `text` with the `Replace` findings applied (findings in order, not overlapping).
pub(crate) fn apply(text: &str, findings: &[Finding]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for finding in findings {
        if let Action::Replace(with) = &finding.action {
            if finding.range.start < at {
                continue;
            }
            out.push_str(&text[at..finding.range.start]);
            out.push_str(with);
            at = finding.range.end;
        }
    }
    out.push_str(&text[at..]);
    out
}

/// The reason of the first `Block` finding, if any.
pub(crate) fn blocked(findings: &[Finding]) -> Option<&str> {
    findings.iter().find_map(|f| match &f.action {
        Action::Block(reason) => Some(&**reason),
        Action::Replace(_) => None,
    })
}
