//! The DC's certificate authority on disk.
//!
//! Primary DC: a root CA created on first start (`ca/root.pem`, `ca/root.key`). Secondary DC:
//! an intermediate whose key never leaves this server, signed by the primary over the
//! federation link (`ca/intermediate.pem`, `ca/intermediate.key`, plus the root certificate).
//! Key files are written 0600. The trust domain is chosen by the primary and stored beside.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::time::Duration;
use strait_identity::ca::{self, CaCert, IssuedCert};
use strait_identity::files;
use strait_identity::spiffe::{self, SpiffeId};

const ROOT_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Lifetime of a secondary DC's intermediate CA.
pub const INTERMEDIATE_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

/// A ready CA: what signs this DC's certificates, and the federation's roots.
pub struct CaState {
    pub trust_domain: String,
    pub datacenter: String,
    /// The federation's root certificate(s), PEM.
    pub roots_pem: Vec<String>,
    /// Signs leaves: the root in the primary, the intermediate in a secondary.
    signer: CaCert,
    /// PEM appended to every leaf (the intermediate), empty in the primary.
    chain_pem: String,
}

/// A leaf with its chain, ready to hand out.
pub struct SignedLeaf {
    pub chain_pem: String,
    pub issued: IssuedCert,
}

struct Paths {
    trust_domain: PathBuf,
    root_cert: PathBuf,
    root_key: PathBuf,
    inter_cert: PathBuf,
    inter_key: PathBuf,
}

fn paths(data_dir: &Path) -> Paths {
    let d = data_dir.join("ca");
    Paths {
        trust_domain: d.join("trust_domain"),
        root_cert: d.join("root.pem"),
        root_key: d.join("root.key"),
        inter_cert: d.join("intermediate.pem"),
        inter_key: d.join("intermediate.key"),
    }
}

/// The CA's files, as the Raft state machine replicates them to every server of the DC (the
/// keys travel only inside the servers' mutual TLS, and are written 0600 on each).
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct CaFiles {
    pub trust_domain: String,
    pub root_pem: String,
    /// Primary DC: the root's key.
    pub root_key_pem: Option<String>,
    /// Secondary DC: the intermediate and its key.
    pub intermediate_pem: Option<String>,
    pub intermediate_key_pem: Option<String>,
}

impl std::fmt::Debug for CaFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaFiles")
            .field("trust_domain", &self.trust_domain)
            .finish_non_exhaustive()
    }
}

impl CaFiles {
    /// Reads the CA files of `data_dir` (after [`CaState::load_or_init_primary`] or a
    /// federation join wrote them).
    pub fn read(data_dir: &Path) -> Result<CaFiles> {
        let p = paths(data_dir);
        let optional = |path: &Path| -> Result<Option<String>> {
            if path.exists() {
                read(path).map(Some)
            } else {
                Ok(None)
            }
        };
        Ok(CaFiles {
            trust_domain: read(&p.trust_domain)?.trim().to_string(),
            root_pem: read(&p.root_cert)?,
            root_key_pem: optional(&p.root_key)?,
            intermediate_pem: optional(&p.inter_cert)?,
            intermediate_key_pem: optional(&p.inter_key)?,
        })
    }

