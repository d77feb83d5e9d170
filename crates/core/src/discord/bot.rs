//! The slash-command handler behind `POST /discord/interactions`: signature check and parsing
//! at the edge, then one function per command. Every interaction is answered inside
//! Discord's 3-second window: inline when the work finishes within the budget, otherwise a
//! deferred reply (type 5) finished later by editing `@original`.
//!
//! Replies hold counts, names of events and tickets, and ids: never a buyer's email or name.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use ed25519_dalek::VerifyingKey;
use futures::future::BoxFuture;
use http::StatusCode;

use tokio::sync::Notify;

use super::model::{
    char_len, option_bool, option_str, truncate, Choice, CommandData, CommandOption, Embed,
    EmbedField, Interaction, InteractionResponse, InteractionType, OptionType, ResolvedAttachment,
    ResponseData, MAX_CONTENT_CHARS,
};
use super::operations::Operations;
use super::rest::{Attachment, DiscordApi};
pub use super::settings::BotSettings;
use super::verify::verify_http;
use crate::http::{error_response, json, HttpRequest, HttpResponse};
use crate::model::{CampaignReport, CampaignStatus, EventRecord};
use crate::report::{daily_report, event_status, ChartFont, DateRange, ReportSettings, REPORT_TZ};
use crate::sales::{event_sales, events_overview, EventState};
use crate::selection::CategoryRules;
use crate::store::Warehouse;

/// Runs work that must outlive the HTTP response. Locally a spawned task is enough; on
/// Lambda the function binary keeps the environment alive until the work is done.
pub trait Deferrer: Send + Sync {
    fn defer(&self, work: BoxFuture<'static, ()>);
}

/// `tokio::spawn`: for `autopilot dev` and tests.
pub struct SpawnDeferrer;

impl Deferrer for SpawnDeferrer {
    fn defer(&self, work: BoxFuture<'static, ()>) {
        tokio::spawn(work);
    }
}

/// What a command answers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reply {
    pub content: String,
    pub embeds: Vec<Embed>,
    pub files: Vec<Attachment>,
}

impl Reply {
    fn text(content: impl Into<String>) -> Self {
        Self {
            content: content.into(),
            ..Self::default()
        }
    }

    fn data(&self, ephemeral: bool) -> ResponseData {
        let mut data = ResponseData::message(self.content.clone());
        data.embeds = self.embeds.clone();
        if ephemeral {
            data.flags = Some(super::model::EPHEMERAL);
        }
        data.fit()
    }
}

pub struct DiscordBot {
    public_key: VerifyingKey,
    warehouse: Arc<dyn Warehouse>,
    categories: CategoryRules,
    reports: ReportSettings,
    settings: BotSettings,
    operations: Option<Arc<dyn Operations>>,
    api: Arc<DiscordApi>,
    deferrer: Arc<dyn Deferrer>,
    /// The report chart's font, found at the first report (reading a 5 MB font at start
    /// would add milliseconds to every cold start); why not, when there is none.
    chart_font: Arc<ChartFontSlot>,
}

/// The chart font, looked for once, when the first report needs it.
struct ChartFontSlot {
    configured: Option<String>,
    font: std::sync::OnceLock<Result<ChartFont, String>>,
}

impl ChartFontSlot {
    fn get(&self) -> Result<&ChartFont, &str> {
        self.font
            .get_or_init(|| {
                let found = ChartFont::find(self.configured.as_deref()).map_err(|e| e.to_string());
                match &found {
                    Ok(font) => {
                        tracing::info!(font = %font.path().display(), "report charts use this font")
                    }
                    Err(reason) => tracing::warn!(%reason, "reports carry the CSV only"),
                }
                found
            })
            .as_ref()
            .map_err(String::as_str)
    }
}

/// Where a command's answer stands while the handler waits for it.
enum Slot {
    Waiting,
    Deferred,
    Done(Reply),
}

struct Pending {
    slot: Mutex<Slot>,
    ready: Notify,
}

