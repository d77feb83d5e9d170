//! The attendee page over HTTP: `GET /invitation` and `POST /invitation` through the same
//! `Api` the receiver function serves, with 20 buyers imported from the sandbox's CSV exports
//! into a SQLite store and invitations written to an outbox. Identical answers whoever asks,
//! resends only for paid, non-refunded buyers, limits per address and per client, CSRF, the
//! honeypot, malformed and oversized bodies, and the channel's daily count.

use std::sync::Arc;
use std::time::Duration;

use autopilot_core::access::{AccessService, Authorizer, Entitlements, FileGuestList};
use autopilot_core::api::{Api, HttpRequest, HttpResponse};
use autopilot_core::contacts::{ContactKey, Sealer};
use autopilot_core::deidentify::PrivacyRules;
use autopilot_core::http::ClientAddr;
use autopilot_core::intake::{
    DrainTrigger, IntakeQueue, LocalTrigger, PageSettings, Receiver, WebhookMapping,
};
use autopilot_core::mail::{MailSettings, MailTemplate, Mailer, OutboxProvider};
use autopilot_core::model::RunSummary;
use autopilot_core::reconcile::{ImportRequest, ReconcileOptions, Reconciler, Vault};
use autopilot_core::selection::{CategoryRules, Door, EventSelector};
use autopilot_core::store::{Ledger, SqliteStore};
use autopilot_sandbox::{AttendeeTruth, Sandbox, SandboxConfig};
use bytes::Bytes;

const EVENT: u64 = 90_001;
const SLUG: &str = "bench-conf-2026-individual";

struct World {
    sandbox: Sandbox,
    dir: tempfile::TempDir,
    store: Arc<SqliteStore>,
    reconciler: Reconciler,
    api: Api,
}

impl World {
    async fn new(page: PageSettings) -> Self {
        let sandbox = Sandbox::new(SandboxConfig::single_event(5, 20));
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(dir.path().join("autopilot.db")).unwrap());
        let selector = autopilot_test_support::sandbox::catalog_of(
            Door::Csv,
            SLUG,
            EVENT,
            "Bench Conf 2026 Registration: Individual",
            None,
        );
        let access: Arc<dyn AccessService> = Arc::new(Authorizer::new(
            Arc::new(FileGuestList::new(dir.path().join("guestlist.json"))),
            Entitlements::default(),
        ));
        let settings = MailSettings::default();
        let mail = Arc::new(Mailer::new(
            Arc::new(OutboxProvider::new(
                dir.path().join("outbox"),
                &settings.from,
            )),
            MailTemplate::from_settings(&settings).unwrap(),
        ));
        let key = ContactKey::from_bytes([3; 32]);
        let reconciler = Reconciler::without_api(
            store.clone(),
            store.clone(),
            selector,
            CategoryRules::default(),
            PrivacyRules::default(),
        )
        .with_vault(Vault {
            store: store.clone(),
            sealer: Sealer::new(key.clone(), None),
        })
        .with_queue(store.clone())
        .with_access(access)
        .with_mail(mail)
        .with_self_service_every(Duration::from_secs(page.per_address_minutes * 60))
        .with_options(ReconcileOptions {
            step_backoff: Duration::ZERO,
            ..ReconcileOptions::default()
        });
        let queue: Arc<dyn IntakeQueue> = store.clone();
        let trigger: Arc<dyn DrainTrigger> = Arc::new(LocalTrigger::default());
        let receiver = Receiver::new(
            None,
            Some(Sealer::new(key, None)),
            queue,
            trigger,
            WebhookMapping::default(),
        )
        .with_page(page);
        let world = Self {
            sandbox,
            dir,
            store,
            reconciler,
            api: Api::new(None).with_receiver(Arc::new(receiver)),
        };
        let summary = world
            .reconciler
            .import(ImportRequest {
                event: SLUG.into(),
                attendees: world.sandbox.attendees_export(EVENT).unwrap(),
                orders: Some(world.sandbox.orders_export(EVENT).unwrap()),
            })
            .await
            .unwrap();
        assert_eq!(summary.mailed, 20, "{:?}", summary.errors);
        world
    }

    fn buyers(&self) -> Vec<AttendeeTruth> {
        self.sandbox.attendees(EVENT)
    }

    /// The invitation resends in the outbox: `EVENT-ATTENDEE-resend-N.eml`.
    fn resends(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.dir.path().join("outbox"))
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| name.contains("-resend-"))
            .collect();
        names.sort();
        names
    }

    async fn queued(&self) -> Vec<String> {
        self.store
            .pull(100)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.body)
            .collect()
    }

    async fn drain(&self) -> Option<RunSummary> {
        self.reconciler.drain().await
    }

    /// A form as the browser posts it, with the CSRF cookie from a GET.
    async fn post(&self, email: &str, client: &str) -> HttpResponse {
        let (cookie, token) = self.csrf(client).await;
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("csrf", &token)
            .append_pair("lang", "en")
            .append_pair("email", email)
            .append_pair("website", "")
            .finish();
        self.api
            .handle(form_request(body.into_bytes(), Some(&cookie), client))
            .await
    }

    /// A fresh page's cookie and the token its form carries.
    async fn csrf(&self, client: &str) -> (String, String) {
        let page = self.api.handle(get_request("/invitation", client)).await;
        let cookie = page
            .headers()
            .get("set-cookie")
            .unwrap()
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let html = String::from_utf8_lossy(page.body()).into_owned();
        let token = html
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_owned();
        (cookie, token)
    }
}

