//! The authorizer's logic: grant what each ticket entitles to, and take it back.

use std::sync::Arc;

use async_trait::async_trait;

use super::{
    AccessRequest, AccessService, Entitlements, GrantOutcome, GrantResult, Guest, GuestList,
    Removal, RemovalOutcome, RevokeOutcome, RevokeRequest, RevokeResult,
};

pub struct Authorizer {
    guests: Arc<dyn GuestList>,
    entitlements: Entitlements,
}

impl Authorizer {
    pub fn new(guests: Arc<dyn GuestList>, entitlements: Entitlements) -> Self {
        Self {
            guests,
            entitlements,
        }
    }
}

#[async_trait]
impl AccessService for Authorizer {
    /// One guest-list call for the whole batch; links need no call at all.
    async fn authorize(&self, batch: Vec<AccessRequest>) -> Vec<GrantResult> {
        let grants: Vec<_> = batch
            .iter()
            .map(|request| self.entitlements.for_ticket(&request.ticket_name))
            .collect();
        let guests: Vec<Guest> = batch
            .iter()
            .zip(&grants)
            .filter(|(_, grant)| grant.gather)
            .map(|(request, grant)| Guest {
                email: request.email.clone(),
                name: request.name.clone(),
                role: self.entitlements.role.clone(),
                affiliation: grant.affiliation.clone(),
            })
            .collect();
        let added = if guests.is_empty() {
            Ok(())
        } else {
            self.guests.add(&guests).await
        };
        batch
            .iter()
            .zip(grants)
            .map(|(request, grant)| {
                let outcome = match (&added, grant.gather) {
                    (Err(error), true) => GrantOutcome::Failed {
                        reason: error.to_string(),
                        transient: error.is_transient(),
                    },
                    _ => GrantOutcome::Granted {
                        gather: grant.gather,
                        links: grant.links,
                        venue_url: grant.venue_url,
                    },
                };
                GrantResult {
                    key: request.key,
                    outcome,
                }
            })
            .collect()
    }

    /// Removes only entries that still read as this system wrote them.
    async fn revoke(&self, batch: Vec<RevokeRequest>) -> Vec<RevokeResult> {
        let removals: Vec<(usize, Removal)> = batch
            .iter()
            .enumerate()
            .filter_map(|(index, request)| {
                let grant = self.entitlements.for_ticket(&request.ticket_name);
                grant.gather.then(|| {
                    (
                        index,
                        Removal {
                            email_hash: request.email_hash.clone(),
                            role: self.entitlements.role.clone(),
                            affiliation: grant.affiliation,
                        },
                    )
                })
            })
            .collect();
        let outcomes = if removals.is_empty() {
            Ok(Vec::new())
        } else {
            let list: Vec<Removal> = removals.iter().map(|(_, r)| r.clone()).collect();
            self.guests.remove(&list).await
        };
        batch
            .iter()
            .enumerate()
            .map(|(index, request)| {
                let position = removals.iter().position(|(i, _)| *i == index);
                let outcome = match (&outcomes, position) {
                    // The ticket gives no guest-list entry: nothing to take back.
                    (_, None) => RevokeOutcome::Revoked {
                        removal: RemovalOutcome::Absent,
                    },
                    (Ok(outcomes), Some(at)) => match outcomes.get(at) {
                        Some(removal) => RevokeOutcome::Revoked { removal: *removal },
                        None => RevokeOutcome::Failed {
                            reason: "the guest list gave no answer for this attendee".into(),
                            transient: true,
                        },
                    },
                    (Err(error), Some(_)) => RevokeOutcome::Failed {
                        reason: error.to_string(),
                        transient: error.is_transient(),
                    },
                };
                RevokeResult {
                    key: request.key,
                    outcome,
                }
            })
            .collect()
    }
}
