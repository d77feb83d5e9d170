//! The attendee page: `GET /invitation`, where a buyer who lost the invitation types the
//! address they registered with, and `POST /invitation`, which answers the same neutral page
//! whoever asks. Only hashes of the address go on to the poller, which resends the invitation
//! when it holds a paid, non-refunded ticket (see `reconcile::intake`).
//!
//! The page is one small bilingual (zh-TW / English) document: semantic HTML, no script, no
//! external font or image, one inline style allowed by its hash in a strict
//! Content-Security-Policy. CSRF: a random token in a `SameSite=Strict`, `HttpOnly` cookie and
//! the same token in the form (double submit, compared in constant time), and cross-site
//! requests refused by `Origin` / `Sec-Fetch-Site`. A hidden honeypot field turns bots away
//! without telling them.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// `[attendee_page]` in the TOML file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PageSettings {
    /// Shown at the top of the page, e.g. `PyCon Taiwan 2026`.
    pub brand: String,
    /// The accent colour, `#rrggbb`.
    pub accent: String,
    /// Who to write to when nothing arrives (an address or a URL, shown as text).
    pub contact: String,
    /// At most one resend per address per this many minutes.
    pub per_address_minutes: u64,
    /// At most this many requests per client (IP address) per hour.
    pub per_client_per_hour: u32,
}

impl Default for PageSettings {
    fn default() -> Self {
        Self {
            brand: "KKTIX Autopilot".into(),
            accent: "#1f6f5c".into(),
            contact: String::new(),
            per_address_minutes: 15,
            per_client_per_hour: 10,
        }
    }
}

impl PageSettings {
    pub fn validate(&self) -> Result<(), String> {
        let accent = self.accent.trim();
        let hex = accent.len() == 7
            && accent.starts_with('#')
            && accent[1..].chars().all(|c| c.is_ascii_hexdigit());
        if !hex {
            return Err(format!(
                "[attendee_page] accent {:?} is not a colour like #1f6f5c",
                self.accent
            ));
        }
        if self.per_address_minutes == 0 || self.per_client_per_hour == 0 {
            return Err(
                "[attendee_page] per_address_minutes and per_client_per_hour must be at least 1"
                    .into(),
            );
        }
        Ok(())
    }
}

/// The page's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    ZhTw,
    En,
}

impl Lang {
    /// `?lang=` (or the form's `lang`) first, then `Accept-Language` (the first of zh or en
    /// by quality), then zh-TW: the conference's own language.
    pub fn negotiate(explicit: Option<&str>, accept_language: Option<&str>) -> Self {
        if let Some(lang) = explicit.and_then(Self::parse) {
            return lang;
        }
        let mut best: Option<(f32, Lang)> = None;
        for part in accept_language.unwrap_or_default().split(',') {
            let mut pieces = part.split(';');
            let tag = pieces.next().unwrap_or_default().trim();
            let quality = pieces
                .find_map(|p| p.trim().strip_prefix("q=").map(str::to_owned))
                .and_then(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            let Some(lang) = Self::parse(tag) else {
                continue;
            };
            if best.is_none_or(|(q, _)| quality > q) {
                best = Some((quality, lang));
            }
        }
        best.map_or(Self::ZhTw, |(_, lang)| lang)
    }

    fn parse(tag: &str) -> Option<Self> {
        let tag = tag.trim().to_ascii_lowercase();
        if tag.starts_with("zh") {
            Some(Self::ZhTw)
        } else if tag.starts_with("en") {
            Some(Self::En)
        } else {
            None
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Self::ZhTw => "zh-TW",
            Self::En => "en",
        }
    }

    fn html_lang(self) -> &'static str {
        match self {
            Self::ZhTw => "zh-Hant-TW",
            Self::En => "en",
        }
    }

    fn other(self) -> Self {
        match self {
            Self::ZhTw => Self::En,
            Self::En => Self::ZhTw,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::ZhTw => "中文",
            Self::En => "English",
        }
    }
}

/// Which page to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageKind {
    /// The form.
    Form,
    /// The neutral answer to a submission, whoever asked.
    Answer,
    /// The form was not filled in (no address, or not an address).
    Invalid,
    /// The form's token is missing or stale, or the request came from another site.
    Expired,
    /// This client asked too often.
    TooMany,
    /// The request could not be queued: try again.
    Unavailable,
}

struct Texts {
    title: &'static str,
    intro: &'static str,
    label: &'static str,
    hint: &'static str,
    button: &'static str,
    answer_title: &'static str,
    answer: &'static str,
    again: &'static str,
    invalid: &'static str,
    expired: &'static str,
    too_many: &'static str,
    unavailable: &'static str,
    contact: &'static str,
    honeypot: &'static str,
}