impl DiscordBot {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        public_key: VerifyingKey,
        warehouse: Arc<dyn Warehouse>,
        categories: CategoryRules,
        reports: ReportSettings,
        settings: BotSettings,
        operations: Option<Arc<dyn Operations>>,
        api: Arc<DiscordApi>,
        deferrer: Arc<dyn Deferrer>,
    ) -> Self {
        let chart_font = Arc::new(ChartFontSlot {
            configured: reports.chart_font.clone(),
            font: std::sync::OnceLock::new(),
        });
        Self {
            public_key,
            warehouse,
            categories,
            reports,
            settings,
            operations,
            api,
            deferrer,
            chart_font,
        }
    }

    /// The report chart's font, or why there is none.
    pub fn chart_font(&self) -> Result<&ChartFont, &str> {
        self.chart_font.get()
    }

    pub async fn handle(&self, request: &HttpRequest) -> HttpResponse {
        if let Err(error) = verify_http(
            &self.public_key,
            request.headers(),
            request.body(),
            Utc::now(),
        ) {
            return error_response(StatusCode::UNAUTHORIZED, &error.to_string());
        }
        let interaction: Interaction = match serde_json::from_slice(request.body()) {
            Ok(interaction) => interaction,
            Err(e) => {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    &format!("not a Discord interaction ({:?} error)", e.classify()),
                )
            }
        };
        let response = match interaction.kind {
            InteractionType::Ping => InteractionResponse::pong(),
            InteractionType::ApplicationCommandAutocomplete => {
                self.autocomplete(&interaction).await
            }
            InteractionType::ApplicationCommand => self.command(&interaction).await,
            _ => {
                return error_response(StatusCode::BAD_REQUEST, "unsupported interaction type");
            }
        };
        json(StatusCode::OK, &response)
    }

    async fn command(&self, interaction: &Interaction) -> InteractionResponse {
        let Some(data) = &interaction.data else {
            return InteractionResponse::ephemeral(UNKNOWN);
        };
        let Some((group, sub, options)) = invoked(data) else {
            return InteractionResponse::ephemeral(UNKNOWN);
        };
        match (data.name.as_str(), group, sub) {
            ("event", None, "list") => {
                let warehouse = self.warehouse.clone();
                let categories = self.categories.clone();
                let days = self.settings.recently_ended_days;
                self.respond(
                    interaction,
                    false,
                    true,
                    Box::pin(
                        async move { list_events(warehouse.as_ref(), &categories, days).await },
                    ),
                )
                .await
            }
            ("event", None, "status") => {
                let slug = option_str(options, "slug").unwrap_or_default().to_owned();
                let warehouse = self.warehouse.clone();
                let categories = self.categories.clone();
                let reports = self.reports.clone();
                self.respond(
                    interaction,
                    false,
                    true,
                    Box::pin(async move {
                        status(warehouse.as_ref(), &categories, &reports, &slug).await
                    }),
                )
                .await
            }
            ("event", None, "report") => {
                let slug = option_str(options, "slug").unwrap_or_default().to_owned();
                let range = match DateRange::parse(
                    option_str(options, "from").unwrap_or_default(),
                    option_str(options, "to").unwrap_or_default(),
                ) {
                    Ok(range) => range,
                    Err(error) => return InteractionResponse::ephemeral(error.to_string()),
                };
                let warehouse = self.warehouse.clone();
                let categories = self.categories.clone();
                let fonts = self.chart_font.clone();
                // Attachments go out by editing the deferred reply.
                self.respond(
                    interaction,
                    false,
                    false,
                    Box::pin(async move {
                        report(warehouse.as_ref(), &categories, &slug, &range, fonts.get()).await
                    }),
                )
                .await
            }
            ("autopilot", group, sub) => {
                if !self.is_operator(interaction) {
                    return InteractionResponse::ephemeral(
                        "🔒 此指令限營運人員 / This command is for operators only.",
                    );
                }
                let Some(operations) = self.operations.clone() else {
                    return InteractionResponse::ephemeral(
                        "此部署未連接 poller / This deployment cannot reach the poller (POLLER_URL).",
                    );
                };
                match (group, sub) {
                    (None, "poll") => {
                        self.respond(
                            interaction,
                            false,
                            false,
                            Box::pin(async move {
                                match operations.poll().await {
                                    Ok(summary) => Reply::text(format!(
                                        "🔄 已執行同步 / Reconcile run: {summary}"
                                    )),
                                    Err(error) => Reply::text(format!(
                                        "⚠️ 同步失敗 / The run failed: {error}"
                                    )),
                                }
                            }),
                        )
                        .await
                    }
                    (None, "resend") => {
                        let reference = option_str(options, "reference")
                            .unwrap_or_default()
                            .to_owned();
                        self.respond(
                            interaction,
                            true,
                            false,
                            Box::pin(async move {
                                match operations.resend(&reference).await {
                                    Ok(report) => Reply::text(format!(
                                        "📨 已重新寄送邀請 / Invitation resent: attendee {} via {}",
                                        report.key, report.provider
                                    )),
                                    Err(error) => {
                                        Reply::text(format!("⚠️ 無法重寄 / Not resent: {error}"))
                                    }
                                }
                            }),
                        )
                        .await
                    }
                    (None, "import") => {
                        let event = option_str(options, "event").unwrap_or_default().to_owned();
                        let attendees = data.attachment(options, "attendees").cloned();
                        let orders = data.attachment(options, "orders").cloned();
                        let Some(attendees) = attendees else {
                            return InteractionResponse::ephemeral(
                                "請附上參加人報表 / Attach the attendees export (CSV).",
                            );
                        };
                        let api = self.api.clone();
                        self.respond(
                            interaction,
                            false,
                            false,
                            Box::pin(async move {
                                import(api.as_ref(), operations.as_ref(), event, attendees, orders)
                                    .await
                            }),
                        )
                        .await
                    }
                    (None, "confirm-revoke") => {
                        let event = option_str(options, "event").unwrap_or_default().to_owned();
                        self.respond(
                            interaction,
                            false,
                            false,
                            Box::pin(async move {
                                match operations.confirm_revoke(&event).await {
                                    Ok(summary) => Reply::text(format!(
                                        "🗑️ 已確認撤銷 / Revoke confirmed: {} revoked — {summary}",
                                        summary.revoked
                                    )),
                                    Err(error) => {
                                        Reply::text(format!("⚠️ 未撤銷 / Nothing revoked: {error}"))
                                    }
                                }
                            }),
                        )
                        .await
                    }
                    (Some("campaign"), "list") => {
                        self.respond(
                            interaction,
                            false,
                            false,
                            Box::pin(async move { list_campaigns(operations.as_ref()).await }),
                        )
                        .await
                    }
                    (Some("campaign"), "send") => {
                        let name = option_str(options, "name").unwrap_or_default().to_owned();
                        let confirm = option_bool(options, "confirm").unwrap_or(false);
                        self.respond(
                            interaction,
                            false,
                            false,
                            Box::pin(async move {
                                send_campaign(operations.as_ref(), &name, confirm).await
                            }),
                        )
                        .await
                    }
                    _ => InteractionResponse::ephemeral(UNKNOWN),
                }
            }
            _ => InteractionResponse::ephemeral(UNKNOWN),
        }
    }

    fn is_operator(&self, interaction: &Interaction) -> bool {
        match (&self.settings.operator_role_id, &interaction.member) {
            (Some(role), Some(member)) => member.roles.iter().any(|r| r == role),
            _ => false,
        }
    }

    /// Starts `work`; answers inline if it finishes within the budget (and `inline` allows),
    /// otherwise answers "deferred" and lets the work edit `@original` when it is done.
    async fn respond(
        &self,
        interaction: &Interaction,
        ephemeral: bool,
        inline: bool,
        work: BoxFuture<'static, Reply>,
    ) -> InteractionResponse {
        let pending = Arc::new(Pending {
            slot: Mutex::new(Slot::Waiting),
            ready: Notify::new(),
        });
        let task_pending = pending.clone();
        let api = self.api.clone();
        let token = interaction.token.clone();
        self.deferrer.defer(Box::pin(async move {
            let reply = work.await;
            let late = {
                let mut slot = task_pending.slot.lock().unwrap_or_else(|p| p.into_inner());
                match &*slot {
                    Slot::Waiting => {
                        *slot = Slot::Done(reply);
                        None
                    }
                    _ => Some(reply),
                }
            };
            task_pending.ready.notify_one();
            if let Some(reply) = late {
                edit_original(&api, &token, &reply).await;
            }
        }));
        if inline {
            let budget = Duration::from_millis(self.settings.inline_budget_ms);
            let _ = tokio::time::timeout(budget, pending.ready.notified()).await;
        }
        let finished = {
            let mut slot = pending.slot.lock().unwrap_or_else(|p| p.into_inner());
            match std::mem::replace(&mut *slot, Slot::Deferred) {
                Slot::Done(reply) => Some(reply),
                _ => None,
            }
        };
        match finished {
            Some(reply) if reply.files.is_empty() => InteractionResponse {
                kind: super::model::ResponseType::ChannelMessageWithSource,
                data: Some(reply.data(ephemeral)),
            },
            Some(reply) => {
                let api = self.api.clone();
                let token = interaction.token.clone();
                self.deferrer.defer(Box::pin(async move {
                    edit_original(&api, &token, &reply).await;
                }));
                InteractionResponse::deferred(ephemeral)
            }
            None => InteractionResponse::deferred(ephemeral),
        }
    }

    async fn autocomplete(&self, interaction: &Interaction) -> InteractionResponse {
        let typed = interaction
            .data
            .as_ref()
            .and_then(|data| data.focused())
            .and_then(|option| option.value.as_ref())
            .and_then(|value| value.as_str())
            .unwrap_or_default()
            .to_lowercase();
        let events = self.warehouse.events().await.unwrap_or_default();
        let choices = events
            .into_iter()
            .filter(|event| {
                event.slug.to_lowercase().contains(&typed)
                    || event.name.to_lowercase().contains(&typed)
            })
            .take(25)
            .map(|event| Choice {
                name: format!("{} ({})", event.name, event.slug),
                value: serde_json::Value::String(event.slug),
            })
            .collect();
        InteractionResponse::choices(choices)
    }
}

