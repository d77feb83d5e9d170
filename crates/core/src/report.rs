//! Sales reports for organisers: the figures the Discord bot answers with.
//!
//! - [`event_status`]: tickets sold, revenue and configured quotas per ticket type.
//! - [`daily_report`]: tickets sold per ticket type and per day over a [`DateRange`], as CSV
//!   ([`DailyReport::to_csv`]) and as a PNG chart ([`DailyReport::to_png`]).
//!
//! # Days
//! A sale counts on the date of its `paid_at` in [`REPORT_TZ`] (Asia/Taipei, UTC+8, no DST):
//! `2026-03-01T15:59Z` is 2026-03-01 there, `2026-03-01T16:00Z` is 2026-03-02. Ranges are
//! inclusive at both ends and span at most [`MAX_RANGE_DAYS`] days.
//!
//! # Which ticket types are listed
//! Both reports list every ticket type that appears in the event's sales at all, whenever it
//! was sold and even if every sale of it was refunded since: a quiet range (or a sold-out,
//! fully refunded type) still shows its rows, with zeros, so organisers see "nothing sold"
//! rather than a type silently missing. Types are sorted by name (byte order of the UTF-8
//! text). Refunded or cancelled sales never count as sold, nor as revenue.
//!
//! # CSV
//! Header `ticket,<day>,<day>,…,total` (days as `YYYY-MM-DD`), one row per ticket type with the
//! full ticket name and the row total in the last column, then a final `total` row with the
//! per-day totals and the grand total. UTF-8 without a BOM, `\n` line endings, fields quoted
//! only where needed (commas, quotes, line breaks) by the `csv` crate. Excel users should
//! import it as UTF-8 (Data → From Text/CSV → 65001: Unicode (UTF-8)); double-clicking the
//! file may show the Chinese part of ticket names garbled in some Excel versions.
//!
//! # PNG and fonts
//! The chart is stacked bars (one colour per ticket type, one bar per day) with a legend, axis
//! labels and a title, [`PNG_WIDTH`]×[`PNG_HEIGHT`] pixels, drawn by `plotters` into an RGB
//! buffer and encoded to PNG by a small encoder in this module (plotters' own encoder only
//! writes files). Rendering and encoding are deterministic: the same report and title give the
//! same bytes.
//!
//! No system font can be assumed (CI, Lambda), so the chart's text uses Noto Sans Regular
//! embedded by the `ttf-noto-sans` crate (crate MIT/Apache-2.0; the font is Apache-2.0, about
//! 200 KB). It covers Latin, Greek and Cyrillic but no CJK (a CJK font is several MB), so text
//! in the PNG keeps only the printable-ASCII part of ticket names and of the title
//! ("Regular 一般票" → "Regular"); a ticket name with nothing ASCII left becomes "Ticket N"
//! (its position in the sorted list), and a label shared by two types gets " (2)", " (3)"…
//! appended. See [`chart_label`]. The CSV always keeps the full names.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use chrono::NaiveDate;
use plotters::prelude::*;
use plotters::style::register_font;
use serde::{Deserialize, Serialize};

use crate::model::SaleRecord;

/// The time zone whose calendar days reports count in.
pub const REPORT_TZ: chrono_tz::Tz = chrono_tz::Asia::Taipei;
/// The longest range, in days (both ends included), a daily report may span.
pub const MAX_RANGE_DAYS: u64 = 92;
/// Width of the PNG chart in pixels.
pub const PNG_WIDTH: u32 = 1000;
/// Height of the PNG chart in pixels.
pub const PNG_HEIGHT: u32 = 600;
/// The currency reported when no sale names one.
pub const DEFAULT_CURRENCY: &str = "TWD";

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The user typed something that is not a `YYYY-MM-DD` date. `input` is at most ten
    /// characters of what they typed (with "…" when cut), with anything but letters, digits,
    /// `-`, `.`, `/` and spaces replaced by `?`.
    #[error("日期格式錯誤 / invalid {which} date \"{input}\": use YYYY-MM-DD, e.g. 2026-03-01")]
    BadDate { which: &'static str, input: String },
    #[error("開始日期晚於結束日期 / the start date {from} is after the end date {to}")]
    ReversedRange { from: NaiveDate, to: NaiveDate },
    #[error(
        "日期範圍最多 {max} 天 / the range covers {days} days; at most {max} are allowed",
        max = MAX_RANGE_DAYS
    )]
    RangeTooLong { days: u64 },
    #[error("cannot write the CSV report: {0}")]
    Csv(String),
    #[error("cannot draw the chart: {0}")]
    Chart(String),
}