fn get_request(path: &str, client: &str) -> HttpRequest {
    let mut request = http::Request::builder()
        .method("GET")
        .uri(path)
        .header("accept-language", "zh-TW,zh;q=0.9,en;q=0.5")
        .body(Bytes::new())
        .unwrap();
    request
        .extensions_mut()
        .insert(ClientAddr(client.to_owned()));
    request
}

fn form_request(body: Vec<u8>, cookie: Option<&str>, client: &str) -> HttpRequest {
    let mut builder = http::Request::builder()
        .method("POST")
        .uri("/invitation")
        .header("host", "tickets.example.org")
        .header("origin", "https://tickets.example.org")
        .header("content-type", "application/x-www-form-urlencoded");
    if let Some(cookie) = cookie {
        builder = builder.header("cookie", cookie);
    }
    let mut request = builder.body(Bytes::from(body)).unwrap();
    request
        .extensions_mut()
        .insert(ClientAddr(client.to_owned()));
    request
}

fn text(response: &HttpResponse) -> String {
    String::from_utf8_lossy(response.body()).into_owned()
}

#[tokio::test]
async fn the_form_is_bilingual_accessible_and_locked_down() {
    let world = World::new(PageSettings {
        brand: "PyCon Taiwan 2026".into(),
        ..PageSettings::default()
    })
    .await;
    let zh = world
        .api
        .handle(get_request("/invitation", "198.51.100.1"))
        .await;
    assert_eq!(zh.status(), 200);
    let html = text(&zh);
    assert!(html.contains("<html lang=\"zh-Hant-TW\">"));
    assert!(html.contains("找回參加資訊"));
    assert!(html.contains("<label for=\"email\">"));
    assert!(html.contains("id=\"email\" name=\"email\" type=\"email\""));
    assert!(html.contains("name=\"viewport\""));
    assert!(html.contains("PyCon Taiwan 2026"));
    assert!(!html.contains("<script") && !html.contains("http://") && !html.contains("https://"));
    let headers = zh.headers();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.starts_with("default-src 'none'; style-src 'sha256-"),
        "{csp}"
    );
    assert!(csp.contains("form-action 'self'") && csp.contains("frame-ancestors 'none'"));
    let cookie = headers["set-cookie"].to_str().unwrap();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    assert_eq!(headers["cache-control"], "no-store");

    let en = world
        .api
        .handle(get_request("/invitation?lang=en", "198.51.100.1"))
        .await;
    let html = text(&en);
    assert!(html.contains("<html lang=\"en\">") && html.contains("Find my invitation"));
    // The switch back to the other language.
    assert!(html.contains("href=\"?lang=zh-TW\""));
}

