//! A request's engine events as OpenAI's server-sent event stream: one
//! `data: {chunk}` per piece of text (chat's first chunk carries the
//! assistant's role), a last chunk with the `finish_reason`, the usage
//! chunk when `stream_options.include_usage` asked for it, then
//! `data: [DONE]`. A failure mid-stream is a `data: {"error": ...}` event
//! (what OpenAI's clients raise as an API error), and the stream ends.
//!
//! The stream reads the job's bounded channel only as fast as the client
//! takes data, which is what lets the engine see a stalled reader.

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::response::sse::{Event as SseEvent, Sse};
use futures_util::stream::{self, Stream};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::engine::Event;
use crate::error::ApiError;
use crate::openai::{Header, Kind, Piece};

struct State {
    rx: mpsc::Receiver<Event>,
    header: Header,
    include_usage: bool,
    /// Events decided but not yet sent.
    pending: VecDeque<SseEvent>,
    ended: bool,
}

fn data(v: &Value) -> SseEvent {
    SseEvent::default().data(v.to_string())
}

/// The response body of a streaming request.
pub fn respond(
    header: Header,
    include_usage: bool,
    rx: mpsc::Receiver<Event>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let mut pending = VecDeque::new();
    if header.kind == Kind::Chat {
        pending.push_back(data(&header.chunk(Piece::Role)));
    }
    let state = State { rx, header, include_usage, pending, ended: false };
    Sse::new(stream::unfold(state, |mut s| async move {
        loop {
            if let Some(ev) = s.pending.pop_front() {
                return Some((Ok(ev), s));
            }
            if s.ended {
                return None;
            }
            match s.rx.recv().await {
                Some(Event::Text(t)) => s.pending.push_back(data(&s.header.chunk(Piece::Text(&t)))),
                Some(Event::Done(done)) => {
                    s.pending.push_back(data(&s.header.chunk(Piece::Finish(done.finish))));
                    if s.include_usage {
                        s.pending.push_back(data(&s.header.usage_chunk(&done)));
                    }
                    s.pending.push_back(SseEvent::default().data("[DONE]"));
                    s.ended = true;
                }
                Some(Event::Failed(message)) => {
                    s.pending.push_back(data(&ApiError::server(message).body()));
                    s.ended = true;
                }
                // The engine dropped the request (it stalled): nothing more comes.
                None => return None,
            }
        }
    }))
}
