//! Service definitions in Consul's shape (`PUT /v1/agent/service/register` bodies and the
//! service files of the config directory, both decoded by [`crate::decode`]: keys in any case
//! or snake_case), and what one expands to: catalog services (the service and its sidecar),
//! checks (their definitions are in [`crate::check_definition`]), and proxy registrations for
//! snapshots.

pub use crate::check_definition::{
    CheckDefinition, CheckSpec, Counter, Probe, Streak, NODE_MAINTENANCE,
    SERVICE_MAINTENANCE_PREFIX,
};
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use strait_catalog::{
    rules, CheckStatus, MeshGatewayConfig, ProxyConfig, Service, ServiceAddress, Upstream,
};
use strait_snapshot::{GatewayMode, ProxyKind, ProxyRegistration, UpstreamRegistration};

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct ServiceDefinition {
    #[serde(default, rename = "ID")]
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub port: u16,
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
    #[serde(default)]
    pub tagged_addresses: BTreeMap<String, ServiceAddress>,
    #[serde(default)]
    pub check: Option<CheckDefinition>,
    #[serde(default)]
    pub checks: Vec<CheckDefinition>,
    #[serde(default)]
    pub proxy: Option<ProxyConfig>,
    #[serde(default)]
    pub connect: Option<Connect>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct Connect {
    #[serde(default)]
    pub sidecar_service: Option<SidecarService>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct SidecarService {
    #[serde(default)]
    pub port: u16,
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub proxy: Option<SidecarProxy>,
}

/// The `Proxy` of a `Connect.SidecarService`.

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct SidecarProxy {
    /// Always the service the sidecar is declared in; clients such as the `consul` npm package
    /// send it anyway, so it is accepted when it names that service.
    #[serde(default)]
    pub destination_service_name: String,
    /// As `DestinationServiceName`: accepted when it is the service's ID.
    #[serde(default, rename = "DestinationServiceID")]
    pub destination_service_id: String,
    #[serde(default)]
    pub upstreams: Vec<Upstream>,
    #[serde(default)]
    pub mesh_gateway: MeshGatewayConfig,
    /// Where the sidecar finds the app (Consul's field): default 127.0.0.1, so the app need
    /// not listen on an address other hosts reach without mTLS.
    #[serde(default)]
    pub local_service_address: String,
    /// The app's port, when it differs from the service's `Port`.
    #[serde(default)]
    pub local_service_port: u16,
}

/// One definition, expanded.
#[derive(Debug, Clone, PartialEq)]
pub struct Expanded {
    pub services: Vec<Service>,
    pub checks: Vec<CheckSpec>,
    pub proxies: Vec<ProxyRegistration>,
}

/// First port handed to sidecars that do not name one (Consul's default range).
pub const SIDECAR_PORT_BASE: u16 = 21000;

/// A plaintext hop between the sidecar and its app: 127.0.0.1 when empty, and never an
/// address other hosts could reach (it would skip mTLS and intentions).
fn loopback_ip(field: &str, v: &str) -> Result<IpAddr> {
    if v.is_empty() {
        return Ok(IpAddr::from([127, 0, 0, 1]));
    }
    let ip: IpAddr = v
        .parse()
        .map_err(|_| anyhow::anyhow!("field {field} = {v:?}: not an IP address"))?;
    if !ip.is_loopback() {
        bail!("field {field} = {v:?}: must be a loopback address (plaintext stays on the VM)");
    }
    Ok(ip)
}

fn mode(m: &MeshGatewayConfig, field: &str) -> Result<GatewayMode> {
    Ok(match m.mode.as_str() {
        "" => GatewayMode::Default,
        "local" => GatewayMode::Local,
        "remote" => GatewayMode::Remote,
        "none" => GatewayMode::None,
        other => bail!("field {field} = {other:?}: expected local, remote or none"),
    })
}

impl ServiceDefinition {
    /// Validates and expands. `advertise` is the VM address; `sidecar_port` the port to use
    /// for a sidecar that does not name one.
    pub fn expand(&self, advertise: IpAddr, sidecar_port: u16) -> Result<Expanded> {
        strait_identity::spiffe::validate_name("Name", &self.name)?;
        let id = if self.id.is_empty() {
            self.name.clone()
        } else {
            self.id.clone()
        };
        rules::id("ID", &id).map_err(anyhow::Error::msg)?;
        rules::tags(&self.tags).map_err(anyhow::Error::msg)?;
        rules::meta(&self.meta).map_err(anyhow::Error::msg)?;
        let address = if self.address.is_empty() {
            advertise.to_string()
        } else {
            self.address.clone()
        };
        let ip: IpAddr = address
            .parse()
            .map_err(|_| anyhow::anyhow!("field Address = {address:?}: not an IP address"))?;
        if !matches!(self.kind.as_str(), "" | "connect-proxy" | "mesh-gateway") {
            bail!(
                "field Kind = {:?}: expected \"\", connect-proxy or mesh-gateway",
                self.kind
            );
        }
        if self.port == 0 && !self.kind.is_empty() {
            bail!("field Port: a {} needs a port", self.kind);
        }
        let mut out = Expanded {
            services: vec![],
            checks: vec![],
            proxies: vec![],
        };
        let main = Service {
            id: id.clone(),
            service: self.name.clone(),
            kind: self.kind.clone(),
            address: address.clone(),
            port: self.port,
            tags: self.tags.clone(),
            meta: self.meta.clone(),
            tagged_addresses: self.tagged_addresses.clone(),
            proxy: self.proxy.clone(),
            ..Default::default()
        };
        let count = self.check.iter().len() + self.checks.len();
        for (i, c) in self.check.iter().chain(self.checks.iter()).enumerate() {
            let field = if self.check.is_some() && i == 0 {
                "Check".to_string()
            } else {
                format!("Checks[{i}]")
            };
            // Consul's IDs: `service:<id>` for a lone check, else `service:<id>:<n>`.
            let default_id = match count {
                1 => format!("service:{id}"),
                _ => format!("service:{id}:{}", i + 1),
            };
            if !c.service_id.is_empty() && c.service_id != id {
                bail!("field {field}.ServiceID = {:?}: a check in a service definition is that service's ({id:?})", c.service_id);
            }
            let default_name = format!("Service '{}' check", self.name);
            let spec = c.spec(
                &format!("{field}."),
                default_id,
                default_name,
                &id,
                &self.name,
            )?;
            out.checks.push(spec);
        }
        if self.kind == "mesh-gateway" {
            let wan = match main.tagged_addresses.get("wan") {
                Some(w) => Some(SocketAddr::new(
                    w.address.parse().map_err(|_| {
                        anyhow::anyhow!(
                            "field TaggedAddresses.wan.Address = {:?}: not an IP address",
                            w.address
                        )
                    })?,
                    w.port,
                )),
                None => None,
            };
            out.proxies.push(ProxyRegistration {
                proxy_id: id.clone(),
                kind: ProxyKind::MeshGateway,
                service: self.name.clone(),
                bind: SocketAddr::new(ip, self.port),
                wan,
                local_app: None,
                mode: GatewayMode::Default,
                upstreams: vec![],
            });
        }
        out.services.push(main);
        if let Some(sc) = self
            .connect
            .as_ref()
            .and_then(|c| c.sidecar_service.as_ref())
        {
            if self.port == 0 {
                bail!("field Port: a service with Connect.SidecarService needs the port its sidecar forwards to");
            }
            self.expand_sidecar(&id, ip, sc, sidecar_port, &mut out)?;
        }
        Ok(out)
    }

    fn expand_sidecar(
        &self,
        id: &str,
        ip: IpAddr,
        sc: &SidecarService,
        default_port: u16,
        out: &mut Expanded,
    ) -> Result<()> {
        let sid = format!("{id}-sidecar-proxy");
        let sip: IpAddr = if sc.address.is_empty() {
            ip
        } else {
            sc.address.parse().map_err(|_| {
                anyhow::anyhow!(
                    "field Connect.SidecarService.Address = {:?}: not an IP address",
                    sc.address
                )
            })?
        };
        let port = if sc.port == 0 { default_port } else { sc.port };
        let proxy = sc.proxy.clone().unwrap_or_default();
        for (field, given, own) in [
            (
                "DestinationServiceName",
                &proxy.destination_service_name,
                &self.name,
            ),
            (
                "DestinationServiceID",
                &proxy.destination_service_id,
                &id.to_string(),
            ),
        ] {
            if !given.is_empty() && given != own {
                bail!("field Connect.SidecarService.Proxy.{field} = {given:?}: a sidecar fronts the service it is declared in ({own:?})");
            }
        }
        let pmode = mode(
            &proxy.mesh_gateway,
            "Connect.SidecarService.Proxy.MeshGateway.Mode",
        )?;
        let mut upstreams = vec![];
        for (i, u) in proxy.upstreams.iter().enumerate() {
            let f = format!("Connect.SidecarService.Proxy.Upstreams[{i}]");
            strait_identity::spiffe::validate_name(
                &format!("{f}.DestinationName"),
                &u.destination_name,
            )?;
            if u.local_bind_port == 0 {
                bail!("field {f}.LocalBindPort is required");
            }
            let bind_ip = loopback_ip(&format!("{f}.LocalBindAddress"), &u.local_bind_address)?;
            upstreams.push(UpstreamRegistration {
                destination: u.destination_name.clone(),
                datacenter: u.datacenter.clone(),
                bind: SocketAddr::new(bind_ip, u.local_bind_port),
                mode: mode(&u.mesh_gateway, &format!("{f}.MeshGateway.Mode"))?,
            });
        }
        out.services.push(Service {
            id: sid.clone(),
            service: format!("{}-sidecar-proxy", self.name),
            kind: "connect-proxy".into(),
            address: sip.to_string(),
            port,
            proxy: Some(ProxyConfig {
                destination_service_name: self.name.clone(),
                destination_service_id: id.to_string(),
                local_service_address: ip.to_string(),
                local_service_port: self.port,
                mesh_gateway: proxy.mesh_gateway.clone(),
                upstreams: proxy.upstreams.clone(),
                ..Default::default()
            }),
            ..Default::default()
        });
        let sname = format!("{}-sidecar-proxy", self.name);
        out.checks.push(CheckSpec {
            check_id: format!("service:{sid}:1"),
            name: "Connect Sidecar Listening".into(),
            service_id: sid.clone(),
            service_name: sname.clone(),
            probe: Probe::Tcp {
                addr: SocketAddr::new(sip, port),
            },
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(2),
            initial: CheckStatus::Critical,
            notes: String::new(),
            streak: Streak::default(),
        });
        out.checks.push(CheckSpec {
            check_id: format!("service:{sid}:2"),
            name: "Connect Sidecar Aliasing".into(),
            service_id: sid.clone(),
            service_name: sname,
            probe: Probe::Alias {
                service_id: id.to_string(),
            },
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            initial: CheckStatus::Critical,
            notes: String::new(),
            streak: Streak::default(),
        });
        out.proxies.push(ProxyRegistration {
            proxy_id: sid,
            kind: ProxyKind::Sidecar,
            service: self.name.clone(),
            bind: SocketAddr::new(sip, port),
            wan: None,
            local_app: Some(SocketAddr::new(
                loopback_ip(
                    "Connect.SidecarService.Proxy.LocalServiceAddress",
                    &proxy.local_service_address,
                )?,
                match proxy.local_service_port {
                    0 => self.port,
                    port => port,
                },
            )),
            mode: pmode,
            upstreams,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_sidecar_with_upstream() {
        let d: ServiceDefinition = serde_json::from_str(r#"{"ID":"dashboard","Name":"dashboard","Port":9002,
            "Check":{"HTTP":"http://127.0.0.1:9002/health","Interval":"1s"},
            "Connect":{"SidecarService":{"Proxy":{"Upstreams":[{"DestinationName":"counting","Datacenter":"dc2","LocalBindPort":5000,"MeshGateway":{"Mode":"local"}}]}}}}"#).unwrap();
        let e = d.expand("127.0.0.5".parse().unwrap(), 21000).unwrap();
        assert_eq!(e.services.len(), 2);
        assert_eq!(e.services[1].id, "dashboard-sidecar-proxy");
        assert_eq!(
            e.proxies[0].upstreams[0].bind,
            "127.0.0.1:5000".parse().unwrap()
        );
        assert_eq!(e.proxies[0].upstreams[0].mode, GatewayMode::Local);
        assert_eq!(
            e.proxies[0].local_app,
            Some("127.0.0.1:9002".parse().unwrap()),
            "the app is reached on loopback, not on the advertised address"
        );
        assert_eq!(e.checks.len(), 3);
    }

    fn expand_err(json: &str) -> String {
        let d: ServiceDefinition = serde_json::from_str(json).unwrap();
        d.expand("10.0.0.5".parse().unwrap(), 21000)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn plaintext_hops_stay_on_loopback() {
        let d: ServiceDefinition = serde_json::from_str(
            r#"{"Name":"a","Port":80,"Connect":{"SidecarService":{"Proxy":{
                "LocalServiceAddress":"127.0.0.7","LocalServicePort":8080}}}}"#,
        )
        .unwrap();
        let e = d.expand("10.0.0.5".parse().unwrap(), 21000).unwrap();
        assert_eq!(
            e.proxies[0].local_app,
            Some("127.0.0.7:8080".parse().unwrap())
        );
        assert_eq!(e.proxies[0].bind, "10.0.0.5:21000".parse().unwrap());
        let err = expand_err(
            r#"{"Name":"a","Port":80,"Connect":{"SidecarService":{"Proxy":{
                "LocalServiceAddress":"10.0.0.5"}}}}"#,
        );
        assert!(
            err.contains("Proxy.LocalServiceAddress") && err.contains("loopback"),
            "{err}"
        );
        let err = expand_err(
            r#"{"Name":"a","Port":80,"Connect":{"SidecarService":{"Proxy":{"Upstreams":[
                {"DestinationName":"b","LocalBindPort":5000,"LocalBindAddress":"0.0.0.0"}]}}}}"#,
        );
        assert!(err.contains("Upstreams[0].LocalBindAddress"), "{err}");
    }

    #[test]
    fn check_intervals_are_bounded_and_never_overflow() {
        for (interval, why) in [("0s", "between"), ("307445734561825861m", "too large")] {
            let err = expand_err(&format!(
                r#"{{"Name":"a","Port":1,"Check":{{"TCP":"127.0.0.1:1","Interval":"{interval}"}}}}"#
            ));
            assert!(err.contains("Check.Interval") && err.contains(why), "{err}");
        }
    }

    #[test]
    fn bad_mode_names_the_field() {
        let d: ServiceDefinition = serde_json::from_str(r#"{"Name":"a","Port":1,"Connect":{"SidecarService":{"Proxy":{"Upstreams":[{"DestinationName":"b","LocalBindPort":5,"MeshGateway":{"Mode":"sideways"}}]}}}}"#).unwrap();
        let err = d
            .expand("127.0.0.1".parse().unwrap(), 21000)
            .unwrap_err()
            .to_string();
        assert!(err.contains("Upstreams[0].MeshGateway.Mode"), "{err}");
    }

    #[test]
    fn unknown_field_is_refused() {
        let err = serde_json::from_str::<ServiceDefinition>(r#"{"Name":"a","Prot":1}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("Prot"), "{err}");
    }

    fn decode(json: &str) -> ServiceDefinition {
        crate::decode::json(json.as_bytes()).unwrap()
    }

    #[test]
    fn consul_clients_bodies_decode() {
        // py-consul: lowercase keys, snake_case connect.
        let py = decode(
            r#"{"name": "web", "id": "web-1", "port": 8080, "tags": ["v1"], "meta": {"Ver": "1"},
            "checks": [{"http": "http://127.0.0.1:8080/", "interval": "1s"}, {"ttl": "30s"}],
            "connect": {"sidecar_service": {"proxy": {"upstreams": [
                {"destination_name": "db", "local_bind_port": 9191, "mesh_gateway": {"mode": "local"}}]}}}}"#,
        );
        let e = py.expand("10.0.0.5".parse().unwrap(), 21000).unwrap();
        assert_eq!(e.services[0].id, "web-1");
        assert_eq!(e.services[0].meta["Ver"], "1");
        assert_eq!(
            e.checks[1].probe,
            Probe::Ttl {
                ttl: Duration::from_secs(30)
            }
        );
        assert_eq!(e.proxies[0].upstreams[0].destination, "db");
        // The consul npm package: PascalCase, the sidecar's Proxy.DestinationServiceName, and
        // the older DestinationServiceName in an upstream.
        let npm = decode(
            r#"{"Name": "web", "Port": 8080, "Check": {"TTL": "10s", "Status": "passing"},
            "Connect": {"SidecarService": {"Proxy": {"DestinationServiceName": "web",
                "Upstreams": [{"DestinationServiceName": "db", "LocalBindPort": 9191}]}}}}"#,
        );
        let e = npm.expand("10.0.0.5".parse().unwrap(), 21000).unwrap();
        assert_eq!(e.checks[0].initial, CheckStatus::Passing);
        assert_eq!(e.proxies[0].upstreams[0].destination, "db");
        let err = expand_err_decoded(
            r#"{"Name": "web", "Port": 1, "Connect": {"SidecarService": {"Proxy": {"DestinationServiceName": "other"}}}}"#,
        );
        assert!(err.contains("Proxy.DestinationServiceName"), "{err}");
    }

    fn expand_err_decoded(json: &str) -> String {
        decode(json)
            .expand("10.0.0.5".parse().unwrap(), 21000)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn unknown_keys_are_named_as_written() {
        let err = crate::decode::json::<ServiceDefinition>(br#"{"name": "a", "prot": 1}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`prot`") && err.contains("column"), "{err}");
        let err = crate::decode::json::<ServiceDefinition>(
            br#"{"name": "a", "check": {"ttl": "1s", "tll": "1s"}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("`tll`"), "{err}");
    }

    #[test]
    fn bad_status_ids_and_probes_are_refused() {
        let err = expand_err_decoded(r#"{"Name": "a", "Check": {"TTL": "1s", "Status": "ok"}}"#);
        assert!(err.contains("Check.Status"), "{err}");
        let err = expand_err_decoded(r#"{"Name": "a", "ID": "a\nforged log line"}"#);
        assert!(err.contains("field ID") && err.contains("control"), "{err}");
        let err =
            expand_err_decoded(r#"{"Name": "a", "Check": {"TTL": "1s", "TCP": "127.0.0.1:1"}}"#);
        assert!(err.contains("exactly one of HTTP, TCP or TTL"), "{err}");
    }

    #[test]
    fn tags_and_meta_are_validated_as_consul() {
        let err = expand_err_decoded(r#"{"Name": "a", "Tags": ["ok", "bad\u0007"]}"#);
        assert!(
            err.contains("field Tags[1]") && err.contains("control"),
            "{err}"
        );
        let err = expand_err_decoded(r#"{"Name": "a", "Meta": {"a b": "x"}}"#);
        assert!(err.contains("Meta key \"a b\""), "{err}");
        let err = expand_err_decoded(r#"{"Name": "a", "Meta": {"consul-x": "x"}}"#);
        assert!(err.contains("reserved"), "{err}");
        let err = expand_err_decoded(r#"{"Name": "a", "Meta": {"": "x"}}"#);
        assert!(err.contains("1-128"), "{err}");
        let long = "v".repeat(513);
        let err = expand_err_decoded(&format!(r#"{{"Name": "a", "Meta": {{"k": "{long}"}}}}"#));
        assert!(err.contains("Meta.k") && err.contains("512"), "{err}");
        let many: Vec<String> = (0..65).map(|i| format!(r#""k{i}": "v""#)).collect();
        let err = expand_err_decoded(&format!(
            r#"{{"Name": "a", "Meta": {{{}}}}}"#,
            many.join(",")
        ));
        assert!(err.contains("at most 64"), "{err}");
        let d = decode(r#"{"Name": "a", "Tags": ["v1"], "Meta": {"version_2-x": "ok"}}"#);
        assert!(d.expand("127.0.0.1".parse().unwrap(), 21000).is_ok());
    }

    #[test]
    fn streaks_flip_the_status_as_consul() {
        let d = decode(
            r#"{"Name": "a", "Check": {"HTTP": "https://localhost:8443/h", "TLSSkipVerify": true,
            "Method": "HEAD", "Header": {"X-A": ["1"]}, "success_before_passing": 2,
            "FailuresBeforeWarning": 1, "FailuresBeforeCritical": 3}}"#,
        );
        let e = d.expand("10.0.0.5".parse().unwrap(), 21000).unwrap();
        let streak = e.checks[0].streak;
        let Probe::Http(h) = &e.checks[0].probe else {
            panic!("{:?}", e.checks[0].probe)
        };
        assert_eq!(h.method, http::Method::HEAD);
        assert!(h.tls.as_ref().unwrap().skip_verify);
        let mut c = Counter::default();
        use CheckStatus::*;
        let got: Vec<_> = [
            Passing, Warning, Critical, Critical, Critical, Passing, Critical, Passing, Passing,
        ]
        .into_iter()
        .map(|r| c.record(&streak, r))
        .collect();
        assert_eq!(
            got,
            [
                None,
                Some(Warning),
                Some(Warning),
                Some(Warning),
                Some(Critical),
                None,
                Some(Warning),
                None,
                Some(Passing)
            ]
        );
        // Without streaks every result counts at once; warning defaults to critical's count.
        let mut c = Counter::default();
        assert_eq!(c.record(&Streak::default(), Critical), Some(Critical));
        let d = decode(
            r#"{"Name": "a", "Check": {"TCP": "127.0.0.1:1", "FailuresBeforeCritical": 2}}"#,
        );
        let streak = d.expand("10.0.0.5".parse().unwrap(), 21000).unwrap().checks[0].streak;
        let mut c = Counter::default();
        assert_eq!(c.record(&streak, Critical), None);
        assert_eq!(c.record(&streak, Critical), Some(Critical));
        for (json, want) in [
            (
                r#"{"TTL": "1s", "SuccessBeforePassing": 2}"#,
                "not TTL checks",
            ),
            (
                r#"{"TCP": "127.0.0.1:1", "FailuresBeforeWarning": 3, "FailuresBeforeCritical": 2}"#,
                "Check.FailuresBeforeWarning",
            ),
            (
                r#"{"TCP": "127.0.0.1:1", "Method": "POST"}"#,
                "Check.Method: only for HTTP",
            ),
        ] {
            let err = expand_err_decoded(&format!(r#"{{"Name": "a", "Check": {json}}}"#));
            assert!(err.contains(want), "{json}: {err}");
        }
    }

    #[test]
    fn check_needs_one_probe() {
        let d: ServiceDefinition =
            serde_json::from_str(r#"{"Name":"a","Port":1,"Check":{"Interval":"1s"}}"#).unwrap();
        let err = d
            .expand("127.0.0.1".parse().unwrap(), 21000)
            .unwrap_err()
            .to_string();
        assert!(err.contains("Check"), "{err}");
    }
}
