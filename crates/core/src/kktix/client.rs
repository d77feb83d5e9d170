//! The KKTIX hosting-API client: bearer token, timeouts and retries (via [`Upstream`]),
//! pagination, and attendee fetches with bounded concurrency.

use std::time::Duration;

use futures::stream::{self, StreamExt};
use serde_json::Value;
use url::Url;

use super::model::{parse_signin_ids, AttendanceBook, Attendee, HostingEvent, RecordError};
use crate::pii::Sensitive;
use crate::upstream::{build_client, RetryPolicy, Upstream, UpstreamError};

const UPSTREAM: &str = "KKTIX";
/// A listing that pages on past this is treated as a loop, not as that many events.
const MAX_PAGES: usize = 100;

#[derive(Debug, Clone)]
pub struct KktixOptions {
    pub timeout: Duration,
    pub retry: RetryPolicy,
    /// Attendee detail requests in flight at once.
    pub concurrency: usize,
}

impl Default for KktixOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            concurrency: 8,
        }
    }
}

#[derive(Debug)]
pub struct KktixClient {
    http: reqwest::Client,
    base: Url,
    token: Sensitive<String>,
    upstream: Upstream,
    concurrency: usize,
}

/// The outcome of one attendee detail request.
#[derive(Debug)]
pub enum AttendeeFetch {
    // Boxed: a record is large next to the other outcomes.
    Fetched(Box<Attendee>),
    /// The upstream answered, but the record does not parse: skip it, report it, go on.
    Broken(RecordError),
    /// The request itself failed after retries: still pending next run.
    Failed(UpstreamError),
}

/// Events the listing returned, and entries in it that did not parse.
#[derive(Debug, Default)]
pub struct EventListing {
    pub events: Vec<HostingEvent>,
    pub skipped: Vec<String>,
}

impl KktixClient {
    /// `error` with what to check: the variable that is probably wrong and the host it
    /// points at (never the token).
    pub fn explain(&self, error: &UpstreamError) -> String {
        let host = self.base.host_str().unwrap_or("?");
        let host = match self.base.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        let hint = match error {
            UpstreamError::Unauthorized { .. } => {
                format!("check KKTIX_ACCESS_TOKEN (it is sent to {host})")
            }
            UpstreamError::Transport { .. } | UpstreamError::Timeout { .. } => {
                format!("check KKTIX_API_BASE ({host}) and that it is reachable from here")
            }
            UpstreamError::NotFound { .. } | UpstreamError::Malformed { .. } => {
                format!("check that KKTIX_API_BASE ({host}) is KKTIX's hosting API")
            }
            _ => return format!("{error} (KKTIX_API_BASE {host})"),
        };
        format!("{error}: {hint}")
    }

    pub fn new(
        base_url: &str,
        token: Sensitive<String>,
        options: KktixOptions,
    ) -> Result<Self, UpstreamError> {
        let base = Url::parse(base_url).map_err(|e| UpstreamError::Transport {
            upstream: UPSTREAM,
            reason: format!("invalid base URL: {e}"),
        })?;
        let http = build_client(UPSTREAM, options.timeout)?;
        Ok(Self {
            http,
            base,
            token,
            upstream: Upstream::new(UPSTREAM, options.retry),
            concurrency: options.concurrency.max(1),
        })
    }

    /// HTTP requests sent to KKTIX so far, retries included.
    pub fn requests_sent(&self) -> u64 {
        self.upstream.attempts()
    }

    fn url(&self, path: &str) -> Url {
        let mut url = self.base.clone();
        let joined = format!("{}{}", self.base.path().trim_end_matches('/'), path);
        url.set_path(&joined);
        url
    }

    async fn get(&self, what: &str, url: &Url) -> Result<bytes::Bytes, UpstreamError> {
        let token = self.token.expose();
        let success = self
            .upstream
            .send(what, || {
                self.http
                    .get(url.clone())
                    .header(reqwest::header::AUTHORIZATION, format!("bearer {token}"))
                    .header(reqwest::header::ACCEPT, "application/json")
            })
            .await?;
        Ok(success.body)
    }

    fn malformed(reason: impl Into<String>) -> UpstreamError {
        UpstreamError::Malformed {
            upstream: UPSTREAM,
            reason: reason.into(),
        }
    }

