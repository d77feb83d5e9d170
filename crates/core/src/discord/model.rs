//! Discord interaction types: plain serde data in Discord's wire format.
//!
//! The layout mirrors Discord's documentation ("Receiving and Responding", "Application
//! Commands") in the style of `twilight-model`: one struct per Discord object, enums as
//! integers. Incoming objects are tolerant: unknown fields are ignored and optional fields
//! default, so a new field on Discord's side never breaks the bot. Outgoing objects skip
//! empty and absent fields so the JSON stays minimal.
//!
//! Discord's length limits are counted in characters (Unicode scalar values); the `fit`
//! methods enforce them by truncating at character boundaries with an ellipsis ("…").

use std::collections::HashMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use serde_repr::{Deserialize_repr, Serialize_repr};

// ---------------------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------------------

/// Message `content`: at most 2,000 characters.
pub const MAX_CONTENT_CHARS: usize = 2_000;
/// At most 10 embeds per message.
pub const MAX_EMBEDS: usize = 10;
/// Embed title: at most 256 characters.
pub const MAX_EMBED_TITLE_CHARS: usize = 256;
/// Embed description: at most 4,096 characters.
pub const MAX_EMBED_DESCRIPTION_CHARS: usize = 4_096;
/// Embed field name: at most 256 characters.
pub const MAX_FIELD_NAME_CHARS: usize = 256;
/// Embed field value: at most 1,024 characters.
pub const MAX_FIELD_VALUE_CHARS: usize = 1_024;
/// At most 25 fields per embed.
pub const MAX_EMBED_FIELDS: usize = 25;
/// Embed footer text: at most 2,048 characters.
pub const MAX_FOOTER_CHARS: usize = 2_048;
/// Title + description + field names and values + footer text, summed over all the
/// embeds of one message: at most 6,000 characters.
pub const MAX_EMBED_TOTAL_CHARS: usize = 6_000;
/// Autocomplete results: at most 25 choices.
pub const MAX_CHOICES: usize = 25;
/// Choice name: at most 100 characters.
pub const MAX_CHOICE_NAME_CHARS: usize = 100;
/// String choice value: at most 100 characters.
pub const MAX_CHOICE_VALUE_CHARS: usize = 100;
/// Application command and option names: 1 to 32 characters.
pub const MAX_COMMAND_NAME_CHARS: usize = 32;
/// Application command and option descriptions: 1 to 100 characters.
pub const MAX_COMMAND_DESCRIPTION_CHARS: usize = 100;

/// Message flag `EPHEMERAL` (1 << 6): only the invoking user sees the reply.
pub const EPHEMERAL: u64 = 1 << 6;

/// The marker appended to truncated text.
pub const ELLIPSIS: char = '…';

/// The locale key used for Traditional Chinese (Taiwan) localisations.
pub const LOCALE_ZH_TW: &str = "zh-TW";

/// Number of characters (Unicode scalar values) in `s`, the unit Discord's limits use.
pub fn char_len(s: &str) -> usize {
    s.chars().count()
}

/// Truncates `s` in place to at most `max_chars` characters. When text is cut, the last
/// kept character is replaced by "…" so the result is exactly `max_chars` long.
pub fn truncate_in_place(s: &mut String, max_chars: usize) {
    // The byte offset of character number `max_chars`, if the string is longer than that.
    let Some((cut, _)) = s.char_indices().nth(max_chars) else {
        return;
    };
    if max_chars == 0 {
        s.clear();
        return;
    }
    // Keep `max_chars - 1` characters, then the ellipsis.
    let keep = s[..cut]
        .char_indices()
        .next_back()
        .map_or(0, |(index, _)| index);
    s.truncate(keep);
    s.push(ELLIPSIS);
}

/// Returns `s` truncated to at most `max_chars` characters (see [`truncate_in_place`]).
pub fn truncate(s: &str, max_chars: usize) -> String {
    let mut owned = s.to_owned();
    truncate_in_place(&mut owned, max_chars);
    owned
}

// ---------------------------------------------------------------------------------------
// Incoming interactions
// ---------------------------------------------------------------------------------------

/// The kind of an incoming interaction. Values Discord adds later deserialize as
/// [`InteractionType::Unknown`] instead of failing the whole interaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InteractionType {
    /// Discord checking the endpoint; answer with [`InteractionResponse::pong`].
    Ping,
    /// A slash command.
    ApplicationCommand,
    /// A button or select menu.
    MessageComponent,
    /// The user is typing into an option with `autocomplete: true`.
    ApplicationCommandAutocomplete,
    /// A modal was submitted.
    ModalSubmit,
    /// A type this code does not know. Values above 255 are reported as 255.
    Unknown(u8),
}

impl InteractionType {
    /// The wire value.
    pub fn code(self) -> u8 {
        match self {
            Self::Ping => 1,
            Self::ApplicationCommand => 2,
            Self::MessageComponent => 3,
            Self::ApplicationCommandAutocomplete => 4,
            Self::ModalSubmit => 5,
            Self::Unknown(code) => code,
        }
    }

    /// The type for a wire value.
    pub fn from_code(code: u8) -> Self {
        match code {
            1 => Self::Ping,
            2 => Self::ApplicationCommand,
            3 => Self::MessageComponent,
            4 => Self::ApplicationCommandAutocomplete,
            5 => Self::ModalSubmit,
            other => Self::Unknown(other),
        }
    }
}

impl From<u8> for InteractionType {
    fn from(code: u8) -> Self {
        Self::from_code(code)
    }
}

impl Serialize for InteractionType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u8(self.code())
    }
}

impl<'de> Deserialize<'de> for InteractionType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let code = u64::deserialize(deserializer)?;
        Ok(Self::from_code(u8::try_from(code).unwrap_or(u8::MAX)))
    }
}

/// An interaction as Discord POSTs it to the interactions endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interaction {
    /// Snowflake of the interaction.
    pub id: String,
    /// Snowflake of our application.
    pub application_id: String,
    #[serde(rename = "type")]
    pub kind: InteractionType,
    /// The command and its options (commands and autocomplete).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<CommandData>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guild_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_id: Option<String>,
    /// The invoking member, when invoked in a guild.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<Member>,
    /// The invoking user, when invoked in a DM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<User>,
    /// Continuation token for follow-ups and editing the original response (15 minutes).
    pub token: String,
    /// Always 1.
    #[serde(default = "default_version")]
    pub version: u8,
    /// The invoking user's client locale (not sent for pings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    /// The guild's preferred locale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guild_locale: Option<String>,
}