const UNKNOWN: &str = "未知的指令 / Unknown command.";

/// The invoked subcommand, its group if it is in one, and its options: `(None, "status",
/// [slug])` for `/event status slug:…`, `(Some("campaign"), "send", [name])` for
/// `/autopilot campaign send name:…`.
fn invoked(data: &CommandData) -> Option<(Option<&str>, &str, &[CommandOption])> {
    if let Some((sub, options)) = data.subcommand() {
        return Some((None, sub, options));
    }
    let group = data
        .options
        .iter()
        .find(|option| option.kind == OptionType::SubCommandGroup)?;
    let sub = group
        .options
        .iter()
        .find(|option| option.kind == OptionType::SubCommand)?;
    Some((
        Some(group.name.as_str()),
        sub.name.as_str(),
        sub.options.as_slice(),
    ))
}

/// A send to more people than this waits for `confirm:True`.
pub const CAMPAIGN_CONFIRM_ABOVE: u64 = 100;

/// `/autopilot campaign list`: one line per campaign, counts only.
async fn list_campaigns(operations: &dyn Operations) -> Reply {
    let statuses = match operations.campaigns().await {
        Ok(statuses) => statuses,
        Err(error) => {
            return Reply::text(format!(
                "⚠️ 讀取失敗 / Could not read the campaigns: {error}"
            ))
        }
    };
    if statuses.is_empty() {
        return Reply::text(
            "尚未設定活動信 / No campaigns are configured: add them as `[[campaigns]]` in the settings file.",
        );
    }
    Reply::text(campaign_lines(&statuses))
}

