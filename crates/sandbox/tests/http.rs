//! End-to-end tests of the sandbox over real HTTP.

use autopilot_sandbox::{Corruption, RequestStats, RunningSandbox, Sandbox, SandboxConfig};
use serde_json::Value;

const INDIVIDUAL: u64 = 80_101;
const CORPORATE: u64 = 80_102;

async fn serve(config: SandboxConfig) -> (Sandbox, RunningSandbox, reqwest::Client) {
    let sandbox = Sandbox::new(config);
    let running = sandbox
        .serve("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("serve");
    (sandbox, running, reqwest::Client::new())
}

async fn get(client: &reqwest::Client, url: String, token: &str) -> (u16, String) {
    let resp = client
        .get(url)
        .header("Authorization", format!("bearer {token}"))
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.text().await.expect("body"))
}

async fn get_json(client: &reqwest::Client, url: String, token: &str) -> Value {
    let (status, body) = get(client, url, token).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("json")
}

fn book_ids(book: &Value) -> Vec<u64> {
    book["signin_status"]
        .as_array()
        .expect("signin_status")
        .iter()
        .map(|pair| {
            assert_eq!(pair[1], Value::Bool(false));
            pair[0].as_u64().expect("id")
        })
        .collect()
}

async fn book(client: &reqwest::Client, base: &str, event: u64) -> Value {
    let books = get_json(
        client,
        format!("{base}/api/v2/hosting_events/{event}/attendance_books"),
        "sandbox-token",
    )
    .await;
    let books = books.as_array().expect("array");
    assert_eq!(books.len(), 1);
    assert_eq!(books[0]["name"], "Default");
    assert_eq!(books[0]["event_id"].as_u64(), Some(event));
    let book_id = books[0]["id"].as_u64().expect("book id");
    let detail = get_json(
        client,
        format!("{base}/api/v2/hosting_events/{event}/attendance_books/{book_id}"),
        "sandbox-token",
    )
    .await;
    assert_eq!(detail["id"].as_u64(), Some(book_id));
    detail
}

fn attendee_url(base: &str, event: u64, id: u64) -> String {
    format!("{base}/api/v2/hosting_events/{event}/attendees/{id}")
}

#[tokio::test]
async fn unauthorized_without_or_with_wrong_token() {
    let (sandbox, running, client) = serve(SandboxConfig::demo(1)).await;
    let url = format!("{}/api/v2/hosting_events", running.base_url);
    let resp = client.get(&url).send().await.expect("request");
    assert_eq!(resp.status().as_u16(), 401);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body, serde_json::json!({"error": "unauthorized"}));
    let (status, _) = get(&client, url.clone(), "nope").await;
    assert_eq!(status, 401);
    let resp = client
        .get(&url)
        .header("Authorization", "Bearer sandbox-token")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 200);
    let stats = sandbox.stats();
    assert_eq!(stats.unauthorized, 2);
    assert_eq!(stats.hosting_events, 1);
    assert_eq!(stats.total(), 1);
}

