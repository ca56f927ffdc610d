//! Autopilot's CleanupDeadServers, as Consul's: with `dead_server_cleanup` set, the leader
//! removes a voter it has not heard from for that long (no answer to any Raft RPC, heartbeats
//! every 150 ms), as long as the voters it still hears from stay a quorum of the voters left:
//! dead voters are removed only while they are fewer than half of all voters, so a leader cut
//! off from the others (it hears nobody) removes nobody.
//!
//! A removed server does not come back by itself: restart it with a fresh `data_dir` to join
//! again, or leave the setting off (the default) and remove servers with `strait operator
//! raft remove-peer`.

use crate::replicated::Contacts;
use crate::state::Server;
use openraft::ChangeMembers;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use strait_raft::NodeId;
use strait_systemd::lifecycle::Role;

/// How often the leader looks for dead servers.
const EVERY: Duration = Duration::from_secs(1);

/// Starts the task `autopilot` when `dead_server_cleanup` is set.
pub fn spawn(server: &Arc<Server>, role: &Role) {
    if let Some(after) = server.cfg.dead_server_cleanup {
        role.spawn_cancellable("autopilot", run(server.clone(), after));
    }
}

/// What the leader decided about the voters it has not heard from for `after`.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every voter answered within `after`.
    AllAlive,
    /// Remove these.
    Remove(BTreeSet<NodeId>),
    /// Too many are silent: removing them would leave the voters it hears without a quorum.
    Keep {
        dead: BTreeSet<NodeId>,
        voters: usize,
    },
}

/// Pure: `silence` is, for each voter but the leader, how long since it last answered. Also
/// the leader's read lease (`crate::api::read`): it holds unless this says `Keep` for the
/// election timeout.
pub fn verdict(voters: usize, silence: &[(NodeId, Duration)], after: Duration) -> Verdict {
    let dead: BTreeSet<NodeId> = silence
        .iter()
        .filter(|(_, quiet)| *quiet >= after)
        .map(|(id, _)| *id)
        .collect();
    if dead.is_empty() {
        Verdict::AllAlive
    } else if dead.len() * 2 < voters {
        Verdict::Remove(dead)
    } else {
        Verdict::Keep { dead, voters }
    }
}

/// The number of voters, and for each voter but this server how long since it last answered
/// this server's Raft RPCs (`unheard` for one that never did).
pub fn silence(
    metrics: &openraft::RaftMetrics<NodeId, strait_raft::Node>,
    contacts: &Contacts,
    unheard: Duration,
) -> (usize, Vec<(NodeId, Duration)>) {
    let membership = metrics.membership_config.membership();
    let voters: Vec<NodeId> = membership.voter_ids().collect();
    let silence = voters
        .iter()
        .filter(|id| **id != metrics.id)
        .map(|id| {
            let heard = membership
                .get_node(id)
                .and_then(|n| contacts.since(&n.addr));
            (*id, heard.unwrap_or(unheard))
        })
        .collect();
    (voters.len(), silence)
}

async fn run(server: Arc<Server>, after: Duration) {
    let mut tick = tokio::time::interval(EVERY);
    let mut leading_since: Option<Instant> = None;
    let mut last_refusal = None;
    loop {
        tick.tick().await;
        let (Some((consensus, metrics)), Some(contacts)) =
            (server.leading(), server.contacts.get())
        else {
            leading_since = None;
            continue;
        };
        // Followers are heard only once this server leads: none is dead before it led `after`.
        let leading = leading_since.get_or_insert_with(Instant::now).elapsed();
        let membership = metrics.membership_config.membership();
        let (voters, mut silence) = silence(&metrics, contacts, leading);
        for (_, quiet) in &mut silence {
            *quiet = (*quiet).min(leading);
        }
        let name = |id: &NodeId| {
            membership
                .get_node(id)
                .map_or_else(|| id.to_string(), |n| format!("{id} {n}"))
        };
        let dead = match verdict(voters, &silence, after) {
            Verdict::AllAlive => {
                last_refusal = None;
                continue;
            }
            Verdict::Keep { dead, voters } => {
                if last_refusal.as_ref() != Some(&dead) {
                    let names: Vec<String> = dead.iter().map(name).collect();
                    tracing::warn!(
                        servers = %names.join(", "),
                        voters,
                        "dead servers not removed: {} of {voters} voters silent, removing them would leave no quorum",
                        dead.len()
                    );
                    last_refusal = Some(dead);
                }
                continue;
            }
            Verdict::Remove(dead) => dead,
        };
        let names: Vec<String> = dead.iter().map(name).collect();
        let change = consensus
            .raft()
            .change_membership(ChangeMembers::RemoveVoters(dead), false);
        match tokio::time::timeout(Duration::from_secs(10), change).await {
            Ok(Ok(_)) => tracing::warn!(
                servers = %names.join(", "),
                after = ?after,
                "removed dead servers from the Raft configuration (dead_server_cleanup)"
            ),
            Ok(Err(e)) => {
                tracing::warn!(servers = %names.join(", "), error = %e, "cannot remove dead servers")
            }
            Err(_) => tracing::warn!(
                servers = %names.join(", "),
                "removing dead servers did not commit within 10 s"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AFTER: Duration = Duration::from_secs(30);

    fn quiet(secs: &[u64]) -> Vec<(NodeId, Duration)> {
        secs.iter()
            .enumerate()
            .map(|(i, s)| (i as NodeId + 2, Duration::from_secs(*s)))
            .collect()
    }

    #[test]
    fn a_silent_minority_is_removed() {
        assert_eq!(verdict(3, &quiet(&[0, 1]), AFTER), Verdict::AllAlive);
        assert_eq!(
            verdict(3, &quiet(&[0, 31]), AFTER),
            Verdict::Remove(BTreeSet::from([3]))
        );
        assert_eq!(
            verdict(5, &quiet(&[40, 0, 30, 1]), AFTER),
            Verdict::Remove(BTreeSet::from([2, 4]))
        );
    }

    /// A leader that hears nobody (cut off, or just resumed from a pause) removes nobody.
    #[test]
    fn half_or_more_silent_is_kept() {
        assert_eq!(
            verdict(3, &quiet(&[31, 45]), AFTER),
            Verdict::Keep {
                dead: BTreeSet::from([2, 3]),
                voters: 3
            }
        );
        assert!(matches!(
            verdict(2, &quiet(&[60]), AFTER),
            Verdict::Keep { .. }
        ));
        assert!(matches!(
            verdict(5, &quiet(&[31, 31, 31, 0]), AFTER),
            Verdict::Keep { .. }
        ));
    }
}
