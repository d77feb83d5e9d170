//! Sales reports: figures, day boundaries in Asia/Taipei, date ranges, CSV against golden
//! files, and the PNG chart.

use autopilot_core::report::{
    chart_label, daily_report, event_status, ChartFont, ChartFontError, DailyReport, DateRange,
    Quota, ReportError, ReportSettings, MAX_RANGE_DAYS, PNG_HEIGHT, PNG_WIDTH,
};
use autopilot_core::store::SaleRecord;
use chrono::{DateTime, NaiveDate, Utc};

fn sale(ticket: &str, paid_at: &str, price: f64, cancelled: bool) -> SaleRecord {
    SaleRecord {
        ticket_name: ticket.to_string(),
        paid_at: paid_at.parse::<DateTime<Utc>>().expect("test timestamp"),
        price,
        currency: "TWD".to_string(),
        cancelled,
    }
}

fn date(s: &str) -> NaiveDate {
    s.parse().expect("test date")
}

fn range(from: &str, to: &str) -> DateRange {
    DateRange::parse(from, to).expect("valid range")
}

fn golden(name: &str) -> String {
    let path = format!("{}/tests/golden/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The sales behind `report_week.csv` and `report_quiet_range.csv` (times in UTC; Taipei is
/// UTC+8).
fn week_sales() -> Vec<SaleRecord> {
    vec![
        // 2026-03-01 00:30 in Taipei.
        sale("Early Bird 早鳥票", "2026-02-28T16:30:00Z", 800.0, false),
        sale("Early Bird 早鳥票", "2026-03-01T03:00:00Z", 800.0, false),
        // 2026-03-02 23:59 and 2026-03-03 00:00 in Taipei.
        sale("Early Bird 早鳥票", "2026-03-02T15:59:00Z", 800.0, false),
        sale("Early Bird 早鳥票", "2026-03-02T16:00:00Z", 800.0, false),
        sale("Regular 一般票", "2026-03-03T01:00:00Z", 1200.0, false),
        sale("Regular 一般票", "2026-03-03T01:05:00Z", 1200.0, false),
        sale("Regular 一般票", "2026-03-04T02:00:00Z", 1200.0, true),
        // The last second of the range, then the first one after it.
        sale("Regular 一般票", "2026-03-07T15:59:59Z", 1200.0, false),
        sale("Regular 一般票", "2026-03-07T16:00:00Z", 1200.0, false),
        // 2026-02-28 23:59 in Taipei: before the range.
        sale("Regular 一般票", "2026-02-28T15:59:00Z", 1200.0, false),
        sale("VIP 貴賓票", "2026-03-05T12:00:00Z", 3000.0, false),
    ]
}

// --- event_status ---

#[test]
fn event_status_counts_revenue_quotas_and_refunds() {
    let settings = ReportSettings {
        quotas: vec![
            Quota {
                ticket_contains: "early".to_string(),
                quota: 100,
            },
            Quota {
                ticket_contains: "REGULAR".to_string(),
                quota: 500,
            },
            // Never reached for "Regular 一般票": the first match wins.
            Quota {
                ticket_contains: "一般".to_string(),
                quota: 1,
            },
        ],
        chart_font: None,
    };
    let status = event_status(&week_sales(), &settings);

    let names: Vec<&str> = status
        .tickets
        .iter()
        .map(|t| t.ticket_name.as_str())
        .collect();
    assert_eq!(names, ["Early Bird 早鳥票", "Regular 一般票", "VIP 貴賓票"]);
    let early = &status.tickets[0];
    assert_eq!(
        (early.sold, early.quota, early.revenue),
        (4, Some(100), 3200.0)
    );
    let regular = &status.tickets[1];
    assert_eq!(
        (regular.sold, regular.quota, regular.revenue),
        (5, Some(500), 6000.0)
    );
    let vip = &status.tickets[2];
    assert_eq!((vip.sold, vip.quota, vip.revenue), (1, None, 3000.0));
    assert_eq!(status.sold, 10);
    assert_eq!(status.revenue, 12200.0);
    assert_eq!(status.refunded, 1);
    assert_eq!(status.currency, "TWD");
}

#[test]
fn event_status_keeps_fully_refunded_types_and_picks_the_common_currency() {
    let mut sales = vec![
        sale("A", "2026-03-01T00:00:00Z", 10.0, true),
        sale("B", "2026-03-01T00:00:00Z", 20.0, false),
        sale("B", "2026-03-01T00:00:00Z", 20.0, false),
    ];
    for s in &mut sales {
        s.currency = "USD".to_string();
    }
    sales.push(sale("B", "2026-03-01T00:00:00Z", 600.0, false));
    let status = event_status(&sales, &ReportSettings::default());
    assert_eq!(status.tickets.len(), 2);
    assert_eq!(status.tickets[0].ticket_name, "A");
    assert_eq!(
        (status.tickets[0].sold, status.tickets[0].revenue),
        (0, 0.0)
    );
    assert_eq!(status.tickets[0].quota, None);
    assert_eq!((status.sold, status.refunded), (3, 1));
    assert_eq!(status.revenue, 640.0);
    assert_eq!(status.currency, "USD");
}

#[test]
fn event_status_of_no_sales() {
    let status = event_status(&[], &ReportSettings::default());
    assert!(status.tickets.is_empty());
    assert_eq!((status.sold, status.refunded), (0, 0));
    assert_eq!(status.revenue, 0.0);
    assert_eq!(status.currency, "TWD");
}

#[test]
fn report_settings_from_toml_shape() {
    let settings: ReportSettings =
        serde_json::from_str(r#"{"quotas": [{"ticket_contains": "VIP", "quota": 50}]}"#)
            .expect("settings");
    assert_eq!(settings.quota_for("vip 貴賓票"), Some(50));
    assert_eq!(settings.quota_for("Regular"), None);
    let empty: ReportSettings = serde_json::from_str("{}").expect("defaults");
    assert_eq!(empty, ReportSettings::default());
    assert!(serde_json::from_str::<ReportSettings>(r#"{"quota": []}"#).is_err());
}

// --- daily_report ---

#[test]
fn daily_report_counts_on_taipei_days() {
    let report = daily_report(&week_sales(), &range("2026-03-01", "2026-03-07"));
    assert_eq!(report.days.len(), 7);
    assert_eq!(report.days[0], date("2026-03-01"));
    assert_eq!(report.days[6], date("2026-03-07"));

    let early = &report.rows[0];
    assert_eq!(early.ticket_name, "Early Bird 早鳥票");
    // 16:30Z on the 28th is the 1st in Taipei; 15:59Z and 16:00Z on the 2nd are two days.
    assert_eq!(early.per_day, [2, 1, 1, 0, 0, 0, 0]);
    let regular = &report.rows[1];
    // The cancelled sale on the 4th and the sales on the 28th and the 8th do not count; the
    // last second of the 7th does.
    assert_eq!(regular.per_day, [0, 0, 2, 0, 0, 0, 1]);
    assert_eq!(regular.total, 3);
    assert_eq!(report.totals, [2, 1, 3, 0, 1, 0, 1]);
    assert_eq!(report.total, 8);
}

#[test]
fn daily_report_day_boundary_at_16_utc() {
    let sales = [
        sale("X", "2026-03-01T15:59:00Z", 1.0, false),
        sale("X", "2026-03-01T16:00:00Z", 1.0, false),
    ];
    let report = daily_report(&sales, &range("2026-03-01", "2026-03-02"));
    assert_eq!(report.rows[0].per_day, [1, 1]);
    let one_day = daily_report(&sales, &range("2026-03-02", "2026-03-02"));
    assert_eq!(one_day.rows[0].per_day, [1]);
    assert_eq!(one_day.total, 1);
}

#[test]
fn daily_report_lists_quiet_and_refunded_types_with_zeros() {
    let report = daily_report(&week_sales(), &range("2026-04-01", "2026-04-03"));
    assert_eq!(report.rows.len(), 3);
    assert!(report
        .rows
        .iter()
        .all(|r| r.per_day == [0, 0, 0] && r.total == 0));
    assert_eq!(report.totals, [0, 0, 0]);
    assert_eq!(report.total, 0);

    let refunded = [sale("Gone", "2026-04-01T00:00:00Z", 1.0, true)];
    let report = daily_report(&refunded, &range("2026-04-01", "2026-04-01"));
    assert_eq!(report.rows.len(), 1);
    assert_eq!(report.rows[0].total, 0);
}

#[test]
fn daily_report_of_no_sales() {
    let report = daily_report(&[], &range("2026-03-01", "2026-03-03"));
    assert!(report.rows.is_empty());
    assert_eq!(report.totals, [0, 0, 0]);
    assert_eq!(
        report.to_csv().expect("csv"),
        "ticket,2026-03-01,2026-03-02,2026-03-03,total\ntotal,0,0,0,0\n"
    );
}

// --- DateRange::parse ---

#[test]
fn date_range_parses_good_input() {
    let r = DateRange::parse("2026-03-01", " 2026-03-07 ").expect("range");
    assert_eq!((r.from, r.to), (date("2026-03-01"), date("2026-03-07")));
    assert_eq!(r.days().len(), 7);
    let same = DateRange::parse("2026-02-28", "2026-02-28").expect("one day");
    assert_eq!(same.days(), [date("2026-02-28")]);
    // 92 days, both ends included, across a leap day.
    let longest = DateRange::parse("2028-01-01", "2028-04-01").expect("92 days");
    assert_eq!(longest.days().len() as u64, MAX_RANGE_DAYS);
}

#[test]
fn date_range_rejects_reversed_and_too_long_ranges() {
    let err = DateRange::parse("2026-03-07", "2026-03-01").expect_err("reversed");
    assert!(matches!(err, ReportError::ReversedRange { .. }));
    assert!(err.to_string().contains("2026-03-07"));

    let err = DateRange::parse("2028-01-01", "2028-04-02").expect_err("93 days");
    assert!(matches!(err, ReportError::RangeTooLong { days: 93 }));
    assert!(err.to_string().contains("92"));
}

#[test]
fn date_range_rejects_bad_formats() {
    for (from, to) in [
        ("2026-3-1", "2026-03-07"),
        ("2026/03/01", "2026-03-07"),
        ("", "2026-03-07"),
        ("2026-02-30", "2026-03-07"),
        ("2026-13-01", "2026-03-07"),
        ("2026-03-01", "tomorrow"),
        ("+2026-03-01", "2026-03-07"),
        ("２０２６-03-01", "2026-03-07"),
        ("2026-03-01T00:00", "2026-03-07"),
    ] {
        let err = DateRange::parse(from, to).expect_err(from);
        assert!(
            matches!(err, ReportError::BadDate { .. }),
            "{from} {to}: {err}"
        );
        assert!(err.to_string().contains("YYYY-MM-DD"));
    }
}

#[test]
fn date_range_errors_on_junk_are_short_and_bounded() {
    for junk in [
        "2026-03-01'; DROP TABLE x;--",
        "../../etc/passwd",
        "@everyone please look at this very long message",
        "`rm -rf /`",
        &"x".repeat(10_000),
        "一二三四五六七八九十十一十二",
    ] {
        let err = DateRange::parse(junk, "2026-03-07").expect_err(junk);
        let ReportError::BadDate { input, .. } = &err else {
            panic!("{junk}: {err:?}");
        };
        assert!(input.chars().count() <= 11, "{input}");
        let message = err.to_string();
        assert!(message.chars().count() < 120, "{message}");
        for forbidden in ["DROP", "passwd", "@", "`", ";", "'"] {
            assert!(!message.contains(forbidden), "{message}");
        }
        // The end date is checked the same way.
        let err = DateRange::parse("2026-03-01", junk).expect_err(junk);
        assert!(err.to_string().chars().count() < 120);
    }
    let err = DateRange::parse("2026-03-01'; DROP TABLE x;--", "2026-03-07").expect_err("sql");
    let ReportError::BadDate { input, .. } = err else {
        panic!("not a bad date");
    };
    assert_eq!(input, "2026-03-01…");
    let err = DateRange::parse("../../etc/passwd", "2026-03-07").expect_err("path");
    let ReportError::BadDate { input, .. } = err else {
        panic!("not a bad date");
    };
    assert_eq!(input, "../../etc/…");
}

// --- CSV ---

#[test]
fn csv_of_a_week_matches_golden() {
    let report = daily_report(&week_sales(), &range("2026-03-01", "2026-03-07"));
    assert_eq!(report.to_csv().expect("csv"), golden("report_week.csv"));
}

#[test]
fn csv_of_a_quiet_range_matches_golden() {
    let report = daily_report(&week_sales(), &range("2026-04-01", "2026-04-03"));
    assert_eq!(
        report.to_csv().expect("csv"),
        golden("report_quiet_range.csv")
    );
}

#[test]
fn csv_quotes_tricky_names() {
    let sales = [
        sale(
            "Student, with ID 學生票",
            "2026-03-10T02:00:00Z",
            500.0,
            false,
        ),
        sale(
            "\"Meet & Greet\" 見面會",
            "2026-03-11T02:00:00Z",
            900.0,
            false,
        ),
        sale(
            "\"Meet & Greet\" 見面會",
            "2026-03-11T09:00:00Z",
            900.0,
            false,
        ),
        sale("一般票", "2026-03-10T10:00:00Z", 1000.0, false),
        sale("Refunded 退票", "2026-03-10T10:00:00Z", 1000.0, true),
    ];
    let report = daily_report(&sales, &range("2026-03-10", "2026-03-11"));
    let csv = report.to_csv().expect("csv");
    assert_eq!(csv, golden("report_tricky_names.csv"));
    // And it reads back to the same names.
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let names: Vec<String> = reader
        .records()
        .map(|r| r.expect("record")[0].to_string())
        .collect();
    assert_eq!(
        names,
        [
            "\"Meet & Greet\" 見面會",
            "Refunded 退票",
            "Student, with ID 學生票",
            "一般票",
            "total"
        ]
    );
}

// --- chart labels ---

#[test]
fn chart_labels_are_the_full_ticket_names() {
    assert_eq!(chart_label("Regular 一般票", 1), "Regular 一般票");
    assert_eq!(chart_label("早鳥票 Early Bird", 2), "早鳥票 Early Bird");
    assert_eq!(chart_label("一般票", 3), "一般票");
    assert_eq!(chart_label("票種 2", 6), "票種 2");
    // Nothing to read: a numbered stand-in.
    assert_eq!(chart_label("（）- ", 4), "Ticket 4");
    assert_eq!(chart_label("", 8), "Ticket 8");
    assert_eq!(
        chart_label("A very long ticket name for the VIP lounge", 5),
        "A very long ticket na…"
    );
}

// --- chart font ---

/// The CJK font the chart tests draw with: `[reports] chart_font` unset, so the layer path or
/// a system font (CI installs Debian's `fonts-wqy-microhei`).
fn chart_font() -> ChartFont {
    ChartFont::find(None).unwrap_or_else(|e| panic!("tests need a CJK font: {e}"))
}

#[test]
fn chart_font_draws_chinese() {
    let font = chart_font();
    let missing: Vec<char> = "一般票 Regular"
        .chars()
        .filter(|c| !font.covers(&c.to_string()))
        .collect();
    assert!(missing.is_empty(), "{:?} lacks {missing:?}", font.path());
    assert!(font.covers("早鳥票 學生票 Early Bird"));
    // Private-use code points have no glyph in any font: they would be tofu.
    assert!(!font.covers("\u{E000}"));
    // A font without Latin letters (Droid Sans Fallback, where installed) is refused.
    let droid = std::path::Path::new("/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf");
    if droid.is_file() {
        let err = ChartFont::load(droid).expect_err("no Latin letters");
        assert!(err.to_string().contains("no glyph for 'R'"), "{err}");
    }
    // Loading the same file again gives the same registration.
    assert_eq!(ChartFont::load(font.path()).expect("reload"), font);
}

#[test]
fn a_configured_chart_font_that_is_missing_or_not_a_font_is_a_clear_error() {
    let missing = ChartFont::find(Some("/nonexistent/autopilot-chart.ttf")).expect_err("missing");
    assert!(
        matches!(&missing, ChartFontError::Unusable { path, .. } if path == "/nonexistent/autopilot-chart.ttf"),
        "{missing:?}"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let not_a_font = dir.path().join("font.ttf");
    std::fs::write(&not_a_font, b"not a font").expect("write");
    let err = ChartFont::load(&not_a_font).expect_err("not a font");
    assert!(
        err.to_string().contains("not a TrueType/OpenType font"),
        "{err}"
    );
    let not_found = ChartFontError::NotFound {
        searched: vec!["/opt/fonts/autopilot-chart.ttc".into()],
    };
    assert!(not_found.to_string().contains("[reports] chart_font"));
    assert!(not_found
        .to_string()
        .contains("/opt/fonts/autopilot-chart.ttc"));
}

/// The chart of one day of a single ticket type named `ticket`.
fn one_type_chart(ticket: &str, font: &ChartFont) -> Vec<u8> {
    let sales = [sale(ticket, "2026-03-01T04:00:00Z", 500.0, false)];
    daily_report(&sales, &range("2026-03-01", "2026-03-01"))
        .to_png("Sales", font)
        .expect("png")
}

/// Pixels that differ between two charts of the same size.
fn differing_pixels(a: &[u8], b: &[u8]) -> usize {
    let (_, _, a) = png_pixels(a);
    let (_, _, b) = png_pixels(b);
    a.chunks_exact(3)
        .zip(b.chunks_exact(3))
        .filter(|(x, y)| x != y)
        .count()
}

#[test]
fn chinese_ticket_names_are_drawn_as_glyphs_not_tofu() {
    let font = chart_font();
    let regular = one_type_chart("一般票 Regular", &font);
    let ascii_only = one_type_chart("Regular", &font);
    // Tofu: code points no font has, each drawn as the same "missing glyph" box.
    let tofu = one_type_chart("\u{E000}\u{E001}\u{E002} Regular", &font);
    let other_chinese = one_type_chart("三般票 Regular", &font);
    // The Chinese part is drawn at all (the old chart dropped it) ...
    assert!(differing_pixels(&regular, &ascii_only) > 50);
    // ... as real glyphs, not boxes: it differs from tofu, and different characters draw
    // differently (boxes would all look alike).
    assert!(differing_pixels(&regular, &tofu) > 50);
    assert!(differing_pixels(&regular, &other_chinese) > 10);
    let tofu_again = one_type_chart("\u{E003}\u{E004}\u{E005} Regular", &font);
    assert_eq!(differing_pixels(&tofu, &tofu_again), 0, "boxes look alike");
}

// --- PNG ---

/// Decodes a PNG with the `png` crate (which checks signature, chunk CRCs and the zlib
/// stream): width, height and RGB pixels.
fn png_pixels(png: &[u8]) -> (u32, u32, Vec<u8>) {
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    let decoder = png::Decoder::new(std::io::Cursor::new(png));
    let mut reader = decoder.read_info().expect("PNG header");
    let mut pixels = vec![0; reader.output_buffer_size()];
    let frame = reader.next_frame(&mut pixels).expect("PNG data");
    assert_eq!(frame.color_type, png::ColorType::Rgb);
    assert_eq!(frame.bit_depth, png::BitDepth::Eight);
    pixels.truncate(frame.buffer_size());
    (frame.width, frame.height, pixels)
}

fn pixel(pixels: &[u8], x: u32, y: u32) -> [u8; 3] {
    let i = (y * PNG_WIDTH + x) as usize * 3;
    [pixels[i], pixels[i + 1], pixels[i + 2]]
}

#[test]
fn png_of_a_week_is_a_deterministic_png_of_the_declared_size() {
    let font = chart_font();
    let report = daily_report(&week_sales(), &range("2026-03-01", "2026-03-07"));
    let first = report
        .to_png("Spring Concert 春季音樂會", &font)
        .expect("png");
    let second = report
        .to_png("Spring Concert 春季音樂會", &font)
        .expect("png");
    assert_eq!(first, second, "same input, same bytes");
    let (width, height, pixels) = png_pixels(&first);
    assert_eq!((width, height), (PNG_WIDTH, PNG_HEIGHT));
    assert_eq!((width, height), (1000, 600));
    // A white background with something drawn on it: more than one colour, some of them the
    // bar colours.
    assert_eq!(pixel(&pixels, 0, 0), [255, 255, 255]);
    let colours: Vec<[u8; 3]> = pixels.chunks_exact(3).map(|p| [p[0], p[1], p[2]]).collect();
    // Solid bars in the first three colours: 4, 3 and 1 tickets' worth of bar.
    let count = |c: [u8; 3]| colours.iter().filter(|p| **p == c).count();
    let (early, regular, vip) = (
        count([31, 119, 180]),
        count([255, 127, 14]),
        count([44, 160, 44]),
    );
    assert!(
        early > 3 * vip && regular > 2 * vip,
        "{early} {regular} {vip}"
    );
    assert!(vip > 2_000, "{vip}");
    // Compressed well below the raw 1.8 MB.
    assert!(first.len() < 200_000, "{} bytes", first.len());
    // A different title draws different pixels.
    assert_ne!(report.to_png("Other", &font).expect("png"), first);
}

#[test]
fn png_with_no_ticket_types() {
    let font = chart_font();
    let report = daily_report(&[], &range("2026-03-01", "2026-03-01"));
    let png = report.to_png("", &font).expect("png");
    let (width, height, _) = png_pixels(&png);
    assert_eq!((width, height), (PNG_WIDTH, PNG_HEIGHT));
    assert_eq!(png, report.to_png("", &font).expect("png"));
}

#[test]
fn png_with_12_ticket_types_over_92_days() {
    let font = chart_font();
    let from = date("2026-01-01");
    let mut sales = Vec::new();
    for t in 0..12u32 {
        let name = if t % 3 == 0 {
            format!("票種 {t}")
        } else {
            format!("Type {t} 票")
        };
        for d in 0..92u32 {
            for _ in 0..(t + d) % 5 {
                let at = from
                    .checked_add_days(chrono::Days::new(u64::from(d)))
                    .expect("date")
                    .and_hms_opt(4, 0, 0)
                    .expect("time")
                    .and_utc();
                sales.push(SaleRecord {
                    ticket_name: name.clone(),
                    paid_at: at,
                    price: 100.0,
                    currency: "TWD".to_string(),
                    cancelled: false,
                });
            }
        }
    }
    let r = range("2026-01-01", "2026-04-02");
    assert_eq!(r.days().len(), 92);
    let report: DailyReport = daily_report(&sales, &r);
    assert_eq!(report.rows.len(), 12);
    assert_eq!(report.total, sales.len() as u64);
    let png = report
        .to_png("A long season of many ticket types", &font)
        .expect("png");
    let (width, height, _) = png_pixels(&png);
    assert_eq!((width, height), (PNG_WIDTH, PNG_HEIGHT));
    assert_eq!(
        png,
        report
            .to_png("A long season of many ticket types", &font)
            .expect("png")
    );
}

#[test]
fn png_with_more_types_than_the_legend_holds() {
    let font = chart_font();
    let sales: Vec<SaleRecord> = (0..40)
        .map(|t| sale(&format!("Type {t:02}"), "2026-03-01T04:00:00Z", 1.0, false))
        .collect();
    let report = daily_report(&sales, &range("2026-03-01", "2026-03-02"));
    let png = report.to_png("Forty types", &font).expect("png");
    let (width, height, _) = png_pixels(&png);
    assert_eq!((width, height), (PNG_WIDTH, PNG_HEIGHT));
}
