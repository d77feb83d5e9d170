//! Discord: interaction types, signature verification, the slash-command handler and the
//! REST calls it needs (editing the deferred reply, registering commands).

pub mod bot;
pub mod model;
pub mod operations;
pub mod rest;
pub mod verify;
