//! `service-resolver` entries -> an upstream's chain of targets: the primary target (after
//! following redirects) and the failover targets, in order. Pure, like the rest of the
//! builder; the catalog uses [`follow_redirects`] to refuse redirect cycles on write.
//!
//! Semantics (Consul's discovery chain, without namespaces):
//! - an upstream starts at its service's `DefaultSubset` (none: every instance).
//! - a resolver's `Redirect` replaces the service, subset and/or datacenter of the target it
//!   applies to; the resolver of the new service applies next, until the target no longer
//!   changes. A target seen twice is a cycle.
//! - the failover targets are those of the primary target's resolver (`Failover[subset]`
//!   for the primary's subset, else `Failover["*"]`), each empty field taken from the
//!   primary target; a target equal to the primary, or to an earlier one, is left out.
//! - an empty subset stays the base target's when the service does not change, else it is
//!   the new service's `DefaultSubset`.
//! - `ConnectTimeout` is the primary target's resolver's.

use crate::types::{Resolver, TargetName};
use std::collections::BTreeMap;

/// Upper bound on redirect hops; more than the number of resolvers means a cycle anyway.
const MAX_REDIRECTS: usize = 64;

/// The targets an upstream resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// The primary target, then each failover target.
    pub targets: Vec<TargetName>,
    pub connect_timeout_ms: Option<u64>,
}

/// A redirect cycle: the targets visited, the first repeated at the end.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("redirects form a cycle: {}", describe(.0))]
pub struct RedirectCycle(pub Vec<TargetName>);

fn describe(path: &[TargetName]) -> String {
    path.iter()
        .map(TargetName::to_string)
        .collect::<Vec<_>>()
        .join(" -> ")
}

impl std::fmt::Display for TargetName {
    /// `service@dc`, or `subset.service@dc`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.subset.is_empty() {
            write!(f, "{}.", self.subset)?;
        }
        write!(f, "{}@{}", self.service, self.datacenter)
    }
}

/// The `DefaultSubset` of `service`'s resolver ("" without one).
fn default_subset(resolvers: &BTreeMap<String, Resolver>, service: &str) -> String {
    resolvers
        .get(service)
        .map(|r| r.default_subset.clone())
        .unwrap_or_default()
}

/// `name` with its empty fields taken from `base` (an empty subset of another service: that
/// service's default subset).
fn applied(
    resolvers: &BTreeMap<String, Resolver>,
    name: &TargetName,
    base: &TargetName,
) -> TargetName {
    let pick = |own: &String, base: &String| {
        if own.is_empty() {
            base.clone()
        } else {
            own.clone()
        }
    };
    let service = pick(&name.service, &base.service);
    let subset = if !name.subset.is_empty() {
        name.subset.clone()
    } else if service == base.service {
        base.subset.clone()
    } else {
        default_subset(resolvers, &service)
    };
    TargetName {
        subset,
        service,
        datacenter: pick(&name.datacenter, &base.datacenter),
    }
}

/// Follows redirects from `start` to the target that serves it.
pub fn follow_redirects(
    resolvers: &BTreeMap<String, Resolver>,
    start: TargetName,
) -> Result<TargetName, RedirectCycle> {
    let mut path = vec![start];
    loop {
        let current = path.last().expect("path starts non-empty");
        let Some(redirect) = resolvers
            .get(&current.service)
            .and_then(|r| r.redirect.as_ref())
        else {
            break;
        };
        let next = applied(resolvers, redirect, current);
        if next == *current {
            break;
        }
        let repeated = path.contains(&next);
        path.push(next);
        if repeated || path.len() > MAX_REDIRECTS {
            return Err(RedirectCycle(path));
        }
    }
    Ok(path.pop().expect("path starts non-empty"))
}

