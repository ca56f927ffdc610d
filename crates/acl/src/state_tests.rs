use super::*;
use crate::config::DefaultPolicy;
use crate::token::ServiceIdentity;

const DC1: Context<'static> = Context {
    datacenter: "dc1",
    default_policy: DefaultPolicy::Deny,
};

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
}

fn bootstrapped() -> (AclState, SecretId) {
    let mut state = AclState::default();
    let (command, secret) = prepare_bootstrap(None, now());
    state.apply(1, command).unwrap();
    (state, secret)
}

fn named(name: &str) -> Link {
    Link {
        id: String::new(),
        name: name.into(),
    }
}

fn create(state: &mut AclState, index: u64, token: Token) -> (String, SecretId) {
    let (stored, secret) = StoredToken::create(token, now());
    let accessor = stored.token.accessor_id.clone();
    state.apply(index, AclCommand::CreateToken(stored)).unwrap();
    (accessor, secret)
}

#[test]
fn bootstrap_once_gives_a_management_token() {
    let (mut state, secret) = bootstrapped();
    assert!(state.is_bootstrapped());
    let auth = state.resolve(Some(secret.expose()), now(), &DC1).unwrap();
    assert!(auth.is_management());
    auth.acl_write().unwrap();
    let (again, _) = prepare_bootstrap(None, now());
    let e = state.apply(9, again).unwrap_err();
    assert_eq!(
        e.to_string(),
        "ACL bootstrap no longer allowed (reset index: 1)"
    );
    assert!(state.token(ANONYMOUS_TOKEN_ID).is_some());
    assert_eq!(state.policies().count(), 1);
}

#[test]
fn bootstrap_with_the_configured_secret() {
    let mut state = AclState::default();
    let chosen = SecretId::new("0b4c1f7e-5d8a-4c0e-9a52-1f0d7b9e3c21");
    let (command, secret) = prepare_bootstrap(Some(chosen.clone()), now());
    assert_eq!(secret, chosen);
    state.apply(1, command).unwrap();
    assert!(state
        .resolve(Some(chosen.expose()), now(), &DC1)
        .unwrap()
        .is_management());
}

#[test]
fn no_token_is_anonymous_and_unknown_secrets_are_not_found() {
    let (state, _) = bootstrapped();
    let anon = state.resolve(None, now(), &DC1).unwrap();
    assert_eq!(anon.accessor_id(), ANONYMOUS_TOKEN_ID);
    let e = anon.service_read("web").unwrap_err();
    assert!(
        e.to_string()
            .starts_with("Permission denied: anonymous token"),
        "{e}"
    );
    let e = state
        .resolve(Some("not-a-token-at-all"), now(), &DC1)
        .unwrap_err();
    assert_eq!(e.to_string(), "ACL not found");
    // Before bootstrap: anonymous grants nothing under default deny.
    let fresh = AclState::default();
    assert!(fresh
        .resolve(None, now(), &DC1)
        .unwrap()
        .service_read("web")
        .is_err());
}

#[test]
fn tokens_link_policies_by_name_and_identities() {
    let (mut state, _) = bootstrapped();
    let policy = Policy {
        name: "read-all".into(),
        rules: "service_prefix \"\" {\n  policy = \"read\"\n}\n".into(),
        ..Policy::default()
    };
    state.apply(2, prepare_policy(policy)).unwrap();
    let token = Token {
        grants: Grants {
            policies: vec![named("read-all")],
            service_identities: vec![ServiceIdentity {
                service_name: "web".into(),
                datacenters: vec![],
            }],
            ..Grants::default()
        },
        ..Token::default()
    };
    let (accessor, secret) = create(&mut state, 3, token);
    let stored = state.token(&accessor).unwrap();
    let link = &stored.token.grants.policies[0];
    assert!(
        crate::is_uuid(&link.id) && link.name == "read-all",
        "{link:?}"
    );
    assert_eq!(stored.token.revision.create_index, 3);
    let auth = state.resolve(Some(secret.expose()), now(), &DC1).unwrap();
    auth.service_write("web").unwrap();
    auth.service_read("counting").unwrap();
    assert!(auth.service_write("counting").is_err());

    let bad = Token {
        grants: Grants {
            policies: vec![named("nope")],
            ..Grants::default()
        },
        ..Token::default()
    };
    let (stored, _) = StoredToken::create(bad, now());
    let e = state.apply(4, AclCommand::CreateToken(stored)).unwrap_err();
    assert_eq!(e.to_string(), "Policies[0]: no policy named \"nope\"");
}

