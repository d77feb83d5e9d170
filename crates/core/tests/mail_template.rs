//! The invitation template: the bilingual default, HTML escaping in the HTML part only, a
//! one-line subject, broken overrides named at construction, and no panic on any name.

use autopilot_core::access::Link;
use autopilot_core::mail::{Invitation, MailSettings, MailTemplate};
use autopilot_core::pii::{EmailAddress, Sensitive};
use autopilot_core::store::AttendeeKey;
use proptest::prelude::*;

fn invitation(name: &str) -> Invitation {
    Invitation {
        key: AttendeeKey {
            event_id: 7,
            attendee_id: 42,
        },
        email: EmailAddress::parse("xxx@gmail.com").expect("address parses"),
        name: Sensitive::new(name.to_owned()),
        event_name: "PyCon Taiwan 2026".into(),
        ticket_name: "Regular 一般票".into(),
        links: vec![Link {
            label: "YouTube 直播".into(),
            url: "https://youtu.be/abc?x=1&y=2".into(),
        }],
        venue_url: Some("https://app.gather.town/app/xyz/pycon".into()),
        checkin_code: Some("BC7B".into()),
        reg_no: Some(104),
        intent: None,
    }
}

fn default_template() -> MailTemplate {
    MailTemplate::from_settings(&MailSettings::default()).expect("the default template compiles")
}

#[test]
fn default_is_bilingual_zh_tw_first() {
    let mail = default_template()
        .render(&invitation("李xx"))
        .expect("renders");
    for body in [&mail.text, &mail.html] {
        let zh = body.find("感謝您報名").expect("zh-TW text");
        let en = body
            .find("Thank you for registering")
            .expect("English text");
        assert!(zh < en, "zh-TW comes first");
        assert!(body.contains("李xx"));
        assert!(body.contains("PyCon Taiwan 2026"));
        assert!(body.contains("Regular 一般票"));
        assert!(body.contains("YouTube 直播"));
        assert!(body.contains("BC7B"));
        assert!(body.contains("104"));
    }
    assert!(mail.text.contains("https://youtu.be/abc?x=1&y=2"));
    assert!(mail
        .html
        .contains(r#"<a href="https://youtu.be/abc?x=1&amp;y=2">YouTube 直播</a>"#));
    assert!(mail.html.contains("https://app.gather.town/app/xyz/pycon"));
    assert!(mail.subject.contains("PyCon Taiwan 2026"));
    assert!(!mail.subject.contains('\n'));
    assert!(!mail.text.contains("\n\n\n\n"), "no runs of blank lines");
}

#[test]
fn optional_parts_are_left_out() {
    let mut bare = invitation("");
    bare.venue_url = None;
    bare.checkin_code = None;
    bare.reg_no = None;
    bare.links.clear();
    let mail = default_template().render(&bare).expect("renders");
    for body in [&mail.text, &mail.html] {
        for absent in [
            "報到碼",
            "Check-in code",
            "報名序號",
            "線上會場",
            "Virtual venue",
        ] {
            assert!(!body.contains(absent), "{absent} in {body}");
        }
        assert!(body.contains("您好") && body.contains("Hi there"));
    }
}

#[test]
fn html_is_escaped_in_the_html_part_only() {
    let template = default_template();
    for (name, escaped) in [
        (
            "<script>alert(1)</script>",
            "&lt;script&gt;alert(1)&lt;/script&gt;",
        ),
        ("O'Brien & 陳", "O&#x27;Brien &amp; 陳"),
    ] {
        let mail = template.render(&invitation(name)).expect("renders");
        assert!(mail.text.contains(name), "raw in text");
        assert!(
            mail.html.contains(escaped),
            "escaped in html: {}",
            mail.html
        );
        assert!(!mail.html.contains(name), "never raw in html");
    }
}

#[test]
fn subject_is_one_line() {
    let settings = MailSettings {
        subject: Some("Hello\n{{ name }}\r\n{{ event }}".into()),
        ..MailSettings::default()
    };
    let template = MailTemplate::from_settings(&settings).expect("compiles");
    let mail = template
        .render(&invitation("a\r\nBcc: evil@example.com"))
        .expect("renders");
    assert!(!mail.subject.contains('\n') && !mail.subject.contains('\r'));
    assert_eq!(
        mail.subject,
        "Hello a Bcc: evil@example.com PyCon Taiwan 2026"
    );
}

#[test]
fn overrides_replace_parts_and_blank_ones_fall_back() {
    let settings = MailSettings {
        from: "PyCon Taiwan <registration@pycon.tw>".into(),
        subject: Some("Welcome {{ name }}".into()),
        text: Some("   ".into()),
        html: Some("<p>{{ name }} / {{ ticket }}</p>".into()),
        ..MailSettings::default()
    };
    let template = MailTemplate::from_settings(&settings).expect("compiles");
    assert_eq!(template.from, "PyCon Taiwan <registration@pycon.tw>");
    let mail = template.render(&invitation("Ann & Bob")).expect("renders");
    assert_eq!(mail.subject, "Welcome Ann & Bob");
    assert_eq!(mail.html, "<p>Ann &amp; Bob / Regular 一般票</p>");
    assert!(
        mail.text.contains("感謝您報名"),
        "blank text uses the default"
    );
}

#[test]
fn a_broken_override_is_an_error_naming_the_part() {
    for (part, settings) in [
        (
            "subject",
            MailSettings {
                subject: Some("{{ name ".into()),
                ..MailSettings::default()
            },
        ),
        (
            "text",
            MailSettings {
                text: Some("{% for link in links %}".into()),
                ..MailSettings::default()
            },
        ),
        (
            "html",
            MailSettings {
                html: Some("{% if %}".into()),
                ..MailSettings::default()
            },
        ),
        (
            "html",
            MailSettings {
                html: Some("{{ name | no_such_filter }}".into()),
                ..MailSettings::default()
            },
        ),
    ] {
        let error = MailTemplate::from_settings(&settings).expect_err("must not compile");
        let message = error.to_string();
        assert!(message.starts_with("mail template: "), "{message}");
        assert!(
            message.contains(&format!("the {part} template")),
            "{message}"
        );
    }
}

#[test]
fn a_render_error_names_no_value() {
    let template = MailTemplate {
        from: "a <a@example.com>".into(),
        subject: "{{ name | int }}".into(),
        text: "x".into(),
        html: "x".into(),
    };
    let error = template
        .render(&invitation("李xx-secret"))
        .expect_err("not a number");
    let message = error.to_string();
    assert!(message.contains("subject"), "{message}");
    assert!(!message.contains("李xx-secret"), "{message}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn rendering_never_panics(
        name in any::<String>(),
        event in any::<String>(),
        code in proptest::option::of(any::<String>()),
    ) {
        let template = default_template();
        let mut inv = invitation(&name);
        inv.event_name = event;
        inv.checkin_code = code;
        let mail = template.render(&inv).expect("renders");
        prop_assert!(!mail.subject.contains('\n') && !mail.subject.contains('\r'));
        prop_assert!(!mail.html.contains("<script"));
    }
}
