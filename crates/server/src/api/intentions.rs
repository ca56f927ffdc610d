//! `/v1/connect/intentions`: Consul's intentions API in its exact-match form (Consul 1.9 and
//! later), over the `service-intentions` config entries as Consul keeps them: an intention
//! `source -> destination` is the source `source` of the entry named `destination`. Reads
//! follow the consistency modes like every `/v1/connect/` read; writes go through the config
//! entry write path (Raft), for the same callers as `PUT /v1/config`.
//!
//! Not here: the legacy ID-based API (`/v1/connect/intentions/:id`, `POST`), L7
//! `Permissions`, `Meta`, namespaces other than `default`.

use super::authz::Caller;
use super::catalog::{config_writer, write_checked, Read};
use super::{indexed, ApiError, ApiResult, AppState, Origin, Params};
use crate::replicated::Command;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use serde_json::json;
use std::collections::BTreeMap;
use strait_catalog::{config_kind, intention_action, ConfigEntry, SourceIntention};
use strait_filter::Filter;
use strait_rpc::serve::Peer;

/// One intention, flattened out of its config entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Intention {
    source: String,
    destination: String,
    allow: bool,
    description: String,
}

impl Intention {
    /// Consul's precedence without namespaces: exact names beat `*`, the destination's first.
    fn precedence(&self) -> u32 {
        match (self.source == "*", self.destination == "*") {
            (false, false) => 9,
            (true, false) => 8,
            (false, true) => 6,
            (true, true) => 5,
        }
    }

    /// Consul's `Intention` shape.
    fn json(&self) -> serde_json::Value {
        json!({
            "ID": "", "Description": self.description,
            "SourceNS": "default", "SourceName": self.source,
            "DestinationNS": "default", "DestinationName": self.destination,
            "SourceType": "consul",
            "Action": if self.allow { intention_action::ALLOW } else { intention_action::DENY },
            "Precedence": self.precedence(), "Meta": {},
        })
    }
}

/// Every intention, highest precedence first (then by names).
fn all(entries: &[ConfigEntry]) -> Vec<Intention> {
    let mut out: Vec<Intention> = entries
        .iter()
        .filter(|e| e.kind == config_kind::SERVICE_INTENTIONS)
        .flat_map(|e| {
            e.sources.iter().map(|s| Intention {
                source: s.name.clone(),
                destination: e.name.clone(),
                allow: s.action == intention_action::ALLOW,
                description: s.description.clone(),
            })
        })
        .collect();
    out.sort_by(|a, b| {
        b.precedence()
            .cmp(&a.precedence())
            .then_with(|| (&a.source, &a.destination).cmp(&(&b.source, &b.destination)))
    });
    out
}

/// The required query parameter `name`.
fn required<'a>(q: &'a Params, name: &str) -> ApiResult<&'a str> {
    match q.get(name).map(String::as_str) {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(ApiError::bad_request(format!(
            "query parameter {name}: must be set"
        ))),
    }
}

/// `GET /v1/connect/intentions` (`?filter=` on the intentions' fields).
pub async fn list(
    Read {
        s, index, caller, ..
    }: Read,
    Query(q): Query<Params>,
) -> ApiResult<Response> {
    let items: Vec<serde_json::Value> = all(&s.catalog.config_entries())
        .iter()
        .filter(|i| caller.may(|a| a.intention_read(&i.destination)))
        .map(Intention::json)
        .collect();
    let items = match q.get("filter").filter(|f| !f.is_empty()) {
        None => items,
        Some(f) => Filter::parse(f)
            .map_err(|e| ApiError::bad_request(format!("query parameter filter: {e}")))?
            .retain(items, Clone::clone)
            .map_err(|e| ApiError::bad_request(e.to_string()))?,
    };
    Ok(indexed(index, items))
}

/// `GET /v1/connect/intentions/exact?source=&destination=`: 404 when there is none.
pub async fn exact_get(
    Read {
        s, index, caller, ..
    }: Read,
    Query(q): Query<Params>,
) -> ApiResult<Response> {
    let (source, destination) = (required(&q, "source")?, required(&q, "destination")?);
    caller.check(|a| a.intention_read(destination))?;
    all(&s.catalog.config_entries())
        .into_iter()
        .find(|i| i.source == source && i.destination == destination)
        .map(|i| indexed(index, i.json()))
        .ok_or_else(|| not_found(source, destination))
}

fn not_found(source: &str, destination: &str) -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        format!("Intention not found: no intention from {source:?} to {destination:?}"),
    )
}

/// The body of `PUT /v1/connect/intentions/exact`: what an exact-match write may carry.
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct Body {
    #[serde(default)]
    action: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    source_type: String,
    #[serde(default)]
    meta: BTreeMap<String, String>,
    #[serde(default)]
    permissions: Vec<serde_json::Value>,
}