#[test]
fn update_keeps_the_secret_and_delete_revokes() {
    let (mut state, _) = bootstrapped();
    let (accessor, secret) = create(&mut state, 2, Token::default());
    let mut update = Token {
        accessor_id: accessor.clone(),
        description: "now with a description".into(),
        ..Token::default()
    };
    state
        .apply(3, AclCommand::UpdateToken(update.clone()))
        .unwrap();
    let stored = state.token(&accessor).unwrap();
    assert_eq!(stored.token.description, "now with a description");
    assert_eq!(
        (
            stored.token.revision.create_index,
            stored.token.revision.modify_index
        ),
        (2, 3)
    );
    assert_eq!(stored.token.create_time, Some(now()));
    assert!(state.resolve(Some(secret.expose()), now(), &DC1).is_ok());

    update.secret_id = Some(SecretId::generate());
    let e = state
        .apply(4, AclCommand::UpdateToken(update.clone()))
        .unwrap_err();
    assert_eq!(e.to_string(), "SecretID cannot be changed");
    update.secret_id = None;
    update.expiration_time = Some(now());
    let e = state
        .apply(4, AclCommand::UpdateToken(update.clone()))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "cannot change ExpirationTime of an existing token"
    );
    update.expiration_time = None;
    update.local = true;
    let e = state.apply(4, AclCommand::UpdateToken(update)).unwrap_err();
    assert_eq!(e.to_string(), "cannot toggle Local on an existing token");

    state
        .apply(
            5,
            AclCommand::DeleteToken {
                accessor_id: accessor,
            },
        )
        .unwrap();
    let e = state
        .resolve(Some(secret.expose()), now(), &DC1)
        .unwrap_err();
    assert_eq!(e, ResolveError::NotFound);
    let e = state
        .apply(
            6,
            AclCommand::DeleteToken {
                accessor_id: ANONYMOUS_TOKEN_ID.into(),
            },
        )
        .unwrap_err();
    assert_eq!(e.to_string(), "the anonymous token cannot be deleted");
}

#[test]
fn expired_tokens_are_not_found() {
    let (mut state, _) = bootstrapped();
    let token = Token {
        expiration_time: Some(now() + time::Duration::minutes(10)),
        ..Token::default()
    };
    let (accessor, secret) = create(&mut state, 2, token);
    assert!(state.resolve(Some(secret.expose()), now(), &DC1).is_ok());
    // An update that does not name the expiry keeps it.
    let update = Token {
        accessor_id: accessor,
        ..Token::default()
    };
    state.apply(3, AclCommand::UpdateToken(update)).unwrap();
    let later = now() + time::Duration::minutes(10);
    let e = state
        .resolve(Some(secret.expose()), later, &DC1)
        .unwrap_err();
    assert_eq!(e, ResolveError::NotFound);
}

#[test]
fn conflicts_are_refused() {
    let (mut state, secret) = bootstrapped();
    let p = |name: &str| Policy {
        name: name.into(),
        rules: "operator = \"read\"\n".into(),
        ..Policy::default()
    };
    state.apply(2, prepare_policy(p("ops"))).unwrap();
    let e = state.apply(3, prepare_policy(p("ops"))).unwrap_err();
    assert_eq!(e.to_string(), "a policy named \"ops\" already exists");
    let e = state
        .apply(
            3,
            AclCommand::DeletePolicy {
                id: GLOBAL_MANAGEMENT_POLICY_ID.into(),
            },
        )
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "the global-management policy cannot be deleted"
    );
    let mut gm = Policy::global_management();
    gm.rules = "operator = \"read\"\n".into();
    let e = state.apply(3, AclCommand::SetPolicy(gm)).unwrap_err();
    assert!(e.to_string().contains("cannot be changed"), "{e}");
    // A token reusing a secret.
    let dup = Token {
        secret_id: Some(secret),
        ..Token::default()
    };
    let (stored, _) = StoredToken::create(dup, now());
    let e = state.apply(3, AclCommand::CreateToken(stored)).unwrap_err();
    assert_eq!(e.to_string(), "SecretID is already in use");
    // A policy whose rules do not parse.
    let mut broken = p("broken");
    broken.rules = "operator = \"sometimes\"\n".into();
    let e = state.apply(3, prepare_policy(broken)).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("policy \"broken\": invalid Rules: line 1: "),
        "{e}"
    );
    // An update of a policy or role deleted meanwhile is refused in the log: it does not
    // bring it back.
    let ops = state.policies().find(|q| q.name == "ops").unwrap().clone();
    let mut changed = ops.clone();
    changed.description = "changed".into();
    state
        .apply(4, AclCommand::UpdatePolicy(changed.clone()))
        .unwrap();
    assert_eq!(
        state
            .policies()
            .find(|q| q.id == ops.id)
            .unwrap()
            .description,
        "changed"
    );
    state
        .apply(5, AclCommand::DeletePolicy { id: ops.id.clone() })
        .unwrap();
    let e = state
        .apply(6, AclCommand::UpdatePolicy(changed))
        .unwrap_err();
    assert_eq!(e.to_string(), format!("no policy with ID {}", ops.id));
    assert!(state.policies().all(|q| q.id != ops.id));
    let role = Role {
        id: "7c1e4b1a-2d3f-4a5b-8c9d-0e1f2a3b4c5d".into(),
        name: "gone".into(),
        ..Role::default()
    };
    let e = state.apply(7, AclCommand::UpdateRole(role)).unwrap_err();
    assert!(e.to_string().starts_with("no role with ID"), "{e}");
}