#[tokio::test]
async fn the_answer_is_the_same_bytes_for_a_buyer_a_stranger_and_a_refunded_buyer() {
    let world = World::new(PageSettings::default()).await;
    let buyers = world.buyers();
    let refunded = &buyers[1];
    assert!(world.sandbox.refund(EVENT, refunded.id));
    let summary = world
        .reconciler
        .import(ImportRequest {
            event: SLUG.into(),
            attendees: world.sandbox.attendees_export(EVENT).unwrap(),
            orders: Some(world.sandbox.orders_export(EVENT).unwrap()),
        })
        .await
        .unwrap();
    assert_eq!(summary.refunded, 1);

    let holder = world.post(&buyers[0].email, "203.0.113.1").await;
    let stranger = world.post("nobody@example.net", "203.0.113.2").await;
    let gone = world.post(&refunded.email, "203.0.113.3").await;
    assert_eq!(holder.status(), 200);
    for other in [&stranger, &gone] {
        assert_eq!(other.status(), holder.status());
        assert_eq!(other.body(), holder.body(), "the answer tells who bought");
        assert_eq!(
            other.headers().get("set-cookie"),
            holder.headers().get("set-cookie")
        );
    }
    assert!(text(&holder).contains("Check your inbox"));
    // The same work for each: one message on the queue, hashes only.
    let queued = world.queued().await;
    assert_eq!(queued.len(), 3);
    for body in &queued {
        for buyer in &buyers {
            assert!(!body.contains(&buyer.email));
        }
        assert!(!body.contains("nobody@example.net"));
    }

    let run = world.drain().await.unwrap();
    assert_eq!(
        (run.self_service_requests, run.self_service_resends),
        (3, 1)
    );
    let resends = world.resends();
    assert_eq!(
        resends,
        vec![format!("{EVENT}-{}-resend-1.eml", buyers[0].id)]
    );
    let admissions = world.store.admissions(EVENT).await.unwrap();
    assert!(admissions[&buyers[0].id].last_self_service.is_some());
}

#[tokio::test]
async fn an_address_is_matched_as_typed_or_trimmed_and_lower_cased_once_per_15_minutes() {
    let world = World::new(PageSettings::default()).await;
    let buyer = &world.buyers()[2];
    let typed = format!("  {}  ", buyer.email.to_uppercase());
    world.post(&typed, "203.0.113.9").await;
    world.drain().await.unwrap();
    assert_eq!(world.resends().len(), 1);
    // Again at once, from another client: the same page, no second mail (the receiver's
    // memory stops it here; the ledger would too).
    let again = world.post(&buyer.email, "203.0.113.10").await;
    assert_eq!(again.status(), 200);
    assert!(world.drain().await.is_none(), "nothing was queued");
    assert_eq!(world.resends().len(), 1);
}

#[tokio::test]
async fn the_poller_keeps_the_per_address_limit_even_when_the_receiver_forgets() {
    let world = World::new(PageSettings::default()).await;
    let buyer = &world.buyers()[3];
    world.post(&buyer.email, "203.0.113.20").await;
    world.drain().await.unwrap();
    // A second receiver instance (a fresh Lambda) has no memory of the first request.
    let fresh = World {
        api: Api::new(None).with_receiver(Arc::new(
            Receiver::new(
                None,
                None,
                world.store.clone() as Arc<dyn IntakeQueue>,
                Arc::new(LocalTrigger::default()) as Arc<dyn DrainTrigger>,
                WebhookMapping::default(),
            )
            .with_page(PageSettings::default()),
        )),
        ..world
    };
    fresh.post(&buyer.email, "203.0.113.21").await;
    let run = fresh.drain().await.unwrap();
    assert_eq!(
        (run.self_service_requests, run.self_service_resends),
        (1, 0)
    );
    assert_eq!(fresh.resends().len(), 1);
}

