//! Intentions -> the inbound listener's network RBAC filter. strait's rules are ordered
//! (the first rule whose source matches decides, no match allows); Envoy's policies are
//! not, so the order is resolved here: the first `*` rule sets the default, and the named
//! sources before it that decide otherwise become the one policy.

use envoy_types::pb::envoy::config::listener::v3::{filter, Filter};
use envoy_types::pb::envoy::config::rbac::v3::{
    permission, principal, rbac, Permission, Policy, Principal, Rbac,
};
use envoy_types::pb::envoy::extensions::filters::network::rbac::v3::Rbac as NetworkRbac;
use envoy_types::pb::envoy::r#type::matcher::v3::{string_matcher, StringMatcher};
use std::collections::HashMap;
use strait_identity::spiffe::service_uri_suffix;
use strait_snapshot::Intentions;

/// The RBAC filter for `intentions`, or `None` when every caller is allowed.
pub fn filter(intentions: &Intentions) -> Option<Filter> {
    let default_allow = intentions
        .rules
        .iter()
        .find(|r| r.source == "*")
        .is_none_or(|r| r.allow);
    // Named sources decided before the first `*` rule, first rule per source.
    let mut decided: Vec<(&str, bool)> = Vec::new();
    for rule in intentions.rules.iter().take_while(|r| r.source != "*") {
        if !decided.iter().any(|(s, _)| *s == rule.source) {
            decided.push((&rule.source, rule.allow));
        }
    }
    // Default allow: deny the named denials. Default deny: allow the named allowances.
    let exceptions: Vec<&str> = decided
        .iter()
        .filter(|(_, allow)| *allow != default_allow)
        .map(|(s, _)| *s)
        .collect();
    if default_allow && exceptions.is_empty() {
        return None;
    }
    let mut policies = HashMap::new();
    if !exceptions.is_empty() {
        let principals = exceptions.iter().map(|s| source(s)).collect();
        policies.insert(
            "intentions".to_string(),
            Policy {
                permissions: vec![Permission {
                    rule: Some(permission::Rule::Any(true)),
                }],
                principals,
                ..Default::default()
            },
        );
    }
    let action = if default_allow {
        rbac::Action::Deny
    } else {
        rbac::Action::Allow
    };
    let config = NetworkRbac {
        rules: Some(Rbac {
            action: action as i32,
            policies,
            ..Default::default()
        }),
        stat_prefix: "intentions".to_string(),
        ..Default::default()
    };
    Some(Filter {
        name: "envoy.filters.network.rbac".to_string(),
        config_type: Some(filter::ConfigType::TypedConfig(super::proto::any(&config))),
    })
}

/// A caller of service `name` in any DC: its certificate's URI SAN ends in `/svc/<name>`
/// (names cannot contain `/`, so the suffix cannot match another service).
fn source(name: &str) -> Principal {
    Principal {
        identifier: Some(principal::Identifier::Authenticated(
            principal::Authenticated {
                principal_name: Some(StringMatcher {
                    match_pattern: Some(string_matcher::MatchPattern::Suffix(service_uri_suffix(
                        name,
                    ))),
                    ..Default::default()
                }),
            },
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use strait_snapshot::IntentionRule;

    fn rules(rules: &[(&str, bool)]) -> Intentions {
        Intentions {
            rules: rules
                .iter()
                .map(|(s, a)| IntentionRule {
                    source: s.to_string(),
                    allow: *a,
                })
                .collect(),
        }
    }

    /// (action, sorted suffixes of the one policy's principals).
    fn decoded(i: &Intentions) -> Option<(i32, Vec<String>)> {
        let f = filter(i)?;
        let Some(filter::ConfigType::TypedConfig(any)) = f.config_type else {
            panic!("untyped");
        };
        let rbac = NetworkRbac::decode(any.value.as_slice())
            .expect("rbac")
            .rules
            .expect("rules");
        let mut names: Vec<String> = rbac
            .policies
            .values()
            .flat_map(|p| p.principals.iter())
            .map(|p| format!("{:?}", p.identifier))
            .map(|d| {
                d.split("Suffix(\"")
                    .nth(1)
                    .unwrap_or("")
                    .split('"')
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
            .collect();
        names.sort();
        Some((rbac.action, names))
    }

    #[test]
    fn no_rules_or_only_allows_need_no_filter() {
        assert_eq!(decoded(&rules(&[])), None);
        assert_eq!(decoded(&rules(&[("web", true), ("*", true)])), None);
    }

    #[test]
    fn default_allow_denies_named_denials() {
        let d = decoded(&rules(&[("web", false), ("api", true), ("web", true)]));
        assert_eq!(
            d,
            Some((rbac::Action::Deny as i32, vec!["/svc/web".to_string()]))
        );
    }

    #[test]
    fn default_deny_allows_earlier_allowances_only() {
        let d = decoded(&rules(&[
            ("web", true),
            ("db", false),
            ("*", false),
            ("api", true),
        ]));
        assert_eq!(
            d,
            Some((rbac::Action::Allow as i32, vec!["/svc/web".to_string()]))
        );
        // Deny-all: an ALLOW filter without policies admits nobody.
        assert_eq!(
            decoded(&rules(&[("*", false)])),
            Some((rbac::Action::Allow as i32, vec![]))
        );
    }
}
