//! `openapi.yaml` and the router list the same routes and methods, with the same auth.

use std::collections::BTreeSet;

use autopilot_core::api::{Auth, ROUTES};
use yaml_rust2::{Yaml, YamlLoader};

fn spec() -> Yaml {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../openapi.yaml"))
        .unwrap();
    YamlLoader::load_from_str(&text).unwrap().remove(0)
}

#[test]
fn the_spec_and_the_router_list_the_same_routes() {
    let spec = spec();
    let mut documented = BTreeSet::new();
    for (path, item) in spec["paths"].as_hash().unwrap() {
        for (method, _) in item.as_hash().unwrap() {
            let method = method.as_str().unwrap().to_uppercase();
            documented.insert((method, path.as_str().unwrap().to_owned()));
        }
    }
    let routed: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|route| (route.method.to_owned(), route.path.to_owned()))
        .collect();
    assert_eq!(documented, routed);
}

#[test]
fn each_route_documents_its_auth_and_answers() {
    let spec = spec();
    for route in ROUTES {
        let operation = &spec["paths"][route.path][route.method.to_lowercase().as_str()];
        let schemes: Vec<String> = operation["security"]
            .as_vec()
            .unwrap_or_else(|| panic!("{} {} has no security", route.method, route.path))
            .iter()
            .flat_map(|requirement| requirement.as_hash().unwrap().keys())
            .map(|key| key.as_str().unwrap().to_owned())
            .collect();
        let expected: Vec<&str> = match route.auth {
            Auth::None => vec![],
            Auth::OpsToken => vec!["opsToken"],
            Auth::DiscordSignature => vec!["discordSignature"],
            Auth::PathToken => vec![],
        };
        assert_eq!(schemes, expected, "{} {}", route.method, route.path);
        let responses = operation["responses"].as_hash().unwrap();
        assert!(responses.keys().any(|code| code.as_str() == Some("200")));
        if route.auth == Auth::PathToken {
            assert!(
                responses.keys().any(|code| code.as_str() == Some("404")),
                "{} {} documents the 404 of an unknown token",
                route.method,
                route.path
            );
        } else if route.auth != Auth::None {
            assert!(
                responses.keys().any(|code| code.as_str() == Some("401")),
                "{} {} documents its 401",
                route.method,
                route.path
            );
        }
    }
}
