//! Counters of one proxy process, read by the admin endpoint (`/stats`, `/metrics`).
//!
//! The data path only ever touches atomics: a connection holds an `Arc` of its listener's
//! counters, and reason counters are fixed slots claimed once per distinct reason label.
//! The mutexes here guard registries that change when a listener starts or a snapshot is
//! applied, never per connection or per byte. The Prometheus text is written on scrape only,
//! by the writer every strait component shares (`strait_rpc::metrics::Exposition`).

use crate::reason::{HandshakeFailure, Refusal};
use crate::sidecar::passive::EndpointHealth;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use strait_rpc::metrics::{Exposition, Kind};

/// Counters of one listener (`inbound`, `outbound:<service>@<dc>`, `lan`, `wan`).
#[derive(Debug, Default)]
pub struct ListenerMetrics {
    pub name: String,
    /// Every accepted TCP connection, including those refused over `--max-connections`.
    pub accepted: AtomicU64,
    /// Connections being served now.
    pub active: AtomicU64,
    /// Accepted then closed at once because the process was at `--max-connections`.
    pub rejected_max_connections: AtomicU64,
    /// Failed dials towards upstream endpoints (each endpoint attempt counts).
    pub connect_errors: AtomicU64,
    /// Bytes read from the accepted (downstream) side.
    pub bytes_rx: AtomicU64,
    /// Bytes read from the upstream side, i.e. sent to the downstream side.
    pub bytes_tx: AtomicU64,
}

/// Completed TLS handshakes of one direction (sidecar), full or resumed (a TLS 1.3 ticket
/// from an earlier full handshake with the same peer: no certificates, no signatures).
#[derive(Debug, Default)]
pub struct Handshakes {
    pub full: AtomicU64,
    pub resumed: AtomicU64,
}

impl Handshakes {
    /// Counts one completed handshake of `conn`.
    pub fn count(&self, conn: &rustls::CommonState) {
        let resumed = conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
        let counter = if resumed { &self.resumed } else { &self.full };
        counter.fetch_add(1, Relaxed);
    }
}

/// Counters of one target of an upstream's chain (sidecar), by (listener, SNI).
#[derive(Debug, Default)]
pub struct TargetMetrics {
    /// Connections this target served.
    pub connections: AtomicU64,
    /// Connections this target served after an earlier target of the chain failed or had
    /// no healthy endpoint.
    pub failovers: AtomicU64,
    /// [`Metrics::next_connection_seq`] of the last connection it served (0: none yet); the
    /// target with the highest one is the upstream's active target.
    pub last_seq: AtomicU64,
    /// Endpoints ejected by passive health.
    pub ejections: AtomicU64,
    /// Passive health of each endpoint, kept across snapshots while the endpoint stays.
    endpoints: Mutex<BTreeMap<SocketAddr, Arc<EndpointHealth>>>,
}

impl TargetMetrics {
    /// The passive health state of each of `endpoints`, in order; forgets the others.
    /// Called when a snapshot is applied.
    pub fn endpoint_health(&self, endpoints: &[SocketAddr]) -> Vec<Arc<EndpointHealth>> {
        let mut map = strait_base::sync::lock(&self.endpoints);
        map.retain(|addr, _| endpoints.contains(addr));
        endpoints
            .iter()
            .map(|addr| map.entry(*addr).or_default().clone())
            .collect()
    }

    /// Endpoints ejected now, with the milliseconds left.
    pub fn ejected(&self) -> Vec<(SocketAddr, u64)> {
        let now = crate::sidecar::passive::now_ms();
        let map = strait_base::sync::lock(&self.endpoints);
        map.iter()
            .map(|(addr, h)| (*addr, h.ejected_for_ms(now)))
            .filter(|(_, left)| *left > 0)
            .collect()
    }
}

/// A failure reason: an enum whose variants map to a closed set of metric labels.
pub trait Reason {
    /// The label value (`reason="..."`). Stable: docs/troubleshooting.md and dashboards
    /// use them.
    fn label(&self) -> &'static str;
}

/// Counters of the reasons of type `R`, without a lock.
#[derive(Debug)]
pub struct ReasonCounters<R> {
    slots: [Slot; 24],
    /// Reasons beyond the slot count (should never happen: reasons are a closed set).
    overflow: AtomicU64,
    reason: PhantomData<fn(&R)>,
}

