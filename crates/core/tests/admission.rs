//! The whole admission flow against fakes of every upstream in its wire format: the KKTIX
//! sandbox, Gather Town, Mailgun and a Discord webhook (wiremock). Nothing sent twice,
//! nothing lost, the right guest revoked.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use autopilot_core::access::{AccessService, Authorizer, Entitlements, GatherGuestList};
use autopilot_core::mail::{MailService, MailSettings, MailTemplate, Mailer, MailgunProvider};
use autopilot_core::notify::{DiscordWebhook, Notifier};
use autopilot_core::pii::Sensitive;
use autopilot_core::reconcile::{ReconcileOptions, Reconciler, RunOutcome};
use autopilot_core::store::{Ledger, SqliteStore};
use autopilot_core::upstream::HttpOptions;
use autopilot_sandbox::{AttendeeTruth, RunningSandbox, Sandbox};
use autopilot_test_support::discord::DiscordChannel;
use autopilot_test_support::mailgun::{EventsMode, MailgunFake, SendFault};
use autopilot_test_support::sandbox;
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const SPACE: &str = "oxrhEtb3sV7VutbQ\\PyConTW";
const DOMAIN: &str = "mg.example.org";
const WEBHOOK: &str = autopilot_test_support::discord::WEBHOOK_PATH;

fn fast() -> HttpOptions {
    autopilot_test_support::fast::http(500, 2)
}

struct World {
    sandbox: Sandbox,
    running: RunningSandbox,
    store: Arc<SqliteStore>,
    gather: MockServer,
    mailgun: Arc<MailgunFake>,
    _mailgun_server: MockServer,
    _discord: MockServer,
    channel: Arc<DiscordChannel>,
    access: Arc<dyn AccessService>,
    mail: Arc<dyn MailService>,
    notifier: Arc<dyn Notifier>,
}

impl World {
    async fn new() -> Self {
        let (sandbox, running) = sandbox::serve(sandbox::still(11)).await;
        let gather = MockServer::start().await;
        let mailgun_server = MockServer::start().await;
        let mailgun = MailgunFake::new(DOMAIN);
        mailgun.mount(&mailgun_server).await;
        let discord = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/api/setEmailGuestlist"))
            .respond_with(ResponseTemplate::new(200))
            .mount(&gather)
            .await;
        let channel = DiscordChannel::mount(&discord).await;
        let access: Arc<dyn AccessService> = Arc::new(Authorizer::new(
            Arc::new(
                GatherGuestList::new(
                    &gather.uri(),
                    Sensitive::new("gather-key".into()),
                    SPACE,
                    fast(),
                )
                .unwrap(),
            ),
            Entitlements::default(),
        ));
        let settings = MailSettings::default();
        let mail: Arc<dyn MailService> = Arc::new(Mailer::new(
            Arc::new(
                MailgunProvider::new(
                    &mailgun_server.uri(),
                    Sensitive::new("mailgun-key".into()),
                    DOMAIN,
                    &settings.from,
                    Vec::new(),
                    fast(),
                )
                .unwrap(),
            ),
            MailTemplate::from_settings(&settings).unwrap(),
        ));
        let notifier: Arc<dyn Notifier> =
            Arc::new(DiscordWebhook::new(&format!("{}{WEBHOOK}", discord.uri()), fast()).unwrap());
        Self {
            sandbox,
            running,
            store: Arc::new(SqliteStore::in_memory().unwrap()),
            gather,
            mailgun,
            _mailgun_server: mailgun_server,
            _discord: discord,
            channel,
            access,
            mail,
            notifier,
        }
    }

    async fn mailgun_accepts(&self) {
        self.mailgun.set_default(SendFault::None);
    }

    fn reconciler(&self, token: &str, grant: bool, mail: bool) -> Reconciler {
        let mut reconciler = sandbox::reconciler(&self.running.base_url, token, &self.store)
            .with_notifier(self.notifier.clone())
            .with_options(ReconcileOptions {
                step_backoff: Duration::ZERO,
                ..ReconcileOptions::default()
            });
        if grant {
            reconciler = reconciler.with_access(self.access.clone());
        }
        if mail {
            reconciler = reconciler.with_mail(self.mail.clone());
        }
        reconciler
    }