fn default_version() -> u8 {
    1
}

impl Interaction {
    /// The invoking user: `member.user` in a guild, `user` in a DM.
    pub fn invoker(&self) -> Option<&User> {
        self.member
            .as_ref()
            .and_then(|member| member.user.as_ref())
            .or(self.user.as_ref())
    }

    /// The invoking member's role ids; empty outside a guild.
    pub fn member_roles(&self) -> &[String] {
        self.member
            .as_ref()
            .map_or(&[][..], |member| member.roles.as_slice())
    }

    /// Whether the invoking member has any of `roles`. Always false outside a guild.
    pub fn has_any_role<S: AsRef<str>>(&self, roles: &[S]) -> bool {
        self.member_roles()
            .iter()
            .any(|held| roles.iter().any(|wanted| wanted.as_ref() == held))
    }

    /// The name of the invoked command, if this is a command or autocomplete interaction.
    pub fn command_name(&self) -> Option<&str> {
        self.data.as_ref().map(|data| data.name.as_str())
    }

    /// Whether the invoker's locale is Traditional Chinese, falling back to the guild's.
    pub fn prefers_zh_tw(&self) -> bool {
        self.locale
            .as_deref()
            .or(self.guild_locale.as_deref())
            .is_some_and(|locale| locale.eq_ignore_ascii_case(LOCALE_ZH_TW))
    }
}

/// A guild member (the part of it interactions carry that we use).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<User>,
    /// Role snowflakes.
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nick: Option<String>,
    /// Permission bit set of the member in the channel, as a decimal string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<String>,
}

/// A Discord user (the part of it we use).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    #[serde(default)]
    pub username: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global_name: Option<String>,
}

impl User {
    /// The display name: `global_name` when set, otherwise `username`.
    pub fn display_name(&self) -> &str {
        self.global_name.as_deref().unwrap_or(&self.username)
    }
}

/// The `data` of an application command or autocomplete interaction.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CommandData {
    /// Snowflake of the registered command.
    #[serde(default)]
    pub id: String,
    /// Name of the command, e.g. `event`.
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<CommandOption>,
    /// Objects the options refer to by id, such as uploaded attachments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved: Option<Resolved>,
}

/// `resolved` of an interaction's data (the part we use: attachments).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Resolved {
    /// By attachment id (a snowflake, as a string).
    #[serde(default)]
    pub attachments: std::collections::BTreeMap<String, ResolvedAttachment>,
}

/// A file uploaded as an attachment option.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedAttachment {
    /// Snowflake, as a string.
    pub id: String,
    pub filename: String,
    /// Bytes.
    #[serde(default)]
    pub size: u64,
    /// Where Discord's CDN serves it.
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
}

impl CommandData {
    /// The attachment an attachment option names.
    pub fn attachment(&self, options: &[CommandOption], name: &str) -> Option<&ResolvedAttachment> {
        let id = find_option(options, name)?.value.as_ref()?;
        let id = match id {
            Value::String(id) => id.clone(),
            Value::Number(id) => id.to_string(),
            _ => return None,
        };
        self.resolved.as_ref()?.attachments.get(&id)
    }

    /// The invoked subcommand and its options, e.g. `("status", [slug])` for
    /// `/event status slug:…`. `None` when the command has no subcommand.
    pub fn subcommand(&self) -> Option<(&str, &[CommandOption])> {
        self.options
            .iter()
            .find(|option| option.kind == OptionType::SubCommand)
            .map(|option| (option.name.as_str(), option.options.as_slice()))
    }

    /// The option the user is typing into (autocomplete), at any depth.
    pub fn focused(&self) -> Option<&CommandOption> {
        focused_option(&self.options)
    }
}

/// The type of an application command option. Types Discord adds later deserialize as
/// [`OptionType::Unknown`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize_repr, Deserialize_repr)]
#[repr(u8)]
pub enum OptionType {
    /// Not a Discord value: stands for a type this code does not know.
    #[serde(other)]
    Unknown = 0,
    SubCommand = 1,
    SubCommandGroup = 2,
    String = 3,
    /// Any integer between -2^53 and 2^53.
    Integer = 4,
    Boolean = 5,
    User = 6,
    /// Includes all channel types and categories.
    Channel = 7,
    Role = 8,
    /// Users and roles.
    Mentionable = 9,
    /// Any double between -2^53 and 2^53.
    Number = 10,
    Attachment = 11,
}

/// One option of an invoked command: a subcommand (with nested options) or a value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandOption {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: OptionType,
    /// The value the user gave; absent for subcommands and groups. While autocompleting it
    /// is the partial input, always a string even for numeric options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// Nested options of a subcommand or group.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<CommandOption>,
    /// Whether the user is typing into this option (autocomplete only).
    #[serde(default, skip_serializing_if = "is_false")]
    pub focused: bool,
}

impl CommandOption {
    /// The value as a string (string options and autocomplete input).
    pub fn string(&self) -> Option<&str> {
        self.value.as_ref().and_then(Value::as_str)
    }

    /// The value as an integer.
    pub fn integer(&self) -> Option<i64> {
        self.value.as_ref().and_then(Value::as_i64)
    }

    /// The value as a number.
    pub fn number(&self) -> Option<f64> {
        self.value.as_ref().and_then(Value::as_f64)
    }

    /// The value as a boolean.
    pub fn boolean(&self) -> Option<bool> {
        self.value.as_ref().and_then(Value::as_bool)
    }
}

/// The option called `name` among `options` (not searching nested options).
pub fn find_option<'a>(options: &'a [CommandOption], name: &str) -> Option<&'a CommandOption> {
    options.iter().find(|option| option.name == name)
}

/// The string value of the option called `name`.
pub fn option_str<'a>(options: &'a [CommandOption], name: &str) -> Option<&'a str> {
    find_option(options, name).and_then(CommandOption::string)
}

/// The integer value of the option called `name`.
pub fn option_i64(options: &[CommandOption], name: &str) -> Option<i64> {
    find_option(options, name).and_then(CommandOption::integer)
}

/// The boolean value of the option called `name`.
pub fn option_bool(options: &[CommandOption], name: &str) -> Option<bool> {
    find_option(options, name).and_then(CommandOption::boolean)
}

