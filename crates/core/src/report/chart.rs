//! The report's PNG chart, in a font loaded from a file at run time — a CJK one, so ticket
//! names keep their Chinese part (`一般票 Regular`). The font is not in the binary (several MB):
//! deployed it comes from the chart-font Lambda layer (`/opt/fonts/autopilot-chart.ttc`),
//! locally from `[reports] chart_font` or a system font found on the usual paths
//! ([`DEFAULT_FONT_PATHS`]). Without one there is no chart, and the bot says why.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ab_glyph::Font as _;
use plotters::prelude::*;
use plotters::style::register_font;

use super::{DailyReport, DailyRow, ReportError, PNG_HEIGHT, PNG_WIDTH};

/// Where a chart font is looked for when `[reports] chart_font` is not set, in order: the
/// Lambda layer's file, then the fonts with both Latin and CJK glyphs that common Linux and
/// macOS systems ship (Debian/Ubuntu `fonts-wqy-microhei`, `fonts-wqy-zenhei`,
/// `fonts-noto-cjk`). Debian's `fonts-droid-fallback` is not among them: it has no Latin
/// letters.
pub const DEFAULT_FONT_PATHS: &[&str] = &[
    "/opt/fonts/autopilot-chart.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/System/Library/Fonts/Supplemental/Arial Unicode.ttf",
    "/Library/Fonts/Arial Unicode.ttf",
];

/// Text the chart font must draw for ticket names to read: Chinese and Latin (ticket names
/// mix both, and the axes and legend figures are Latin digits).
const GLYPH_SAMPLE: &str = "一般票早鳥學生RegularEarlyBird0123456789";

/// Why there is no chart font; names every place looked at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChartFontError {
    #[error("no chart font: none of {} exists; set [reports] chart_font to a CJK font file (a .ttf/.ttc/.otf with Chinese and Latin glyphs, e.g. Debian's fonts-wqy-microhei), or deploy the chart-font layer (docs/DEPLOY.md)", .searched.join(", "))]
    NotFound { searched: Vec<String> },
    #[error("chart font {path}: {reason}")]
    Unusable { path: String, reason: String },
}

/// A font file registered for drawing, by path; each file is read once per process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChartFont {
    family: &'static str,
    bytes: &'static [u8],
    path: PathBuf,
}

/// Fonts registered with plotters (its font table is global and wants `'static` bytes).
type Registered = HashMap<PathBuf, (&'static str, &'static [u8])>;

fn registered() -> &'static Mutex<Registered> {
    static FONTS: std::sync::OnceLock<Mutex<Registered>> = std::sync::OnceLock::new();
    FONTS.get_or_init(Mutex::default)
}

impl ChartFont {
    /// `configured` (`[reports] chart_font`) when set, else the first of
    /// [`DEFAULT_FONT_PATHS`] that exists.
    pub fn find(configured: Option<&str>) -> Result<Self, ChartFontError> {
        if let Some(path) = configured.map(str::trim).filter(|p| !p.is_empty()) {
            return Self::load(Path::new(path));
        }
        match DEFAULT_FONT_PATHS
            .iter()
            .map(Path::new)
            .find(|p| p.is_file())
        {
            Some(path) => Self::load(path),
            None => Err(ChartFontError::NotFound {
                searched: DEFAULT_FONT_PATHS.iter().map(|p| (*p).to_owned()).collect(),
            }),
        }
    }

    /// The font at `path`, which must read as a font and draw Chinese.
    pub fn load(path: &Path) -> Result<Self, ChartFontError> {
        let unusable = |reason: String| ChartFontError::Unusable {
            path: path.display().to_string(),
            reason,
        };
        let mut fonts = registered().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&(family, bytes)) = fonts.get(path) {
            return Ok(Self {
                family,
                bytes,
                path: path.to_owned(),
            });
        }
        let bytes = std::fs::read(path).map_err(|e| unusable(e.to_string()))?;
        let font = ab_glyph::FontRef::try_from_slice(&bytes)
            .map_err(|_| unusable("not a TrueType/OpenType font".into()))?;
        if let Some(missing) = first_missing_glyph(&font, GLYPH_SAMPLE) {
            return Err(unusable(format!(
                "it has no glyph for {missing:?}: ticket names would be drawn as boxes; use a font with both Chinese and Latin letters (e.g. WenQuanYi Micro Hei)"
            )));
        }
        // Leaked on purpose: once per font file per process, as plotters keeps it for good.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        let family: &'static str =
            Box::leak(format!("autopilot-chart-{}", fonts.len()).into_boxed_str());
        register_font(family, FontStyle::Normal, bytes)
            .map_err(|_| unusable("plotters could not load it".into()))?;
        fonts.insert(path.to_owned(), (family, bytes));
        Ok(Self {
            family,
            bytes,
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether every character of `text` (spaces aside) has a glyph in this font: what would
    /// otherwise be drawn as a box ("tofu").
    pub fn covers(&self, text: &str) -> bool {
        ab_glyph::FontRef::try_from_slice(self.bytes)
            .is_ok_and(|font| first_missing_glyph(&font, text).is_none())
    }
}

/// The first character of `text` (spaces aside) that `font` has no glyph for: glyph 0 is
/// the "missing glyph" box.
fn first_missing_glyph(font: &ab_glyph::FontRef<'_>, text: &str) -> Option<char> {
    text.chars()
        .filter(|c| !c.is_whitespace())
        .find(|c| font.glyph_id(*c).0 == 0)
}

impl DailyReport {
    /// The report as a PNG chart of [`PNG_WIDTH`]×[`PNG_HEIGHT`] pixels: stacked bars per day,
    /// a legend with each type's total, `title` on top, all text in `font` (full ticket
    /// names, Chinese included).
    pub fn to_png(&self, title: &str, font: &ChartFont) -> Result<Vec<u8>, ReportError> {
        let mut rgb = vec![0u8; PNG_WIDTH as usize * PNG_HEIGHT as usize * 3];
        self.draw(title, font.family, &mut rgb)?;
        encode_png(PNG_WIDTH, PNG_HEIGHT, &rgb)
    }

    fn draw(&self, title: &str, family: &'static str, rgb: &mut [u8]) -> Result<(), ReportError> {
        let chart_err = |e: DrawingAreaErrorKind<_>| ReportError::Chart(e.to_string());
        let font = |size: u32| (FontFamily::Name(family), size).into_font();

        let root = BitMapBackend::with_buffer(rgb, (PNG_WIDTH, PNG_HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_err)?;
        let title = clip(title, 60);
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

/// `text` with spaces collapsed and separators trimmed from both ends, cut to `max`
/// characters (ending in "…" when cut) on a character boundary.
fn clip(text: &str, max: usize) -> String {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let trimmed = joined.trim_matches(|c: char| " -_/|:;,.".contains(c));
    if trimmed.chars().count() > max {
        let cut: String = trimmed.chars().take(max.saturating_sub(1)).collect();
        format!("{}…", cut.trim_end())
    } else {
        trimmed.to_string()
    }
}

/// How the chart names a ticket type: its full name (Chinese included) up to 22 characters,
/// or "Ticket N" (N = `position`, from 1) when nothing printable is left.
pub fn chart_label(ticket_name: &str, position: usize) -> String {
    let label = clip(ticket_name, 22);
    if label.chars().any(char::is_alphanumeric) {
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