impl<R> Default for ReasonCounters<R> {
    fn default() -> Self {
        ReasonCounters {
            slots: Default::default(),
            overflow: AtomicU64::new(0),
            reason: PhantomData,
        }
    }
}

#[derive(Debug, Default)]
struct Slot {
    reason: OnceLock<&'static str>,
    count: AtomicU64,
}

impl<R: Reason> ReasonCounters<R> {
    /// Adds one to `reason`'s counter.
    pub fn inc(&self, reason: &R) {
        let reason = reason.label();
        for slot in &self.slots {
            let claimed = *slot.reason.get_or_init(|| reason);
            if claimed == reason {
                slot.count.fetch_add(1, Relaxed);
                return;
            }
        }
        self.overflow.fetch_add(1, Relaxed);
    }
}

impl<R> ReasonCounters<R> {
    /// Current value of the reason labelled `reason` (0 if never counted).
    pub fn get(&self, reason: &str) -> u64 {
        if reason == "other_overflow" {
            return self.overflow.load(Relaxed);
        }
        self.slots
            .iter()
            .find(|s| s.reason.get() == Some(&reason))
            .map_or(0, |s| s.count.load(Relaxed))
    }

    /// All counted reasons with their values, sorted by reason.
    pub fn snapshot(&self) -> BTreeMap<&'static str, u64> {
        let mut out: BTreeMap<&'static str, u64> = self
            .slots
            .iter()
            .filter_map(|s| s.reason.get().map(|r| (*r, s.count.load(Relaxed))))
            .collect();
        let overflow = self.overflow.load(Relaxed);
        if overflow > 0 {
            out.insert("other_overflow", overflow);
        }
        out
    }
}

/// Every counter of one proxy process.
#[derive(Debug)]
pub struct Metrics {
    /// `sidecar` or `gateway`: the `<component>` in `strait_<component>_..._total`.
    pub component: &'static str,
    listeners: Mutex<BTreeMap<String, Arc<ListenerMetrics>>>,
    /// Sidecar: failed TLS handshakes on the public listener, by reason.
    pub handshake_inbound: ReasonCounters<HandshakeFailure>,
    /// Sidecar: failed TLS handshakes towards upstream endpoints, by reason.
    pub handshake_outbound: ReasonCounters<HandshakeFailure>,
    /// Sidecar: completed TLS handshakes on the public listener and towards upstreams.
    pub handshakes_inbound: Handshakes,
    pub handshakes_outbound: Handshakes,
    /// Sidecar: tunnel streams that carried a connection (no handshake of its own), on the
    /// public listener and towards upstreams; and outbound streams the upstream refused
    /// (its intentions).
    pub tunnel_streams_inbound: AtomicU64,
    pub tunnel_streams_outbound: AtomicU64,
    pub tunnel_streams_denied: AtomicU64,
    /// Sidecar: tunnels open now, served on the public listener and dialled to upstreams.
    pub tunnels_inbound: AtomicU64,
    pub tunnels_outbound: AtomicU64,
    /// Gateway: connections closed before routing, by reason (timeout, no_sni, ...).
    pub hello_rejected: ReasonCounters<Refusal>,
    /// Gateway: routed connections by (datacenter, SNI or `*` for a remote DC).
    routed: Mutex<BTreeMap<(String, String), Arc<AtomicU64>>>,
    /// Sidecar: upstream targets by (listener, SNI).
    targets: Mutex<BTreeMap<(String, String), Arc<TargetMetrics>>>,
    /// Sidecar: orders upstream connections, so the admin can tell the active target.
    connection_seq: AtomicU64,
    /// Sidecar: inbound connections closed after the handshake because the caller's service
    /// is denied by intentions.
    pub intentions_denied: AtomicU64,
    /// Snapshots applied / refused (bad certificates, wrong kind).
    pub snapshots_applied: AtomicU64,
    pub snapshots_rejected: AtomicU64,
}

