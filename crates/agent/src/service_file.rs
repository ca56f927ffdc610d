//! The agent's config directory: service files in Consul's forms, `*.json` and `*.hcl`.
//!
//! - `{"service": {...}}` / HCL `service { ... }`: one service (several `service` blocks in
//!   one HCL file, or a JSON array, are several services);
//! - `{"services": [...]}` / HCL `services = [...]`: several;
//! - a JSON file whose top level is a bare definition (`{"Name": ...}`): strait's own form,
//!   the one `strait lab` writes.
//!
//! Keys as Consul decodes them (see [`crate::decode`]). Anything else in a file, a file that
//! does not parse, or one with no service at all is an error naming the file (and the line
//! where the parser knows it). Other files in the directory are skipped with a warning, as
//! Consul does.

use crate::decode;
use crate::definition::ServiceDefinition;
use anyhow::{bail, Context, Result};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::fmt;
use std::path::Path;

/// A file in Consul's form: `service` and/or `services`, nothing else.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct ServiceFile {
    #[serde(default)]
    service: Option<OneOrMany>,
    #[serde(default)]
    services: Vec<ServiceDefinition>,
}

/// `service` holds one definition, or several (repeated HCL blocks, a JSON array).
struct OneOrMany(Vec<ServiceDefinition>);

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OneOrMany;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a service definition or a list of them")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<OneOrMany, A::Error> {
                let d = de::value::MapAccessDeserializer::new(map);
                Ok(OneOrMany(vec![ServiceDefinition::deserialize(
                    decode::Keys(d),
                )?]))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<OneOrMany, A::Error> {
                let d = de::value::SeqAccessDeserializer::new(seq);
                Ok(OneOrMany(Vec::deserialize(decode::Keys(d))?))
            }
        }
        d.deserialize_any(V)
    }
}

impl ServiceFile {
    fn definitions(self) -> Vec<ServiceDefinition> {
        let mut defs = self.service.map(|s| s.0).unwrap_or_default();
        defs.extend(self.services);
        defs
    }
}

/// Is this JSON document in Consul's form (a top-level `service` or `services` key, in any
/// case) rather than a bare definition?
fn consul_form(text: &str) -> bool {
    #[derive(Deserialize)]
    struct TopLevel(serde_json::Map<String, serde_json::Value>);
    serde_json::from_str::<TopLevel>(text).is_ok_and(|t| {
        t.0.keys()
            .any(|k| k.eq_ignore_ascii_case("service") || k.eq_ignore_ascii_case("services"))
    })
}

/// The definitions of one file's text; `hcl` for HCL syntax. Errors say what is wrong, the
/// caller names the file.
pub fn parse(text: &str, hcl: bool) -> Result<Vec<ServiceDefinition>> {
    let defs = if hcl {
        decode::hcl::<ServiceFile>(text)
            .map_err(anyhow::Error::msg)?
            .definitions()
    } else if consul_form(text) {
        decode::json::<ServiceFile>(text.as_bytes())?.definitions()
    } else {
        vec![decode::json::<ServiceDefinition>(text.as_bytes())?]
    };
    if defs.is_empty() {
        bail!("no service in it: expected `service` or `services` (Consul's service file forms)");
    }
    Ok(defs)
}