/// The `[reports]` settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReportSettings {
    /// Quotas per ticket type. KKTIX's attendee API does not give them, so they are
    /// configured. The first entry whose pattern matches a ticket name wins.
    pub quotas: Vec<Quota>,
}

/// How many tickets of the types whose name contains `ticket_contains` (case-insensitive) are
/// on sale. An empty pattern matches every type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    pub ticket_contains: String,
    pub quota: u64,
}

impl ReportSettings {
    /// The quota of a ticket type: the first configured pattern it contains, ignoring case.
    pub fn quota_for(&self, ticket_name: &str) -> Option<u64> {
        let name = ticket_name.to_lowercase();
        self.quotas
            .iter()
            .find(|q| name.contains(&q.ticket_contains.to_lowercase()))
            .map(|q| q.quota)
    }
}

/// One ticket type's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TicketStatus {
    pub ticket_name: String,
    /// Sales not refunded or cancelled.
    pub sold: u64,
    pub quota: Option<u64>,
    /// Sum of the prices of the sales counted in `sold`.
    pub revenue: f64,
}

/// An event's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventStatus {
    /// Every ticket type seen in the sales, sorted by name.
    pub tickets: Vec<TicketStatus>,
    pub sold: u64,
    pub revenue: f64,
    /// The currency most sales (refunded ones included) name; ties go to the alphabetically
    /// first; [`DEFAULT_CURRENCY`] when there is no sale.
    pub currency: String,
    /// Sales refunded or cancelled since.
    pub refunded: u64,
}

/// Sold tickets, revenue and quotas per ticket type. Refunded or cancelled sales count only
/// in `refunded`.
pub fn event_status(sales: &[SaleRecord], settings: &ReportSettings) -> EventStatus {
    let mut by_ticket: BTreeMap<&str, (u64, f64)> = BTreeMap::new();
    let mut currencies: BTreeMap<&str, u64> = BTreeMap::new();
    let mut refunded = 0;
    for sale in sales {
        *currencies.entry(sale.currency.as_str()).or_default() += 1;
        let entry = by_ticket.entry(sale.ticket_name.as_str()).or_default();
        if sale.cancelled {
            refunded += 1;
        } else {
            entry.0 += 1;
            entry.1 += sale.price;
        }
    }
    let tickets: Vec<TicketStatus> = by_ticket
        .into_iter()
        .map(|(name, (sold, revenue))| TicketStatus {
            ticket_name: name.to_string(),
            sold,
            quota: settings.quota_for(name),
            revenue,
        })
        .collect();
    // Max by count; on a tie the first (alphabetically smallest) currency wins.
    let currency = currencies
        .iter()
        .fold(None::<(&str, u64)>, |best, (&cur, &n)| match best {
            Some((_, best_n)) if best_n >= n => best,
            _ => Some((cur, n)),
        })
        .map_or(DEFAULT_CURRENCY, |(cur, _)| cur)
        .to_string();
    EventStatus {
        sold: tickets.iter().map(|t| t.sold).sum(),
        revenue: tickets.iter().map(|t| t.revenue).sum(),
        tickets,
        currency,
        refunded,
    }
}

/// An inclusive range of days in [`REPORT_TZ`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DateRange {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

impl DateRange {
    /// Parses two `YYYY-MM-DD` dates as users type them (surrounding spaces ignored): `from`
    /// must not be after `to`, and the range spans at most [`MAX_RANGE_DAYS`] days. Errors are
    /// short and echo at most ten characters of the input.
    pub fn parse(from: &str, to: &str) -> Result<Self, ReportError> {
        let from = parse_date("start", from)?;
        let to = parse_date("end", to)?;
        Self::new(from, to)
    }

    /// Checks the order and the length of a range.
    pub fn new(from: NaiveDate, to: NaiveDate) -> Result<Self, ReportError> {
        if from > to {
            return Err(ReportError::ReversedRange { from, to });
        }
        let days = u64::try_from((to - from).num_days())
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        if days > MAX_RANGE_DAYS {
            return Err(ReportError::RangeTooLong { days });
        }
        Ok(Self { from, to })
    }

    /// Every day of the range, in order (none if `from` is after `to`).
    pub fn days(&self) -> Vec<NaiveDate> {
        self.from
            .iter_days()
            .take_while(|d| *d <= self.to)
            .collect()
    }