#[test]
fn roles_resolve_their_links_and_grant() {
    let (mut state, _) = bootstrapped();
    state
        .apply(
            2,
            prepare_policy(Policy {
                name: "ops".into(),
                rules: "operator = \"write\"\n".into(),
                ..Policy::default()
            }),
        )
        .unwrap();
    let role = Role {
        name: "operators".into(),
        grants: Grants {
            policies: vec![named("ops")],
            ..Grants::default()
        },
        ..Role::default()
    };
    state.apply(3, prepare_role(role.clone())).unwrap();
    let e = state.apply(4, prepare_role(role)).unwrap_err();
    assert_eq!(e.to_string(), "a role named \"operators\" already exists");
    let token = Token {
        roles: vec![named("operators")],
        ..Token::default()
    };
    let (accessor, secret) = create(&mut state, 5, token);
    assert!(crate::is_uuid(
        &state.token(&accessor).unwrap().token.roles[0].id
    ));
    let auth = state.resolve(Some(secret.expose()), now(), &DC1).unwrap();
    auth.operator_write().unwrap();
    let id = state.roles().next().unwrap().id.clone();
    state.apply(6, AclCommand::DeleteRole { id }).unwrap();
    let auth = state.resolve(Some(secret.expose()), now(), &DC1).unwrap();
    assert!(
        auth.operator_read().is_err(),
        "a dangling role link grants nothing"
    );
}

#[test]
fn snapshots_round_trip_with_the_secret_index_and_no_secret() {
    let (mut state, management) = bootstrapped();
    let (_, secret) = create(&mut state, 2, Token::default());
    let json = serde_json::to_string(&state).unwrap();
    assert!(!json.contains(secret.expose()) && !json.contains(management.expose()));
    let back: AclState = serde_json::from_str(&json).unwrap();
    assert_eq!(back, state);
    assert!(back.resolve(Some(secret.expose()), now(), &DC1).is_ok());
    assert!(back
        .resolve(Some(management.expose()), now(), &DC1)
        .unwrap()
        .is_management());
}

#[test]
fn the_same_log_gives_the_same_state() {
    let (bootstrap, _) = prepare_bootstrap(None, now());
    let (stored, _) = StoredToken::create(Token::default(), now());
    let log = vec![
        bootstrap,
        prepare_policy(Policy {
            name: "p".into(),
            rules: "acl = \"read\"\n".into(),
            ..Policy::default()
        }),
        AclCommand::CreateToken(stored),
    ];
    let replay = |log: &[AclCommand]| {
        let mut state = AclState::default();
        for (i, command) in log.iter().enumerate() {
            // Commands cross the log as JSON.
            let json = serde_json::to_string(command).unwrap();
            state
                .apply(i as u64 + 1, serde_json::from_str(&json).unwrap())
                .unwrap();
        }
        state
    };
    assert_eq!(replay(&log), replay(&log));
}

#[test]
fn rules_are_parsed_once_when_written() {
    let (mut state, _) = bootstrapped();
    let policy = Policy {
        name: "ops".into(),
        rules: "operator = \"read\"\n".into(),
        ..Policy::default()
    };
    state.apply(2, prepare_policy(policy)).unwrap();
    let token = Token {
        grants: Grants {
            policies: vec![named("ops")],
            ..Grants::default()
        },
        ..Token::default()
    };
    let (_, secret) = create(&mut state, 3, token);
    let stored = state.policy(&named("ops")).unwrap();
    assert!(matches!(
        state.policy_rules(stored).unwrap(),
        std::borrow::Cow::Borrowed(_)
    ));

    // A state image whose policy no longer parses (written by a broken version, edited by
    // hand): the token using it is refused with the policy named, not silently narrowed.
    let mut image = serde_json::to_value(&state).unwrap();
    for policy in image["policies"].as_object_mut().unwrap().values_mut() {
        if policy["Name"] == "ops" {
            policy["Rules"] = "operator = \"sometimes\"\n".into();
        }
    }
    let broken: AclState = serde_json::from_value(image).unwrap();
    let e = broken
        .resolve(Some(secret.expose()), now(), &DC1)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("policy \"ops\": invalid Rules: line 1: "),
        "{e}"
    );
}

