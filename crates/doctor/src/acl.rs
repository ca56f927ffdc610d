//! Telling an ACL refusal from a network fault: the servers and agents answer a request
//! their ACLs refuse with Consul's 403 texts, `Permission denied: token with AccessorID '…'
//! lacks permission 'service:write' on "counting"` (or `anonymous token lacks …`) and
//! `ACL not found` (an unknown or expired token). A check whose failure carries one of them
//! reached what it asked: the token is what to fix.

/// An ACL refusal found in a check's failure text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Denial {
    /// `ACL not found`: the token sent is unknown (deleted, expired, mistyped).
    UnknownToken,
    /// `Permission denied`: the token resolved but lacks a permission.
    Lacks {
        /// `anonymous token`, `token with AccessorID '…'`.
        who: Option<String>,
        /// `service:write on "counting"`, when the message names it.
        permission: Option<String>,
    },
}

const HOW: &str = "pass a token with --token or --token-file (or STRAIT_HTTP_TOKEN / \
                   STRAIT_HTTP_TOKEN_FILE, Consul's CONSUL_HTTP_TOKEN / \
                   CONSUL_HTTP_TOKEN_FILE); the doctor sends it as X-Consul-Token";

impl Denial {
    /// The refusal in `text`, if it is one.
    pub(crate) fn find(text: &str) -> Option<Denial> {
        if text.contains("ACL not found") {
            return Some(Denial::UnknownToken);
        }
        let (_, rest) = text.split_once("Permission denied")?;
        // Not the OS's EACCES, "Permission denied (os error 13)": Consul's has a colon, or
        // is the body of a 403.
        let rest = match rest.strip_prefix(':') {
            Some(rest) => rest.trim_start(),
            None if text.contains(" 403 ") => rest.trim_start(),
            None => return None,
        };
        let Some((who, lacks)) = rest.split_once(" lacks permission '") else {
            return Some(Denial::Lacks {
                who: None,
                permission: None,
            });
        };
        let (level, after) = lacks.split_once('\'').unwrap_or((lacks, ""));
        let on = after
            .strip_prefix(" on \"")
            .and_then(|a| a.split_once('"'))
            .map(|(on, _)| format!(" on \"{on}\""))
            .unwrap_or_default();
        Some(Denial::Lacks {
            who: Some(who.to_owned()),
            permission: Some(format!("{level}{on}")),
        })
    }

    /// What to do, naming the token sent (`sent`: where it came from, never the secret).
    pub(crate) fn hint(&self, sent: &str) -> String {
        match self {
            Denial::UnknownToken => format!(
                "the doctor sent {sent}, which the servers do not know (deleted, expired or \
                 mistyped): {HOW}"
            ),
            Denial::Lacks { who, permission } => {
                let who = who.as_deref().unwrap_or("the token");
                let needs = match permission {
                    Some(p) => format!("needs '{p}', which {who} lacks"),
                    None => format!("is not allowed with {who}"),
                };
                format!(
                    "this check {needs} (the doctor sent {sent}): {HOW}, a token whose policies \
                     or identities grant it (`strait acl token read self` lists what a token \
                     has)"
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Report;

    #[test]
    fn consuls_refusals_are_found_with_who_and_what() {
        let text = "127.0.0.1:8500 answered 403 to /v1/agent/connect/ca/leaf/web: Permission \
                    denied: token with AccessorID '6a1253d2' lacks permission 'service:write' \
                    on \"web\"";
        assert_eq!(
            Denial::find(text),
            Some(Denial::Lacks {
                who: Some("token with AccessorID '6a1253d2'".into()),
                permission: Some("service:write on \"web\"".into()),
            })
        );
        let anonymous = "Permission denied: anonymous token lacks permission 'operator:read'. \
                         The anonymous token is used implicitly when a request does not \
                         specify a token.";
        assert_eq!(
            Denial::find(anonymous),
            Some(Denial::Lacks {
                who: Some("anonymous token".into()),
                permission: Some("operator:read".into()),
            })
        );
        assert_eq!(
            Denial::find("127.0.0.1:8500 answered 403 to /v1/agent/self: ACL not found"),
            Some(Denial::UnknownToken)
        );
        assert_eq!(
            Denial::find("127.0.0.1:8500 answered 403 to /v1/x: Permission denied"),
            Some(Denial::Lacks {
                who: None,
                permission: None
            })
        );
        for network in [
            "cannot connect to 127.0.0.1:8500: Connection refused (os error 111)",
            "cannot read /etc/strait.d/ca.pem: Permission denied (os error 13)",
            "127.0.0.1:8500 did not answer /v1/status/leader within 10s",
            "127.0.0.1:8500 answered 500 to /v1/status/leader: no leader",
        ] {
            assert_eq!(Denial::find(network), None, "{network}");
        }
    }

    /// A 403 is reported as an ACL problem naming the token and the permission; a refused
    /// connection keeps the check's own (reachability) hint.
    #[test]
    fn the_report_says_acl_instead_of_unreachable() {
        let mut r = Report::new(false).with_sent_token("the token from --token-file /t".into());
        r.fail(
            "local agent",
            "127.0.0.1:8500 answered 403 to /v1/agent/self: Permission denied: anonymous token \
             lacks permission 'agent:read' on \"web-1\"",
            "is `strait agent` running with http_addr 127.0.0.1:8500?",
        );
        r.fail(
            "server",
            "cannot connect to 127.0.0.1:8500: Connection refused (os error 111)",
            "is `strait agent` running with http_addr 127.0.0.1:8500?",
        );
        let acl = r.checks[0].to_string();
        for want in [
            "refused by ACLs, not a network fault",
            "needs 'agent:read on \"web-1\"', which anonymous token lacks",
            "the doctor sent the token from --token-file /t",
            "--token-file",
            "X-Consul-Token",
        ] {
            assert!(acl.contains(want), "{want} not in {acl}");
        }
        assert!(!acl.contains("is `strait agent` running"), "{acl}");
        let network = r.checks[1].to_string();
        assert!(
            network.contains("is `strait agent` running") && !network.contains("ACL"),
            "{network}"
        );
    }
}