const ZH: Texts = Texts {
    title: "找回參加資訊",
    intro: "請輸入您報名時填寫的電子郵件地址。如果這個地址持有有效的票券，我們會把參加資訊（連結與報到資訊）再寄一次給您。",
    label: "電子郵件地址",
    hint: "請使用報名時的地址。",
    button: "重寄參加資訊",
    answer_title: "請查看您的信箱",
    answer: "如果這個地址持有有效的票券，參加資訊會在幾分鐘內寄到。同一個地址每 {minutes} 分鐘最多寄一次；也請查看垃圾郵件匣。",
    again: "輸入其他地址",
    invalid: "請輸入有效的電子郵件地址。",
    expired: "這個表單已過期，請重新整理頁面後再送出。",
    too_many: "請求次數過多，請稍後再試。",
    unavailable: "暫時無法處理您的請求，請過一分鐘再試。",
    contact: "仍然沒有收到？請聯絡",
    honeypot: "請勿填寫此欄",
};

const EN: Texts = Texts {
    title: "Find my invitation",
    intro: "Enter the email address you registered with. If it holds a valid ticket, we will send your invitation (links and check-in details) again.",
    label: "Email address",
    hint: "Use the address you registered with.",
    button: "Resend my invitation",
    answer_title: "Check your inbox",
    answer: "If this address holds a valid ticket, the invitation is on its way and arrives within minutes. We send at most one every {minutes} minutes per address; please check your spam folder too.",
    again: "Try another address",
    invalid: "Please enter a valid email address.",
    expired: "This form has expired. Reload the page and submit it again.",
    too_many: "Too many requests. Please try again later.",
    unavailable: "We could not take your request just now. Please try again in a minute.",
    contact: "Still nothing? Contact",
    honeypot: "Leave this field empty",
};

/// The page's one stylesheet; the CSP allows exactly it by its hash.
const STYLE: &str = "\
:root{color-scheme:light dark;--accent:ACCENT}\
*{box-sizing:border-box}\
body{margin:0;font:1.0625rem/1.6 system-ui,-apple-system,\"Segoe UI\",\"Noto Sans TC\",\"PingFang TC\",\"Microsoft JhengHei\",\"WenQuanYi Micro Hei\",sans-serif;background:Canvas;color:CanvasText}\
header{background:var(--accent);color:#fff;padding:.75rem 1rem}\
header p{margin:0;font-weight:600}\
main{max-width:34rem;margin:0 auto;padding:1rem}\
h1{font-size:1.5rem;line-height:1.3;margin:.5rem 0 1rem}\
label{display:block;font-weight:600;margin:1rem 0 .25rem}\
input[type=email]{width:100%;font:inherit;padding:.6rem .7rem;border:2px solid #767676;border-radius:.4rem}\
input[type=email]:focus{outline:3px solid var(--accent);outline-offset:1px}\
.hint{margin:.25rem 0 0;font-size:.9375rem;opacity:.8}\
button{margin-top:1rem;font:inherit;font-weight:600;padding:.65rem 1.1rem;border:0;border-radius:.4rem;background:var(--accent);color:#fff;cursor:pointer;width:100%}\
button:focus{outline:3px solid CanvasText;outline-offset:2px}\
.status{border-left:4px solid var(--accent);padding:.5rem .75rem;margin:1rem 0}\
.hp{position:absolute;left:-10000px;width:1px;height:1px;overflow:hidden}\
nav{margin-top:2rem;font-size:.9375rem}\
a{color:inherit}\
@media (min-width:40rem){button{width:auto}}";

/// A rendered page: its HTTP status, body and the CSP that allows its style.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub status: u16,
    pub html: String,
    pub csp: String,
}