/// A secondary's copy: the primary's global tokens (by secret hash), policies and roles
/// replace its own; its `Local` tokens stay; a global token deleted in the primary stops
/// resolving with the next replica; the ACL index and the replicated index move.
#[test]
fn a_replica_replaces_the_global_objects_and_keeps_local_tokens() {
    let (mut primary, management) = bootstrapped();
    primary
        .apply(
            2,
            prepare_policy(Policy {
                name: "readers".into(),
                rules: "acl = \"read\"\n".into(),
                ..Policy::default()
            }),
        )
        .unwrap();
    let (global, global_secret) = create(
        &mut primary,
        3,
        Token {
            grants: Grants {
                policies: vec![named("readers")],
                ..Grants::default()
            },
            ..Token::default()
        },
    );
    // A primary's own Local token is not for other DCs.
    let (primary_local, _) = create(
        &mut primary,
        4,
        Token {
            local: true,
            ..Token::default()
        },
    );
    assert_eq!(primary.index(), 4);
    let replica = primary.replica();
    assert_eq!(replica.index, 4);
    assert!(replica.tokens.iter().all(|t| !t.token.local));
    let json = serde_json::to_string(&replica).unwrap();
    assert!(!json.contains(global_secret.expose()) && !json.contains(management.expose()));

    // The secondary had a Local token and a stale global one of its own.
    let mut secondary = AclState::default();
    let (local, local_secret) = create(
        &mut secondary,
        1,
        Token {
            local: true,
            ..Token::default()
        },
    );
    let (stale, stale_secret) = create(&mut secondary, 2, Token::default());
    secondary
        .apply(
            7,
            AclCommand::Replicate(serde_json::from_str(&json).unwrap()),
        )
        .unwrap();
    assert_eq!((secondary.index(), secondary.replicated_index()), (7, 4));
    let auth = secondary
        .resolve(Some(global_secret.expose()), now(), &DC1)
        .unwrap();
    auth.acl_read().unwrap();
    assert_eq!(auth.accessor_id(), global);
    assert_eq!(
        secondary
            .token(&global)
            .unwrap()
            .token
            .revision
            .create_index,
        3,
        "objects keep the primary's indexes"
    );
    assert!(secondary
        .resolve(Some(management.expose()), now(), &DC1)
        .unwrap()
        .is_management());
    assert!(secondary
        .resolve(Some(local_secret.expose()), now(), &DC1)
        .is_ok());
    assert!(secondary.token(&local).is_some());
    assert!(secondary.token(&primary_local).is_none());
    assert!(matches!(
        secondary.resolve(Some(stale_secret.expose()), now(), &DC1),
        Err(ResolveError::NotFound)
    ));
    assert!(secondary.token(&stale).is_none());
    assert_eq!(secondary.policies().count(), 2);

    // Deleted in the primary: gone from the next replica; the Local token stays.
    primary
        .apply(
            5,
            AclCommand::DeleteToken {
                accessor_id: global.clone(),
            },
        )
        .unwrap();
    secondary
        .apply(8, AclCommand::Replicate(primary.replica()))
        .unwrap();
    assert_eq!(secondary.replicated_index(), 5);
    assert!(matches!(
        secondary.resolve(Some(global_secret.expose()), now(), &DC1),
        Err(ResolveError::NotFound)
    ));
    assert!(secondary
        .resolve(Some(local_secret.expose()), now(), &DC1)
        .is_ok());

    // Kept in the snapshot image with both indexes.
    let back: AclState = serde_json::from_str(&serde_json::to_string(&secondary).unwrap()).unwrap();
    assert_eq!(back, secondary);
    assert_eq!((back.index(), back.replicated_index()), (8, 5));
}

/// A global token that reuses a Local token's AccessorID or secret wins; the Local one goes.
#[test]
fn a_replicated_token_replaces_a_colliding_local_one() {
    let mut secondary = AclState::default();
    let secret = SecretId::new("0b4c1f7e-5d8a-4c0e-9a52-1f0d7b9e3c21");
    let (local, _) = create(
        &mut secondary,
        1,
        Token {
            secret_id: Some(secret.clone()),
            local: true,
            ..Token::default()
        },
    );
    let (global, _) = StoredToken::create(
        Token {
            secret_id: Some(secret.clone()),
            description: "global".into(),
            ..Token::default()
        },
        now(),
    );
    let accessor = global.token.accessor_id.clone();
    let replica = Replica {
        index: 3,
        tokens: vec![global],
        ..Replica::default()
    };
    secondary.apply(2, AclCommand::Replicate(replica)).unwrap();
    assert!(secondary.token(&local).is_none());
    let auth = secondary
        .resolve(Some(secret.expose()), now(), &DC1)
        .unwrap();
    assert_eq!(auth.accessor_id(), accessor);
}
