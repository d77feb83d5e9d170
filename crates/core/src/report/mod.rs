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
//! buffer and encoded to PNG (plotters' own encoder only writes files). Rendering and encoding
//! are deterministic: the same report, title and font give the same bytes.
//!
//! Its text is drawn in a CJK font loaded from a file at run time ([`ChartFont`]), so ticket
//! names keep their Chinese part; the font is not in the binary. Without one the bot sends the
//! CSV alone and says why. The CSV always keeps the full names.
//! (Only with the `chart` feature; the functions that draw no chart do not link plotters.)

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::model::SaleRecord;

#[cfg(feature = "chart")]
mod chart;
#[cfg(feature = "chart")]
pub use chart::{chart_label, ChartFont, ChartFontError, DEFAULT_FONT_PATHS};

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
    /// The chart's font file (a CJK .ttf/.otf); unset, the usual places are searched (the
    /// Lambda layer's `/opt/fonts/autopilot-chart.ttc`, then common system CJK fonts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chart_font: Option<String>,
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
}