/// The list's text, within Discord's 2,000 characters: lines that do not fit are counted
/// in a last "… and N more" line.
fn campaign_lines(statuses: &[CampaignStatus]) -> String {
    // Room kept for the "… and N more" line while more campaigns follow.
    const MORE_RESERVE: usize = 40;
    let mut text = "**活動信 / Campaigns**".to_owned();
    let mut used = char_len(&text);
    for (index, status) in statuses.iter().enumerate() {
        let line = campaign_line(status);
        let reserve = if index + 1 < statuses.len() {
            MORE_RESERVE
        } else {
            0
        };
        if used + 1 + char_len(&line) + reserve > MAX_CONTENT_CHARS {
            let more = statuses.len() - index;
            text.push_str(&format!(
                "
… 另有 {more} 個 / and {more} more"
            ));
            break;
        }
        used += 1 + char_len(&line);
        text.push('\n');
        text.push_str(&line);
    }
    text
}

fn campaign_line(status: &CampaignStatus) -> String {
    let mut line = format!(
        "• `{}` · {} · 名單 audience {} · 已寄 sent {} · 待寄 pending {}",
        code_span(&status.name),
        status.schedule,
        status.audience,
        status.sent,
        status.pending
    );
    if status.in_flight > 0 {
        line.push_str(&format!(" · 寄送中 in flight {}", status.in_flight));
    }
    if status.failed > 0 {
        line.push_str(&format!(" · 失敗 failed {}", status.failed));
    }
    if let Some(due) = status.next_due {
        line.push_str(&format!(
            " · 下次 next due {}（Asia/Taipei）",
            due.with_timezone(&REPORT_TZ).format("%Y-%m-%d %H:%M")
        ));
    }
    line
}

