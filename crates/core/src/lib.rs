//! KKTIX Autopilot's domain logic: the KKTIX client, de-identification, storage, the
//! reconcile loop and the HTTP handlers. No Lambda types: the function binaries and the
//! local server only adapt requests to [`api::Api`].

pub mod access;
pub mod api;
pub mod app;
pub mod aws;
pub mod campaign;
pub mod config;
pub mod contacts;
pub mod deidentify;
pub mod discord;
pub mod http;
pub mod intake;
pub mod kktix;
pub mod mail;
pub mod metrics;
pub mod model;
pub mod notify;
pub mod pii;
#[cfg(feature = "reconcile")]
pub mod reconcile;
pub mod remote;
pub mod report;
pub mod sales;
pub mod selection;
pub mod store;
pub mod telemetry;
pub mod upstream;