/// The focused option (autocomplete) among `options` or their nested options.
pub fn focused_option(options: &[CommandOption]) -> Option<&CommandOption> {
    options.iter().find_map(|option| {
        if option.focused {
            Some(option)
        } else {
            focused_option(&option.options)
        }
    })
}

fn is_false(value: &bool) -> bool {
    !*value
}

// ---------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------

/// The kind of an interaction response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize_repr, Deserialize_repr)]
#[repr(u8)]
pub enum ResponseType {
    /// Acknowledge a ping.
    Pong = 1,
    /// Reply with a message.
    ChannelMessageWithSource = 4,
    /// Acknowledge now ("is thinking…"), edit the original response later.
    DeferredChannelMessageWithSource = 5,
    /// Components only: acknowledge, edit the message later.
    DeferredUpdateMessage = 6,
    /// Components only: edit the message the component is attached to.
    UpdateMessage = 7,
    /// Answer an autocomplete interaction.
    ApplicationCommandAutocompleteResult = 8,
    /// Show a modal.
    Modal = 9,
}

/// The body of the HTTP response to an interaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InteractionResponse {
    #[serde(rename = "type")]
    pub kind: ResponseType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<ResponseData>,
}

impl InteractionResponse {
    /// `{"type":1}`: the answer to [`InteractionType::Ping`].
    pub fn pong() -> Self {
        Self {
            kind: ResponseType::Pong,
            data: None,
        }
    }

    /// A visible reply with text `content` (truncated to 2,000 characters), mentioning no
    /// one.
    pub fn message(content: impl Into<String>) -> Self {
        Self::with_data(ResponseData::message(content))
    }

    /// A reply with text `content` that only the invoker sees.
    pub fn ephemeral(content: impl Into<String>) -> Self {
        Self::with_data(ResponseData::message(content).ephemeral())
    }

    /// A visible reply carrying one embed (fitted to Discord's limits).
    pub fn embed(embed: Embed) -> Self {
        Self::with_data(ResponseData::embeds(vec![embed]))
    }

    /// A message reply with arbitrary `data` (fitted to Discord's limits).
    pub fn with_data(data: ResponseData) -> Self {
        Self {
            kind: ResponseType::ChannelMessageWithSource,
            data: Some(data.fit()),
        }
    }

    /// "Bot is thinking…": the real answer follows by editing the original response
    /// within 15 minutes. `ephemeral` decides who will see that answer.
    pub fn deferred(ephemeral: bool) -> Self {
        Self {
            kind: ResponseType::DeferredChannelMessageWithSource,
            data: ephemeral.then(|| ResponseData {
                flags: Some(EPHEMERAL),
                ..ResponseData::default()
            }),
        }
    }

    /// Autocomplete suggestions (at most 25 kept; see [`ResponseData::fit`]). An empty
    /// list still serialises `"choices": []`, which Discord requires.
    pub fn choices(choices: Vec<Choice>) -> Self {
        Self {
            kind: ResponseType::ApplicationCommandAutocompleteResult,
            data: Some(
                ResponseData {
                    choices: Some(choices),
                    ..ResponseData::default()
                }
                .fit(),
            ),
        }
    }

    /// Marks the response ephemeral (message and deferred responses).
    pub fn into_ephemeral(mut self) -> Self {
        let data = self.data.take().unwrap_or_default();
        self.data = Some(data.ephemeral());
        self
    }
}

/// The `data` of a message response. It doubles as the JSON body for editing the original
/// response (`PATCH /webhooks/{application.id}/{token}/messages/@original`) and for
/// follow-up messages.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResponseData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub embeds: Vec<Embed>,
    /// Message flags; [`EPHEMERAL`] is the one we use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flags: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_mentions: Option<AllowedMentions>,
    /// Autocomplete results. `Some(vec![])` serialises as `"choices": []`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub choices: Option<Vec<Choice>>,
    /// Files uploaded with the message (multipart `files[n]`), referenced by `id` = `n`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<PartialAttachment>,
}

impl ResponseData {
    /// A message with text `content` and no mentions.
    pub fn message(content: impl Into<String>) -> Self {
        Self {
            content: Some(content.into()),
            allowed_mentions: Some(AllowedMentions::none()),
            ..Self::default()
        }
    }

    /// A message with `embeds` and no mentions.
    pub fn embeds(embeds: Vec<Embed>) -> Self {
        Self {
            embeds,
            allowed_mentions: Some(AllowedMentions::none()),
            ..Self::default()
        }
    }

    /// Sets the [`EPHEMERAL`] flag.
    pub fn ephemeral(mut self) -> Self {
        self.flags = Some(self.flags.unwrap_or(0) | EPHEMERAL);
        self
    }

    /// Whether the [`EPHEMERAL`] flag is set.
    pub fn is_ephemeral(&self) -> bool {
        self.flags.is_some_and(|flags| flags & EPHEMERAL != 0)
    }

    /// Applies Discord's limits: content ≤ 2,000 characters; ≤ 10 embeds, each fitted
    /// with [`Embed::fit`], dropping trailing embeds until all together stay within
    /// 6,000 characters; ≤ 25 choices with names ≤ 100 characters (choices whose string
    /// value exceeds 100 characters are dropped: a truncated value would be wrong).
    pub fn fit(mut self) -> Self {
        if let Some(content) = self.content.as_mut() {
            truncate_in_place(content, MAX_CONTENT_CHARS);
        }

        self.embeds.truncate(MAX_EMBEDS);
        let mut budget = MAX_EMBED_TOTAL_CHARS;
        let mut kept = Vec::with_capacity(self.embeds.len());
        for embed in std::mem::take(&mut self.embeds) {
            let embed = embed.fit();
            let size = embed.total_chars();
            if size > budget {
                break;
            }
            budget -= size;
            kept.push(embed);
        }
        self.embeds = kept;

        if let Some(choices) = self.choices.as_mut() {
            choices.retain(|choice| {
                choice
                    .value
                    .as_str()
                    .is_none_or(|value| char_len(value) <= MAX_CHOICE_VALUE_CHARS)
            });
            choices.truncate(MAX_CHOICES);
            for choice in choices.iter_mut() {
                truncate_in_place(&mut choice.name, MAX_CHOICE_NAME_CHARS);
            }
        }
        self
    }
}

/// Which mentions in the message may ping. The default (`{"parse": []}`) pings no one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllowedMentions {
    /// Any of `"roles"`, `"users"`, `"everyone"`.
    #[serde(default)]
    pub parse: Vec<String>,
}