/// Renders the page for `kind` in `lang`. `csrf` goes into the form (the form page only).
pub fn render(settings: &PageSettings, kind: PageKind, lang: Lang, csrf: Option<&str>) -> Page {
    let texts = match lang {
        Lang::ZhTw => &ZH,
        Lang::En => &EN,
    };
    let style = STYLE.replace("ACCENT", settings.accent.trim());
    let digest = Sha256::digest(style.as_bytes());
    let style_hash = base64::engine::general_purpose::STANDARD.encode(digest);
    let csp = format!(
        "default-src 'none'; style-src 'sha256-{style_hash}'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    );
    let (status, heading, message) = match kind {
        PageKind::Form => (200, texts.title, None),
        PageKind::Answer => (200, texts.answer_title, Some(texts.answer)),
        PageKind::Invalid => (400, texts.title, Some(texts.invalid)),
        PageKind::Expired => (403, texts.title, Some(texts.expired)),
        PageKind::TooMany => (429, texts.title, Some(texts.too_many)),
        PageKind::Unavailable => (503, texts.title, Some(texts.unavailable)),
    };
    let brand = escape(settings.brand.trim());
    let mut html = String::with_capacity(4096);
    html.push_str(&format!(
        "<!DOCTYPE html>\n<html lang=\"{}\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<meta name=\"robots\" content=\"noindex\">\n<title>{} · {brand}</title>\n<style>{style}</style>\n</head>\n<body>\n<header><p>{brand}</p></header>\n<main>\n<h1>{heading}</h1>\n",
        lang.html_lang(),
        texts.title,
    ));
    if let Some(message) = message {
        let message = message.replace("{minutes}", &settings.per_address_minutes.to_string());
        html.push_str(&format!(
            "<p class=\"status\" role=\"status\">{message}</p>\n"
        ));
    }
    match kind {
        PageKind::Answer | PageKind::TooMany | PageKind::Unavailable => {
            html.push_str(&format!(
                "<p><a href=\"?lang={}\">{}</a></p>\n",
                lang.code(),
                texts.again
            ));
        }
        PageKind::Form | PageKind::Invalid | PageKind::Expired => {
            if kind == PageKind::Form {
                html.push_str(&format!("<p>{}</p>\n", texts.intro));
            }
            match csrf {
                Some(token) => html.push_str(&format!(
                    "<form method=\"post\">\n<input type=\"hidden\" name=\"csrf\" value=\"{}\">\n<input type=\"hidden\" name=\"lang\" value=\"{}\">\n<label for=\"email\">{}</label>\n<input id=\"email\" name=\"email\" type=\"email\" autocomplete=\"email\" inputmode=\"email\" required maxlength=\"254\" aria-describedby=\"email-hint\">\n<p class=\"hint\" id=\"email-hint\">{}</p>\n<div class=\"hp\" aria-hidden=\"true\"><label for=\"website\">{}</label><input id=\"website\" name=\"website\" type=\"text\" tabindex=\"-1\" autocomplete=\"off\"></div>\n<button type=\"submit\">{}</button>\n</form>\n",
                    escape(token),
                    lang.code(),
                    texts.label,
                    texts.hint,
                    texts.honeypot,
                    texts.button
                )),
                None => html.push_str(&format!(
                    "<p><a href=\"?lang={}\">{}</a></p>\n",
                    lang.code(),
                    texts.again
                )),
            }
        }
    }
    let contact = settings.contact.trim();
    if !contact.is_empty() {
        html.push_str(&format!("<p>{} {}</p>\n", texts.contact, escape(contact)));
    }
    let other = lang.other();
    html.push_str(&format!(
        "<nav><a href=\"?lang={}\" lang=\"{}\" hreflang=\"{}\">{}</a></nav>\n</main>\n</body>\n</html>\n",
        other.code(),
        other.html_lang(),
        other.code(),
        other.name()
    ));
    Page { status, html, csp }
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

/// The submitted form, parsed at the edge.
#[derive(Debug, Default)]
pub struct Submission {
    pub email: Option<crate::pii::Sensitive<String>>,
    pub csrf: Option<String>,
    pub lang: Option<String>,
    /// The honeypot: people leave it empty.
    pub website: Option<String>,
}

impl Submission {
    /// `application/x-www-form-urlencoded`; `None` when the body is not that.
    pub fn parse(body: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(body).ok()?;
        let mut submission = Self::default();
        for (key, value) in url::form_urlencoded::parse(text.as_bytes()) {
            match key.as_ref() {
                "email" => submission.email = Some(crate::pii::Sensitive::new(value.into_owned())),
                "csrf" => submission.csrf = Some(value.into_owned()),
                "lang" => submission.lang = Some(value.into_owned()),
                "website" => submission.website = Some(value.into_owned()),
                _ => {}
            }
        }
        Some(submission)
    }
}

/// The two hashes an address is matched on, as the ledger keeps them: the address as typed
/// (the de-identification rule hashes it untrimmed) and its trimmed, lower-cased form.
/// `None` when it is not an address at all.
pub fn email_hashes(typed: &str) -> Option<Vec<String>> {
    let normalised = typed.trim().to_lowercase();
    let plausible = normalised.len() <= 254
        && normalised
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
        && !normalised.chars().any(char::is_whitespace);
    if !plausible {
        return None;
    }
    let mut hashes = vec![crate::pii::sha256_hex(typed)];
    let second = crate::pii::sha256_hex(&normalised);
    if second != hashes[0] {
        hashes.push(second);
    }
    Some(hashes)
}

/// A sliding-window count of requests per key, bounded in memory: the oldest keys go first
/// when it is full. Per process (one Lambda instance, or `autopilot dev`); the poller keeps
/// the per-address limit durably in the ledger.
pub struct RateLimiter {
    window: Duration,
    limit: u32,
    capacity: usize,
    seen: std::sync::Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl RateLimiter {
    pub fn new(window: Duration, limit: u32, capacity: usize) -> Self {
        Self {
            window,
            limit,
            capacity,
            seen: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Forgets the last request counted for `key` (it could not be served).
    pub fn release(&self, key: &str) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(times) = seen.get_mut(key) {
            times.pop_back();
        }
    }

    /// Counts one request of `key`; false when it is over the limit (and not counted).
    pub fn allow(&self, key: &str, now: Instant) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= self.capacity && !seen.contains_key(key) {
            let window = self.window;
            seen.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.duration_since(*t) < window)
            });
            if seen.len() >= self.capacity {
                // Still full of live keys: forget the quietest one.
                if let Some(oldest) = seen
                    .iter()
                    .min_by_key(|(_, times)| times.back().copied())
                    .map(|(k, _)| k.clone())
                {
                    seen.remove(&oldest);
                }
            }
        }
        let times = seen.entry(key.to_owned()).or_default();
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            times.pop_front();
        }
        if times.len() >= self.limit as usize {
            return false;
        }
        times.push_back(now);
        true
    }
}

