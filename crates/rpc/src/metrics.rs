//! Prometheus text exposition (format 0.0.4) for the servers' and agents' HTTP APIs, and the
//! per-route request counters both keep. Proxies have their own counters (strait-proxy).
//!
//! The text follows what `promtool check metrics` asks for: every family has `# HELP` and
//! `# TYPE` lines before its samples, counters end in `_total`, units are in the names
//! (`_seconds`, `_bytes`).

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};
use std::collections::{BTreeMap, HashMap};
use std::fmt::{Display, Write as _};
use std::sync::{Arc, Mutex};

/// The content type Prometheus expects for the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A Prometheus metric type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

/// Builds one exposition: families, each with HELP and TYPE, then its samples. The one
/// Prometheus text writer of strait: servers, agents and proxies all write through it (the
/// proxies only on scrape; their data path keeps plain atomics).
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

/// One family being written: every sample added here carries the family's name.
#[derive(Debug)]
pub struct Family<'a> {
    out: &'a mut String,
    name: &'a str,
}

impl Exposition {
    pub fn new() -> Exposition {
        Exposition::default()
    }

    /// Starts family `name` (its `# HELP` and `# TYPE` lines); add its samples to the result.
    pub fn family<'a>(&'a mut self, name: &'a str, kind: Kind, help: &str) -> Family<'a> {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
        Family {
            out: &mut self.out,
            name,
        }
    }

    /// A family with a single unlabelled sample.
    pub fn single(&mut self, name: &str, kind: Kind, help: &str, value: impl Display) {
        self.family(name, kind, help).sample(&[], value);
    }

    pub fn finish(self) -> String {
        self.out
    }
}

impl Family<'_> {
    /// One sample: `name{k="v",...} value`, label values escaped.
    pub fn sample(&mut self, labels: &[(&str, &str)], value: impl Display) -> &mut Self {
        self.out.push_str(self.name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(k);
                self.out.push_str("=\"");
                escape_label(self.out, v);
                self.out.push('"');
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
        self
    }
}

/// The exposition as an HTTP response (`GET ...?format=prometheus` or no `format`); any other
/// `format` is refused by name, since this is the only one served.
pub fn response(format: Option<&str>, body: impl FnOnce() -> String) -> Response {
    match format {
        None | Some("prometheus") => {
            let mut resp = (StatusCode::OK, body()).into_response();
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
            resp
        }
        Some(other) => (
            StatusCode::BAD_REQUEST,
            format!("query parameter `format` = {other:?}: only \"prometheus\" is served\n"),
        )
            .into_response(),
    }
}

/// Appends a label value with `\`, `"` and newlines escaped, as the text format requires.
fn escape_label(out: &mut String, value: &str) {
    for ch in value.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn escape_help(value: &str) -> String {
    value.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Requests answered, by (route template, method, status code). Routes are templates
/// (`/v1/health/service/{name}`), so the label set stays small; unrouted requests count as
/// `fallback`.
#[derive(Debug, Default)]
pub struct HttpRequests {
    counts: Mutex<HashMap<(String, String, u16), u64>>,
}

impl HttpRequests {
    pub fn new() -> Arc<HttpRequests> {
        Arc::new(HttpRequests::default())
    }

    pub fn record(&self, route: &str, method: &str, status: u16) {
        let mut map = strait_base::sync::lock(&self.counts);
        *map.entry((route.to_string(), method.to_string(), status))
            .or_insert(0) += 1;
    }

    /// Sorted copy of every counter.
    pub fn snapshot(&self) -> BTreeMap<(String, String, u16), u64> {
        let map = strait_base::sync::lock(&self.counts);
        map.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// Sum of the counters of `route` whose status is 2xx.
    pub fn succeeded(&self, route: &str) -> u64 {
        let map = strait_base::sync::lock(&self.counts);
        map.iter()
            .filter(|((r, _, s), _)| r == route && (200..300).contains(s))
            .map(|(_, v)| v)
            .sum()
    }

    /// Writes the family `<prefix>_http_requests_total`.
    pub fn write(&self, prefix: &str, out: &mut Exposition) {
        let name = format!("{prefix}_http_requests_total");
        let mut family = out.family(
            &name,
            Kind::Counter,
            "HTTP API requests answered, by route template, method and status code.",
        );
        for ((route, method, status), v) in self.snapshot() {
            let code = status.to_string();
            family.sample(
                &[("route", &route), ("method", &method), ("code", &code)],
                v,
            );
        }
    }
}

/// axum middleware (`middleware::from_fn`) counting every answered request in the
/// [`HttpRequests`] found in the request extensions (add it with `Extension(...)`).
pub async fn count_requests(req: Request, next: Next) -> Response {
    let counters = req.extensions().get::<Arc<HttpRequests>>().cloned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "fallback".to_string(), |p| p.as_str().to_string());
    let method = req.method().as_str().to_string();
    let resp = next.run(req).await;
    if let Some(c) = counters {
        c.record(&route, &method, resp.status().as_u16());
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_have_help_and_type_before_samples() {
        let mut e = Exposition::new();
        e.single("strait_x_nodes", Kind::Gauge, "Nodes.", 3);
        e.family("strait_x_total", Kind::Counter, "Things.\nMore \\ less.")
            .sample(&[("a", "q\"\\\n")], 1)
            .sample(&[("a", "é,}"), ("b", "")], 2);
        e.family("strait_x_empty", Kind::Counter, "No samples yet.");
        assert_eq!(
            e.finish(),
            "# HELP strait_x_nodes Nodes.\n# TYPE strait_x_nodes gauge\nstrait_x_nodes 3\n\
             # HELP strait_x_total Things.\\nMore \\\\ less.\n# TYPE strait_x_total counter\n\
             strait_x_total{a=\"q\\\"\\\\\\n\"} 1\n\
             strait_x_total{a=\"é,}\",b=\"\"} 2\n\
             # HELP strait_x_empty No samples yet.\n# TYPE strait_x_empty counter\n"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let mut out = String::new();
        escape_label(&mut out, "a\"b\\c\nd");
        assert_eq!(out, "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn requests_are_counted_by_route_method_and_code() {
        let r = HttpRequests::default();
        r.record("/v1/internal/sign", "POST", 200);
        r.record("/v1/internal/sign", "POST", 200);
        r.record("/v1/internal/sign", "POST", 403);
        assert_eq!(r.succeeded("/v1/internal/sign"), 2);
        let mut e = Exposition::new();
        r.write("strait_server", &mut e);
        let text = e.finish();
        assert!(text.contains(
            "strait_server_http_requests_total{route=\"/v1/internal/sign\",method=\"POST\",code=\"403\"} 1"
        ));
    }

    #[test]
    fn only_the_prometheus_format_is_served() {
        assert_eq!(response(None, String::new).status(), StatusCode::OK);
        assert_eq!(
            response(Some("prometheus"), String::new).status(),
            StatusCode::OK
        );
        assert_eq!(
            response(Some("json"), String::new).status(),
            StatusCode::BAD_REQUEST
        );
    }
}
