//! One ADS stream's state of the world, without I/O: requests and new snapshots in,
//! responses out. The rules, per xDS type:
//! - the first request of a type, a change of the names Envoy subscribes to, or a newer
//!   snapshot than the one last sent gets a response with every resource of the type
//!   (listeners, clusters) or the named ones (endpoints, secrets);
//! - an ACK (the nonce of the last response, same names) gets nothing;
//! - a NACK (`error_detail`) is logged and not answered until the next snapshot, so a
//!   rejected config is not resent in a loop;
//! - a request carrying the nonce of an older response is stale and ignored.
//!
//! Responses to a new snapshot go out secrets first, then clusters, endpoints, listeners, so
//! Envoy never sees a listener whose cluster or secret it does not know yet.

use crate::render::{Resources, CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, SECRET_TYPE};
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use std::collections::BTreeMap;

/// The order in which a new snapshot is pushed.
const PUSH_ORDER: [&str; 4] = [SECRET_TYPE, CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE];

/// A rendered snapshot: its version and resources.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub version: u64,
    pub resources: Resources,
}

#[derive(Debug, Default)]
struct Subscription {
    /// Sorted resource names; empty means all (wildcard).
    names: Vec<String>,
    /// Version of the last response sent, if any.
    sent_version: Option<u64>,
    /// Nonce of the last response sent.
    nonce: String,
}

/// What happened to one request, for logs and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestOutcome {
    /// Answered (first request, new names, or a newer snapshot than the last sent).
    Answered,
    /// An ACK of the current version.
    Acked,
    /// Envoy rejected the last response of this type.
    Rejected { version: String, message: String },
    /// Carried an older nonce: superseded by a response already in flight.
    Stale,
    /// A type strait does not serve.
    UnknownType,
    /// No snapshot for this proxy yet: answered when one arrives.
    Waiting,
}

#[derive(Debug, Default)]
pub struct StreamState {
    subscriptions: BTreeMap<String, Subscription>,
    nonces: u64,
}

impl StreamState {
    /// Handles one request against the current snapshot (if any).
    pub fn on_request(
        &mut self,
        request: &DiscoveryRequest,
        current: Option<&Rendered>,
        out: &mut Vec<DiscoveryResponse>,
    ) -> RequestOutcome {
        let type_url = request.type_url.as_str();
        if !PUSH_ORDER.contains(&type_url) {
            return RequestOutcome::UnknownType;
        }
        let sub = self.subscriptions.entry(type_url.to_string()).or_default();
        if !request.response_nonce.is_empty() && request.response_nonce != sub.nonce {
            return RequestOutcome::Stale;
        }
        let mut names = request.resource_names.clone();
        names.sort();
        names.dedup();
        let names_changed = names != sub.names;
        sub.names = names;
        let Some(current) = current else {
            return RequestOutcome::Waiting;
        };
        if let Some(error) = &request.error_detail {
            // A NACK: the rejected version is not sent again; the next snapshot is.
            if names_changed {
                self.respond(type_url, current, out);
            }
            return RequestOutcome::Rejected {
                version: request.version_info.clone(),
                message: error.message.clone(),
            };
        }
        if names_changed || sub.sent_version != Some(current.version) {
            self.respond(type_url, current, out);
            return RequestOutcome::Answered;
        }
        RequestOutcome::Acked
    }

    /// A new snapshot: every subscribed type that has not seen this version gets it.
    pub fn on_snapshot(&mut self, current: &Rendered, out: &mut Vec<DiscoveryResponse>) {
        for type_url in PUSH_ORDER {
            let due = self
                .subscriptions
                .get(type_url)
                .is_some_and(|s| s.sent_version != Some(current.version));
            if due {
                self.respond(type_url, current, out);
            }
        }
    }

    fn respond(&mut self, type_url: &str, current: &Rendered, out: &mut Vec<DiscoveryResponse>) {
        self.nonces += 1;
        let nonce = self.nonces.to_string();
        let Some(sub) = self.subscriptions.get_mut(type_url) else {
            return;
        };
        // Listeners and clusters are always sent whole; endpoints and secrets by name.
        let wildcard = type_url == LISTENER_TYPE || type_url == CLUSTER_TYPE;
        let all = current.resources.of_type(type_url).unwrap_or_default();
        let resources = all
            .iter()
            .filter(|r| wildcard || sub.names.binary_search(&r.name).is_ok())
            .map(|r| r.body.clone())
            .collect();
        sub.sent_version = Some(current.version);
        sub.nonce = nonce.clone();
        out.push(DiscoveryResponse {
            version_info: current.version.to_string(),
            resources,
            type_url: type_url.to_string(),
            nonce,
            ..Default::default()
        });
    }
}

#[cfg(test)]
mod tests;
