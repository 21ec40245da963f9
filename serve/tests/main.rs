//! `djinn-serve`'s integration tests: the binary started on an ephemeral
//! loopback port with the tiny fixture model on the CPU backend, driven
//! over real HTTP.
//!
//! * [`errors`]: every refusal is a 4xx with OpenAI's error object naming
//!   the field; a server that cannot start exits 1 before it listens;
//! * [`streams`]: a client that hangs up or stops reading cannot hold the
//!   engine; a full queue is a 429;
//! * [`lifecycle`]: SIGTERM and SIGINT drain the queue and exit 0;
//! * [`openai_client`]: the official `openai` Python package, streaming and not;
//! * [`load`]: 200 requests from 32 clients, each the text djinn-exec generates.

mod common;
mod errors;
mod lifecycle;
mod load;
mod openai_client;
mod streams;