impl Metrics {
    pub fn new(component: &'static str) -> Arc<Metrics> {
        Arc::new(Metrics {
            component,
            listeners: Mutex::default(),
            handshake_inbound: ReasonCounters::default(),
            handshake_outbound: ReasonCounters::default(),
            handshakes_inbound: Handshakes::default(),
            handshakes_outbound: Handshakes::default(),
            tunnel_streams_inbound: AtomicU64::new(0),
            tunnel_streams_outbound: AtomicU64::new(0),
            tunnel_streams_denied: AtomicU64::new(0),
            tunnels_inbound: AtomicU64::new(0),
            tunnels_outbound: AtomicU64::new(0),
            hello_rejected: ReasonCounters::default(),
            routed: Mutex::default(),
            targets: Mutex::default(),
            connection_seq: AtomicU64::new(0),
            intentions_denied: AtomicU64::new(0),
            snapshots_applied: AtomicU64::new(0),
            snapshots_rejected: AtomicU64::new(0),
        })
    }

    /// The counters of listener `name`, created on first use and kept across restarts of the
    /// listener so that counters stay monotonic.
    pub fn listener(&self, name: &str) -> Arc<ListenerMetrics> {
        let mut map = strait_base::sync::lock(&self.listeners);
        map.entry(name.to_string())
            .or_insert_with(|| {
                Arc::new(ListenerMetrics {
                    name: name.to_string(),
                    ..ListenerMetrics::default()
                })
            })
            .clone()
    }

    /// The routed-connections counter for (`dc`, `sni`); called when a snapshot is applied.
    pub fn routed_counter(&self, dc: &str, sni: &str) -> Arc<AtomicU64> {
        let mut map = strait_base::sync::lock(&self.routed);
        map.entry((dc.to_string(), sni.to_string()))
            .or_default()
            .clone()
    }

    /// Value of the routed counter for (`dc`, `sni`), 0 if unknown.
    pub fn routed(&self, dc: &str, sni: &str) -> u64 {
        let map = strait_base::sync::lock(&self.routed);
        map.get(&(dc.to_string(), sni.to_string()))
            .map_or(0, |c| c.load(Relaxed))
    }

    /// The counters of upstream target `sni` of listener `listener`; called when a snapshot
    /// is applied.
    pub fn target(&self, listener: &str, sni: &str) -> Arc<TargetMetrics> {
        let mut map = strait_base::sync::lock(&self.targets);
        map.entry((listener.to_string(), sni.to_string()))
            .or_default()
            .clone()
    }

    /// A number larger than any handed out before (for [`TargetMetrics::last_seq`]).
    pub fn next_connection_seq(&self) -> u64 {
        self.connection_seq.fetch_add(1, Relaxed) + 1
    }

