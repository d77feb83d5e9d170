//! Incoming interactions (Discord: "Receiving and Responding", the interaction object):
//! the interaction, its member and user, command data, options and resolved attachments.

use super::*;

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