    fn full(&self) -> Reconciler {
        self.reconciler(&self.sandbox.access_token(), true, true)
    }

    /// Paid buyers of the events the default selector keeps.
    fn paid(&self) -> Vec<AttendeeTruth> {
        self.sandbox
            .events()
            .iter()
            .filter(|e| !e.ended && e.name.to_lowercase().contains("registration"))
            .flat_map(|e| self.sandbox.attendees(e.id))
            .filter(|a| a.paid && !a.refunded)
            .collect()
    }

    /// How many Mailgun messages each address was sent: what Mailgun queued, whatever it
    /// answered.
    async fn mails_per_address(&self) -> HashMap<String, usize> {
        self.mailgun.queued_per_address()
    }

    async fn posts(server: &MockServer, path_is: &str) -> Vec<Request> {
        server
            .received_requests()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.method.as_str() == "POST" && r.url.path() == path_is)
            .collect()
    }

    async fn discord_messages(&self) -> Vec<String> {
        self.channel.messages()
    }
}

#[tokio::test]
async fn new_buyers_are_granted_mailed_and_announced_exactly_once() {
    let world = World::new().await;
    world.mailgun_accepts().await;
    let paid = world.paid();

    let first = world.full().run().await;
    assert_eq!(first.outcome, RunOutcome::Ok, "{:?}", first.errors);
    assert_eq!(first.new_paid, paid.len() as u64);
    assert_eq!(first.granted, first.new_paid);
    assert_eq!(first.mailed, first.new_paid);

    // Gather: one setEmailGuestlist per event batch, overwrite false, every buyer listed.
    let grants = World::posts(&world.gather, "/api/setEmailGuestlist").await;
    assert_eq!(grants.len(), 3, "one call per event's batch");
    let mut listed = Vec::new();
    for grant in &grants {
        let body: Value = serde_json::from_slice(&grant.body).unwrap();
        assert_eq!(body["overwrite"], false);
        assert_eq!(body["spaceId"], SPACE);
        for (email, entry) in body["guestlist"].as_object().unwrap() {
            assert_eq!(entry["role"], "guest");
            listed.push(email.clone());
        }
    }
    for buyer in &paid {
        assert!(
            listed.iter().any(|e| e.eq_ignore_ascii_case(&buyer.email)),
            "on the guest list"
        );
    }

    // Mailgun: every buyer exactly once.
    let mails = world.mails_per_address().await;
    assert_eq!(mails.len(), paid.len());
    assert!(mails.values().all(|count| *count == 1));

    // Discord: one message, counts only.
    let messages = world.discord_messages().await;
    assert_eq!(messages.len(), 1);
    assert!(messages[0].contains(&format!("{} new ticket(s) sold", paid.len())));
    for buyer in &paid {
        assert!(!messages[0].contains(&buyer.email) && !messages[0].contains(&buyer.name));
    }

    let second = world.full().run().await;
    assert_eq!((second.granted, second.mailed, second.new_paid), (0, 0, 0));
    assert_eq!(
        second.fetched, second.pending,
        "only unpaid buyers are looked at again"
    );
    assert_eq!(
        World::posts(&world.gather, "/api/setEmailGuestlist")
            .await
            .len(),
        3
    );
    assert_eq!(
        world.mails_per_address().await,
        mails,
        "nothing mailed twice"
    );
    assert_eq!(
        world.discord_messages().await.len(),
        1,
        "a quiet run says nothing"
    );
}