    fn targets_sorted(&self) -> Vec<((String, String), Arc<TargetMetrics>)> {
        let map = strait_base::sync::lock(&self.targets);
        map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    fn listeners_sorted(&self) -> Vec<Arc<ListenerMetrics>> {
        let map = strait_base::sync::lock(&self.listeners);
        map.values().cloned().collect()
    }

    /// `/stats`: every counter as JSON.
    pub fn to_json(&self) -> Value {
        let mut listeners = Map::new();
        for l in self.listeners_sorted() {
            listeners.insert(
                l.name.clone(),
                json!({
                    "connections_accepted": l.accepted.load(Relaxed),
                    "connections_active": l.active.load(Relaxed),
                    "connections_rejected_max_connections": l.rejected_max_connections.load(Relaxed),
                    "upstream_connect_errors": l.connect_errors.load(Relaxed),
                    "bytes_rx": l.bytes_rx.load(Relaxed),
                    "bytes_tx": l.bytes_tx.load(Relaxed),
                }),
            );
        }
        let routed: Vec<Value> = {
            let map = strait_base::sync::lock(&self.routed);
            map.iter()
                .map(|((dc, sni), c)| json!({"dc": dc, "sni": sni, "count": c.load(Relaxed)}))
                .collect()
        };
        json!({
            "component": self.component,
            "listeners": listeners,
            "handshake_failures": {
                "inbound": self.handshake_inbound.snapshot(),
                "outbound": self.handshake_outbound.snapshot(),
            },
            "handshakes": {
                "inbound": {
                    "full": self.handshakes_inbound.full.load(Relaxed),
                    "resumed": self.handshakes_inbound.resumed.load(Relaxed),
                },
                "outbound": {
                    "full": self.handshakes_outbound.full.load(Relaxed),
                    "resumed": self.handshakes_outbound.resumed.load(Relaxed),
                },
            },
            "tunnel_streams": {
                "inbound": self.tunnel_streams_inbound.load(Relaxed),
                "outbound": self.tunnel_streams_outbound.load(Relaxed),
                "denied": self.tunnel_streams_denied.load(Relaxed),
            },
            "tunnels": {
                "inbound": self.tunnels_inbound.load(Relaxed),
                "outbound": self.tunnels_outbound.load(Relaxed),
            },
            "hello_rejected": self.hello_rejected.snapshot(),
            "routed": routed,
            "upstream_targets": self
                .targets_sorted()
                .into_iter()
                .map(|((listener, sni), t)| json!({
                    "listener": listener,
                    "sni": sni,
                    "connections": t.connections.load(Relaxed),
                    "failovers": t.failovers.load(Relaxed),
                    "ejections": t.ejections.load(Relaxed),
                }))
                .collect::<Vec<_>>(),
            "intentions_denied": self.intentions_denied.load(Relaxed),
            "snapshots_applied": self.snapshots_applied.load(Relaxed),
            "snapshots_rejected": self.snapshots_rejected.load(Relaxed),
        })
    }

    /// `/metrics`: Prometheus text exposition format 0.0.4.
    pub fn to_prometheus(&self) -> String {
        let name = |family: &str| format!("strait_{}_{family}", self.component);
        let listeners = self.listeners_sorted();
        let mut e = Exposition::new();
        let per_listener: [(&str, Kind, &str, Getter); 3] = [
            (
                "connections_accepted_total",
                Kind::Counter,
                "TCP connections accepted, by listener.",
                |l| l.accepted.load(Relaxed),
            ),
            (
                "connections_active",
                Kind::Gauge,
                "Connections being served now, by listener.",
                |l| l.active.load(Relaxed),
            ),
            (
                "upstream_connect_errors_total",
                Kind::Counter,
                "Failed dials towards upstream endpoints, by listener.",
                |l| l.connect_errors.load(Relaxed),
            ),
        ];
        for (family, kind, help, get) in per_listener {
            let family = name(family);
            let mut f = e.family(&family, kind, help);
            for l in &listeners {
                f.sample(&[("listener", &l.name)], get(l));
            }
        }
        let family = name("connections_rejected_total");
        let mut f = e.family(
            &family,
            Kind::Counter,
            "Connections closed at once over --max-connections.",
        );
        for l in &listeners {
            let value = l.rejected_max_connections.load(Relaxed);
            f.sample(
                &[("listener", &l.name), ("reason", "max_connections")],
                value,
            );
        }
        let family = name("bytes_total");
        let mut f = e.family(
            &family,
            Kind::Counter,
            "Bytes copied, by listener and direction (rx: from downstream).",
        );
        for l in &listeners {
            for (dir, v) in [("rx", &l.bytes_rx), ("tx", &l.bytes_tx)] {
                f.sample(
                    &[("listener", &l.name), ("direction", dir)],
                    v.load(Relaxed),
                );
            }
        }
        let family = name("handshake_failures_total");
        let mut f = e.family(
            &family,
            Kind::Counter,
            "Failed TLS handshakes, by direction and reason.",
        );
        for (dir, counters) in [
            ("inbound", &self.handshake_inbound),
            ("outbound", &self.handshake_outbound),
        ] {
            for (reason, v) in counters.snapshot() {
                f.sample(&[("direction", dir), ("reason", reason)], v);
            }
        }
        let family = name("hello_rejected_total");
        let mut f = e.family(
            &family,
            Kind::Counter,
            "Connections closed before routing, by reason.",
        );
        for (reason, v) in self.hello_rejected.snapshot() {
            f.sample(&[("reason", reason)], v);
        }
        {
            let map = strait_base::sync::lock(&self.routed);
            if !map.is_empty() {
                let family = name("routed_total");
                let mut f = e.family(
                    &family,
                    Kind::Counter,
                    "Connections routed, by datacenter and SNI (* for a remote DC).",
                );
                for ((dc, sni), v) in map.iter() {
                    f.sample(&[("dc", dc), ("sni", sni)], v.load(Relaxed));
                }
            }
        }
        let targets = self.targets_sorted();
        if !targets.is_empty() {
            let per_target: [(&str, &str, TargetGetter); 3] = [
                (
                    "upstream_target_connections_total",
                    "Upstream connections served, by listener and target (SNI).",
                    |t| t.connections.load(Relaxed),
                ),
                (
                    "upstream_failovers_total",
                    "Upstream connections served by a target after an earlier one of the chain failed or had no healthy endpoint, by listener and target (SNI).",
                    |t| t.failovers.load(Relaxed),
                ),
                (
                    "upstream_ejections_total",
                    "Endpoints of a target ejected by passive health (consecutive connect or handshake failures), by listener and target (SNI).",
                    |t| t.ejections.load(Relaxed),
                ),
            ];
            for (family, help, get) in per_target {
                let family = name(family);
                let mut f = e.family(&family, Kind::Counter, help);
                for ((listener, sni), t) in &targets {
                    f.sample(&[("listener", listener), ("target", sni)], get(t));
                }
            }
        }
        if self.component == "sidecar" {
            let family = name("handshakes_total");
            let mut f = e.family(
                &family,
                Kind::Counter,
                "Completed TLS handshakes, by direction and kind (full, or resumed from a session ticket).",
            );
            for (dir, h) in [
                ("inbound", &self.handshakes_inbound),
                ("outbound", &self.handshakes_outbound),
            ] {
                for (kind, v) in [("full", &h.full), ("resumed", &h.resumed)] {
                    f.sample(&[("direction", dir), ("kind", kind)], v.load(Relaxed));
                }
            }
            let family = name("tunnel_streams_total");
            let mut f = e.family(
                &family,
                Kind::Counter,
                "Connections carried as streams of a tunnel, by direction and result.",
            );
            for (dir, result, v) in [
                ("inbound", "opened", &self.tunnel_streams_inbound),
                ("outbound", "opened", &self.tunnel_streams_outbound),
                ("outbound", "denied", &self.tunnel_streams_denied),
            ] {
                f.sample(&[("direction", dir), ("result", result)], v.load(Relaxed));
            }
            let family = name("tunnels");
            let mut f = e.family(
                &family,
                Kind::Gauge,
                "Tunnels open now, by direction (inbound: served on the public listener; outbound: dialled to upstream endpoints).",
            );
            for (dir, v) in [
                ("inbound", &self.tunnels_inbound),
                ("outbound", &self.tunnels_outbound),
            ] {
                f.sample(&[("direction", dir)], v.load(Relaxed));
            }
            e.single(
                &name("intentions_denied_total"),
                Kind::Counter,
                "Inbound connections refused by intentions.",
                self.intentions_denied.load(Relaxed),
            );
        }
        let family = name("snapshots_total");
        let mut f = e.family(&family, Kind::Counter, "Snapshots applied or rejected.");
        f.sample(
            &[("result", "applied")],
            self.snapshots_applied.load(Relaxed),
        );
        f.sample(
            &[("result", "rejected")],
            self.snapshots_rejected.load(Relaxed),
        );
        e.finish()
    }
}

/// Reads one counter of a listener.
type Getter = fn(&ListenerMetrics) -> u64;
/// Reads one counter of an upstream target.
type TargetGetter = fn(&TargetMetrics) -> u64;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::hello::HelloError;
    use crate::reason::HandshakeFailure;
    use strait_identity::tls::TlsFailure;