#[tokio::test]
async fn a_client_is_limited_per_hour_with_the_same_page_for_everyone() {
    let world = World::new(PageSettings {
        per_client_per_hour: 3,
        ..PageSettings::default()
    })
    .await;
    for n in 0..3 {
        let answer = world
            .post(&format!("someone{n}@example.net"), "192.0.2.7")
            .await;
        assert_eq!(answer.status(), 200);
    }
    let limited = world.post("someone9@example.net", "192.0.2.7").await;
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["retry-after"], "3600");
    let other_client = world.post("someone9@example.net", "192.0.2.8").await;
    assert_eq!(other_client.status(), 200);
}

#[tokio::test]
async fn a_forged_or_cross_site_form_and_a_bot_get_nowhere() {
    let world = World::new(PageSettings::default()).await;
    let buyer = &world.buyers()[4];
    // No cookie: the token cannot be checked.
    let (_, token) = world.csrf("192.0.2.50").await;
    let body = format!("csrf={token}&email={}", buyer.email);
    let forged = world
        .api
        .handle(form_request(body.clone().into_bytes(), None, "192.0.2.50"))
        .await;
    assert_eq!(forged.status(), 403);
    assert!(text(&forged).contains("expired") || text(&forged).contains("過期"));
    // Another site's page posting here.
    let (cookie, token) = world.csrf("192.0.2.51").await;
    let mut cross = form_request(
        format!("csrf={token}&email={}", buyer.email).into_bytes(),
        Some(&cookie),
        "192.0.2.51",
    );
    cross
        .headers_mut()
        .insert("origin", "https://evil.example".parse().unwrap());
    assert_eq!(world.api.handle(cross).await.status(), 403);
    // The honeypot: the same answer, nothing queued.
    let (cookie, token) = world.csrf("192.0.2.52").await;
    let bot = world
        .api
        .handle(form_request(
            format!(
                "csrf={token}&email={}&website=https%3A%2F%2Fspam",
                buyer.email
            )
            .into_bytes(),
            Some(&cookie),
            "192.0.2.52",
        ))
        .await;
    assert_eq!(bot.status(), 200);
    assert!(text(&bot).contains("請查看您的信箱") || text(&bot).contains("Check your inbox"));
    assert!(world.queued().await.is_empty());
}

#[tokio::test]
async fn malformed_and_oversized_bodies_are_4xx() {
    let world = World::new(PageSettings::default()).await;
    let (cookie, token) = world.csrf("192.0.2.60").await;
    let mut json = form_request(
        br#"{"email":"a@b.c"}"#.to_vec(),
        Some(&cookie),
        "192.0.2.60",
    );
    json.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    assert_eq!(world.api.handle(json).await.status(), 400);
    let not_an_address = world
        .api
        .handle(form_request(
            format!("csrf={token}&email=not-an-address").into_bytes(),
            Some(&cookie),
            "192.0.2.60",
        ))
        .await;
    assert_eq!(not_an_address.status(), 400);
    assert!(text(&not_an_address).contains("name=\"email\""));
    let huge = form_request(vec![b'a'; 1024 * 1024], Some(&cookie), "192.0.2.60");
    assert_eq!(world.api.handle(huge).await.status(), 413);
    assert!(world.queued().await.is_empty());
}

#[tokio::test]
async fn the_first_run_of_a_day_tells_the_channel_yesterdays_count() {
    let store = Arc::new(SqliteStore::in_memory().unwrap());
    let reconciler = Reconciler::without_api(
        store.clone(),
        store.clone(),
        EventSelector::default(),
        CategoryRules::default(),
        PrivacyRules::default(),
    );
    let yesterday = chrono::Utc::now() - chrono::Duration::days(1);
    for (requests, resends) in [(3, 2), (1, 1)] {
        store
            .record_run(&RunSummary {
                run_id: format!("yesterday-{requests}"),
                started_at: yesterday,
                self_service_requests: requests,
                self_service_resends: resends,
                ..RunSummary::default()
            })
            .await
            .unwrap();
    }
    let run = reconciler.run().await;
    let digest = run.digest.expect("a daily count");
    assert!(digest.contains(": 3 (4 requests)"), "{digest}");
    assert!(!digest.contains('@'));
    // Once a day: the next run says nothing.
    assert!(reconciler.run().await.digest.is_none());
}
