//! Discord interaction payloads (`tests/fixtures/discord/*.json`) read through
//! `autopilot_core::discord::model`.

use std::path::PathBuf;

use autopilot_core::discord::model::{
    commands, option_bool, option_str, Interaction, InteractionResponse, InteractionType,
    OptionType,
};

const ORGANISER_ROLE: &str = "111111111111111111";
const APPLICATION_ID: &str = "1300000000000000000";

fn fixture(name: &str) -> Interaction {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/discord")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("{name}: {error}"))
}

/// The subcommand name and its string options as `(name, value)` pairs.
fn invocation(interaction: &Interaction) -> (String, Vec<(String, String)>) {
    let data = interaction.data.as_ref().expect("command data");
    let (name, options) = data.subcommand().expect("a subcommand");
    let options = options
        .iter()
        .map(|option| {
            assert_eq!(option.kind, OptionType::String, "{}", option.name);
            (
                option.name.clone(),
                option.string().expect("a string value").to_owned(),
            )
        })
        .collect();
    (name.to_owned(), options)
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

#[test]
fn every_fixture_parses() {
    let directory = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/discord");
    let mut count = 0;
    for entry in std::fs::read_dir(&directory).expect("fixture directory") {
        let path = entry.expect("directory entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let name = path.file_name().and_then(|n| n.to_str()).expect("name");
        let interaction = fixture(name);
        assert_eq!(interaction.application_id, APPLICATION_ID, "{name}");
        assert_eq!(interaction.version, 1, "{name}");
        assert!(!interaction.token.is_empty(), "{name}");
        assert!(interaction.invoker().is_some(), "{name}");
        count += 1;
    }
    assert_eq!(count, 12);
}

#[test]
fn ping() {
    let ping = fixture("ping.json");
    assert_eq!(ping.kind, InteractionType::Ping);
    assert!(ping.data.is_none());
    assert!(ping.member.is_none());
    assert!(ping.member_roles().is_empty());
}

#[test]
fn event_list() {
    let interaction = fixture("event_list.json");
    assert_eq!(interaction.kind, InteractionType::ApplicationCommand);
    assert_eq!(interaction.command_name(), Some("event"));
    assert_eq!(invocation(&interaction), ("list".to_owned(), Vec::new()));
    assert_eq!(interaction.locale.as_deref(), Some("zh-TW"));
    assert_eq!(interaction.guild_locale.as_deref(), Some("zh-TW"));
    assert!(interaction.prefers_zh_tw());
    assert_eq!(interaction.guild_id.as_deref(), Some("1290514384729128961"));
    assert_eq!(
        interaction.channel_id.as_deref(),
        Some("1290514385253412876")
    );
    let member = interaction.member.as_ref().expect("member");
    assert_eq!(member.permissions.as_deref(), Some("2248473465835073"));
    let user = interaction.invoker().expect("user");
    assert_eq!(user.id, "802958401263861771");
    assert_eq!(user.username, "mei_organiser");
    assert_eq!(user.display_name(), "Mei 美");
}

#[test]
fn event_status() {
    let interaction = fixture("event_status.json");
    assert_eq!(interaction.kind, InteractionType::ApplicationCommand);
    assert_eq!(
        invocation(&interaction),
        (
            "status".to_owned(),
            pairs(&[("slug", "pycon-tw-2026-individual")])
        )
    );
    let (_, options) = interaction
        .data
        .as_ref()
        .and_then(|data| data.subcommand())
        .expect("subcommand");
    assert_eq!(
        option_str(options, "slug"),
        Some("pycon-tw-2026-individual")
    );
    assert_eq!(option_str(options, "from"), None);
}

#[test]
fn event_report() {
    let interaction = fixture("event_report.json");
    assert_eq!(
        invocation(&interaction),
        (
            "report".to_owned(),
            pairs(&[
                ("slug", "pycon-tw-2026-individual"),
                ("from", "2026-03-01"),
                ("to", "2026-03-07"),
            ])
        )
    );
}

#[test]
fn event_status_autocomplete() {
    let interaction = fixture("event_status_autocomplete.json");
    assert_eq!(
        interaction.kind,
        InteractionType::ApplicationCommandAutocomplete
    );
    let data = interaction.data.as_ref().expect("data");
    assert_eq!(data.name, "event");
    assert_eq!(data.subcommand().map(|(name, _)| name), Some("status"));
    let focused = data.focused().expect("focused option");
    assert_eq!(focused.name, "slug");
    assert_eq!(focused.string(), Some("pycon"));
}

#[test]
fn autopilot_commands_and_roles() {
    let poll = fixture("autopilot_poll.json");
    assert_eq!(poll.command_name(), Some("autopilot"));
    assert_eq!(invocation(&poll), ("poll".to_owned(), Vec::new()));
    assert_eq!(poll.member_roles(), [ORGANISER_ROLE]);
    assert!(poll.has_any_role(&[ORGANISER_ROLE]));

    let resend = fixture("autopilot_resend.json");
    assert_eq!(
        invocation(&resend),
        ("resend".to_owned(), pairs(&[("reference", "104")]))
    );
    assert!(resend.has_any_role(&[ORGANISER_ROLE]));

    let no_role = fixture("autopilot_poll_no_role.json");
    assert_eq!(invocation(&no_role), ("poll".to_owned(), Vec::new()));
    assert!(!no_role.member_roles().is_empty());
    assert!(!no_role.has_any_role(&[ORGANISER_ROLE]));
    assert_ne!(
        no_role.invoker().map(|user| user.id.as_str()),
        poll.invoker().map(|user| user.id.as_str())
    );
}

#[test]
fn fixture_commands_exist_in_the_command_set() {
    let commands = commands();
    for name in [
        "event_list.json",
        "event_status.json",
        "event_report.json",
        "autopilot_poll.json",
        "autopilot_resend.json",
    ] {
        let interaction = fixture(name);
        let (sub, options) = invocation(&interaction);
        let command = commands
            .iter()
            .find(|c| Some(c.name.as_str()) == interaction.command_name())
            .unwrap_or_else(|| panic!("{name}: unknown command"));
        let definition = command
            .options
            .iter()
            .find(|o| o.name == sub)
            .unwrap_or_else(|| panic!("{name}: unknown subcommand {sub}"));
        let defined: Vec<&str> = definition.options.iter().map(|o| o.name.as_str()).collect();
        let given: Vec<&str> = options.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(defined, given, "{name}");
    }
}

/// `/autopilot campaign …` arrives as a group (type 2) holding one subcommand (type 1).
#[test]
fn autopilot_campaign_fixtures_follow_the_group_in_the_command_set() {
    let commands = commands();
    let autopilot = commands
        .iter()
        .find(|c| c.name == "autopilot")
        .expect("autopilot command");
    let group = autopilot
        .options
        .iter()
        .find(|o| o.name == "campaign")
        .expect("campaign group");
    assert_eq!(group.kind, OptionType::SubCommandGroup);
    for (name, sub, given, confirm, operator) in [
        ("autopilot_campaign_list.json", "list", &[][..], None, true),
        (
            "autopilot_campaign_send.json",
            "send",
            &["name"][..],
            None,
            true,
        ),
        (
            "autopilot_campaign_send_confirm.json",
            "send",
            &["name", "confirm"][..],
            Some(true),
            true,
        ),
        (
            "autopilot_campaign_send_no_role.json",
            "send",
            &["name", "confirm"][..],
            Some(true),
            false,
        ),
    ] {
        let interaction = fixture(name);
        assert_eq!(interaction.command_name(), Some("autopilot"), "{name}");
        assert_eq!(
            interaction.has_any_role(&[ORGANISER_ROLE]),
            operator,
            "{name}"
        );
        let data = interaction.data.as_ref().expect("data");
        // Not a plain subcommand: the group is in between.
        assert!(data.subcommand().is_none(), "{name}");
        assert_eq!(data.options.len(), 1, "{name}");
        let invoked_group = &data.options[0];
        assert_eq!(invoked_group.kind, OptionType::SubCommandGroup, "{name}");
        assert_eq!(invoked_group.name, "campaign", "{name}");
        assert_eq!(invoked_group.options.len(), 1, "{name}");
        let invoked = &invoked_group.options[0];
        assert_eq!(invoked.kind, OptionType::SubCommand, "{name}");
        assert_eq!(invoked.name, sub, "{name}");
        let given_names: Vec<&str> = invoked.options.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(given_names, given, "{name}");
        let definition = group
            .options
            .iter()
            .find(|o| o.name == sub)
            .unwrap_or_else(|| panic!("{name}: unknown subcommand {sub}"));
        for option in &invoked.options {
            let defined = definition
                .options
                .iter()
                .find(|d| d.name == option.name)
                .unwrap_or_else(|| panic!("{name}: unknown option {}", option.name));
            assert_eq!(defined.kind, option.kind, "{name}: {}", option.name);
        }
        if sub == "send" {
            assert_eq!(option_str(&invoked.options, "name"), Some("newsletter"));
        }
        assert_eq!(option_bool(&invoked.options, "confirm"), confirm, "{name}");
    }
}

#[test]
fn pong_serialises_exactly() {
    assert_eq!(
        serde_json::to_string(&InteractionResponse::pong()).expect("json"),
        r#"{"type":1}"#
    );
}