    /// Any label, to fill the slots.
    #[derive(Debug)]
    struct Label(&'static str);

    impl Reason for Label {
        fn label(&self) -> &'static str {
            self.0
        }
    }

    #[test]
    fn reason_counters_claim_slots_once() {
        let counters = ReasonCounters::<HandshakeFailure>::default();
        counters.inc(&HandshakeFailure::Tls(TlsFailure::UnknownCa));
        counters.inc(&HandshakeFailure::Tls(TlsFailure::Expired));
        counters.inc(&HandshakeFailure::Tls(TlsFailure::UnknownCa));
        assert_eq!(counters.get("unknown_ca"), 2);
        assert_eq!(counters.get("expired"), 1);
        assert_eq!(counters.get("no_certificate"), 0);
        let snap = counters.snapshot();
        assert_eq!(snap.len(), 2);
    }

    #[test]
    fn reason_counters_overflow_is_counted() {
        let counters = ReasonCounters::<Label>::default();
        for i in 0..30 {
            counters.inc(&Label(Box::leak(format!("r{i}").into_boxed_str())));
        }
        assert_eq!(counters.get("r0"), 1);
        assert_eq!(counters.get("other_overflow"), 6);
    }

    #[test]
    fn prometheus_text_names_component_and_labels() {
        let m = Metrics::new("gateway");
        let lan = m.listener("lan");
        lan.bytes_rx.fetch_add(10, Relaxed);
        lan.accepted.fetch_add(1, Relaxed);
        m.hello_rejected.inc(&Refusal::Hello(HelloError::NoSni));
        m.routed_counter("dc1", "web.default.dc1.internal.td")
            .fetch_add(3, Relaxed);
        let text = m.to_prometheus();
        assert!(text.contains("strait_gateway_bytes_total{listener=\"lan\",direction=\"rx\"} 10"));
        assert!(text.contains("strait_gateway_connections_accepted_total{listener=\"lan\"} 1"));
        assert!(text.contains(
            "strait_gateway_connections_rejected_total{listener=\"lan\",reason=\"max_connections\"} 0"
        ));
        assert!(text.contains("strait_gateway_hello_rejected_total{reason=\"no_sni\"} 1"));
        assert!(text.contains(
            "strait_gateway_routed_total{dc=\"dc1\",sni=\"web.default.dc1.internal.td\"} 3"
        ));
        assert!(!text.contains("intentions_denied"), "sidecar only");
        assert_eq!(m.routed("dc1", "web.default.dc1.internal.td"), 3);
        // The same listener name gives the same counters.
        assert_eq!(m.listener("lan").bytes_rx.load(Relaxed), 10);
        let stats = m.to_json();
        assert_eq!(stats["listeners"]["lan"]["bytes_rx"], 10);
    }