impl AllowedMentions {
    /// No mention pings anyone.
    pub fn none() -> Self {
        Self::default()
    }
}

/// One autocomplete suggestion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    /// Shown to the user (1–100 characters).
    pub name: String,
    /// Filled into the option: a string (≤ 100 characters), integer or number.
    pub value: Value,
}

impl Choice {
    /// A choice with a string value.
    pub fn string(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            value: Value::String(value.into()),
        }
    }
}

/// A file attached to a message, referencing the multipart part `files[{id}]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartialAttachment {
    /// A snowflake string (for an upload, the index of its `files[n]` part).
    pub id: String,
    pub filename: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A rich embed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Embed {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Makes the title a link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// ISO 8601 timestamp shown in the footer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    /// 0xRRGGBB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub footer: Option<EmbedFooter>,
    /// E.g. `attachment://chart.png` for an uploaded file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<EmbedImage>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<EmbedField>,
}

impl Embed {
    /// An embed with a title.
    pub fn new(title: impl Into<String>) -> Self {
        Self {
            title: Some(title.into()),
            ..Self::default()
        }
    }

    /// Sets the description.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// Sets the colour (0xRRGGBB).
    pub fn color(mut self, color: u32) -> Self {
        self.color = Some(color);
        self
    }

    /// Sets the footer text.
    pub fn footer(mut self, text: impl Into<String>) -> Self {
        self.footer = Some(EmbedFooter { text: text.into() });
        self
    }

    /// Adds a field.
    pub fn field(
        mut self,
        name: impl Into<String>,
        value: impl Into<String>,
        inline: bool,
    ) -> Self {
        self.fields.push(EmbedField {
            name: name.into(),
            value: value.into(),
            inline,
        });
        self
    }

    /// The characters counted against the 6,000-character limit: title, description,
    /// field names and values, footer text.
    pub fn total_chars(&self) -> usize {
        self.title.as_deref().map_or(0, char_len)
            + self.description.as_deref().map_or(0, char_len)
            + self
                .footer
                .as_ref()
                .map_or(0, |footer| char_len(&footer.text))
            + self
                .fields
                .iter()
                .map(|field| char_len(&field.name) + char_len(&field.value))
                .sum::<usize>()
    }

    /// Applies Discord's limits: title 256, description 4,096, footer 2,048 characters;
    /// at most 25 fields, names 256 and values 1,024 characters (empty ones become a
    /// zero-width space, which Discord accepts). Then, to stay within 6,000 characters in
    /// total, the footer is shortened if title + description + footer exceed it, and
    /// fields that no longer fit are dropped from the end (the first one that does not
    /// fit is kept with a shortened value when at least a few characters of it fit).
    pub fn fit(mut self) -> Self {
        if let Some(title) = self.title.as_mut() {
            truncate_in_place(title, MAX_EMBED_TITLE_CHARS);
        }
        if let Some(description) = self.description.as_mut() {
            truncate_in_place(description, MAX_EMBED_DESCRIPTION_CHARS);
        }
        if let Some(footer) = self.footer.as_mut() {
            truncate_in_place(&mut footer.text, MAX_FOOTER_CHARS);
        }
        self.fields.truncate(MAX_EMBED_FIELDS);
        for field in &mut self.fields {
            truncate_in_place(&mut field.name, MAX_FIELD_NAME_CHARS);
            truncate_in_place(&mut field.value, MAX_FIELD_VALUE_CHARS);
            for text in [&mut field.name, &mut field.value] {
                if text.is_empty() {
                    text.push('\u{200b}');
                }
            }
        }

        let head = self.title.as_deref().map_or(0, char_len)
            + self.description.as_deref().map_or(0, char_len);
        // Title and description alone fit (256 + 4,096 < 6,000); the footer takes the rest.
        let footer_budget = MAX_EMBED_TOTAL_CHARS.saturating_sub(head);
        if let Some(footer) = self.footer.as_mut() {
            truncate_in_place(&mut footer.text, footer_budget);
            if footer.text.is_empty() {
                self.footer = None;
            }
        }

        let mut budget = MAX_EMBED_TOTAL_CHARS
            .saturating_sub(head + self.footer.as_ref().map_or(0, |f| char_len(&f.text)));
        let mut kept = Vec::with_capacity(self.fields.len());
        for mut field in std::mem::take(&mut self.fields) {
            let name = char_len(&field.name);
            let value = char_len(&field.value);
            if name + value <= budget {
                budget -= name + value;
                kept.push(field);
                continue;
            }
            // Keep a shortened value only if it still says something.
            const MIN_USEFUL_VALUE_CHARS: usize = 16;
            let value_budget = budget.saturating_sub(name);
            if value_budget >= MIN_USEFUL_VALUE_CHARS {
                truncate_in_place(&mut field.value, value_budget);
                kept.push(field);
            }
            break;
        }
        self.fields = kept;
        self
    }
}

/// One name/value block of an embed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmbedField {
    pub name: String,
    pub value: String,
    /// Show side by side with neighbouring inline fields.
    #[serde(default, skip_serializing_if = "is_false")]
    pub inline: bool,
}

/// Embed footer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmbedFooter {
    pub text: String,
}

/// Embed image.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmbedImage {
    pub url: String,
}

// ---------------------------------------------------------------------------------------
// Command registration
// ---------------------------------------------------------------------------------------

/// A slash command (`CHAT_INPUT`) as sent to `PUT /applications/{id}/commands` (or the
/// guild variant). Deserialising what `GET` returns works too: fields such as `id`,
/// `application_id`, `version`, `type`, `nsfw`, `integration_types` are ignored. Fetch with
/// `?with_localizations=true`, otherwise Discord omits `description_localizations`.
/// Compare sets with [`commands_differ`], which tolerates Discord's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandDefinition {
    pub name: String,
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description_localizations: Option<HashMap<String, String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<OptionDefinition>,
    /// Permission bit set as a decimal string; `None` lets everyone see the command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_member_permissions: Option<String>,
    /// Where the command can be used (Discord's replacement for the deprecated
    /// `dm_permission`); `None` leaves Discord's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contexts: Option<Vec<InteractionContextType>>,
}

/// Where an interaction can happen: `contexts` of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize_repr, Deserialize_repr)]
#[repr(u8)]
pub enum InteractionContextType {
    /// In a server.
    Guild = 0,
    /// In the bot's own DM.
    BotDm = 1,
    /// In group DMs and other users' DMs (user-installed apps).
    PrivateChannel = 2,
}