/// `/autopilot campaign send`: a dry run first; a large audience waits for `confirm:True`.
async fn send_campaign(operations: &dyn Operations, name: &str, confirm: bool) -> Reply {
    let preview = match operations.send_campaign(name, true).await {
        Ok(report) => report,
        Err(error) => return Reply::text(format!("⚠️ 未寄出 / Nothing sent: {error}")),
    };
    let campaign = if preview.campaign.is_empty() {
        code_span(name)
    } else {
        code_span(&preview.campaign)
    };
    if preview.to_send == 0 {
        return Reply::text(format!(
            "✅ 無需寄送 / Nothing to send: everyone selected already has campaign `{campaign}` \
             (audience {}, already sent {}, no contact {}).",
            preview.audience, preview.already_sent, preview.no_contact
        ));
    }
    if preview.to_send > CAMPAIGN_CONFIRM_ABOVE && !confirm {
        return Reply::text(format!(
            "✋ 尚未寄出 / Nothing sent: campaign `{campaign}` would go to {} people. \
             Run `/autopilot campaign send name:{campaign} confirm:True` to send it.",
            preview.to_send
        ));
    }
    match operations.send_campaign(name, false).await {
        Ok(report) => Reply::text(sent_text(&report)),
        Err(error) => Reply::text(format!("⚠️ 寄送失敗 / The send failed: {error}")),
    }
}

fn sent_text(report: &CampaignReport) -> String {
    const SHOWN_ERRORS: usize = 5;
    let clean = report.failed == 0 && report.uncertain == 0 && report.errors.is_empty();
    let mut text = if clean {
        format!("📬 已寄出 / Sent: {report}")
    } else {
        format!("⚠️ 已寄出，但有問題 / Sent with problems: {report}")
    };
    for error in report.errors.iter().take(SHOWN_ERRORS) {
        text.push_str(&format!("\n• error: {}", truncate(error, 300)));
    }
    if report.errors.len() > SHOWN_ERRORS {
        let more = report.errors.len() - SHOWN_ERRORS;
        text.push_str(&format!("\n… 另有 {more} 個錯誤 / and {more} more errors"));
    }
    text
}

/// `text` safe inside a Markdown code span: no backticks, at most 64 characters.
fn code_span(text: &str) -> String {
    text.chars().filter(|c| *c != '`').take(64).collect()
}

/// Finishes a deferred reply. Without `flags`: Discord fixes a message's ephemerality with the
/// first response (the deferral), and an edit of `@original` may not carry `flags: 64`.
async fn edit_original(api: &DiscordApi, token: &str, reply: &Reply) {
    if let Err(error) = api
        .edit_original(token, &reply.data(false), &reply.files)
        .await
    {
        tracing::error!(%error, "could not finish a deferred Discord reply");
    }
}

/// `/autopilot import`: the attachments are fetched from Discord's CDN and handed to the
/// poller, which answers with the import's summary (counts and ids only).
async fn import(
    api: &DiscordApi,
    operations: &dyn Operations,
    event: String,
    attendees: ResolvedAttachment,
    orders: Option<ResolvedAttachment>,
) -> Reply {
    let limit = crate::http::MAX_IMPORT_BYTES;
    for file in std::iter::once(&attendees).chain(orders.as_ref()) {
        if file.size as usize > limit {
            return Reply::text(format!(
                "⚠️ {} 太大 / is too large ({} bytes; at most {limit}): use `autopilot import`",
                file.filename, file.size
            ));
        }
    }
    let attendees_bytes = match api.download_attachment(&attendees.url, limit).await {
        Ok(bytes) => bytes,
        Err(error) => {
            return Reply::text(format!(
                "⚠️ 無法讀取附件 / Could not fetch the attendees export: {error}"
            ))
        }
    };
    let orders_bytes = match &orders {
        Some(file) => match api.download_attachment(&file.url, limit).await {
            Ok(bytes) => Some(bytes),
            Err(error) => {
                return Reply::text(format!(
                    "⚠️ 無法讀取附件 / Could not fetch the orders export: {error}"
                ))
            }
        },
        None => None,
    };
    let request = crate::model::ImportRequest {
        event,
        attendees: attendees_bytes,
        orders: orders_bytes,
    };
    match operations.import(request).await {
        Ok(summary) => {
            let mut text = format!("📥 已匯入 / Imported: {summary}");
            for skipped in summary.skipped.iter().take(10) {
                text.push_str(&format!(
                    "\n• skipped attendee {}: {}",
                    skipped.attendee_id, skipped.reason
                ));
            }
            for error in summary.errors.iter().take(5) {
                text.push_str(&format!("\n• error: {error}"));
            }
            Reply::text(text)
        }
        Err(error) => Reply::text(format!("⚠️ 匯入失敗 / The import failed: {error}")),
    }
}

