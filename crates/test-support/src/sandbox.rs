//! The KKTIX sandbox served on `127.0.0.1:0`, and a reconcile that reads it.

use std::net::SocketAddr;
use std::sync::Arc;

use autopilot_core::deidentify::PrivacyRules;
use autopilot_core::kktix::{KktixClient, KktixOptions};
use autopilot_core::pii::Sensitive;
use autopilot_core::reconcile::Reconciler;
use autopilot_core::selection::{CategoryRules, EventSelector};
use autopilot_core::store::SqliteStore;
use autopilot_sandbox::{RunningSandbox, Sandbox, SandboxConfig};

/// `config`'s sandbox and the server answering for it (its `base_url`).
pub async fn serve(config: SandboxConfig) -> (Sandbox, RunningSandbox) {
    let sandbox = Sandbox::new(config);
    let running = sandbox
        .serve(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("the sandbox serves on a local port");
    (sandbox, running)
}

/// A sandbox where nothing happens between runs unless the test makes it: no purchases,
/// refunds or late ATM payments per step.
pub fn still(seed: u64) -> SandboxConfig {
    let mut config = SandboxConfig::demo(seed);
    config.purchases_per_step = 0.0;
    config.refund_share = 0.0;
    config.atm_pay_per_step = 0.0;
    config
}

/// A reconcile that reads the sandbox at `base_url` with `token` through a KKTIX client that
/// retries fast, with the default event selector, categories and privacy rules, and `store`
/// as both warehouse and ledger. Access, mail, notices and options are the test's to add.
pub fn reconciler(base_url: &str, token: &str, store: &Arc<SqliteStore>) -> Reconciler {
    let client = KktixClient::new(
        base_url,
        Sensitive::new(token.to_owned()),
        KktixOptions {
            retry: crate::fast::retry(2),
            ..KktixOptions::default()
        },
    )
    .expect("a KKTIX client for the sandbox");
    Reconciler::new(
        client,
        store.clone(),
        store.clone(),
        EventSelector::default(),
        CategoryRules::default(),
        PrivacyRules::default(),
    )
}

/// A selector whose catalog names one event that comes through `door` (CSV exports or the
/// webhook), as `[events.catalog]` would: `slug = { id, name, source, start_at }`.
pub fn catalog_of(
    door: autopilot_core::selection::Door,
    slug: &str,
    id: u64,
    name: &str,
    start_at: Option<String>,
) -> EventSelector {
    let mut selector = EventSelector {
        source: Some(door),
        ..EventSelector::default()
    };
    selector.catalog.insert(
        slug.into(),
        autopilot_core::selection::CatalogEntry::Event(autopilot_core::selection::CatalogEvent {
            id,
            name: Some(name.into()),
            source: Some(door),
            start_at,
            end_at: None,
        }),
    );
    selector
}