/// An option of a [`CommandDefinition`]: a subcommand or a parameter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OptionDefinition {
    #[serde(rename = "type")]
    pub kind: OptionType,
    pub name: String,
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description_localizations: Option<HashMap<String, String>>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub required: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub autocomplete: bool,
    /// Fixed choices (string options), mutually exclusive with `autocomplete`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub choices: Vec<ChoiceDefinition>,
    /// Minimum length of a string option (0–6,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_length: Option<u16>,
    /// Maximum length of a string option (1–6,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<u16>,
    /// Parameters of a subcommand, subcommands of a group.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<OptionDefinition>,
}

/// A fixed choice of an [`OptionDefinition`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChoiceDefinition {
    pub name: String,
    /// Strings only here: our commands have no numeric choices.
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_localizations: Option<HashMap<String, String>>,
}

impl CommandDefinition {
    /// A command with English `description` and its Traditional Chinese translation.
    pub fn new(name: &str, description: &str, zh_tw: &str) -> Self {
        Self {
            name: name.to_owned(),
            description: description.to_owned(),
            description_localizations: Some(zh_tw_map(zh_tw)),
            ..Self::default()
        }
    }

    /// Adds an option.
    pub fn option(mut self, option: OptionDefinition) -> Self {
        self.options.push(option);
        self
    }

    /// Whether `existing` (as fetched from Discord) already matches this desired
    /// definition, tolerating Discord's defaults like [`commands_differ`] does.
    pub fn same_as(&self, existing: &CommandDefinition) -> bool {
        let want = self.normalized();
        let mut have = existing.normalized();
        if want.contexts.is_none() || have.contexts.is_none() {
            have.contexts.clone_from(&want.contexts);
        }
        want == have
    }

    /// This definition with Discord's defaults made explicit, for comparison.
    fn normalized(&self) -> Self {
        let mut options: Vec<OptionDefinition> = self
            .options
            .iter()
            .map(OptionDefinition::normalized)
            .collect();
        sort_unless_positional(&mut options);
        Self {
            name: self.name.clone(),
            description: self.description.clone(),
            description_localizations: non_empty(&self.description_localizations),
            options,
            default_member_permissions: self.default_member_permissions.clone(),
            contexts: self.contexts.clone().map(|mut contexts| {
                contexts.sort();
                contexts.dedup();
                contexts
            }),
        }
    }
}

impl OptionDefinition {
    fn base(kind: OptionType, name: &str, description: &str, zh_tw: &str) -> Self {
        Self {
            kind,
            name: name.to_owned(),
            description: description.to_owned(),
            description_localizations: Some(zh_tw_map(zh_tw)),
            required: false,
            autocomplete: false,
            choices: Vec::new(),
            min_length: None,
            max_length: None,
            options: Vec::new(),
        }
    }

    /// A subcommand with English and Traditional Chinese descriptions.
    pub fn subcommand(name: &str, description: &str, zh_tw: &str) -> Self {
        Self::base(OptionType::SubCommand, name, description, zh_tw)
    }

    /// A string parameter with English and Traditional Chinese descriptions.
    pub fn string(name: &str, description: &str, zh_tw: &str) -> Self {
        Self::base(OptionType::String, name, description, zh_tw)
    }

    /// A file upload parameter.
    pub fn attachment(name: &str, description: &str, zh_tw: &str) -> Self {
        Self::base(OptionType::Attachment, name, description, zh_tw)
    }

    /// Makes the parameter required.
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }

    /// Enables autocomplete for the parameter.
    pub fn autocomplete(mut self) -> Self {
        self.autocomplete = true;
        self
    }

    /// Sets the length bounds of a string parameter.
    pub fn length(mut self, min: u16, max: u16) -> Self {
        self.min_length = Some(min);
        self.max_length = Some(max);
        self
    }

    /// Adds a nested option.
    pub fn option(mut self, option: OptionDefinition) -> Self {
        self.options.push(option);
        self
    }

    fn normalized(&self) -> Self {
        let mut options: Vec<OptionDefinition> = self
            .options
            .iter()
            .map(OptionDefinition::normalized)
            .collect();
        sort_unless_positional(&mut options);
        let mut choices = self.choices.clone();
        for choice in &mut choices {
            choice.name_localizations = non_empty(&choice.name_localizations);
        }
        Self {
            description_localizations: non_empty(&self.description_localizations),
            choices,
            options,
            ..self.clone()
        }
    }
}

/// Subcommands are unordered; parameters keep their order (it is the order users see).
fn sort_unless_positional(options: &mut [OptionDefinition]) {
    if options.iter().all(|option| {
        matches!(
            option.kind,
            OptionType::SubCommand | OptionType::SubCommandGroup
        )
    }) {
        options.sort_by(|a, b| a.name.cmp(&b.name));
    }
}

fn non_empty(map: &Option<HashMap<String, String>>) -> Option<HashMap<String, String>> {
    map.as_ref().filter(|map| !map.is_empty()).cloned()
}

fn zh_tw_map(text: &str) -> HashMap<String, String> {
    HashMap::from([(LOCALE_ZH_TW.to_owned(), text.to_owned())])
}

/// Whether the registered command set `existing` (from `GET …/commands?with_localizations=true`)
/// differs from `desired`, ignoring order and Discord's defaults: empty localisation maps
/// equal absent ones, and `contexts` is compared only when `desired` sets it and
/// Discord returned it (guild commands carry none).
pub fn commands_differ(desired: &[CommandDefinition], existing: &[CommandDefinition]) -> bool {
    if desired.len() != existing.len() {
        return true;
    }
    desired.iter().any(|want| {
        !existing
            .iter()
            .any(|have| have.name == want.name && want.same_as(have))
    })
}

/// Name of the organisers' command.
pub const COMMAND_EVENT: &str = "event";
/// Name of the operators' command.
pub const COMMAND_AUTOPILOT: &str = "autopilot";

