//! Discord: interaction types, signature verification, the slash-command handler and the
//! REST calls it needs (editing the deferred reply, registering commands).

#[cfg(feature = "discord")]
pub mod bot;
#[cfg(feature = "discord")]
pub mod model;
#[cfg(feature = "discord")]
pub mod operations;
#[cfg(feature = "discord")]
pub mod rest;
pub mod settings;
#[cfg(feature = "discord")]
pub mod verify;
