//! Interaction responses (Discord: "Responding to an Interaction", message and embed
//! objects), each with a `fit` that enforces Discord's limits.

use super::*;

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
