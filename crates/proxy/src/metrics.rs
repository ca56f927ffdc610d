//! Counters of one proxy process, read by the admin endpoint (`/stats`, `/metrics`).
//!
//! The data path only ever touches atomics: a connection holds an `Arc` of its listener's
//! counters, and reason counters are fixed slots claimed once per distinct `&'static str`.
//! The mutexes here guard registries that change when a listener starts or a snapshot is
//! applied, never per connection or per byte.

use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

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

/// Counters keyed by a small, open set of static reasons, without a lock.
#[derive(Debug, Default)]
pub struct ReasonCounters {
    slots: [Slot; 24],
    /// Reasons beyond the slot count (should never happen: reasons are a closed set).
    overflow: AtomicU64,
}

#[derive(Debug, Default)]
struct Slot {
    reason: OnceLock<&'static str>,
    count: AtomicU64,
}

impl ReasonCounters {
    /// Adds one to `reason`'s counter.
    pub fn inc(&self, reason: &'static str) {
        for slot in &self.slots {
            let claimed = *slot.reason.get_or_init(|| reason);
            if claimed == reason {
                slot.count.fetch_add(1, Relaxed);
                return;
            }
        }
        self.overflow.fetch_add(1, Relaxed);
    }

    /// Current value of `reason` (0 if never counted).
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
    pub handshake_inbound: ReasonCounters,
    /// Sidecar: failed TLS handshakes towards upstream endpoints, by reason.
    pub handshake_outbound: ReasonCounters,
    /// Gateway: connections closed before routing, by reason (timeout, no_sni, ...).
    pub hello_rejected: ReasonCounters,
    /// Gateway: routed connections by (datacenter, SNI or `*` for a remote DC).
    routed: Mutex<BTreeMap<(String, String), Arc<AtomicU64>>>,
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
            hello_rejected: ReasonCounters::default(),
            routed: Mutex::default(),
            intentions_denied: AtomicU64::new(0),
            snapshots_applied: AtomicU64::new(0),
            snapshots_rejected: AtomicU64::new(0),
        })
    }

    /// The counters of listener `name`, created on first use and kept across restarts of the
    /// listener so that counters stay monotonic.
    pub fn listener(&self, name: &str) -> Arc<ListenerMetrics> {
        let mut map = self
            .listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
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
        let mut map = self.routed.lock().unwrap_or_else(PoisonError::into_inner);
        map.entry((dc.to_string(), sni.to_string()))
            .or_default()
            .clone()
    }

    /// Value of the routed counter for (`dc`, `sni`), 0 if unknown.
    pub fn routed(&self, dc: &str, sni: &str) -> u64 {
        let map = self.routed.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(&(dc.to_string(), sni.to_string()))
            .map_or(0, |c| c.load(Relaxed))
    }

    fn listeners_sorted(&self) -> Vec<Arc<ListenerMetrics>> {
        let map = self
            .listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
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
            let map = self.routed.lock().unwrap_or_else(PoisonError::into_inner);
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
            "hello_rejected": self.hello_rejected.snapshot(),
            "routed": routed,
            "intentions_denied": self.intentions_denied.load(Relaxed),
            "snapshots_applied": self.snapshots_applied.load(Relaxed),
            "snapshots_rejected": self.snapshots_rejected.load(Relaxed),
        })
    }

    /// `/metrics`: Prometheus text exposition format 0.0.4.
    pub fn to_prometheus(&self) -> String {
        let c = self.component;
        let listeners = self.listeners_sorted();
        let mut out = String::with_capacity(4096);
        let per_listener: [(&str, &str, Getter); 4] = [
            ("connections_accepted_total", "counter", |l| {
                l.accepted.load(Relaxed)
            }),
            ("connections_active", "gauge", |l| l.active.load(Relaxed)),
            ("upstream_connect_errors_total", "counter", |l| {
                l.connect_errors.load(Relaxed)
            }),
            ("connections_rejected_total", "counter", |l| {
                l.rejected_max_connections.load(Relaxed)
            }),
        ];
        for (name, kind, get) in per_listener {
            family(&mut out, c, name, kind);
            for l in &listeners {
                let extra = if name == "connections_rejected_total" {
                    ",reason=\"max_connections\""
                } else {
                    ""
                };
                let _ = writeln!(
                    out,
                    "strait_{c}_{name}{{listener=\"{}\"{extra}}} {}",
                    escape(&l.name),
                    get(l)
                );
            }
        }
        family(&mut out, c, "bytes_total", "counter");
        for l in &listeners {
            let name = escape(&l.name);
            for (dir, v) in [("rx", &l.bytes_rx), ("tx", &l.bytes_tx)] {
                let _ = writeln!(
                    out,
                    "strait_{c}_bytes_total{{listener=\"{name}\",direction=\"{dir}\"}} {}",
                    v.load(Relaxed)
                );
            }
        }
        let reasons = [
            (
                "handshake_failures_total",
                Some("inbound"),
                &self.handshake_inbound,
            ),
            (
                "handshake_failures_total",
                Some("outbound"),
                &self.handshake_outbound,
            ),
            ("hello_rejected_total", None, &self.hello_rejected),
        ];
        let mut typed = "";
        for (name, direction, counters) in reasons {
            if typed != name {
                family(&mut out, c, name, "counter");
                typed = name;
            }
            for (reason, v) in counters.snapshot() {
                let dir = direction.map_or(String::new(), |d| format!("direction=\"{d}\","));
                let _ = writeln!(out, "strait_{c}_{name}{{{dir}reason=\"{reason}\"}} {v}");
            }
        }
        {
            let map = self.routed.lock().unwrap_or_else(PoisonError::into_inner);
            if !map.is_empty() {
                family(&mut out, c, "routed_total", "counter");
            }
            for ((dc, sni), v) in map.iter() {
                let _ = writeln!(
                    out,
                    "strait_{c}_routed_total{{dc=\"{}\",sni=\"{}\"}} {}",
                    escape(dc),
                    escape(sni),
                    v.load(Relaxed)
                );
            }
        }
        if c == "sidecar" {
            family(&mut out, c, "intentions_denied_total", "counter");
            let denied = self.intentions_denied.load(Relaxed);
            let _ = writeln!(out, "strait_{c}_intentions_denied_total {denied}");
        }
        family(&mut out, c, "snapshots_total", "counter");
        let _ = writeln!(
            out,
            "strait_{c}_snapshots_total{{result=\"applied\"}} {}",
            self.snapshots_applied.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "strait_{c}_snapshots_total{{result=\"rejected\"}} {}",
            self.snapshots_rejected.load(Relaxed)
        );
        out
    }
}