#[tokio::test]
async fn a_crash_between_granted_and_mailed_leads_to_exactly_one_mail() {
    let world = World::new().await;
    world.mailgun_accepts().await;
    // The first run dies after recording the grants (modelled by a run without a mail stage:
    // the ledger ends exactly where a crash before mailing leaves it).
    let crashed = world
        .reconciler(&world.sandbox.access_token(), true, false)
        .run()
        .await;
    assert!(crashed.granted > 0);
    assert!(world.mails_per_address().await.is_empty());

    let next = world.full().run().await;
    assert_eq!(next.granted, 0, "access is not granted again");
    assert_eq!(next.mailed, crashed.granted);
    let mails = world.mails_per_address().await;
    assert_eq!(mails.len(), world.paid().len());
    assert!(
        mails.values().all(|count| *count == 1),
        "exactly one mail each"
    );
    assert_eq!(
        World::posts(&world.gather, "/api/setEmailGuestlist")
            .await
            .len(),
        3
    );

    world.full().run().await;
    assert_eq!(
        world.mails_per_address().await,
        mails,
        "and no more afterwards"
    );
}

/// Every paid buyer was queued exactly once by Mailgun.
async fn assert_each_mailed_once(world: &World) {
    let mails = world.mails_per_address().await;
    for buyer in world.paid() {
        assert_eq!(
            mails.get(&buyer.email.to_lowercase()).copied(),
            Some(1),
            "attendee {} mailed exactly once",
            buyer.id
        );
    }
    assert_eq!(mails.len(), world.paid().len());
}

/// An outage of `outage_runs` runs (Mailgun answers 503 and queues nothing): each run sends
/// one probe and nothing else; the first run after recovery mails everyone pending.
async fn outage_then_recovery(outage_runs: usize) {
    let world = World::new().await;
    world.mailgun.set_default(SendFault::Unavailable);
    for run_no in 1..=outage_runs {
        let run = world.full().run().await;
        assert_eq!(run.outcome, RunOutcome::Partial, "{:?}", run.errors);
        assert_eq!(run.mailed, 0);
        assert!(run.failing.contains("mail provider"), "{:?}", run.failing);
        assert_eq!(
            world.mailgun.sends().len(),
            run_no,
            "one probe per run while Mailgun is down"
        );
    }
    assert!(world.mails_per_address().await.is_empty());
    assert_eq!(
        World::posts(&world.gather, "/api/setEmailGuestlist")
            .await
            .len(),
        3,
        "granted once, in the first run: the guest list was healthy"
    );

    world.mailgun.set_default(SendFault::None);
    let sends_before = world.mailgun.sends().len();
    let recovered = world.full().run().await;
    assert_eq!(recovered.outcome, RunOutcome::Ok, "{:?}", recovered.errors);
    assert_eq!(
        recovered.mailed,
        world.paid().len() as u64,
        "everyone pending, in the first run after recovery"
    );
    assert_each_mailed_once(&world).await;
    // The recovery figure of docs/RELIABILITY.md.
    println!(
        "outage of {outage_runs} run(s): {outage_runs} probe request(s), 0 mailed; first run after recovery: {} of {} pending mailed in {} Mailgun request(s), {} ms",
        recovered.mailed,
        world.paid().len(),
        world.mailgun.sends().len() - sends_before,
        recovered.duration_ms
    );
    let quiet = world.full().run().await;
    assert_eq!(quiet.mailed, 0);
    assert_each_mailed_once(&world).await;
}

#[tokio::test]
async fn after_a_one_run_outage_everyone_pending_is_mailed_in_the_next_run() {
    outage_then_recovery(1).await;
}

#[tokio::test]
async fn after_a_twelve_run_outage_everyone_pending_is_mailed_in_the_next_run() {
    outage_then_recovery(12).await;
}

#[tokio::test]
async fn a_500_for_a_batch_mailgun_queued_is_settled_from_its_events_not_resent() {
    let world = World::new().await;
    // The probe goes through; the next batch is queued but answered 500.
    world
        .mailgun
        .script([SendFault::None, SendFault::QueuedButFailed]);
    let first = world.full().run().await;
    assert_eq!(first.outcome, RunOutcome::Partial);
    assert!(
        first
            .errors
            .iter()
            .any(|e| e.contains("never sent again on a guess")),
        "{:?}",
        first.errors
    );
    let uncertain = world.paid().len() as u64 - first.mailed;
    assert!(uncertain > 1, "a whole batch was uncertain");

    let second = world.full().run().await;
    assert_eq!(second.outcome, RunOutcome::Ok, "{:?}", second.errors);
    assert_eq!(
        second.mailed, uncertain,
        "settled as mailed from the events"
    );
    assert!(world.mailgun.events_requests() > 0);
    assert_each_mailed_once(&world).await;
    // The ledger says how: settled, not sent again.
    let buyer = &world.paid()[world.paid().len() - 1];
    let admissions = world.store.admissions(buyer.event_id).await.unwrap();
    assert!(admissions[&buyer.id].mailed);
}

