//! The doctor's output: one ✓/✗ line per check, each ✗ followed by a one-line hint.

use std::fmt;

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Which hop or property: `local agent`, `remote gateway`, `mTLS handshake`, ...
    pub name: String,
    pub ok: bool,
    /// What was found (✓) or what went wrong (✗), naming addresses and identities.
    pub detail: String,
    /// For a failure: what to look at or do next.
    pub hint: Option<String>,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mark = if self.ok { '✓' } else { '✗' };
        write!(f, "{mark} {}: {}", self.name, self.detail)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n    hint: {hint}")?;
        }
        Ok(())
    }
}

/// Every check run so far, printed as it is added.
#[derive(Debug, Default)]
pub struct Report {
    pub checks: Vec<Check>,
    /// Print each check to stdout as it is recorded.
    pub print: bool,
    /// Which ACL token the doctor sent, for the hint of a check the ACLs refused.
    pub sent_token: String,
}

impl Report {
    pub fn new(print: bool) -> Report {
        Report {
            checks: Vec::new(),
            print,
            sent_token: "no token".to_owned(),
        }
    }

    /// Names the token sent (never the secret) in hints of checks the ACLs refused.
    pub fn with_sent_token(mut self, sent: String) -> Report {
        self.sent_token = sent;
        self
    }

    pub fn pass(&mut self, name: &str, detail: impl Into<String>) {
        self.push(Check {
            name: name.to_string(),
            ok: true,
            detail: detail.into(),
            hint: None,
        });
    }

    /// A failed check. A failure whose detail is the servers' ACL refusal (Consul's 403
    /// "Permission denied" or "ACL not found") is reported as that, with a hint about the
    /// token instead of `hint` (which is about reachability): a missing permission is not a
    /// network fault.
    pub fn fail(&mut self, name: &str, detail: impl Into<String>, hint: impl Into<String>) {
        let detail = detail.into();
        let (detail, hint) = match crate::acl::Denial::find(&detail) {
            Some(denial) => (
                format!("refused by ACLs, not a network fault: {detail}"),
                denial.hint(&self.sent_token),
            ),
            None => (detail, hint.into()),
        };
        self.push(Check {
            name: name.to_string(),
            ok: false,
            detail,
            hint: Some(hint),
        });
    }

    fn push(&mut self, check: Check) {
        if self.print {
            println!("{check}");
        }
        self.checks.push(check);
    }

    /// Records a section heading (printed only).
    pub fn section(&self, title: &str) {
        if self.print {
            println!("{title}");
        }
    }

    /// Records the checks of `sub` (run without printing) with `scope` after each name, so
    /// that the same checks run for several targets stay apart.
    pub fn extend_scoped(&mut self, sub: Report, scope: &str) {
        for mut check in sub.checks {
            check.name = format!("{} [{scope}]", check.name);
            self.push(check);
        }
    }

    pub fn failed(&self) -> usize {
        self.checks.iter().filter(|c| !c.ok).count()
    }

    pub fn all_passed(&self) -> bool {
        self.failed() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_carry_a_hint_line() {
        let mut r = Report::new(false);
        r.pass("local agent", "node a in dc1");
        r.fail("server", "cannot reach 127.0.0.1:8300", "start the server");
        assert_eq!(r.failed(), 1);
        assert!(!r.all_passed());
        assert_eq!(r.checks[0].to_string(), "✓ local agent: node a in dc1");
        assert_eq!(
            r.checks[1].to_string(),
            "✗ server: cannot reach 127.0.0.1:8300\n    hint: start the server"
        );
    }
}