/// Reads one counter of a listener.
type Getter = fn(&ListenerMetrics) -> u64;

/// The `# HELP` and `# TYPE` lines of family `strait_<component>_<name>` (promtool wants both).
fn family(out: &mut String, component: &str, name: &str, kind: &str) {
    let help = match name {
        "connections_accepted_total" => "TCP connections accepted, by listener.",
        "connections_active" => "Connections being served now, by listener.",
        "upstream_connect_errors_total" => "Failed dials towards upstream endpoints, by listener.",
        "connections_rejected_total" => "Connections closed at once over --max-connections.",
        "bytes_total" => "Bytes copied, by listener and direction (rx: from downstream).",
        "handshake_failures_total" => "Failed TLS handshakes, by direction and reason.",
        "hello_rejected_total" => "Connections closed before routing, by reason.",
        "routed_total" => "Connections routed, by datacenter and SNI (* for a remote DC).",
        "snapshots_total" => "Snapshots applied or rejected.",
        "intentions_denied_total" => "Inbound connections refused by intentions.",
        _ => "strait proxy counter.",
    };
    let _ = writeln!(out, "# HELP strait_{component}_{name} {help}");
    let _ = writeln!(out, "# TYPE strait_{component}_{name} {kind}");
}

/// Escapes a Prometheus label value.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for ch in value.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_counters_claim_slots_once() {
        let counters = ReasonCounters::default();
        counters.inc("unknown_ca");
        counters.inc("expired");
        counters.inc("unknown_ca");
        assert_eq!(counters.get("unknown_ca"), 2);
        assert_eq!(counters.get("expired"), 1);
        assert_eq!(counters.get("no_certificate"), 0);
        let snap = counters.snapshot();
        assert_eq!(snap.len(), 2);
    }

    #[test]
    fn reason_counters_overflow_is_counted() {
        let counters = ReasonCounters::default();
        let names: Vec<&'static str> = (0..30)
            .map(|i| &*Box::leak(format!("r{i}").into_boxed_str()))
            .collect();
        for name in &names {
            counters.inc(name);
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
        m.hello_rejected.inc("no_sni");
        m.routed_counter("dc1", "web.default.dc1.internal.td")
            .fetch_add(3, Relaxed);
        let text = m.to_prometheus();
        assert!(text.contains("strait_gateway_bytes_total{listener=\"lan\",direction=\"rx\"} 10"));
        assert!(text.contains("strait_gateway_connections_accepted_total{listener=\"lan\"} 1"));
        assert!(text.contains("strait_gateway_hello_rejected_total{reason=\"no_sni\"} 1"));
        assert!(text.contains(
            "strait_gateway_routed_total{dc=\"dc1\",sni=\"web.default.dc1.internal.td\"} 3"
        ));
        assert_eq!(m.routed("dc1", "web.default.dc1.internal.td"), 3);
        // The same listener name gives the same counters.
        assert_eq!(m.listener("lan").bytes_rx.load(Relaxed), 10);
        let stats = m.to_json();
        assert_eq!(stats["listeners"]["lan"]["bytes_rx"], 10);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