/// Reads the `*.json` and `*.hcl` service files of `dir`, sorted by file name; each
/// definition comes with where it was found (`file`, or `file: services[i]` when a file has
/// several). The first bad file is an error naming it.
pub fn read_config_dir(dir: Option<&Path>) -> Result<Vec<(ServiceDefinition, String)>> {
    let Some(dir) = dir else {
        return Ok(vec![]);
    };
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read config_dir {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    let mut out = vec![];
    for p in paths {
        let hcl = match p.extension().and_then(|e| e.to_str()) {
            Some("json") => false,
            Some("hcl") => true,
            _ => {
                tracing::warn!(file = %p.display(), "config_dir: skipping a file that is neither *.json nor *.hcl");
                continue;
            }
        };
        let text =
            std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))?;
        let defs =
            parse(&text, hcl).with_context(|| format!("invalid service file {}", p.display()))?;
        let many = defs.len() > 1;
        for (i, def) in defs.into_iter().enumerate() {
            let origin = match many {
                true => format!("{}: service {}", p.display(), i + 1),
                false => p.display().to_string(),
            };
            out.push((def, origin));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(defs: &[ServiceDefinition]) -> Vec<&str> {
        defs.iter().map(|d| d.name.as_str()).collect()
    }

    #[test]
    fn consul_hcl_service_file() {
        let text = r#"
service {
  name = "web"
  id   = "web-1"
  port = 8080
  tags = ["v1"]
  meta = { Version = "1" }
  check {
    http     = "http://127.0.0.1:8080/health"
    interval = "10s"
  }
  connect {
    sidecar_service {
      proxy {
        upstreams = [
          {
            destination_name = "db"
            datacenter       = "dc2"
            local_bind_port  = 9191
            mesh_gateway     = { mode = "local" }
          }
        ]
      }
    }
  }
}
"#;
        let defs = parse(text, true).unwrap();
        assert_eq!(names(&defs), ["web"]);
        let d = &defs[0];
        assert_eq!((d.id.as_str(), d.port), ("web-1", 8080));
        assert_eq!(d.meta["Version"], "1", "map keys are data, not translated");
        assert_eq!(d.check.as_ref().unwrap().interval, "10s");
        let proxy = d
            .connect
            .as_ref()
            .unwrap()
            .sidecar_service
            .as_ref()
            .unwrap();
        let u = &proxy.proxy.as_ref().unwrap().upstreams[0];
        assert_eq!(
            (
                u.destination_name.as_str(),
                u.local_bind_port,
                u.mesh_gateway.mode.as_str()
            ),
            ("db", 9191, "local")
        );
    }

    #[test]
    fn several_services_per_file() {
        let hcl = "service {\n name = \"a\"\n}\nservice {\n name = \"b\"\n}\n";
        assert_eq!(names(&parse(hcl, true).unwrap()), ["a", "b"]);
        let hcl = "services = [{ name = \"a\" }, { name = \"b\" }]\n";
        assert_eq!(names(&parse(hcl, true).unwrap()), ["a", "b"]);
        let json = r#"{"services": [{"name": "a"}, {"Name": "b", "Port": 1}]}"#;
        assert_eq!(names(&parse(json, false).unwrap()), ["a", "b"]);
        let json = r#"{"service": {"name": "a", "tagged_addresses": {"lan": {"address": "10.0.0.1", "port": 1}}}}"#;
        let d = parse(json, false).unwrap();
        assert_eq!(d[0].tagged_addresses["lan"].port, 1);
        // strait's bare form.
        assert_eq!(names(&parse(r#"{"Name": "a"}"#, false).unwrap()), ["a"]);
    }

    #[test]
    fn bad_files_say_what_and_where() {
        let err = parse(
            "{\"service\": {\n  \"name\": \"a\",\n  \"prot\": 1}}",
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("`prot`") && err.contains("line 3"), "{err}");
        let err = parse("service {\n  name = \"a\"\n  prot = 1\n}\n", true)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`prot`") && err.contains("line 3"), "{err}");
        let err = parse("datacenter = \"dc1\"\n", true)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`datacenter`") && err.contains("line 1"),
            "{err}"
        );
        let err = parse("service {\n", true).unwrap_err().to_string();
        assert!(!err.is_empty());
        let err = parse("services = []\n", true).unwrap_err().to_string();
        assert!(err.contains("no service"), "{err}");
    }

    #[test]
    fn config_dir_reads_json_and_hcl_and_names_a_bad_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.hcl"), "service {\n name = \"a\"\n}\n").unwrap();
        std::fs::write(dir.path().join("b.json"), r#"{"service": {"name": "b"}}"#).unwrap();
        std::fs::write(dir.path().join("README"), "not a service").unwrap();
        let defs = read_config_dir(Some(dir.path())).unwrap();
        let got: Vec<_> = defs.iter().map(|(d, _)| d.name.as_str()).collect();
        assert_eq!(got, ["a", "b"]);
        std::fs::write(dir.path().join("c.hcl"), "service {\n nme = \"c\"\n}\n").unwrap();
        let err = format!("{:#}", read_config_dir(Some(dir.path())).unwrap_err());
        assert!(err.contains("c.hcl") && err.contains("`nme`"), "{err}");
    }
}