    pub fn contains(&self, day: NaiveDate) -> bool {
        self.from <= day && day <= self.to
    }
}

fn parse_date(which: &'static str, input: &str) -> Result<NaiveDate, ReportError> {
    let bad = || ReportError::BadDate {
        which,
        input: echo(input),
    };
    let text = input.trim();
    let bytes = text.as_bytes();
    let shaped = bytes.len() == 10
        && bytes.iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            _ => b.is_ascii_digit(),
        });
    if !shaped {
        return Err(bad());
    }
    let number = |range: std::ops::Range<usize>| text.get(range).and_then(|s| s.parse().ok());
    let (Some(year), Some(month), Some(day)) = (number(0..4), number(5..7), number(8..10)) else {
        return Err(bad());
    };
    NaiveDate::from_ymd_opt(year as i32, month, day).ok_or_else(bad)
}

/// At most ten characters of user input, safe to show in a Discord message.
fn echo(input: &str) -> String {
    const MAX: usize = 10;
    let text = input.trim();
    let mut out: String = text
        .chars()
        .take(MAX)
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '-' | '.' | '/' | ' ') {
                c
            } else {
                '?'
            }
        })
        .collect();
    if text.chars().nth(MAX).is_some() {
        out.push('…');
    }
    out
}

/// Tickets sold per ticket type and per day.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DailyReport {
    pub range: DateRange,
    /// Every day of the range, in order.
    pub days: Vec<NaiveDate>,
    /// One row per ticket type seen in the sales at all (see the module doc), sorted by name.
    pub rows: Vec<DailyRow>,
    /// Tickets sold per day, all types together.
    pub totals: Vec<u64>,
    /// Tickets sold in the range.
    pub total: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DailyRow {
    pub ticket_name: String,
    /// Tickets sold per day of [`DailyReport::days`].
    pub per_day: Vec<u64>,
    pub total: u64,
}

/// Counts each sale not refunded or cancelled on its `paid_at` day in [`REPORT_TZ`].
pub fn daily_report(sales: &[SaleRecord], range: &DateRange) -> DailyReport {
    let days = range.days();
    let mut rows: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for sale in sales {
        let per_day = rows
            .entry(sale.ticket_name.as_str())
            .or_insert_with(|| vec![0; days.len()]);
        if sale.cancelled {
            continue;
        }
        let day = sale.paid_at.with_timezone(&REPORT_TZ).date_naive();
        if !range.contains(day) {
            continue;
        }
        let index = usize::try_from((day - range.from).num_days()).ok();
        if let Some(count) = index.and_then(|i| per_day.get_mut(i)) {
            *count += 1;
        }
    }
    let rows: Vec<DailyRow> = rows
        .into_iter()
        .map(|(name, per_day)| DailyRow {
            ticket_name: name.to_string(),
            total: per_day.iter().sum(),
            per_day,
        })
        .collect();
    let totals: Vec<u64> = (0..days.len())
        .map(|i| rows.iter().filter_map(|r| r.per_day.get(i)).sum())
        .collect();
    DailyReport {
        range: *range,
        total: totals.iter().sum(),
        days,
        rows,
        totals,
    }
}

impl DailyReport {
    /// The report as CSV: see the module doc for the layout.
    pub fn to_csv(&self) -> Result<String, ReportError> {
        let csv_err = |e: csv::Error| ReportError::Csv(e.to_string());
        let mut out = csv::WriterBuilder::new()
            .terminator(csv::Terminator::Any(b'\n'))
            .from_writer(Vec::new());
        let mut header = vec!["ticket".to_string()];
        header.extend(self.days.iter().map(|d| d.format("%Y-%m-%d").to_string()));
        header.push("total".to_string());
        out.write_record(&header).map_err(csv_err)?;
        let line = |name: &str, counts: &[u64], total: u64| {
            let mut record = vec![name.to_string()];
            record.extend(counts.iter().map(u64::to_string));
            record.push(total.to_string());
            record
        };
        for row in &self.rows {
            out.write_record(line(&row.ticket_name, &row.per_day, row.total))
                .map_err(csv_err)?;
        }
        out.write_record(line("total", &self.totals, self.total))
            .map_err(csv_err)?;
        let bytes = out
            .into_inner()
            .map_err(|e| ReportError::Csv(e.error().to_string()))?;
        String::from_utf8(bytes).map_err(|e| ReportError::Csv(e.to_string()))
    }