#[tokio::test]
async fn a_timeout_after_mailgun_queued_is_settled_not_resent() {
    let world = World::new().await;
    world.mailgun.script([
        SendFault::None,
        SendFault::QueuedButSlow(Duration::from_secs(2)),
    ]);
    let first = world.full().run().await;
    assert_eq!(first.outcome, RunOutcome::Partial);
    let second = world.full().run().await;
    assert_eq!(second.outcome, RunOutcome::Ok, "{:?}", second.errors);
    assert_each_mailed_once(&world).await;
}

#[tokio::test]
async fn an_unqueued_500_is_resent_once_the_events_show_nothing_accepted() {
    let world = World::new().await;
    world
        .mailgun
        .script([SendFault::None, SendFault::Unavailable]);
    let first = world.full().run().await;
    assert_eq!(first.outcome, RunOutcome::Partial);
    assert!(world.mails_per_address().await.len() < world.paid().len());
    let second = world.full().run().await;
    assert_eq!(second.outcome, RunOutcome::Ok, "{:?}", second.errors);
    assert_each_mailed_once(&world).await;
}

#[tokio::test]
async fn while_the_events_api_is_down_an_uncertain_batch_waits_and_is_never_resent() {
    let world = World::new().await;
    world
        .mailgun
        .script([SendFault::None, SendFault::QueuedButFailed]);
    world.full().run().await;
    let uncertain = world.mailgun.sends()[1].to.clone();
    assert!(uncertain.len() > 1);
    world.mailgun.set_events(EventsMode::Down);
    for _ in 0..3 {
        let waiting = world.full().run().await;
        assert_eq!(waiting.outcome, RunOutcome::Partial);
        assert!(
            waiting
                .errors
                .iter()
                .any(|e| e.contains("wait to be settled") && e.contains("events cannot be read")),
            "{:?}",
            waiting.errors
        );
    }
    world.mailgun.set_events(EventsMode::Malformed);
    world.full().run().await;
    // The other events' buyers went out meanwhile; the uncertain ones were never sent again.
    let mails = world.mails_per_address().await;
    assert_eq!(mails.len(), world.paid().len());
    assert!(mails.values().all(|c| *c == 1), "nothing sent on a guess");
    let later: usize = world.mailgun.sends()[2..]
        .iter()
        .map(|s| s.to.iter().filter(|to| uncertain.contains(to)).count())
        .sum();
    assert_eq!(later, 0);

    world.mailgun.set_events(EventsMode::Up);
    let settled = world.full().run().await;
    assert_eq!(settled.outcome, RunOutcome::Ok, "{:?}", settled.errors);
    assert_eq!(settled.mailed, uncertain.len() as u64);
    assert_each_mailed_once(&world).await;
}

#[tokio::test]
async fn the_events_pages_are_followed_to_the_end() {
    let world = World::new().await;
    world.mailgun.set_page_size(2);
    world
        .mailgun
        .script([SendFault::None, SendFault::QueuedButFailed]);
    world.full().run().await;
    let uncertain = world.mailgun.sends()[1].to.len() as u64;
    assert!(uncertain > 4, "more than two pages");
    let second = world.full().run().await;
    assert_eq!(second.outcome, RunOutcome::Ok, "{:?}", second.errors);
    assert!(second.mailed >= uncertain, "{:?}", second.errors);
    assert!(
        world.mailgun.events_requests() > uncertain / 2,
        "{} pages for {uncertain}",
        world.mailgun.events_requests()
    );
    assert_each_mailed_once(&world).await;
}

