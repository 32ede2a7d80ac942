//! The operator console: a Unix stream socket speaking JSON lines.
//!
//! - [`proto`]: requests, responses, the flow JSON form and the
//!   [`ConsoleHandler`] trait the appliance implements.
//! - [`server`]: [`ConsoleServer`], a mio-driven listener that lives in the
//!   control thread's event loop.
//! - [`stream`]: answers written in pieces as the client reads them
//!   (`flows list`).
//! - [`client`]: the blocking client `ftfwctl` uses.
//! - [`render`]: human-readable rendering of responses for `ftfwctl`.

pub mod client;
pub mod proto;
pub mod render;
pub mod server;
pub mod stream;

pub use proto::{ConsoleHandler, Payload, Request, Response};
pub use server::ConsoleServer;