    /// The report as a PNG chart of [`PNG_WIDTH`]×[`PNG_HEIGHT`] pixels: stacked bars per day,
    /// a legend with each type's total, `title` on top (only its ASCII part: see the module
    /// doc).
    pub fn to_png(&self, title: &str) -> Result<Vec<u8>, ReportError> {
        let mut rgb = vec![0u8; PNG_WIDTH as usize * PNG_HEIGHT as usize * 3];
        self.draw(title, &mut rgb)?;
        encode_png(PNG_WIDTH, PNG_HEIGHT, &rgb)
    }

    fn draw(&self, title: &str, rgb: &mut [u8]) -> Result<(), ReportError> {
        ensure_font()?;
        let chart_err = |e: DrawingAreaErrorKind<_>| ReportError::Chart(e.to_string());
        let font = |size: u32| (FontFamily::Name(FONT_FAMILY), size).into_font();

        let root = BitMapBackend::with_buffer(rgb, (PNG_WIDTH, PNG_HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_err)?;
        let title = ascii_text(title, 70);
        let title = if title.is_empty() {
            "Daily ticket sales".to_string()
        } else {
            title
        };
        let body = root
            .titled(&title, font(24).color(&BLACK))
            .map_err(chart_err)?;
        let (chart_area, legend_area) = body.split_horizontally(PNG_WIDTH - 240);

        let days = &self.days;
        // The x axis counts half days: day i is the slot [2i, 2i + 2), labelled at its centre
        // 2i + 1 (integer coordinates keep plotters' default formatting; f64 ones with key
        // points lack it); a dozen labels at most, on every k-th day.
        let slots = i32::try_from(days.len().max(1)).unwrap_or(i32::MAX / 2);
        let every = days.len().max(1).div_ceil(12);
        let centres: Vec<i32> = (0..slots).step_by(every).map(|i| 2 * i + 1).collect();
        let peak = self.totals.iter().copied().max().unwrap_or(0).max(1);
        let y_top = peak + peak.div_ceil(10).max(1);
        let mut chart = ChartBuilder::on(&chart_area)
            .margin(12)
            .x_label_area_size(56)
            .y_label_area_size(64)
            .build_cartesian_2d((0..2 * slots).with_key_points(centres), 0u64..y_top)
            .map_err(chart_err)?;
        let day_label = |x: &i32| {
            usize::try_from(x / 2)
                .ok()
                .and_then(|i| days.get(i))
                .map(|d| d.format("%m-%d").to_string())
                .unwrap_or_default()
        };
        let x_desc = format!(
            "Day (Asia/Taipei), {} to {}: {} sold",
            self.range.from.format("%Y-%m-%d"),
            self.range.to.format("%Y-%m-%d"),
            self.total
        );
        chart
            .configure_mesh()
            .disable_x_mesh()
            .y_labels(8)
            .x_label_formatter(&day_label)
            .y_label_formatter(&|v: &u64| v.to_string())
            .x_desc(x_desc)
            .y_desc("Tickets sold")
            .label_style(font(14).color(&BLACK))
            .axis_desc_style(font(15).color(&BLACK))
            .light_line_style(RGBColor(235, 235, 235))
            .bold_line_style(RGBColor(200, 200, 200))
            .draw()
            .map_err(chart_err)?;

        let gap = if days.len() <= 31 { 3 } else { 1 };
        let mut bars = Vec::new();
        for (i, x) in (0..days.len()).zip((0..slots).map(|d| 2 * d)) {
            let mut base = 0u64;
            for (r, row) in self.rows.iter().enumerate() {
                let count = row.per_day.get(i).copied().unwrap_or(0);
                if count == 0 {
                    continue;
                }
                let top = base + count;
                let mut bar = Rectangle::new([(x, base), (x + 2, top)], colour(r).filled());
                bar.set_margin(0, 0, gap, gap);
                bars.push(bar);
                base = top;
            }
        }
        chart.draw_series(bars).map_err(chart_err)?;

        // The legend: a swatch and "label (total)" per ticket type, as many as fit.
        let line_height = 24;
        let (_, legend_height) = legend_area.dim_in_pixel();
        let fit = usize::try_from((legend_height.saturating_sub(40)) / line_height)
            .unwrap_or(0)
            .max(2);
        let labels = chart_labels(&self.rows);
        let shown = if self.rows.len() > fit {
            fit - 1
        } else {
            self.rows.len()
        };
        let mut y = 24i32;
        let step = line_height as i32;
        legend_area
            .draw(&Text::new(
                "Ticket types",
                (8, y - 4),
                font(16).color(&BLACK),
            ))
            .map_err(chart_err)?;
        y += step;
        if self.rows.is_empty() {
            legend_area
                .draw(&Text::new("(no sales)", (8, y), font(14).color(&BLACK)))
                .map_err(chart_err)?;
        }
        for (r, (row, label)) in self.rows.iter().zip(&labels).take(shown).enumerate() {
            legend_area
                .draw(&Rectangle::new(
                    [(8, y + 1), (22, y + 15)],
                    colour(r).filled(),
                ))
                .map_err(chart_err)?;
            let text = format!("{label} ({})", row.total);
            legend_area
                .draw(&Text::new(text, (28, y), font(14).color(&BLACK)))
                .map_err(chart_err)?;
            y += step;
        }
        if shown < self.rows.len() {
            let more = format!("... and {} more", self.rows.len() - shown);
            legend_area
                .draw(&Text::new(more, (8, y), font(14).color(&BLACK)))
                .map_err(chart_err)?;
        }
        root.present().map_err(chart_err)?;
        Ok(())
    }
}

/// The name the embedded font is registered under in plotters' global font table.
const FONT_FAMILY: &str = "autopilot-report-noto-sans";

fn ensure_font() -> Result<(), ReportError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        register_font(FONT_FAMILY, FontStyle::Normal, ttf_noto_sans::REGULAR).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(ReportError::Chart(
            "the embedded font could not be loaded".to_string(),
        ))
    }
}