/// The cookie that carries the form's CSRF token.
pub const CSRF_COOKIE: &str = "autopilot_csrf";

/// A fresh CSRF token: 32 random bytes, hex.
pub fn new_csrf_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// The `Set-Cookie` value for `token`; `secure` over HTTPS.
pub fn csrf_cookie(token: &str, secure: bool) -> String {
    format!(
        "{CSRF_COOKIE}={token}; Path=/; Max-Age=7200; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    )
}

/// The CSRF token in a `Cookie` header, if any.
pub fn csrf_from_cookies(header: &str) -> Option<&str> {
    header.split(';').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        (name == CSRF_COOKIE).then_some(value.trim())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_comes_from_the_choice_then_accept_language_then_zh_tw() {
        assert_eq!(Lang::negotiate(Some("en"), Some("zh-TW")), Lang::En);
        assert_eq!(Lang::negotiate(None, Some("en-US,en;q=0.9")), Lang::En);
        assert_eq!(
            Lang::negotiate(None, Some("fr;q=1, en;q=0.5, zh-TW;q=0.8")),
            Lang::ZhTw
        );
        assert_eq!(Lang::negotiate(None, Some("fr")), Lang::ZhTw);
        assert_eq!(Lang::negotiate(Some("xx"), None), Lang::ZhTw);
    }

    #[test]
    fn addresses_hash_as_typed_and_normalised() {
        let hashes = email_hashes(" Someone@Example.org ").unwrap();
        assert_eq!(hashes.len(), 2);
        assert_eq!(hashes[0], crate::pii::sha256_hex(" Someone@Example.org "));
        assert_eq!(hashes[1], crate::pii::sha256_hex("someone@example.org"));
        assert_eq!(email_hashes("someone@example.org").unwrap().len(), 1);
        assert!(email_hashes("not an address").is_none());
        assert!(email_hashes("@example.org").is_none());
    }

    #[test]
    fn the_limiter_counts_per_key_within_the_window() {
        let limiter = RateLimiter::new(Duration::from_secs(60), 2, 100);
        let start = Instant::now();
        assert!(limiter.allow("a", start));
        assert!(limiter.allow("a", start));
        assert!(!limiter.allow("a", start));
        assert!(limiter.allow("b", start));
        assert!(limiter.allow("a", start + Duration::from_secs(61)));
    }

    #[test]
    fn the_page_escapes_branding_and_its_csp_allows_only_its_style() {
        let settings = PageSettings {
            brand: "<PyCon> & Friends".into(),
            ..PageSettings::default()
        };
        let page = render(&settings, PageKind::Form, Lang::En, Some("tok"));
        assert!(page.html.contains("&lt;PyCon&gt; &amp; Friends"));
        assert!(page.html.contains("<label for=\"email\">"));
        assert!(page
            .csp
            .starts_with("default-src 'none'; style-src 'sha256-"));
        assert!(!page.html.contains("<script"));
        let zh = render(&settings, PageKind::Answer, Lang::ZhTw, None);
        assert!(zh.html.contains("lang=\"zh-Hant-TW\""));
        assert_eq!(zh.status, 200);
    }

    #[test]
    fn cookies_are_read_by_name() {
        assert_eq!(
            csrf_from_cookies("a=1; autopilot_csrf=abc; b=2"),
            Some("abc")
        );
        assert_eq!(csrf_from_cookies("a=1"), None);
    }
}
