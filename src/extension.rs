//! Per-request facts shared by several layers, carried as typed extensions.

use std::net::SocketAddr;

/// The address of the client that opened the connection, in the request extensions.
///
/// The server inserts it (the example gateway does, from axum's `ConnectInfo`); layers
/// that need the client address read it from here, so none of them depends on a web
/// framework. `RateLimitLayer` keys on it when the request carries no other identity.
/// Behind a trusted proxy, insert the address the proxy reports instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientAddr(pub SocketAddr);