#[tokio::test]
async fn a_refused_address_fails_alone_and_is_reported_once_by_key() {
    let world = World::new().await;
    let paid = world.paid();
    let bad = &paid[paid.len() / 2];
    world.mailgun.refuse(&bad.email);
    let first = world.full().run().await;
    assert_eq!(first.mailed, paid.len() as u64 - 1, "{:?}", first.errors);
    let key = format!("{}/{}", bad.event_id, bad.id);
    let alerts: Vec<&String> = first
        .alerts
        .iter()
        .filter(|a| a.contains("refused"))
        .collect();
    assert_eq!(alerts.len(), 1, "{:?}", first.alerts);
    assert!(alerts[0].contains(&key), "{}", alerts[0]);
    assert!(!alerts[0].contains(&bad.email));
    assert_eq!(
        first.outcome,
        RunOutcome::Ok,
        "a bad address is the buyer's, not an outage: {:?}",
        first.errors
    );
    let mails = world.mails_per_address().await;
    assert_eq!(mails.len(), paid.len() - 1);
    assert!(mails.values().all(|c| *c == 1));
    assert!(!mails.contains_key(&bad.email.to_lowercase()));

    // Tried again (no backoff in this world), refused again, not reported again.
    let second = world.full().run().await;
    assert!(
        !second.alerts.iter().any(|a| a.contains("refused")),
        "{:?}",
        second.alerts
    );
    assert_eq!(world.mails_per_address().await, mails);
}

#[tokio::test]
async fn a_refund_revokes_only_that_guest_and_keeps_hand_added_ones() {
    let world = World::new().await;
    world.mailgun_accepts().await;
    world.full().run().await;

    let paid = world.paid();
    let refunded = &paid[0];
    let other = &paid[1];
    // Gather's list as it stands: two buyers this system added, one guest added by hand.
    let entry = |buyer: &AttendeeTruth| json!({"name": buyer.name, "role": "guest", "affiliation": buyer.ticket_name});
    Mock::given(method("GET"))
        .and(path("/api/getEmailGuestlist"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            refunded.email.to_lowercase(): entry(refunded),
            other.email.to_lowercase(): entry(other),
            "volunteer@example.org": {"name": "Volunteer", "role": "guest", "affiliation": "Volunteer 志工"},
        })))
        .mount(&world.gather)
        .await;
    assert!(world.sandbox.refund(refunded.event_id, refunded.id));

    let run = world.full().run().await;
    assert_eq!(run.refunded, 1);
    assert_eq!(run.revoked, 1, "{:?}", run.errors);
    let rewrites: Vec<Value> = World::posts(&world.gather, "/api/setEmailGuestlist")
        .await
        .iter()
        .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap())
        .filter(|body| body["overwrite"] == true)
        .collect();
    assert_eq!(rewrites.len(), 1);
    let kept = rewrites[0]["guestlist"].as_object().unwrap();
    assert!(
        !kept.contains_key(&refunded.email.to_lowercase()),
        "the refunded buyer is gone"
    );
    assert!(
        kept.contains_key(&other.email.to_lowercase()),
        "another buyer stays"
    );
    assert_eq!(
        kept["volunteer@example.org"]["affiliation"], "Volunteer 志工",
        "hand-added guest untouched"
    );

    let again = world.full().run().await;
    assert_eq!(again.revoked, 0, "revoked once");
    let admissions = world.store.admissions(refunded.event_id).await.unwrap();
    assert!(admissions[&refunded.id].revoked);
}

#[tokio::test]
async fn a_failing_kktix_raises_one_alert_and_then_a_recovery() {
    let world = World::new().await;
    world.mailgun_accepts().await;
    let broken = world.reconciler("wrong-token", true, true);
    assert_eq!(broken.run().await.outcome, RunOutcome::Failed);
    assert_eq!(broken.run().await.outcome, RunOutcome::Failed);
    let messages = world.discord_messages().await;
    assert_eq!(
        messages.len(),
        1,
        "one alert, not one per failed run: {messages:?}"
    );
    assert!(messages[0].contains("Autopilot needs attention") && messages[0].contains("KKTIX"));

    let recovered = world.full().run().await;
    assert_eq!(recovered.notice.as_deref(), Some("sales+recovery"));
    let messages = world.discord_messages().await;
    assert_eq!(messages.len(), 2, "sales and recovery in one message");
    assert!(messages[1].contains("Recovered") && messages[1].contains("new ticket(s) sold"));
    assert!(!messages.concat().contains("secret-token"));
}