/// The bot's slash commands, with English descriptions and `zh-TW` localisations.
///
/// - `/event list`, `/event status slug`, `/event report slug from to`
/// - `/autopilot poll`, `/autopilot resend reference`
///
/// Access is checked by the handler (roles), not by `default_member_permissions`. Both
/// are guild-only (`contexts: [0]`): the role check needs a guild member.
pub fn commands() -> Vec<CommandDefinition> {
    let slug = || {
        OptionDefinition::string("slug", "Event slug on KKTIX", "KKTIX 上的活動代稱（slug）")
            .required()
            .autocomplete()
    };
    let event = CommandDefinition::new(
        COMMAND_EVENT,
        "Ticket sales of the KKTIX events",
        "KKTIX 活動的售票狀況",
    )
    .option(OptionDefinition::subcommand(
        "list",
        "List the events",
        "列出活動",
    ))
    .option(
        OptionDefinition::subcommand("status", "Ticket sales of one event", "單一活動的售票狀況")
            .option(slug()),
    )
    .option(
        OptionDefinition::subcommand(
            "report",
            "Sales report of one event for a date range",
            "單一活動在日期區間內的銷售報表",
        )
        .option(slug())
        .option(
            OptionDefinition::string(
                "from",
                "First day, YYYY-MM-DD (Asia/Taipei)",
                "起始日期，YYYY-MM-DD（台北時間）",
            )
            .required()
            .length(10, 10),
        )
        .option(
            OptionDefinition::string(
                "to",
                "Last day, YYYY-MM-DD (Asia/Taipei)",
                "結束日期，YYYY-MM-DD（台北時間）",
            )
            .required()
            .length(10, 10),
        ),
    );

    let autopilot =
        CommandDefinition::new(COMMAND_AUTOPILOT, "Operate the autopilot", "操作自動駕駛")
            .option(OptionDefinition::subcommand(
                "poll",
                "Poll KKTIX now instead of waiting for the schedule",
                "立即向 KKTIX 同步，不等排程",
            ))
            .option(
                OptionDefinition::subcommand(
                    "resend",
                    "Send the access e-mail of one registration again",
                    "重新寄送一筆報名的入場信",
                )
                .option(
                    OptionDefinition::string(
                        "reference",
                        "reg_no or order_no",
                        "報名序號（reg_no）或訂單編號（order_no）",
                    )
                    .required(),
                ),
            )
            .option(
                OptionDefinition::subcommand(
                    "import",
                    "Import KKTIX's CSV exports of one event",
                    "匯入單一活動的 KKTIX CSV 報表",
                )
                .option(
                    OptionDefinition::string(
                        "event",
                        "KKTIX event id or catalog slug",
                        "KKTIX 活動編號或設定中的代稱",
                    )
                    .required()
                    .autocomplete(),
                )
                .option(
                    OptionDefinition::attachment(
                        "attendees",
                        "The attendees export (CSV)",
                        "參加人報表（CSV）",
                    )
                    .required(),
                )
                .option(OptionDefinition::attachment(
                    "orders",
                    "The orders export (CSV), optional",
                    "訂單報表（CSV），可省略",
                )),
            )
            .option(
                OptionDefinition::subcommand(
                    "confirm-revoke",
                    "Revoke the attendees held after vanishing from KKTIX at once",
                    "確認撤銷一次大量消失的參加者",
                )
                .option(
                    OptionDefinition::string(
                        "event",
                        "KKTIX event id or catalog slug",
                        "KKTIX 活動編號或設定中的代稱",
                    )
                    .required()
                    .autocomplete(),
                ),
            );

    [event, autopilot]
        .into_iter()
        .map(|mut command| {
            command.contexts = Some(vec![InteractionContextType::Guild]);
            command
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticket_text(chars: usize) -> String {
        "票".repeat(chars)
    }

    #[test]
    fn truncate_counts_characters_not_bytes() {
        let text = ticket_text(10);
        assert_eq!(truncate(&text, 10), text);
        let cut = truncate(&text, 5);
        assert_eq!(cut, "票票票票…");
        assert_eq!(char_len(&cut), 5);
        assert_eq!(truncate(&text, 1), "…");
        assert_eq!(truncate(&text, 0), "");
        assert_eq!(truncate("", 0), "");
        assert_eq!(truncate("ab", 2), "ab");
    }

    #[test]
    fn content_is_limited_to_2000_characters() {
        let response = InteractionResponse::message(ticket_text(MAX_CONTENT_CHARS + 1));
        let content = response
            .data
            .as_ref()
            .and_then(|data| data.content.as_deref())
            .unwrap_or_default();
        assert_eq!(char_len(content), MAX_CONTENT_CHARS);
        assert!(content.ends_with('…'));
        let exact = InteractionResponse::message(ticket_text(MAX_CONTENT_CHARS));
        assert_eq!(
            exact.data.and_then(|data| data.content),
            Some(ticket_text(MAX_CONTENT_CHARS))
        );
    }

    #[test]
    fn embed_title_description_footer_are_limited() {
        let embed = Embed::new(ticket_text(300))
            .description(ticket_text(5_000))
            .footer(ticket_text(3_000))
            .fit();
        assert_eq!(
            char_len(embed.title.as_deref().unwrap_or_default()),
            MAX_EMBED_TITLE_CHARS
        );
        assert_eq!(
            char_len(embed.description.as_deref().unwrap_or_default()),
            MAX_EMBED_DESCRIPTION_CHARS
        );
        // The footer alone would be 2,048, but title + description leave 1,648.
        let footer = embed.footer.as_ref().map(|f| char_len(&f.text));
        assert_eq!(
            footer,
            Some(MAX_EMBED_TOTAL_CHARS - MAX_EMBED_TITLE_CHARS - MAX_EMBED_DESCRIPTION_CHARS)
        );
        assert_eq!(embed.total_chars(), MAX_EMBED_TOTAL_CHARS);

        let footer_only = Embed::default().footer(ticket_text(3_000)).fit();
        assert_eq!(
            footer_only.footer.map(|f| char_len(&f.text)),
            Some(MAX_FOOTER_CHARS)
        );
    }

    #[test]
    fn embed_fields_are_limited() {
        let mut embed = Embed::new("票");
        for _ in 0..30 {
            embed = embed.field(ticket_text(10), ticket_text(10), true);
        }
        let embed = embed
            .field(ticket_text(300), ticket_text(2_000), false)
            .fit();
        assert_eq!(embed.fields.len(), MAX_EMBED_FIELDS);

        let long = Embed::default()
            .field(ticket_text(300), ticket_text(2_000), false)
            .field("", "", false)
            .fit();
        assert_eq!(char_len(&long.fields[0].name), MAX_FIELD_NAME_CHARS);
        assert_eq!(char_len(&long.fields[0].value), MAX_FIELD_VALUE_CHARS);
        assert!(long.fields[0].value.ends_with('…'));
        assert_eq!(long.fields[1].name, "\u{200b}");
        assert_eq!(long.fields[1].value, "\u{200b}");
    }

    #[test]
    fn embed_total_is_limited_to_6000_characters() {
        // 4,096 + 10 × (256 + 1,024) = 16,896 characters before fitting.
        let mut embed = Embed::default().description(ticket_text(4_096));
        for _ in 0..10 {
            embed = embed.field(ticket_text(256), ticket_text(1_024), false);
        }
        let embed = embed.fit();
        assert!(embed.total_chars() <= MAX_EMBED_TOTAL_CHARS);
        // One full field (1,280) fits in the remaining 1,904; the next is shortened.
        assert_eq!(embed.fields.len(), 2);
        assert_eq!(char_len(&embed.fields[0].value), 1_024);
        assert_eq!(embed.total_chars(), MAX_EMBED_TOTAL_CHARS);
        assert!(embed.fields[1].value.ends_with('…'));

        // A field whose name alone nearly exhausts the budget is dropped.
        let mut tight = Embed::default().description(ticket_text(4_096));
        tight = tight.field(ticket_text(256), ticket_text(1_024), false);
        tight = tight.field(ticket_text(256), ticket_text(1_024), false);
        tight.description = Some(ticket_text(4_096));
        tight.title = Some(ticket_text(256));
        let tight = tight.fit();
        // 6,000 − 4,352 − 1,280 = 368 left: name 256 + 112 value characters.
        assert_eq!(tight.fields.len(), 2);
        assert_eq!(tight.total_chars(), MAX_EMBED_TOTAL_CHARS);
    }

    #[test]
    fn embeds_of_one_message_share_the_6000_budget() {
        let big = Embed::default().description(ticket_text(4_000));
        let data = ResponseData::embeds(vec![big.clone(), big.clone(), big]).fit();
        assert_eq!(data.embeds.len(), 1);
        let many = ResponseData::embeds(vec![Embed::new("票"); 12]).fit();
        assert_eq!(many.embeds.len(), MAX_EMBEDS);
    }

    #[test]
    fn choices_are_limited() {
        let choices = (0..30)
            .map(|i| Choice::string(format!("{i}{}", ticket_text(150)), format!("slug-{i}")))
            .chain(std::iter::once(Choice::string("too long", "x".repeat(101))))
            .collect();
        let response = InteractionResponse::choices(choices);
        let kept = response
            .data
            .and_then(|data| data.choices)
            .unwrap_or_default();
        assert_eq!(kept.len(), MAX_CHOICES);
        assert!(kept
            .iter()
            .all(|choice| char_len(&choice.name) == MAX_CHOICE_NAME_CHARS));
        assert!(kept.iter().all(|choice| choice.name.ends_with('…')));
    }

    #[test]
    fn response_json_is_minimal() -> Result<(), serde_json::Error> {
        assert_eq!(
            serde_json::to_string(&InteractionResponse::pong())?,
            r#"{"type":1}"#
        );
        assert_eq!(
            serde_json::to_value(InteractionResponse::message("票"))?,
            serde_json::json!({"type":4,"data":{"content":"票","allowed_mentions":{"parse":[]}}})
        );
        assert_eq!(
            serde_json::to_value(InteractionResponse::ephemeral("hi"))?,
            serde_json::json!({"type":4,"data":{"content":"hi","flags":64,"allowed_mentions":{"parse":[]}}})
        );
        assert_eq!(
            serde_json::to_value(InteractionResponse::deferred(false))?,
            serde_json::json!({"type":5})
        );
        assert_eq!(
            serde_json::to_value(InteractionResponse::deferred(true))?,
            serde_json::json!({"type":5,"data":{"flags":64}})
        );
        assert_eq!(
            serde_json::to_value(InteractionResponse::choices(Vec::new()))?,
            serde_json::json!({"type":8,"data":{"choices":[]}})
        );
        assert_eq!(
            serde_json::to_value(InteractionResponse::embed(
                Embed::new("t").field("n", "v", true).color(0x00aa00)
            ))?,
            serde_json::json!({"type":4,"data":{
                "embeds":[{"title":"t","color":0x00aa00,"fields":[{"name":"n","value":"v","inline":true}]}],
                "allowed_mentions":{"parse":[]}
            }})
        );
        assert_eq!(
            serde_json::to_value(InteractionResponse::embed(Embed::new("t")).into_ephemeral())?,
            serde_json::json!({"type":4,"data":{"embeds":[{"title":"t"}],"flags":64,"allowed_mentions":{"parse":[]}}})
        );
        Ok(())
    }

    #[test]
    fn unknown_interaction_and_option_types_do_not_fail() -> Result<(), serde_json::Error> {
        let interaction: Interaction = serde_json::from_value(serde_json::json!({
            "id": "1", "application_id": "2", "type": 42, "token": "t", "version": 1,
            "data": {"id": "3", "name": "x", "options": [{"name": "o", "type": 99, "value": 1}]},
            "brand_new_field": {"nested": true}
        }))?;
        assert_eq!(interaction.kind, InteractionType::Unknown(42));
        assert_eq!(interaction.kind.code(), 42);
        let data = interaction.data.unwrap_or_default();
        assert_eq!(data.options[0].kind, OptionType::Unknown);
        let huge: Interaction = serde_json::from_value(serde_json::json!({
            "id": "1", "application_id": "2", "type": 1000, "token": "t"
        }))?;
        assert_eq!(huge.kind, InteractionType::Unknown(u8::MAX));
        assert_eq!(huge.version, 1);
        Ok(())
    }

    #[test]
    fn option_helpers() -> Result<(), serde_json::Error> {
        let data: CommandData = serde_json::from_value(serde_json::json!({
            "id": "1", "name": "event", "type": 1,
            "options": [{"name": "report", "type": 1, "options": [
                {"name": "slug", "type": 3, "value": "pycon"},
                {"name": "n", "type": 4, "value": 7},
                {"name": "b", "type": 5, "value": true, "focused": true}
            ]}]
        }))?;
        let (name, options) = data.subcommand().unwrap_or_default();
        assert_eq!(name, "report");
        assert_eq!(option_str(options, "slug"), Some("pycon"));
        assert_eq!(option_i64(options, "n"), Some(7));
        assert_eq!(option_bool(options, "b"), Some(true));
        assert_eq!(option_str(options, "n"), None);
        assert_eq!(option_str(options, "missing"), None);
        assert_eq!(data.focused().map(|o| o.name.as_str()), Some("b"));
        Ok(())
    }

    /// Discord's rule for `CHAT_INPUT` command and option names, plus "lower case
    /// where a lower-case variant exists".
    fn valid_name(name: &str) -> bool {
        let pattern = regex::Regex::new(r"^[-_\p{L}\p{N}]{1,32}$");
        pattern.is_ok_and(|pattern| pattern.is_match(name)) && name.to_lowercase() == name
    }

    fn valid_description(description: &str) -> bool {
        (1..=MAX_COMMAND_DESCRIPTION_CHARS).contains(&char_len(description))
    }

    fn check_localizations(map: &Option<HashMap<String, String>>, what: &str) {
        let map = map.as_ref();
        let zh = map.and_then(|map| map.get(LOCALE_ZH_TW));
        assert!(zh.is_some(), "{what}: no zh-TW description");
        for text in map.into_iter().flat_map(|map| map.values()) {
            assert!(valid_description(text), "{what}: bad localisation {text:?}");
        }
    }

    fn check_option(option: &OptionDefinition, path: &str) {
        let path = format!("{path} {}", option.name);
        assert!(valid_name(&option.name), "bad name {path:?}");
        assert!(
            valid_description(&option.description),
            "{path}: bad description"
        );
        check_localizations(&option.description_localizations, &path);
        assert!(option.options.len() <= 25, "{path}: too many options");
        assert!(
            !option.autocomplete || option.choices.is_empty(),
            "{path}: autocomplete with choices"
        );
        // Required parameters must come before optional ones.
        let first_optional = option.options.iter().position(|o| !o.required);
        if let Some(first_optional) = first_optional {
            assert!(option.options[first_optional..].iter().all(|o| !o.required));
        }
        for nested in &option.options {
            check_option(nested, &path);
        }
    }

    #[test]
    fn command_names_and_descriptions_follow_discord_rules() {
        let commands = commands();
        assert_eq!(commands.len(), 2);
        for command in &commands {
            assert!(valid_name(&command.name), "bad name {:?}", command.name);
            assert!(valid_description(&command.description));
            check_localizations(&command.description_localizations, &command.name);
            assert!(command.options.len() <= 25);
            assert_eq!(command.default_member_permissions, None);
            for option in &command.options {
                check_option(option, &command.name);
            }
        }
        assert!(!valid_name("Event"));
        assert!(!valid_name("event list"));
        assert!(!valid_name(""));
        assert!(valid_name("活動"));
        assert!(!valid_description(&"票".repeat(101)));
    }

    #[test]
    fn command_set_shape() {
        let commands = commands();
        let names = |options: &[OptionDefinition]| -> Vec<String> {
            options.iter().map(|o| o.name.clone()).collect()
        };
        assert_eq!(commands[0].name, "event");
        assert_eq!(names(&commands[0].options), ["list", "status", "report"]);
        assert_eq!(
            names(&commands[0].options[2].options),
            ["slug", "from", "to"]
        );
        assert!(commands[0].options[1].options[0].autocomplete);
        assert!(commands[0].options[1].options[0].required);
        assert_eq!(commands[1].name, "autopilot");
        assert_eq!(
            names(&commands[1].options),
            ["poll", "resend", "import", "confirm-revoke"]
        );
        assert_eq!(names(&commands[1].options[1].options), ["reference"]);
        let import = &commands[1].options[2];
        assert_eq!(names(&import.options), ["event", "attendees", "orders"]);
        assert_eq!(import.options[1].kind, OptionType::Attachment);
        assert!(import.options[1].required && !import.options[2].required);
    }

    #[test]
    fn command_definitions_round_trip_and_diff() -> Result<(), serde_json::Error> {
        let desired = commands();
        let wire = serde_json::to_value(&desired)?;
        // Exact wire format for one parameter: empty and false fields are skipped.
        assert_eq!(
            wire[1]["options"][1]["options"][0],
            serde_json::json!({
                "type": 3, "name": "reference", "description": "reg_no or order_no",
                "description_localizations": {"zh-TW": "報名序號（reg_no）或訂單編號（order_no）"},
                "required": true
            })
        );
        assert_eq!(wire[0]["options"][0], {
            serde_json::json!({
                "type": 1, "name": "list", "description": "List the events",
                "description_localizations": {"zh-TW": "列出活動"}
            })
        });

        // What GET returns: extra fields, reordered subcommands, Discord defaults.
        let mut fetched = wire.clone();
        for (index, command) in fetched.as_array_mut().into_iter().flatten().enumerate() {
            command["id"] = serde_json::json!(format!("13100000000000000{index:02}"));
            command["application_id"] = serde_json::json!("1300000000000000000");
            command["version"] = serde_json::json!("1310000000000000099");
            command["type"] = serde_json::json!(1);
            command["nsfw"] = serde_json::json!(false);
            command["name_localizations"] = serde_json::Value::Null;
            command["default_member_permissions"] = serde_json::Value::Null;
            command["contexts"] = serde_json::json!([0]);
            command["integration_types"] = serde_json::json!([0]);
            if let Some(options) = command["options"].as_array_mut() {
                options.reverse();
            }
        }
        fetched
            .as_array_mut()
            .into_iter()
            .for_each(|list| list.reverse());
        let existing: Vec<CommandDefinition> = serde_json::from_value(fetched)?;
        assert!(!commands_differ(&desired, &existing));

        // Guild-only through `contexts`, not the deprecated `dm_permission`.
        assert!(wire.as_array().into_iter().flatten().all(|c| {
            c["contexts"] == serde_json::json!([0]) && c.get("dm_permission").is_none()
        }));
        // Guild commands come back without contexts.
        let mut guild = existing.clone();
        guild.iter_mut().for_each(|c| c.contexts = None);
        assert!(!commands_differ(&desired, &guild));
        // A command also usable in DMs differs.
        let mut in_dms = existing.clone();
        in_dms[0].contexts = Some(vec![
            InteractionContextType::Guild,
            InteractionContextType::BotDm,
        ]);
        assert!(commands_differ(&desired, &in_dms));

        let mut changed = existing.clone();
        changed[0].options[0].description = "changed".to_owned();
        assert!(commands_differ(&desired, &changed));
        let mut reordered_params = desired.clone();
        reordered_params[0].options[2].options.swap(1, 2);
        assert!(commands_differ(&desired, &reordered_params));
        assert!(commands_differ(&desired, &existing[..1]));
        Ok(())
    }
}
