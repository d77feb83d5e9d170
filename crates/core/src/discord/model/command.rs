//! Command registration (Discord: "Application Commands"): definitions with zh-TW
//! localisations, the bot's command set, and the diff against what Discord has.

use super::*;

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

    /// A subcommand group (`SUB_COMMAND_GROUP`): its options are subcommands.
    pub fn group(name: &str, description: &str, zh_tw: &str) -> Self {
        Self::base(OptionType::SubCommandGroup, name, description, zh_tw)
    }

    /// A string parameter with English and Traditional Chinese descriptions.
    pub fn string(name: &str, description: &str, zh_tw: &str) -> Self {
        Self::base(OptionType::String, name, description, zh_tw)
    }

    /// A boolean parameter (Discord offers `True` / `False`).
    pub fn boolean(name: &str, description: &str, zh_tw: &str) -> Self {
        Self::base(OptionType::Boolean, name, description, zh_tw)
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
/// - `/autopilot poll`, `/autopilot resend reference`, `/autopilot import event attendees
///   [orders]`, `/autopilot confirm-revoke event`
/// - `/autopilot campaign list`, `/autopilot campaign send name [confirm]` (a group)
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
            )
            .option(
                OptionDefinition::group(
                    "campaign",
                    "Campaign letters to the admitted attendees",
                    "寄給參加者的活動信（行前信）",
                )
                .option(OptionDefinition::subcommand(
                    "list",
                    "List the campaigns and how far each has gone",
                    "列出活動信及寄送進度",
                ))
                .option(
                    OptionDefinition::subcommand(
                        "send",
                        "Send a campaign to those who have not had it yet",
                        "寄出活動信給尚未收到的人",
                    )
                    .option(
                        OptionDefinition::string(
                            "name",
                            "Campaign name in [[campaigns]]",
                            "設定檔 [[campaigns]] 中的活動信名稱",
                        )
                        .required()
                        .length(1, 64),
                    )
                    .option(OptionDefinition::boolean(
                        "confirm",
                        "Needed to send to more than 100 people",
                        "寄給超過 100 人時需要確認",
                    )),
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
