//! Wiring: builds the clients and stores a deployment needs from [`Settings`], once, so every
//! handler and every run share them.

use std::sync::Arc;

use crate::config::{ConfigError, Settings};
use crate::kktix::{KktixClient, KktixOptions};
use crate::pii::Sensitive;
use crate::reconcile::Reconciler;
use crate::store::{Ledger, SqliteStore, StoreSpec, Warehouse};

/// The warehouse and ledger behind `STORE`.
#[derive(Clone)]
pub struct Stores {
    pub warehouse: Arc<dyn Warehouse>,
    pub ledger: Arc<dyn Ledger>,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("STORE: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("KKTIX_API_BASE: {0}")]
    Kktix(crate::upstream::UpstreamError),
}

pub fn open_stores(spec: &StoreSpec) -> Result<Stores, BuildError> {
    match spec {
        StoreSpec::Sqlite(path) => {
            let store = Arc::new(SqliteStore::open(path)?);
            Ok(Stores {
                warehouse: store.clone(),
                ledger: store,
            })
        }
        StoreSpec::BigQuery(_) => Err(BuildError::Config(ConfigError::Invalid {
            var: "STORE",
            reason: "the BigQuery backend is not part of this build yet; use sqlite:PATH".into(),
        })),
    }
}

/// The reconcile loop as configured, reading KKTIX at `base_url` with `token`.
pub fn build_reconciler(
    settings: &Settings,
    stores: &Stores,
    base_url: &str,
    token: Sensitive<String>,
) -> Result<Reconciler, BuildError> {
    let kktix = &settings.file.kktix;
    let client = KktixClient::new(
        base_url,
        token,
        KktixOptions {
            timeout: kktix.timeout(),
            retry: kktix.retry(),
            concurrency: kktix.concurrency,
        },
    )
    .map_err(BuildError::Kktix)?;
    Ok(Reconciler::new(
        client,
        stores.warehouse.clone(),
        stores.ledger.clone(),
        settings.file.events.clone(),
        settings.file.warehouse.clone(),
        settings.file.privacy.clone(),
    ))
}

/// The reconcile loop against the KKTIX the environment names.
pub fn reconciler_from_settings(
    settings: &Settings,
    stores: &Stores,
) -> Result<Reconciler, BuildError> {
    let token = settings.require_kktix_token()?;
    build_reconciler(settings, stores, &settings.kktix_api_base, token)
}