    #[test]
    fn every_family_has_help_and_type_once() {
        let m = Metrics::new("sidecar");
        m.listener("inbound").accepted.fetch_add(1, Relaxed);
        m.listener("outbound:api@dc1").active.fetch_add(1, Relaxed);
        m.handshake_inbound.inc(&HandshakeFailure::Eof);
        m.handshake_outbound.inc(&HandshakeFailure::Timeout);
        let text = m.to_prometheus();
        let mut families = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap();
                assert!(!families.contains(&name), "{name} typed twice:\n{text}");
                families.push(name);
            } else if !line.starts_with("# HELP ") {
                let family = families.last().expect("a sample before any TYPE");
                assert!(
                    line.starts_with(family),
                    "{line:?} outside its family:\n{text}"
                );
            }
        }
        assert!(text.contains(
            "strait_sidecar_handshake_failures_total{direction=\"inbound\",reason=\"eof\"} 1\n\
             strait_sidecar_handshake_failures_total{direction=\"outbound\",reason=\"timeout\"} 1\n"
        ));
        assert!(text.contains("strait_sidecar_intentions_denied_total 0\n"));
        assert!(text
            .contains("strait_sidecar_handshakes_total{direction=\"inbound\",kind=\"full\"} 0\n"));
    }

    #[test]
    fn upstream_targets_are_counted_by_listener_and_sni() {
        let m = Metrics::new("sidecar");
        let dc3 = m.target("outbound:counting@dc2", "counting.default.dc3.internal.td");
        dc3.connections.fetch_add(2, Relaxed);
        dc3.failovers.fetch_add(2, Relaxed);
        m.target("outbound:counting@dc2", "counting.default.dc2.internal.td")
            .connections
            .fetch_add(1, Relaxed);
        assert!(Arc::ptr_eq(
            &dc3,
            &m.target("outbound:counting@dc2", "counting.default.dc3.internal.td")
        ));
        assert!(m.next_connection_seq() < m.next_connection_seq());
        let text = m.to_prometheus();
        assert!(text.contains(
            "strait_sidecar_upstream_failovers_total{listener=\"outbound:counting@dc2\",target=\"counting.default.dc3.internal.td\"} 2\n"
        ), "{text}");
        assert!(text.contains(
            "strait_sidecar_upstream_target_connections_total{listener=\"outbound:counting@dc2\",target=\"counting.default.dc2.internal.td\"} 1\n"
        ), "{text}");
        assert_eq!(m.to_json()["upstream_targets"][1]["failovers"], 2);
    }
}