/// The chain of `service` in `datacenter`. A redirect cycle (refused on write, so only from
/// a hand-made view) resolves to the target itself, without failover.
pub fn resolve(resolvers: &BTreeMap<String, Resolver>, service: &str, datacenter: &str) -> Chain {
    let start = TargetName {
        service: service.to_string(),
        subset: default_subset(resolvers, service),
        datacenter: datacenter.to_string(),
    };
    let Ok(primary) = follow_redirects(resolvers, start.clone()) else {
        return Chain {
            targets: vec![start],
            connect_timeout_ms: None,
        };
    };
    let resolver = resolvers.get(&primary.service);
    let failover = resolver.map(|r| {
        r.subset_failover
            .get(&primary.subset)
            .unwrap_or(&r.failover)
    });
    let mut targets = vec![primary];
    for name in failover.into_iter().flatten() {
        let target = applied(resolvers, name, &targets[0]);
        if !targets.contains(&target) {
            targets.push(target);
        }
    }
    Chain {
        targets,
        connect_timeout_ms: resolver.and_then(|r| r.connect_timeout_ms),
    }
}

/// Every redirect cycle reachable in `resolvers`, if any: each resolver's service is
/// started in every datacenter a redirect names, and in one no redirect names (which stands
/// for all the others, since only equality of datacenters matters).
pub fn find_redirect_cycle(resolvers: &BTreeMap<String, Resolver>) -> Option<RedirectCycle> {
    let mut dcs: Vec<String> = resolvers
        .values()
        .filter_map(|r| r.redirect.as_ref())
        .map(|t| t.datacenter.clone())
        .filter(|dc| !dc.is_empty())
        .collect();
    dcs.sort();
    dcs.dedup();
    // A name no redirect uses (datacenter names cannot contain '<').
    dcs.push("<any>".to_string());
    resolvers.keys().find_map(|service| {
        dcs.iter().find_map(|dc| {
            let start = TargetName {
                service: service.clone(),
                subset: String::new(),
                datacenter: dc.clone(),
            };
            follow_redirects(resolvers, start).err()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(service: &str, dc: &str) -> TargetName {
        TargetName {
            service: service.into(),
            subset: String::new(),
            datacenter: dc.into(),
        }
    }

    fn in_subset(subset: &str, service: &str, dc: &str) -> TargetName {
        TargetName {
            subset: subset.into(),
            ..name(service, dc)
        }
    }

    #[test]
    fn subsets_default_carry_over_and_pick_their_failover() {
        let counting = Resolver {
            default_subset: "v1".into(),
            failover: vec![name("", "dc3")],
            subset_failover: BTreeMap::from([(
                "v2".to_string(),
                vec![in_subset("v1", "", ""), name("", "dc4")],
            )]),
            ..Resolver::default()
        };
        let resolvers = BTreeMap::from([
            ("counting".to_string(), counting),
            // Redirects to a named subset; the old service's own default does not apply.
            ("old".to_string(), {
                let mut r = redirect("counting", "");
                r.redirect.as_mut().unwrap().subset = "v2".into();
                r.default_subset = "ignored".into();
                r
            }),
            ("plain".to_string(), redirect("counting", "")),
        ]);
        // The default subset, and Failover["*"] keeps it in the other DC.
        assert_eq!(
            resolve(&resolvers, "counting", "dc2").targets,
            [
                in_subset("v1", "counting", "dc2"),
                in_subset("v1", "counting", "dc3")
            ]
        );
        // Failover["v2"] applies to v2: another subset in the same DC, then dc4 of v2.
        assert_eq!(
            resolve(&resolvers, "old", "dc2").targets,
            [
                in_subset("v2", "counting", "dc2"),
                in_subset("v1", "counting", "dc2"),
                in_subset("v2", "counting", "dc4"),
            ]
        );
        // A redirect to another service without a subset takes that service's default.
        assert_eq!(
            resolve(&resolvers, "plain", "dc1").targets[0],
            in_subset("v1", "counting", "dc1")
        );
        assert_eq!(
            in_subset("v2", "counting", "dc4").to_string(),
            "v2.counting@dc4"
        );
    }

    fn failover(targets: &[(&str, &str)]) -> Resolver {
        Resolver {
            failover: targets.iter().map(|(s, d)| name(s, d)).collect(),
            ..Resolver::default()
        }
    }

    fn redirect(service: &str, dc: &str) -> Resolver {
        Resolver {
            redirect: Some(name(service, dc)),
            ..Resolver::default()
        }
    }

    #[test]
    fn no_resolver_is_a_single_target() {
        let chain = resolve(&BTreeMap::new(), "counting", "dc2");
        assert_eq!(chain.targets, [name("counting", "dc2")]);
        assert_eq!(chain.connect_timeout_ms, None);
    }

    #[test]
    fn failover_datacenters_in_order_without_the_primary_or_repeats() {
        let mut r = failover(&[("", "dc3"), ("", "dc2"), ("", "dc1"), ("", "dc3")]);
        r.connect_timeout_ms = Some(1500);
        let resolvers = BTreeMap::from([("counting".to_string(), r)]);
        let chain = resolve(&resolvers, "counting", "dc2");
        assert_eq!(
            chain.targets,
            [
                name("counting", "dc2"),
                name("counting", "dc3"),
                name("counting", "dc1")
            ]
        );
        assert_eq!(chain.connect_timeout_ms, Some(1500));
        // Another service's resolver does not apply.
        assert_eq!(resolve(&resolvers, "api", "dc2").targets.len(), 1);
    }

    #[test]
    fn failover_targets_take_missing_fields_from_the_primary() {
        let resolvers = BTreeMap::from([(
            "counting".to_string(),
            failover(&[("counting-backup", ""), ("", "dc3"), ("other", "dc4")]),
        )]);
        assert_eq!(
            resolve(&resolvers, "counting", "dc1").targets,
            [
                name("counting", "dc1"),
                name("counting-backup", "dc1"),
                name("counting", "dc3"),
                name("other", "dc4"),
            ]
        );
    }

    #[test]
    fn redirects_are_followed_and_the_target_resolver_applies() {
        let resolvers = BTreeMap::from([
            ("old".to_string(), redirect("counting", "")),
            ("counting".to_string(), failover(&[("", "dc3")])),
            ("moved".to_string(), redirect("", "dc9")),
        ]);
        assert_eq!(
            resolve(&resolvers, "old", "dc2").targets,
            [name("counting", "dc2"), name("counting", "dc3")]
        );
        // A redirect to another DC of the same service is a fixed point there.
        assert_eq!(
            resolve(&resolvers, "moved", "dc1").targets,
            [name("moved", "dc9")]
        );
    }

    #[test]
    fn cycles_are_found_and_do_not_hang_the_builder() {
        let resolvers = BTreeMap::from([
            ("a".to_string(), redirect("b", "")),
            ("b".to_string(), redirect("a", "")),
        ]);
        let cycle = find_redirect_cycle(&resolvers).expect("cycle");
        assert_eq!(
            cycle.to_string(),
            "redirects form a cycle: a@<any> -> b@<any> -> a@<any>"
        );
        assert_eq!(resolve(&resolvers, "a", "dc1").targets, [name("a", "dc1")]);
        // Only through named datacenters: a@dc2 -> b@dc3 -> a@dc2.
        let resolvers = BTreeMap::from([
            ("a".to_string(), redirect("b", "dc3")),
            ("b".to_string(), redirect("a", "dc2")),
        ]);
        let cycle = find_redirect_cycle(&resolvers).expect("cycle");
        assert!(
            cycle.to_string().contains("a@dc2 -> b@dc3 -> a@dc2"),
            "{cycle}"
        );
        // Chains that end are fine.
        let resolvers = BTreeMap::from([
            ("a".to_string(), redirect("b", "dc3")),
            ("b".to_string(), redirect("c", "")),
            ("c".to_string(), redirect("", "dc3")),
        ]);
        assert_eq!(find_redirect_cycle(&resolvers), None);
    }
}