/// The `service-intentions` entry of `destination` (a new one when it has none).
fn entry_of(s: &AppState, destination: &str) -> Option<ConfigEntry> {
    s.catalog
        .config_entries()
        .into_iter()
        .find(|e| e.kind == config_kind::SERVICE_INTENTIONS && e.name == destination)
}

/// `PUT /v1/connect/intentions/exact?source=&destination=` `{Action, Description}`: creates
/// or replaces the intention, as a source of the destination's `service-intentions` entry.
pub async fn exact_put(
    State(s): State<AppState>,
    Extension(origin): Extension<Origin>,
    Extension(peer): Extension<Peer>,
    caller: Caller,
    Query(q): Query<Params>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    config_writer(&s, origin, &peer)?;
    let (source, destination) = (required(&q, "source")?, required(&q, "destination")?);
    caller.check(|a| a.intention_write(destination))?;
    let body: Body = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid intention: {e}")))?;
    if !body.permissions.is_empty() {
        return Err(ApiError::bad_request(
            "field Permissions: L7 intentions are not supported by strait; use Action",
        ));
    }
    if !body.meta.is_empty() {
        return Err(ApiError::bad_request(
            "field Meta: strait's intentions carry no metadata",
        ));
    }
    if !matches!(body.source_type.as_str(), "" | "consul") {
        return Err(ApiError::bad_request(format!(
            "field SourceType = {:?}: only \"consul\" is supported",
            body.source_type
        )));
    }
    if ![intention_action::ALLOW, intention_action::DENY].contains(&body.action.as_str()) {
        return Err(ApiError::bad_request(format!(
            "field Action = {:?}: expected allow or deny",
            body.action
        )));
    }
    let intention = SourceIntention {
        name: source.into(),
        action: body.action,
        description: body.description,
    };
    update_entry(&s, destination, |current| {
        let mut entry = current.unwrap_or_else(|| ConfigEntry {
            kind: config_kind::SERVICE_INTENTIONS.into(),
            name: destination.into(),
            ..ConfigEntry::default()
        });
        entry.sources.retain(|src| src.name != source);
        entry.sources.push(intention.clone());
        Ok(Some(entry))
    })
    .await
}

/// Applies `change` to the destination's `service-intentions` entry (`None` in, no entry yet;
/// `None` out, delete it) as a check-and-set on its `ModifyIndex`, read again and retried when
/// another write changed the entry in between: two intentions written at once to one
/// destination are both kept (Consul changes the entry inside one state-store transaction).
async fn update_entry(
    s: &AppState,
    destination: &str,
    change: impl Fn(Option<ConfigEntry>) -> ApiResult<Option<ConfigEntry>>,
) -> ApiResult<Response> {
    const ATTEMPTS: usize = 32;
    for _ in 0..ATTEMPTS {
        let current = entry_of(s, destination);
        let cas = current.as_ref().map_or(0, |e| e.modify_index);
        let command = match change(current)? {
            Some(entry) => Command::SetConfigEntryCas { entry, cas },
            None => Command::DeleteConfigEntryCas {
                kind: config_kind::SERVICE_INTENTIONS.into(),
                name: destination.into(),
                cas,
            },
        };
        let seen = s.catalog.index();
        if let Some(index) = write_checked(s, command).await? {
            return Ok(indexed(index, true));
        }
        // Lost to another write: this server may not have applied it yet.
        s.catalog
            .wait_for_change(seen, std::time::Duration::from_millis(200))
            .await;
    }
    Err(ApiError(
        StatusCode::CONFLICT,
        format!(
            "the intentions of {destination:?} kept changing under {ATTEMPTS} attempts to write them: try again"
        ),
    ))
}

/// `DELETE /v1/connect/intentions/exact?source=&destination=`: removes the source from the
/// destination's entry (the entry too when it was the last); 404 when there is none.
pub async fn exact_delete(
    State(s): State<AppState>,
    Extension(origin): Extension<Origin>,
    Extension(peer): Extension<Peer>,
    caller: Caller,
    Query(q): Query<Params>,
) -> ApiResult<Response> {
    config_writer(&s, origin, &peer)?;
    let (source, destination) = (required(&q, "source")?, required(&q, "destination")?);
    caller.check(|a| a.intention_write(destination))?;
    if !entry_of(&s, destination).is_some_and(|e| e.sources.iter().any(|src| src.name == source)) {
        return Err(not_found(source, destination));
    }
    update_entry(&s, destination, |current| {
        let mut entry = current
            .filter(|e| e.sources.iter().any(|src| src.name == source))
            .ok_or_else(|| not_found(source, destination))?;
        entry.sources.retain(|src| src.name != source);
        Ok((!entry.sources.is_empty()).then_some(entry))
    })
    .await
}