    /// Writes the files (keys 0600) into `data_dir/ca` and loads the CA from them.
    pub fn install(&self, data_dir: &Path, datacenter: &str) -> Result<CaState> {
        let p = paths(data_dir);
        let write = |path: &Path, text: &str, secret: bool| -> Result<()> {
            let written = if secret {
                files::write_secret(path, text.as_bytes())
            } else {
                files::write_public(path, text.as_bytes())
            };
            written.with_context(|| format!("writing {}", path.display()))
        };
        write(&p.trust_domain, &self.trust_domain, false)?;
        write(&p.root_cert, &self.root_pem, false)?;
        match (
            &self.root_key_pem,
            &self.intermediate_pem,
            &self.intermediate_key_pem,
        ) {
            (Some(key), None, None) => {
                write(&p.root_key, key, true)?;
                CaState::load_or_init_primary(data_dir, datacenter)
            }
            (None, Some(cert), Some(key)) => {
                write(&p.inter_cert, cert, false)?;
                write(&p.inter_key, key, true)?;
                CaState::load_secondary(data_dir, datacenter)?
                    .context("the intermediate CA just written cannot be read back")
            }
            _ => anyhow::bail!(
                "the replicated CA has neither a root key nor an intermediate with its key"
            ),
        }
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

impl CaState {
    /// Primary DC: loads the root CA, creating it (and the trust domain) on first start.
    pub fn load_or_init_primary(data_dir: &Path, datacenter: &str) -> Result<CaState> {
        let p = paths(data_dir);
        if !p.root_cert.exists() {
            let td = spiffe::new_trust_domain();
            let root = ca::generate_root(&td, ROOT_TTL).context("generating the root CA")?;
            files::write_secret(&p.root_key, root.key_pem.as_bytes())
                .with_context(|| format!("writing {}", p.root_key.display()))?;
            files::write_public(&p.root_cert, root.cert_pem.as_bytes())
                .with_context(|| format!("writing {}", p.root_cert.display()))?;
            files::write_public(&p.trust_domain, td.as_bytes())?;
            tracing::info!(trust_domain = %td, "created the federation's root CA");
        }
        let td = read(&p.trust_domain)?.trim().to_string();
        let root_pem = read(&p.root_cert)?;
        let signer = CaCert::from_pem(&root_pem, &read(&p.root_key)?)
            .with_context(|| format!("loading the root CA from {}", p.root_cert.display()))?;
        Ok(CaState {
            trust_domain: td,
            datacenter: datacenter.to_string(),
            roots_pem: vec![root_pem],
            signer,
            chain_pem: String::new(),
        })
    }

    /// Secondary DC: loads the intermediate CA if this server joined the federation before.
    pub fn load_secondary(data_dir: &Path, datacenter: &str) -> Result<Option<CaState>> {
        let p = paths(data_dir);
        if !p.inter_cert.exists() || !p.inter_key.exists() {
            return Ok(None);
        }
        let inter_pem = read(&p.inter_cert)?;
        let signer = CaCert::from_pem(&inter_pem, &read(&p.inter_key)?).with_context(|| {
            format!(
                "loading the intermediate CA from {}",
                p.inter_cert.display()
            )
        })?;
        Ok(Some(CaState {
            trust_domain: read(&p.trust_domain)?.trim().to_string(),
            datacenter: datacenter.to_string(),
            roots_pem: vec![read(&p.root_cert)?],
            signer,
            chain_pem: inter_pem,
        }))
    }

    /// Secondary DC: stores what the primary signed, then loads it.
    pub fn save_secondary(
        data_dir: &Path,
        datacenter: &str,
        trust_domain: &str,
        root_pem: &str,
        inter_pem: &str,
        inter_key_pem: &str,
    ) -> Result<CaState> {
        let p = paths(data_dir);
        files::write_secret(&p.inter_key, inter_key_pem.as_bytes())?;
        files::write_public(&p.inter_cert, inter_pem.as_bytes())?;
        files::write_public(&p.root_cert, root_pem.as_bytes())?;
        files::write_public(&p.trust_domain, trust_domain.as_bytes())?;
        Self::load_secondary(data_dir, datacenter)?
            .context("the intermediate CA just written cannot be read back")
    }

    /// The PEM of the root (what a primary hands a joining secondary).
    pub fn root_pem(&self) -> &str {
        &self.roots_pem[0]
    }

    /// A secondary's intermediate certificate (PEM), which its leaves chain to; `None` in the
    /// primary, whose root signs directly.
    pub fn intermediate_pem(&self) -> Option<&str> {
        (!self.chain_pem.is_empty()).then_some(self.chain_pem.as_str())
    }

    /// Primary only: signs a secondary DC's intermediate CA.
    pub fn sign_intermediate(&self, csr_pem: &str, dc: &str) -> Result<IssuedCert> {
        Ok(self
            .signer
            .sign_intermediate(csr_pem, dc, INTERMEDIATE_TTL)?)
    }

    /// Signs a certificate for `id` and appends this DC's chain.
    pub fn sign(&self, csr_pem: &str, id: &SpiffeId, ttl: Duration) -> Result<SignedLeaf> {
        let issued = self.signer.sign_leaf(csr_pem, id, ttl)?;
        let mut chain_pem = issued.cert_pem.clone();
        if !self.chain_pem.is_empty() {
            if !chain_pem.ends_with('\n') {
                chain_pem.push('\n');
            }
            chain_pem.push_str(&self.chain_pem);
        }
        Ok(SignedLeaf { chain_pem, issued })
    }
}