#[tokio::test]
async fn pagination_and_ended_filter() {
    let mut config = SandboxConfig::demo(1);
    config.page_size = 2;
    let (_sandbox, running, client) = serve(config).await;
    let base = &running.base_url;

    let mut names = Vec::new();
    for page in 1..=3 {
        let v = get_json(
            &client,
            format!("{base}/api/v2/hosting_events?only_not_ended_event=true&page={page}"),
            "sandbox-token",
        )
        .await;
        let p = &v["meta"]["pagination"];
        assert_eq!(p["current_page"], page);
        assert_eq!(p["total_pages"], 2);
        assert_eq!(p["per_page"], 2);
        assert_eq!(p["total_count"], 4);
        for e in v["data"].as_array().expect("data") {
            assert_eq!(e["published"], true);
            assert_eq!(e["timezone"], "Asia/Taipei");
            let start = e["start_at"].as_str().expect("start_at");
            assert!(
                chrono::DateTime::parse_from_rfc3339(start).is_ok(),
                "{start}"
            );
            assert!(e["slug"].is_string() && e["id"].is_u64());
            names.push(e["name"].as_str().expect("name").to_owned());
        }
    }
    assert_eq!(names.len(), 4);
    assert!(names.iter().all(|n| !n.contains("2025")));
    assert!(names.contains(&"PyCon Taiwan 2026 Sprint Meetup".to_owned()));

    // Default page is 1; without the filter the ended event is listed too.
    let v = get_json(
        &client,
        format!("{base}/api/v2/hosting_events"),
        "sandbox-token",
    )
    .await;
    assert_eq!(v["meta"]["pagination"]["current_page"], 1);
    assert_eq!(v["meta"]["pagination"]["total_count"], 5);
    assert_eq!(v["meta"]["pagination"]["total_pages"], 3);
    let v = get_json(
        &client,
        format!("{base}/api/v2/hosting_events?page=3"),
        "sandbox-token",
    )
    .await;
    let data = v["data"].as_array().expect("data");
    assert_eq!(data.len(), 1);
    assert_eq!(
        data[0]["name"],
        "PyCon Taiwan 2025 Registration: Individual"
    );
}