/// `GET /v1/connect/intentions/match?by=source|destination&name=X` (`name` repeatable): per
/// name, the intentions that apply to it (its own and `*`'s), in the order they are
/// evaluated.
pub async fn matching(
    Read {
        s, index, caller, ..
    }: Read,
    Query(pairs): Query<Vec<(String, String)>>,
) -> ApiResult<Response> {
    let by_source = match pairs
        .iter()
        .find(|(k, _)| k == "by")
        .map(|(_, v)| v.as_str())
    {
        Some("source") => true,
        Some("destination") => false,
        other => {
            return Err(ApiError::bad_request(format!(
                "query parameter by = {:?}: expected source or destination",
                other.unwrap_or_default()
            )))
        }
    };
    let names: Vec<&str> = pairs
        .iter()
        .filter(|(k, v)| k == "name" && !v.is_empty())
        .map(|(_, v)| v.as_str())
        .collect();
    if names.is_empty() {
        return Err(ApiError::bad_request("query parameter name: must be set"));
    }
    let all = all(&s.catalog.config_entries());
    let out: BTreeMap<&str, Vec<serde_json::Value>> = names
        .into_iter()
        .map(|name| {
            let applies = all.iter().filter(|i| {
                let side = if by_source { &i.source } else { &i.destination };
                (side == name || side == "*") && caller.may(|a| a.intention_read(&i.destination))
            });
            (name, applies.map(Intention::json).collect())
        })
        .collect();
    Ok(indexed(index, out))
}

/// `GET /v1/connect/intentions/check?source=&destination=`: `{"Allowed": bool}`, decided as
/// the destination's sidecars decide: the matching intention of highest precedence, else the
/// default (allowed, unless ACLs are on with `default_policy = "deny"`, Consul's rule).
/// Needs `service:read` on the destination, as Consul's.
pub async fn check(
    Read {
        s, index, caller, ..
    }: Read,
    Query(q): Query<Params>,
) -> ApiResult<Response> {
    let (source, destination) = (required(&q, "source")?, required(&q, "destination")?);
    caller.check(|a| a.service_read(destination))?;
    if let Some(t) = q.get("source-type").filter(|t| *t != "consul") {
        return Err(ApiError::bad_request(format!(
            "query parameter source-type = {t:?}: only \"consul\" is supported"
        )));
    }
    Ok(indexed(
        index,
        json!({ "Allowed": allowed(&all(&s.catalog.config_entries()), source, destination, s.cfg.acl.intentions_default_allow()) }),
    ))
}

/// Whether `source` may connect to `destination` under `all` (sorted by precedence);
/// `default` when no intention matches.
fn allowed(all: &[Intention], source: &str, destination: &str, default: bool) -> bool {
    all.iter()
        .find(|i| {
            (i.source == source || i.source == "*")
                && (i.destination == destination || i.destination == "*")
        })
        .map_or(default, |i| i.allow)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(destination: &str, sources: &[(&str, &str)]) -> ConfigEntry {
        ConfigEntry {
            kind: config_kind::SERVICE_INTENTIONS.into(),
            name: destination.into(),
            sources: sources
                .iter()
                .map(|(name, action)| SourceIntention {
                    name: (*name).into(),
                    action: (*action).into(),
                    description: String::new(),
                })
                .collect(),
            ..ConfigEntry::default()
        }
    }

    #[test]
    fn precedence_orders_and_decides() {
        let entries = [
            entry("*", &[("*", "deny")]),
            entry("db", &[("*", "deny"), ("web", "allow")]),
            entry("api", &[("web", "allow")]),
            ConfigEntry {
                kind: config_kind::SERVICE_DEFAULTS.into(),
                name: "db".into(),
                ..ConfigEntry::default()
            },
        ];
        let all = all(&entries);
        let order: Vec<(u32, &str, &str)> = all
            .iter()
            .map(|i| (i.precedence(), i.source.as_str(), i.destination.as_str()))
            .collect();
        assert_eq!(
            order,
            [
                (9, "web", "api"),
                (9, "web", "db"),
                (8, "*", "db"),
                (5, "*", "*")
            ]
        );
        assert!(allowed(&all, "web", "db", true));
        assert!(!allowed(&all, "cache", "db", true));
        assert!(allowed(&all, "web", "api", true));
        assert!(
            !allowed(&all, "cache", "api", true),
            "`*` -> `*` deny is the default"
        );
        assert!(
            allowed(&all[..3], "cache", "api", true),
            "no intention: allowed"
        );
        assert!(
            !allowed(&all[..3], "cache", "api", false),
            "no intention under ACLs' default deny: denied"
        );
        assert_eq!(all[0].json()["Action"], "allow");
        assert_eq!(all[3].json()["SourceName"], "*");
    }
}
