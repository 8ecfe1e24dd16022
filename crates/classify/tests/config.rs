//! Configuration from TOML: values, defaults, unknown keys, and validation
//! that reports every problem with its key path.

mod common;

use common::{Msg, assert_decision};
use facteur_classify::{Class, ClassifyConfig, ConfigError, Rule};

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    classify: ClassifyConfig,
}

fn parse(text: &str) -> Result<ClassifyConfig, toml::de::Error> {
    toml::from_str::<File>(text).map(|file| file.classify)
}

fn errors(config: &ClassifyConfig) -> Vec<String> {
    config.validate().err().unwrap_or_default().iter().map(ConfigError::to_string).collect()
}

const FULL: &str = r#"
[classify]
bulk_senders = ["news@example.com", "promo.example.com"]
transactional_senders = ["*.billing.example"]
transactional_users = ["app"]
interpersonal_max_recipients = 5
identical_bulk_threshold = 50

[[classify.rules]]
name = "every-key"
class = "transactional"
sender_domain = ["example.org", "*.example.org"]
recipient_domain = ["partner.test"]
auth_user = ["crm"]
client_network = ["192.0.2.0/24", "2001:db8::/32"]
header = "X-Campaign"
header_value = "receipt"

[[classify.rules]]
name = "only-class"
class = "bulk"
"#;

#[test]
fn every_key_deserialises() {
    let config = parse(FULL).unwrap();
    let expected = ClassifyConfig {
        rules: vec![
            Rule {
                name: "every-key".into(),
                class: Class::Transactional,
                sender_domain: vec!["example.org".into(), "*.example.org".into()],
                recipient_domain: vec!["partner.test".into()],
                auth_user: vec!["crm".into()],
                client_network: vec!["192.0.2.0/24".parse().unwrap(), "2001:db8::/32".parse().unwrap()],
                header: Some("X-Campaign".into()),
                header_value: Some("receipt".into()),
            },
            Rule {
                name: "only-class".into(),
                class: Class::Bulk,
                sender_domain: Vec::new(),
                recipient_domain: Vec::new(),
                auth_user: Vec::new(),
                client_network: Vec::new(),
                header: None,
                header_value: None,
            },
        ],
        bulk_senders: vec!["news@example.com".into(), "promo.example.com".into()],
        transactional_senders: vec!["*.billing.example".into()],
        transactional_users: vec!["app".into()],
        interpersonal_max_recipients: 5,
        identical_bulk_threshold: 50,
    };
    assert_eq!(config, expected);
    assert_eq!(config.validate(), Ok(()));
}

#[test]
fn an_empty_section_gives_the_defaults() {
    let config = parse("[classify]\n").unwrap();
    assert_eq!(config, ClassifyConfig::default());
    assert_eq!(config.interpersonal_max_recipients, 10);
    assert_eq!(config.identical_bulk_threshold, 20);
    assert!(config.rules.is_empty() && config.bulk_senders.is_empty());
    assert_eq!(config.validate(), Ok(()));
}

#[test]
fn unknown_top_level_key_is_rejected() {
    let error = parse("[classify]\nbulk_sender = [\"x.example\"]\n").unwrap_err();
    assert!(error.to_string().contains("bulk_sender"), "{error}");
}

#[test]
fn unknown_rule_key_is_rejected() {
    let text = "[classify]\n[[classify.rules]]\nname = \"r\"\nclass = \"bulk\"\nsender_domains = [\"x.example\"]\n";
    let error = parse(text).unwrap_err();
    assert!(error.to_string().contains("sender_domains"), "{error}");
}

#[test]
fn a_rule_needs_a_name_and_a_class() {
    assert!(parse("[classify]\n[[classify.rules]]\nclass = \"bulk\"\n").is_err());
    assert!(parse("[classify]\n[[classify.rules]]\nname = \"r\"\n").is_err());
}

