//! The attendee page's routes (the receiver function): `GET /invitation` shows the form,
//! `POST /invitation` answers the same neutral page whoever asks and queues the address's
//! hashes for the poller. Nothing here reads the store, so neither the answer nor its timing
//! can tell whether an address bought a ticket.

use bytes::Bytes;
use http::{header, HeaderValue, StatusCode};

use super::HttpResponse;
use crate::http::{ClientAddr, HttpRequest};
use crate::intake::page::{
    csrf_cookie, csrf_from_cookies, email_hashes, new_csrf_token, render, Lang, PageKind,
    Submission,
};
use crate::intake::Receiver;

pub(super) fn form(receiver: &Receiver, request: &HttpRequest) -> HttpResponse {
    let lang = Lang::negotiate(query_lang(request).as_deref(), accept_language(request));
    fresh_form(receiver, PageKind::Form, lang, request)
}

pub(super) async fn submit(receiver: &Receiver, request: &HttpRequest) -> HttpResponse {
    let submission = form_body(request).and_then(Submission::parse);
    let explicit = submission
        .as_ref()
        .and_then(|s| s.lang.clone())
        .or_else(|| query_lang(request));
    let lang = Lang::negotiate(explicit.as_deref(), accept_language(request));
    let Some(submission) = submission else {
        return fresh_form(receiver, PageKind::Invalid, lang, request);
    };
    if cross_site(request) || !csrf_matches(request, submission.csrf.as_deref()) {
        return fresh_form(receiver, PageKind::Expired, lang, request);
    }
    let client = receiver.client_id(&client_addr(request));
    if !receiver.client_allowed(&client) {
        let mut response = page(receiver, PageKind::TooMany, lang, None);
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("3600"));
        return response;
    }
    // A bot filled the hidden field: the same answer, and nothing done.
    if submission.website.as_deref().is_some_and(|w| !w.is_empty()) {
        return page(receiver, PageKind::Answer, lang, None);
    }
    let hashes = submission
        .email
        .as_ref()
        .and_then(|email| email_hashes(email.expose()));
    let Some(hashes) = hashes else {
        return page(
            receiver,
            PageKind::Invalid,
            lang,
            submission.csrf.as_deref(),
        );
    };
    match receiver.accept_invitation_request(hashes, client).await {
        Ok(()) => page(receiver, PageKind::Answer, lang, None),
        Err(error) => {
            tracing::error!(%error, "an attendee-page request could not be queued");
            page(receiver, PageKind::Unavailable, lang, None)
        }
    }
}

/// The form with a new CSRF token, and the cookie that carries it.
fn fresh_form(
    receiver: &Receiver,
    kind: PageKind,
    lang: Lang,
    request: &HttpRequest,
) -> HttpResponse {
    let token = new_csrf_token();
    let mut response = page(receiver, kind, lang, Some(&token));
    set_cookie(&mut response, &token, request);
    response
}

fn page(receiver: &Receiver, kind: PageKind, lang: Lang, csrf: Option<&str>) -> HttpResponse {
    let page = render(receiver.page(), kind, lang, csrf);
    let mut response = http::Response::new(Bytes::from(page.html));
    *response.status_mut() =
        StatusCode::from_u16(page.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    if let Ok(csp) = HeaderValue::from_str(&page.csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::VARY, HeaderValue::from_static("Accept-Language"));
    response
}

fn set_cookie(response: &mut HttpResponse, token: &str, request: &HttpRequest) {
    let secure = request
        .headers()
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|proto| proto.eq_ignore_ascii_case("https"))
        || request.uri().scheme_str() == Some("https");
    if let Ok(value) = HeaderValue::from_str(&csrf_cookie(token, secure)) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
}

/// The body, when it is a form (`application/x-www-form-urlencoded`).
fn form_body(request: &HttpRequest) -> Option<&[u8]> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())?;
    let essence = content_type.split(';').next()?.trim();
    essence
        .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        .then(|| request.body().as_ref())
}

/// The double-submit check: the cookie's token and the form's, in constant time.
fn csrf_matches(request: &HttpRequest, presented: Option<&str>) -> bool {
    let Some(presented) = presented.filter(|t| !t.is_empty()) else {
        return false;
    };
    request
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(csrf_from_cookies)
        .any(|cookie| crate::pii::secrets_match(presented, cookie))
}

/// A browser says where the request comes from: another site's form is refused.
fn cross_site(request: &HttpRequest) -> bool {
    let headers = request.headers();
    if headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|site| {
            site.eq_ignore_ascii_case("cross-site") || site.eq_ignore_ascii_case("same-site")
        })
    {
        return true;
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    if origin == "null" {
        // An opaque origin: only a browser that vouches for the same origin gets through.
        return !headers
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|site| site.eq_ignore_ascii_case("same-origin"));
    }
    let Some(origin) = url::Url::parse(origin).ok() else {
        return true;
    };
    let Some(host) = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()))
    else {
        return false;
    };
    // The same host and port (a page on another port of the host is another origin).
    let (host_name, host_port) = match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => {
            (name, port.parse::<u16>().ok())
        }
        _ => (host, None),
    };
    let same_host = origin
        .host_str()
        .is_some_and(|h| h.eq_ignore_ascii_case(host_name.trim_matches(['[', ']'])));
    let same_port =
        host_port.or_else(|| origin.port_or_known_default()) == origin.port_or_known_default();
    !(same_host && same_port)
}

fn client_addr(request: &HttpRequest) -> String {
    if let Some(ClientAddr(addr)) = request.extensions().get::<ClientAddr>() {
        return addr.clone();
    }
    request
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|list| list.rsplit(',').next())
        .map(|addr| addr.trim().to_owned())
        .filter(|addr| !addr.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

fn query_lang(request: &HttpRequest) -> Option<String> {
    url::form_urlencoded::parse(request.uri().query().unwrap_or_default().as_bytes())
        .find(|(key, _)| key == "lang")
        .map(|(_, value)| value.into_owned())
}

fn accept_language(request: &HttpRequest) -> Option<&str> {
    request
        .headers()
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
}