async fn list_events(
    warehouse: &dyn Warehouse,
    categories: &CategoryRules,
    recent_days: i64,
) -> Reply {
    let events = match events_overview(warehouse, categories, recent_days).await {
        Ok(events) => events,
        Err(error) => {
            return Reply::text(format!("⚠️ 讀取失敗 / Could not read the events: {error}"))
        }
    };
    if events.is_empty() {
        return Reply::text("尚無活動資料 / No events yet: the first reconcile run records them.");
    }
    let mut lines = vec!["**活動 / Events**".to_owned()];
    for event in &events {
        let state = match event.state {
            EventState::OnSale => "開賣中 On sale",
            EventState::Ended => "已結束 Ended",
        };
        let sold = event
            .sold
            .map(|n| n.to_string())
            .unwrap_or_else(|| "?".into());
        lines.push(format!(
            "• **{}** `{}` · {state} · 已售 sold {sold}",
            event.name, event.slug
        ));
    }
    Reply::text(lines.join("\n"))
}

/// The event and its sales, or the reply that says why not.
async fn find_sales(
    warehouse: &dyn Warehouse,
    categories: &CategoryRules,
    slug: &str,
) -> Result<(EventRecord, Vec<crate::model::SaleRecord>), Reply> {
    match event_sales(warehouse, categories, slug).await {
        Ok(Some(found)) => Ok(found),
        Ok(None) => {
            let shown: String = slug.chars().filter(|c| *c != '`').take(50).collect();
            Err(Reply::text(format!(
                "找不到活動 / No event with slug `{shown}`."
            )))
        }
        Err(error) => Err(Reply::text(format!(
            "⚠️ 讀取失敗 / Could not read the sales: {error}"
        ))),
    }
}

async fn status(
    warehouse: &dyn Warehouse,
    categories: &CategoryRules,
    reports: &ReportSettings,
    slug: &str,
) -> Reply {
    let (event, sales) = match find_sales(warehouse, categories, slug).await {
        Ok(found) => found,
        Err(reply) => return reply,
    };
    let status = event_status(&sales, reports);
    let fields = status
        .tickets
        .iter()
        .map(|ticket| EmbedField {
            name: ticket.ticket_name.clone(),
            value: format!(
                "已售 sold **{}**{} · {} {}",
                ticket.sold,
                ticket
                    .quota
                    .map(|quota| format!(" / {quota}"))
                    .unwrap_or_default(),
                status.currency,
                money(ticket.revenue)
            ),
            inline: false,
        })
        .collect();
    Reply {
        content: String::new(),
        embeds: vec![Embed {
            title: Some(event.name.clone()),
            description: Some(format!(
                "合計 Total: 已售 sold **{}** · {} {} · 退票 refunded {}",
                status.sold,
                status.currency,
                money(status.revenue),
                status.refunded
            )),
            fields,
            ..Embed::default()
        }],
        files: Vec::new(),
    }
}

async fn report(
    warehouse: &dyn Warehouse,
    categories: &CategoryRules,
    slug: &str,
    range: &DateRange,
    font: Result<&ChartFont, &str>,
) -> Reply {
    let (event, sales) = match find_sales(warehouse, categories, slug).await {
        Ok(found) => found,
        Err(reply) => return reply,
    };
    let report = daily_report(&sales, range);
    let stem = format!("report-{}-{}-{}", event.slug, range.from, range.to);
    let mut files = Vec::new();
    match report.to_csv() {
        Ok(csv) => files.push(Attachment {
            filename: format!("{stem}.csv"),
            content_type: "text/csv",
            bytes: csv.into_bytes(),
        }),
        Err(error) => return Reply::text(format!("⚠️ 報表失敗 / The report failed: {error}")),
    }
    let mut note = String::new();
    match font.map(|font| report.to_png(&event.name, font)) {
        Ok(Ok(png)) => files.push(Attachment {
            filename: format!("{stem}.png"),
            content_type: "image/png",
            bytes: png,
        }),
        Ok(Err(error)) => {
            tracing::warn!(%error, "report chart failed; sending the CSV alone");
            note = "\n（圖表未能產生 / the chart could not be drawn; the CSV has every figure）"
                .into();
        }
        Err(reason) => {
            note = format!("\n（未附圖表 / no chart: {reason}）");
        }
    }
    Reply {
        content: format!(
            "📊 **{}** {} – {}（Asia/Taipei）: 已售 sold {}{note}",
            event.name, range.from, range.to, report.total
        ),
        embeds: Vec::new(),
        files,
    }
}