/// Distinct bar colours (Tableau 10 and two more), repeated past twelve types.
const COLOURS: [RGBColor; 12] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
    RGBColor(0, 0, 128),
    RGBColor(128, 128, 0),
];

fn colour(index: usize) -> RGBColor {
    COLOURS[index % COLOURS.len()]
}

/// The printable-ASCII part of `text`, spaces collapsed, separators trimmed from both ends,
/// cut to `max` characters (ending in "..." when cut).
fn ascii_text(text: &str, max: usize) -> String {
    let kept: String = text
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { ' ' })
        .collect();
    let joined = kept.split_whitespace().collect::<Vec<_>>().join(" ");
    let trimmed = joined.trim_matches(|c: char| " -_/|:;,.".contains(c));
    if trimmed.chars().count() > max {
        let cut: String = trimmed.chars().take(max.saturating_sub(3)).collect();
        format!("{}...", cut.trim_end())
    } else {
        trimmed.to_string()
    }
}

/// How the chart names a ticket type: the ASCII part of its name (up to 22 characters), or
/// "Ticket N" (N = `position`, from 1) when no ASCII letter is left ("票種 2" would otherwise
/// read as a bare "2").
pub fn chart_label(ticket_name: &str, position: usize) -> String {
    let label = ascii_text(ticket_name, 22);
    if label.chars().any(|c| c.is_ascii_alphabetic()) {
        label
    } else {
        format!("Ticket {position}")
    }
}

/// The chart labels of rows, made unique by appending " (2)", " (3)"… to repeats.
fn chart_labels(rows: &[DailyRow]) -> Vec<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    rows.iter()
        .enumerate()
        .map(|(i, row)| {
            let label = chart_label(&row.ticket_name, i + 1);
            let n = seen.entry(label.clone()).or_insert(0);
            *n += 1;
            if *n == 1 {
                label
            } else {
                format!("{label} ({n})")
            }
        })
        .collect()
}

/// PNG bytes of an 8-bit RGB image. The `png` crate's output depends only on the pixels and
/// these settings, so the same report always gives the same bytes.
fn encode_png(width: u32, height: u32, rgb: &[u8]) -> Result<Vec<u8>, ReportError> {
    let mut bytes = Vec::new();
    let mut encoder = ::png::Encoder::new(&mut bytes, width, height);
    encoder.set_color(::png::ColorType::Rgb);
    encoder.set_depth(::png::BitDepth::Eight);
    encoder.set_compression(::png::Compression::Default);
    let mut writer = encoder
        .write_header()
        .map_err(|e| ReportError::Chart(format!("PNG header: {e}")))?;
    writer
        .write_image_data(rgb)
        .map_err(|e| ReportError::Chart(format!("PNG data: {e}")))?;
    writer
        .finish()
        .map_err(|e| ReportError::Chart(format!("PNG end: {e}")))?;
    Ok(bytes)
}