#[tokio::test]
async fn book_and_refund_and_pay() {
    let (sandbox, running, client) = serve(SandboxConfig::demo(5)).await;
    let base = &running.base_url;
    let truth = sandbox.attendees(INDIVIDUAL);
    let ids = book_ids(&book(&client, base, INDIVIDUAL).await);
    let expected: Vec<u64> = truth.iter().map(|a| a.id).collect();
    assert_eq!(ids, expected);
    assert!(ids.windows(2).all(|w| w[0] < w[1]));

    // Refund: gone from the book, detail still answers "cancelled".
    let victim = truth.iter().find(|a| a.paid).expect("a paid attendee").id;
    assert!(sandbox.refund(INDIVIDUAL, victim));
    assert!(!sandbox.refund(INDIVIDUAL, victim));
    let ids = book_ids(&book(&client, base, INDIVIDUAL).await);
    assert!(!ids.contains(&victim));
    assert_eq!(ids.len(), expected.len() - 1);
    let detail = get_json(
        &client,
        attendee_url(base, INDIVIDUAL, victim),
        "sandbox-token",
    )
    .await;
    assert_eq!(detail["state"], "cancelled");

    // Pay an ATM order.
    let unpaid = truth
        .iter()
        .find(|a| !a.paid)
        .expect("an unpaid attendee")
        .id;
    let before = get_json(
        &client,
        attendee_url(base, INDIVIDUAL, unpaid),
        "sandbox-token",
    )
    .await;
    assert_eq!(before["is_paid"], false);
    assert_eq!(before["payment_method"], "ATM");
    assert_eq!(before["state"], "activated");
    assert!(sandbox.pay(INDIVIDUAL, unpaid));
    assert!(!sandbox.pay(INDIVIDUAL, unpaid));
    let after = get_json(
        &client,
        attendee_url(base, INDIVIDUAL, unpaid),
        "sandbox-token",
    )
    .await;
    assert_eq!(after["is_paid"], true);
    let (b, a) = (
        before["updated_at"].as_f64().expect("f64"),
        after["updated_at"].as_f64().expect("f64"),
    );
    assert!(a > b, "{a} > {b}");

    // Unknown things are 404.
    let (status, body) = get(&client, attendee_url(base, INDIVIDUAL, 1), "sandbox-token").await;
    assert_eq!(status, 404);
    assert_eq!(body, r#"{"error":"not found"}"#);
    let (status, _) = get(
        &client,
        format!("{base}/api/v2/hosting_events/1/attendance_books"),
        "sandbox-token",
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = get(
        &client,
        format!("{base}/api/v2/hosting_events/{INDIVIDUAL}/attendance_books/999"),
        "sandbox-token",
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn attendee_record_shape() {
    let (sandbox, running, client) = serve(SandboxConfig::demo(11)).await;
    let base = &running.base_url;
    let truth = sandbox.attendees(CORPORATE);
    let t = &truth[0];
    let v = get_json(
        &client,
        attendee_url(base, CORPORATE, t.id),
        "sandbox-token",
    )
    .await;
    assert_eq!(v["id"].as_u64(), Some(t.id));
    assert_eq!(v["reg_no"].as_u64(), Some(t.reg_no));
    assert_eq!(v["order_no"].as_u64(), Some(t.order_no));
    assert_eq!(v["ticket_name"].as_str(), Some(t.ticket_name.as_str()));
    assert!(v["ticket_id"].is_u64());
    assert_eq!(v["currency"], "TWD");
    assert_eq!(v["ticket_type"], "qrcode");
    assert_eq!(v["kyc"], serde_json::json!({}));
    assert!(v["id_number"].is_null() && v["slot"].is_null());
    assert!(v["updated_at"].is_f64());
    assert_eq!(v["price"].as_u64(), Some(u64::from(t.price)));
    let code = v["checkin_code"].as_str().expect("checkin_code");
    assert!(
        code.len() == 4
            && code
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_lowercase())
    );
    let qr = v["qrcode"].as_str().expect("qrcode");
    assert!(qr.len() == 32 && qr.bytes().all(|b| b.is_ascii_hexdigit()));
    let search = v["search_string"].as_str().expect("search_string");
    assert!(search.contains(&t.name) && search.contains(&t.email) && search.contains(&t.phone));

    let data = v["data"].as_array().expect("data");
    let answer = |label: &str| {
        data.iter()
            .find(|pair| pair[0] == label)
            .and_then(|pair| pair[1].as_str())
            .map(str::to_owned)
    };
    assert_eq!(answer("聯絡人 姓名").as_deref(), Some(t.name.as_str()));
    assert_eq!(answer("聯絡人 Email").as_deref(), Some(t.email.as_str()));
    assert_eq!(answer("聯絡人 手機").as_deref(), Some(t.phone.as_str()));
    let address = data
        .iter()
        .find(|pair| pair[0].as_str().is_some_and(|l| l.contains("Address")))
        .expect("address question");
    assert_eq!(address[1].as_str(), t.address.as_deref());

    // Free tickets are WEBSITE.
    let reserved = sandbox.attendees(80_103);
    let v = get_json(
        &client,
        attendee_url(base, 80_103, reserved[0].id),
        "sandbox-token",
    )
    .await;
    assert_eq!(v["payment_method"], "WEBSITE");
    assert_eq!(v["price"], 0);
    assert_eq!(v["is_paid"], true);
}

#[tokio::test]
async fn corruption_kinds() {
    let (sandbox, running, client) = serve(SandboxConfig::demo(2)).await;
    let base = &running.base_url;
    let truth = sandbox.attendees(INDIVIDUAL);
    let (a, b) = (truth[0].id, truth[1].id);
    assert!(sandbox.corrupt(INDIVIDUAL, a, Corruption::WrongTypes));
    assert!(sandbox.corrupt(INDIVIDUAL, b, Corruption::Truncated));
    assert!(!sandbox.corrupt(INDIVIDUAL, 7, Corruption::Truncated));
    assert!(sandbox.attendees(INDIVIDUAL)[0].broken);

    let v = get_json(&client, attendee_url(base, INDIVIDUAL, a), "sandbox-token").await;
    assert_eq!(v["id"].as_u64(), Some(a));
    assert!(!v["is_paid"].is_boolean());
    assert!(!v["data"].is_array());

    let (status, body) = get(&client, attendee_url(base, INDIVIDUAL, b), "sandbox-token").await;
    assert_eq!(status, 200);
    assert!(body.starts_with('{'));
    assert!(serde_json::from_str::<Value>(&body).is_err());
}

#[tokio::test]
async fn determinism_by_seed() {
    async fn detail(seed: u64) -> String {
        let (sandbox, running, client) = serve(SandboxConfig::demo(seed)).await;
        sandbox.step();
        let id = sandbox.attendees(CORPORATE)[3].id;
        let (status, body) = get(
            &client,
            attendee_url(&running.base_url, CORPORATE, id),
            "sandbox-token",
        )
        .await;
        assert_eq!(status, 200);
        body
    }
    let a = detail(42).await;
    assert_eq!(a, detail(42).await);
    assert_ne!(a, detail(43).await);
}

#[tokio::test]
async fn step_with_all_atm_creates_unpaid_orders() {
    let mut config = SandboxConfig::demo(8);
    config.atm_share = 1.0;
    config.atm_pay_per_step = 0.0;
    config.refund_share = 0.0;
    config.purchases_per_step = 10.0;
    // Only priced tickets: drop the free events.
    config
        .events
        .retain(|e| e.id == INDIVIDUAL || e.id == CORPORATE);
    let sandbox = Sandbox::new(config);
    let unpaid = |sb: &Sandbox| {
        [INDIVIDUAL, CORPORATE]
            .iter()
            .flat_map(|&e| sb.attendees(e))
            .filter(|a| !a.paid && !a.refunded)
            .count()
    };
    let before = unpaid(&sandbox);
    let mut purchased = 0;
    for _ in 0..5 {
        let r = sandbox.step();
        assert_eq!(r.paid, 0);
        purchased += r.purchased;
    }
    assert!(purchased > 0);
    assert_eq!(unpaid(&sandbox), before + purchased);

    // And an explicit unpaid purchase.
    let id = sandbox.purchase(INDIVIDUAL, false).expect("purchase");
    let t = sandbox.attendees(INDIVIDUAL);
    let rec = t.iter().find(|a| a.id == id).expect("new attendee");
    assert!(!rec.paid && rec.price > 0);
    assert_eq!(sandbox.purchase(12345, true), None);
}

#[tokio::test]
async fn single_event_ten_thousand() {
    let started = std::time::Instant::now();
    let sandbox = Sandbox::new(SandboxConfig::single_event(1, 10_000));
    let built = started.elapsed();
    assert!(built.as_millis() < 1_000, "{built:?}");
    let running = sandbox
        .serve("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("serve");
    let client = reqwest::Client::new();
    let events = sandbox.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].name, "Bench Conf 2026 Registration: Individual");
    let ids = book_ids(&book(&client, &running.base_url, events[0].id).await);
    assert_eq!(ids.len(), 10_000);
    let unique: std::collections::HashSet<u64> = ids.iter().copied().collect();
    assert_eq!(unique.len(), 10_000);
    assert_eq!(sandbox.step(), Default::default());
}

#[tokio::test]
async fn stats_count_each_route_kind() {
    let (sandbox, running, client) = serve(SandboxConfig::demo(4)).await;
    let base = &running.base_url;
    let _ = get_json(
        &client,
        format!("{base}/api/v2/hosting_events"),
        "sandbox-token",
    )
    .await;
    let book = book(&client, base, INDIVIDUAL).await;
    let first = book_ids(&book)[0];
    let _ = get_json(
        &client,
        attendee_url(base, INDIVIDUAL, first),
        "sandbox-token",
    )
    .await;
    let _ = get_json(
        &client,
        attendee_url(base, INDIVIDUAL, first),
        "sandbox-token",
    )
    .await;
    let (status, _) = get(&client, attendee_url(base, INDIVIDUAL, 3), "sandbox-token").await;
    assert_eq!(status, 404);
    let (status, _) = get(&client, format!("{base}/nope"), "sandbox-token").await;
    assert_eq!(status, 404);
    let (status, _) = get(&client, format!("{base}/api/v2/hosting_events"), "x").await;
    assert_eq!(status, 401);
    let stats = sandbox.stats();
    assert_eq!(
        stats,
        RequestStats {
            hosting_events: 1,
            attendance_books: 1,
            attendance_book: 1,
            attendees: 2,
            unauthorized: 1,
            not_found: 2,
        }
    );
    assert_eq!(stats.total(), 7);
    sandbox.reset_stats();
    assert_eq!(sandbox.stats(), RequestStats::default());
}