fn money(amount: f64) -> String {
    let whole = amount.round() as i64;
    let digits = whole.abs().to_string();
    let mut grouped = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    if whole < 0 {
        format!("-{grouped}")
    } else {
        grouped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(index: usize) -> CampaignStatus {
        CampaignStatus {
            name: format!("campaign-{index:03}"),
            schedule: "3d before each event's start".into(),
            audience: 1_000,
            sent: 10,
            pending: 990,
            in_flight: 3,
            failed: 2,
            next_due: chrono::DateTime::from_timestamp(1_785_373_200, 0),
            ..CampaignStatus::default()
        }
    }

    #[test]
    fn a_long_campaign_list_fits_one_message_and_counts_the_rest() {
        let statuses: Vec<CampaignStatus> = (0..200).map(status).collect();
        let text = campaign_lines(&statuses);
        assert!(char_len(&text) <= MAX_CONTENT_CHARS, "{}", char_len(&text));
        let shown = text.lines().filter(|line| line.starts_with('•')).count();
        assert!(shown > 5 && shown < 200, "{shown}");
        assert!(
            text.ends_with(&format!("and {} more", 200 - shown)),
            "{text}"
        );
        // Every campaign shown or counted; a list that fits has no "more" line.
        let few = campaign_lines(&statuses[..shown]);
        assert!(!few.contains("more"), "{few}");
        assert_eq!(few.lines().count(), shown + 1);
        assert!(few.contains("下次 next due 2026-07-30 09:00（Asia/Taipei）"));
    }

    #[test]
    fn a_campaign_line_names_in_flight_and_failed_only_when_there_are_some() {
        let quiet = CampaignStatus {
            in_flight: 0,
            failed: 0,
            next_due: None,
            ..status(1)
        };
        let line = campaign_line(&quiet);
        assert_eq!(
            line,
            "• `campaign-001` · 3d before each event's start · 名單 audience 1000 · 已寄 sent 10 · 待寄 pending 990"
        );
        let busy = campaign_line(&status(1));
        assert!(
            busy.contains("寄送中 in flight 3 · 失敗 failed 2"),
            "{busy}"
        );
    }

    #[test]
    fn subcommands_are_found_in_and_out_of_groups() -> Result<(), serde_json::Error> {
        let grouped: CommandData = serde_json::from_value(serde_json::json!({
            "id": "1", "name": "autopilot", "type": 1,
            "options": [{"name": "campaign", "type": 2, "options": [
                {"name": "send", "type": 1, "options": [
                    {"name": "name", "type": 3, "value": "newsletter"},
                    {"name": "confirm", "type": 5, "value": true}
                ]}
            ]}]
        }))?;
        let (group, sub, options) = invoked(&grouped).unwrap_or_default();
        assert_eq!((group, sub), (Some("campaign"), "send"));
        assert_eq!(option_str(options, "name"), Some("newsletter"));
        assert_eq!(option_bool(options, "confirm"), Some(true));
        let plain: CommandData = serde_json::from_value(serde_json::json!({
            "id": "1", "name": "autopilot", "type": 1,
            "options": [{"name": "poll", "type": 1}]
        }))?;
        assert_eq!(
            invoked(&plain).map(|(g, s, _)| (g, s)),
            Some((None, "poll"))
        );
        let empty_group: CommandData = serde_json::from_value(serde_json::json!({
            "id": "1", "name": "autopilot", "type": 1,
            "options": [{"name": "campaign", "type": 2}]
        }))?;
        assert!(invoked(&empty_group).is_none());
        Ok(())
    }

    #[test]
    fn money_groups_thousands() {
        assert_eq!(super::money(0.0), "0");
        assert_eq!(super::money(2600.0), "2,600");
        assert_eq!(super::money(1234567.4), "1,234,567");
    }
}