#[test]
fn class_names_are_lower_case_words() {
    for class in Class::ALL {
        let text = format!("[classify]\n[[classify.rules]]\nname = \"r\"\nclass = \"{class}\"\n");
        assert_eq!(parse(&text).unwrap().rules[0].class, class);
    }
    for bad in ["Bulk", "marketing", ""] {
        let text = format!("[classify]\n[[classify.rules]]\nname = \"r\"\nclass = \"{bad}\"\n");
        assert!(parse(&text).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn malformed_networks_and_wrong_types_are_rejected() {
    let rule = |line: &str| format!("[classify]\n[[classify.rules]]\nname = \"r\"\nclass = \"bulk\"\n{line}\n");
    assert!(parse(&rule("client_network = [\"192.0.2.0/33\"]")).is_err());
    assert!(parse(&rule("client_network = [\"192.0.2.1\"]")).is_err());
    assert!(parse(&rule("sender_domain = \"example.org\"")).is_err());
    assert!(parse("[classify]\ninterpersonal_max_recipients = -1\n").is_err());
}

#[test]
fn validation_reports_every_problem_with_its_path() {
    let text = r#"
[classify]
bulk_senders = ["@example.com", "news@*.example.com", "ok.example.com", "a b.example"]
transactional_senders = ["*"]
transactional_users = [""]
interpersonal_max_recipients = 0
identical_bulk_threshold = 0

[[classify.rules]]
name = "dup"
class = "bulk"
sender_domain = ["example..org", "a.*.example"]
recipient_domain = ["user@example.org"]
client_network = ["192.0.2.1/24"]
header = "X Campaign:"

[[classify.rules]]
name = "dup"
class = "bulk"
header_value = "x"

[[classify.rules]]
name = "has space"
class = "bulk"
header = "X-Campaign"
header_value = ""
"#;
    let config = parse(text).unwrap();
    let paths: Vec<String> = config.validate().unwrap_err().into_iter().map(|e| e.path).collect();
    assert_eq!(
        paths,
        [
            "rules[0].sender_domain[0]",
            "rules[0].sender_domain[1]",
            "rules[0].recipient_domain[0]",
            "rules[0].client_network[0]",
            "rules[0].header",
            "rules[1].name",
            "rules[1].header_value",
            "rules[2].name",
            "rules[2].header_value",
            "bulk_senders[0]",
            "bulk_senders[1]",
            "bulk_senders[3]",
            "transactional_senders[0]",
            "transactional_users[0]",
            "interpersonal_max_recipients",
            "identical_bulk_threshold",
        ]
    );
    let messages = errors(&config);
    assert!(messages.contains(&"rules[1].name: \"dup\" names an earlier rule too".to_string()), "{messages:#?}");
    assert!(
        messages.contains(
            &"rules[0].client_network[0]: 192.0.2.1/24 has host bits set; the network is 192.0.2.0/24".into()
        ),
        "{messages:#?}"
    );
}

#[test]
fn header_value_with_a_line_break_is_reported() {
    let config = ClassifyConfig {
        rules: vec![Rule {
            name: "r".into(),
            class: Class::Bulk,
            sender_domain: Vec::new(),
            recipient_domain: Vec::new(),
            auth_user: Vec::new(),
            client_network: Vec::new(),
            header: Some("Subject".into()),
            header_value: Some("a\r\n b".into()),
        }],
        ..ClassifyConfig::default()
    };
    assert_eq!(errors(&config), ["rules[0].header_value: holds a line break; values are matched unfolded"]);
}

#[test]
fn the_example_file_is_valid_and_means_what_it_says() {
    let config = parse(include_str!("../classify.example.toml")).unwrap();
    assert_eq!(config.validate(), Ok(()));
    let campaign = Msg::mx().from("info@crm.example.com").with_fields("X-Campaign: Spring Newsletter\r\n");
    assert_decision(campaign.classify(&config), Class::Bulk, "config:crm-newsletters");
    let alert = Msg::mx().ip("2001:db8:25::9").to(&["oncall@ops.example.com"]);
    assert_decision(alert.classify(&config), Class::Transactional, "config:monitoring");
    assert_decision(Msg::submission().user("billing").classify(&config), Class::Transactional, "config:billing-app");
    assert_decision(
        Msg::mx().from("x@eu.campaigns.example.com").classify(&config),
        Class::Bulk,
        "builtin:bulk-senders",
    );
}
