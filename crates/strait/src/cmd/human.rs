//! Commands for humans, answered by an agent (the local one, or a lab's: `locate.rs`).

use crate::cli::{AgentAddr, CatalogCommand};
use anyhow::Result;
use std::collections::BTreeMap;
use strait_catalog::{FederationState, Node};
use strait_proto::Member;

pub(crate) fn table(header: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: Vec<String>| {
        let s: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", s.join("  ").trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r);
    }
}

/// `strait members`: every DC the federation knows, its nodes and their status.
pub async fn members(agent: AgentAddr) -> Result<()> {
    let agent = &agent.api()?;
    let states: Vec<FederationState> = agent.get("/v1/internal/federation/states").await?;
    let mut rows = vec![];
    let mut dcs: Vec<Option<String>> = vec![None];
    let local: serde_json::Value = agent.get("/v1/agent/self").await?;
    let local_dc = local["Config"]["Datacenter"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    dcs.extend(
        states
            .into_iter()
            .map(|s| s.datacenter)
            .filter(|d| *d != local_dc)
            .map(Some),
    );
    for dc in dcs {
        let path = match &dc {
            Some(dc) => format!("/v1/internal/members?dc={dc}"),
            None => "/v1/internal/members".to_string(),
        };
        match agent.get::<Vec<Member>>(&path).await {
            Ok(ms) => rows.extend(
                ms.into_iter()
                    .map(|m| vec![m.node, m.address, m.status, m.role, m.datacenter]),
            ),
            Err(e) => rows.push(vec![
                "?".into(),
                "?".into(),
                format!("unreachable: {e:#}"),
                "?".into(),
                dc.unwrap_or_default(),
            ]),
        }
    }
    table(&["Node", "Address", "Status", "Type", "DC"], rows);
    Ok(())
}

pub async fn catalog(agent: AgentAddr, cmd: CatalogCommand) -> Result<()> {
    let agent = &agent.api()?;
    let dcq = |dc: &Option<String>| dc.as_ref().map(|d| format!("?dc={d}")).unwrap_or_default();
    match cmd {
        CatalogCommand::Services { dc } => {
            let s: BTreeMap<String, Vec<String>> = agent
                .get(&format!("/v1/catalog/services{}", dcq(&dc)))
                .await?;
            for name in s.keys() {
                println!("{name}");
            }
        }
        CatalogCommand::Nodes { dc } => {
            let nodes: Vec<Node> = agent.get(&format!("/v1/catalog/nodes{}", dcq(&dc))).await?;
            table(
                &["Node", "Address", "DC"],
                nodes
                    .into_iter()
                    .map(|n| vec![n.node, n.address, n.datacenter])
                    .collect(),
            );
        }
    }
    Ok(())
}