    /// Every event not yet ended, following pagination (`links.next` or
    /// `meta.pagination.{current_page,total_pages}`) when the response carries any.
    pub async fn hosting_events(&self) -> Result<EventListing, UpstreamError> {
        let mut listing = EventListing::default();
        let mut url = self.url("/api/v2/hosting_events");
        url.query_pairs_mut()
            .append_pair("only_not_ended_event", "true");
        let mut seen_pages = Vec::new();
        while seen_pages.len() < MAX_PAGES {
            seen_pages.push(url.clone());
            let body = self.get("hosting events", &url).await?;
            let page: Value = serde_json::from_slice(&body).map_err(|e| {
                Self::malformed(format!("hosting events: {:?} error", e.classify()))
            })?;
            let entries = page
                .get("data")
                .and_then(Value::as_array)
                .ok_or_else(|| Self::malformed("hosting events: no `data` list"))?;
            for (index, entry) in entries.iter().enumerate() {
                match serde_path_to_error::deserialize::<_, HostingEvent>(entry) {
                    // A stuck paginator may repeat a page; an event counts once.
                    Ok(event) if listing.events.iter().any(|known| known.id == event.id) => {}
                    Ok(event) => listing.events.push(event),
                    Err(e) => listing.skipped.push(format!(
                        "hosting event #{index}: field `{}` has the wrong shape",
                        e.path()
                    )),
                }
            }
            match self.next_page(&url, &page)? {
                Some(next) if !seen_pages.contains(&next) => url = next,
                _ => return Ok(listing),
            }
        }
        Err(Self::malformed(format!(
            "hosting events: more than {MAX_PAGES} pages"
        )))
    }

    fn next_page(&self, current: &Url, page: &Value) -> Result<Option<Url>, UpstreamError> {
        let link = ["/links/next", "/paging/next", "/next"]
            .iter()
            .find_map(|pointer| page.pointer(pointer).and_then(Value::as_str))
            .filter(|link| !link.is_empty());
        if let Some(link) = link {
            let next = current
                .join(link)
                .map_err(|_| Self::malformed("hosting events: unusable next-page link"))?;
            // The bearer token goes to KKTIX only, never to a host a response names.
            if next.origin() != self.base.origin() {
                return Err(Self::malformed(
                    "hosting events: next-page link points to another host",
                ));
            }
            return Ok(Some(next));
        }
        let pagination = page.pointer("/meta/pagination").unwrap_or(&Value::Null);
        let current_page = pagination.get("current_page").and_then(Value::as_u64);
        let total_pages = pagination.get("total_pages").and_then(Value::as_u64);
        match (current_page, total_pages) {
            (Some(current_page), Some(total)) if current_page < total => {
                let mut next = current.clone();
                let kept: Vec<(String, String)> = current
                    .query_pairs()
                    .filter(|(key, _)| key != "page")
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect();
                next.query_pairs_mut()
                    .clear()
                    .extend_pairs(kept)
                    .append_pair("page", &(current_page + 1).to_string());
                Ok(Some(next))
            }
            _ => Ok(None),
        }
    }

    pub async fn attendance_books(
        &self,
        event_id: u64,
    ) -> Result<Vec<AttendanceBook>, UpstreamError> {
        let url = self.url(&format!(
            "/api/v2/hosting_events/{event_id}/attendance_books"
        ));
        let body = self
            .get(&format!("attendance books of event {event_id}"), &url)
            .await?;
        serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(&body)).map_err(
            |e| {
                Self::malformed(format!(
                    "attendance books of event {event_id}: field `{}` has the wrong shape",
                    e.path()
                ))
            },
        )
    }

    /// The ids currently in the book: paid and awaiting payment; refunded ones have left it.
    pub async fn attendance_book(
        &self,
        event_id: u64,
        book_id: u64,
    ) -> Result<Vec<u64>, UpstreamError> {
        let url = self.url(&format!(
            "/api/v2/hosting_events/{event_id}/attendance_books/{book_id}"
        ));
        let body = self
            .get(
                &format!("attendance book {book_id} of event {event_id}"),
                &url,
            )
            .await?;
        parse_signin_ids(&body).map_err(|e| Self::malformed(format!("event {event_id}: {e}")))
    }

    pub async fn attendee(&self, event_id: u64, attendee_id: u64) -> AttendeeFetch {
        let url = self.url(&format!(
            "/api/v2/hosting_events/{event_id}/attendees/{attendee_id}"
        ));
        let what = format!("attendee {attendee_id} of event {event_id}");
        match self.get(&what, &url).await {
            Ok(body) => match Attendee::parse(&body) {
                Ok(attendee) if attendee.id == attendee_id => {
                    AttendeeFetch::Fetched(Box::new(attendee))
                }
                Ok(_) => AttendeeFetch::Broken(RecordError {
                    reason: "record carries a different attendee id".into(),
                }),
                Err(error) => AttendeeFetch::Broken(error),
            },
            Err(error) => AttendeeFetch::Failed(error),
        }
    }

    /// Fetches the given attendees with at most `concurrency` requests in flight, in input order.
    pub async fn attendees(&self, event_id: u64, ids: &[u64]) -> Vec<(u64, AttendeeFetch)> {
        stream::iter(ids.iter().copied())
            .map(|id| async move { (id, self.attendee(event_id, id).await) })
            .buffered(self.concurrency)
            .collect()
            .await
    }
}