#[tokio::test]
async fn an_explicit_resend_is_the_only_second_mail() {
    let world = World::new().await;
    world.mailgun_accepts().await;
    world.full().run().await;
    let before = world.mails_per_address().await;
    let buyer = world.paid()[2].clone();

    let reconciler = world.full();
    let key = reconciler.find_attendee(&buyer.order_no.to_string()).await;
    // An order may hold several tickets; the attendee key always works.
    let key = match key {
        Ok(key) => key,
        Err(_) => reconciler
            .find_attendee(&format!("{}/{}", buyer.event_id, buyer.id))
            .await
            .unwrap(),
    };
    assert_eq!((key.event_id, key.attendee_id), (buyer.event_id, buyer.id));
    let report = reconciler.resend(key).await.unwrap();
    assert_eq!(report.provider, "mailgun");

    let after = world.mails_per_address().await;
    let address = after
        .keys()
        .find(|a| a.eq_ignore_ascii_case(&buyer.email))
        .unwrap()
        .clone();
    assert_eq!(after[&address], 2, "resent once");
    assert_eq!(
        after.values().sum::<usize>(),
        before.values().sum::<usize>() + 1
    );

    // A run afterwards sends nothing more; a refunded attendee cannot be resent.
    world.full().run().await;
    assert_eq!(world.mails_per_address().await, after);
    assert!(world.sandbox.refund(buyer.event_id, buyer.id));
    world.full().run().await;
    let refused = world.full().resend(key).await.unwrap_err();
    assert!(refused.to_string().contains("refunded"), "{refused}");
    assert!(world
        .full()
        .find_attendee("not-a-number")
        .await
        .unwrap_err()
        .to_string()
        .contains("EVENT_ID/ATTENDEE_ID"));
}

#[tokio::test]
async fn a_deleted_webhook_is_reported_once_and_left_alone_until_replaced() {
    let world = World::new().await;
    world.mailgun_accepts().await;
    let deleted = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(404)
                .set_body_json(serde_json::json!({"message": "Unknown Webhook", "code": 10015})),
        )
        .mount(&deleted)
        .await;
    let gone: Arc<dyn Notifier> =
        Arc::new(DiscordWebhook::new(&format!("{}{WEBHOOK}", deleted.uri()), fast()).unwrap());
    let broken = || {
        world
            .reconciler("wrong-token", true, true)
            .with_notifier(gone.clone())
    };
    let first = broken().run().await;
    let said: Vec<&String> = first
        .warnings
        .iter()
        .filter(|w| w.contains("deleted"))
        .collect();
    assert_eq!(said.len(), 1, "{:?}", first.warnings);
    assert!(said[0].contains("DISCORD_WEBHOOK_URL"), "{}", said[0]);
    assert!(!said[0].contains("secret-token") && !said[0].contains(&deleted.uri()));
    assert!(first.notice_webhook_gone.is_some());
    // The next runs still want to alert, but neither call the deleted webhook nor repeat
    // the warning.
    for _ in 0..2 {
        let again = broken().run().await;
        assert!(
            again.warnings.iter().all(|w| !w.contains("deleted")),
            "{:?}",
            again.warnings
        );
        assert_eq!(again.notice_webhook_gone, first.notice_webhook_gone);
    }
    assert_eq!(
        World::posts(&deleted, WEBHOOK).await.len(),
        1,
        "one 404, never retried"
    );
    // A new webhook (another URL) is used at once: the alert arrives.
    let replaced = world.reconciler("wrong-token", true, true).run().await;
    assert_eq!(replaced.notice.as_deref(), Some("alert"), "{replaced:?}");
    assert_eq!(replaced.notice_webhook_gone, None);
    assert_eq!(world.discord_messages().await.len(), 1);
}
