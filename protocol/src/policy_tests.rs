use super::*;
use crate::block::{DAG_CBOR, cid_of};

fn cid(name: &str) -> Cid {
    cid_of(DAG_CBOR, name.as_bytes())
}

const SECOND: u64 = 1_000;
const T0: u64 = 1_800_000_000_000;

/// 1 of legal AND 2 of ops, a 3 s delay, and 2 of 3 board members may veto within it.
fn example() -> ReleasePolicy {
    ReleasePolicy {
        max_releases: 2,
        groups: vec![
            ApproverGroup {
                name: "legal".into(),
                members: vec![cid("lena"), cid("luis")],
                count: 1,
            },
            ApproverGroup {
                name: "ops".into(),
                members: vec![cid("olga"), cid("omar"), cid("otto")],
                count: 2,
            },
        ],
        rule: None,
        not_before_ms: None,
        delay_ms: Some(3 * SECOND),
        veto: Some(ApproverGroup {
            name: "board".into(),
            members: vec![cid("bea"), cid("bob"), cid("bo")],
            count: 2,
        }),
        approval_lifetime_ms: Some(3_600 * SECOND),
        signing: None,
        expires_at_ms: None,
    }
}

fn signed(signer: &str, request: Cid, at: u64) -> Signed {
    Signed {
        signer: cid(signer),
        approval: Approval {
            order: cid("order"),
            request,
        },
        prev: Some(request),
        signed_ms: at,
    }
}

fn situation<'a>(now: u64, approvals: &'a [Signed], vetoes: &'a [Signed]) -> Situation<'a> {
    Situation {
        order: cid("order"),
        request: cid("request"),
        request_seen_ms: T0,
        now_ms: now,
        tolerance_ms: DEFAULT_CLOCK_TOLERANCE_MS,
        released: 0,
        approvals,
        vetoes,
    }
}

#[test]
fn a_policy_of_max_releases_alone_encodes_as_before() {
    #[derive(Serialize)]
    struct Before {
        max_releases: u32,
    }
    let now = crate::dagcbor::encode(&ReleasePolicy::default()).unwrap();
    assert_eq!(
        now,
        crate::dagcbor::encode(&Before { max_releases: 1 }).unwrap()
    );
    let decoded: ReleasePolicy = crate::dagcbor::decode(&now, Default::default()).unwrap();
    assert_eq!(decoded, ReleasePolicy::default());
    let full = crate::dagcbor::encode(&example()).unwrap();
    let decoded: ReleasePolicy = crate::dagcbor::decode(&full, Default::default()).unwrap();
    assert_eq!(decoded, example());
    assert!(!ReleasePolicy::default().has_conditions());
    assert!(example().has_conditions());
}

#[test]
fn the_example_waits_for_approvals_then_the_delay_then_releases() {
    let policy = example();
    policy.validate().unwrap();
    let request = cid("request");
    let now = T0 + SECOND;
    assert_eq!(
        policy.evaluate(&situation(now, &[], &[])),
        Verdict::Wait(Waiting {
            short: vec![("legal".into(), 0, 1), ("ops".into(), 0, 2)],
            delay_ends_ms: Some(T0 + 3 * SECOND),
        })
    );
    // One of ops twice counts once.
    let some = [
        signed("lena", request, now),
        signed("olga", request, now),
        signed("olga", request, now + 1),
    ];
    assert_eq!(
        policy.evaluate(&situation(now, &some, &[])),
        Verdict::Wait(Waiting {
            short: vec![("ops".into(), 1, 2)],
            delay_ends_ms: Some(T0 + 3 * SECOND),
        })
    );
    let enough = [
        signed("lena", request, now),
        signed("olga", request, now),
        signed("otto", request, now),
    ];
    assert_eq!(
        policy.evaluate(&situation(now, &enough, &[])),
        Verdict::Wait(Waiting {
            short: vec![],
            delay_ends_ms: Some(T0 + 3 * SECOND),
        })
    );
    assert_eq!(
        policy.evaluate(&situation(T0 + 3 * SECOND, &enough, &[])),
        Verdict::Release
    );
    let tally = policy.tally(&situation(now, &enough, &[]));
    assert_eq!(tally.approved["ops"].len(), 2);
    assert!(tally.refused.is_empty());
}

#[test]
fn a_veto_quorum_within_the_delay_refuses_and_one_after_it_does_not_count() {
    let policy = example();
    let request = cid("request");
    let enough = [
        signed("lena", request, T0),
        signed("olga", request, T0),
        signed("otto", request, T0),
    ];
    let one = [signed("bea", request, T0 + SECOND)];
    assert!(matches!(
        policy.evaluate(&situation(T0 + 4 * SECOND, &enough, &one)),
        Verdict::Release
    ));
    let two = [
        signed("bea", request, T0 + SECOND),
        signed("bob", request, T0 + 2 * SECOND),
    ];
    assert!(matches!(
        policy.evaluate(&situation(T0 + 4 * SECOND, &enough, &two)),
        Verdict::Refused(PolicyRefusal::Vetoed(by)) if by.len() == 2
    ));
    // Signed well after the delay (and the clocks' tolerance): too late to stop it.
    let late = [
        signed("bea", request, T0 + 60 * SECOND),
        signed("bob", request, T0 + 60 * SECOND),
    ];
    assert_eq!(
        policy.evaluate(&situation(T0 + 61 * SECOND, &enough, &late)),
        Verdict::Release
    );
    // An approver is not a vetoer.
    let not_board = [signed("lena", request, T0), signed("olga", request, T0)];
    let tally = policy.tally(&situation(T0 + SECOND, &[], &not_board));
    assert!(tally.vetoed.is_empty());
    assert_eq!(tally.refused.len(), 2);
}

#[test]
fn approvals_that_do_not_count_say_why() {
    let policy = example();
    let request = cid("request");
    let now = T0 + SECOND;
    let at = situation(now, &[], &[]);
    let check = |s: &Signed| policy.check_approval(s, &at, false);
    assert!(check(&signed("lena", request, now)).is_ok());
    assert!(matches!(
        check(&signed("mallory", request, now)),
        Err(ApprovalRefusal::NotMember(_))
    ));
    assert!(matches!(
        check(&signed("lena", cid("an earlier request"), now)),
        Err(ApprovalRefusal::OtherRequest(_))
    ));
    let mut other_order = signed("lena", request, now);
    other_order.approval.order = cid("another order");
    assert!(matches!(
        check(&other_order),
        Err(ApprovalRefusal::OtherOrder(_))
    ));
    let mut unlinked = signed("lena", request, now);
    unlinked.prev = None;
    assert_eq!(check(&unlinked), Err(ApprovalRefusal::Unlinked));
    assert!(matches!(
        check(&signed("lena", request, now - 3_601 * SECOND)),
        Err(ApprovalRefusal::Expired { .. })
    ));
    assert!(matches!(
        check(&signed("lena", request, now + 31 * SECOND)),
        Err(ApprovalRefusal::FromTheFuture { .. })
    ));
    // Within the tolerance, a little ahead is fine.
    assert!(check(&signed("lena", request, now + 29 * SECOND)).is_ok());
    // The refused ones are listed, and do not count.
    let mixed = [
        signed("mallory", request, now),
        signed("lena", cid("an earlier request"), now),
    ];
    let tally = policy.tally(&situation(now, &mixed, &[]));
    assert!(tally.approved["legal"].is_empty());
    assert_eq!(tally.refused.len(), 2);
}

#[test]
fn time_gates_and_release_counts_refuse() {
    let mut policy = ReleasePolicy {
        not_before_ms: Some(T0 + 100 * SECOND),
        ..ReleasePolicy::default()
    };
    policy.validate().unwrap();
    assert!(matches!(
        policy.evaluate(&situation(T0, &[], &[])),
        Verdict::Refused(PolicyRefusal::TooEarly { .. })
    ));
    // The clocks' tolerance opens it a little early.
    assert_eq!(
        policy.evaluate(&situation(T0 + 71 * SECOND, &[], &[])),
        Verdict::Release
    );
    policy.not_before_ms = None;
    let mut used = situation(T0, &[], &[]);
    used.released = 1;
    assert_eq!(
        policy.evaluate(&used),
        Verdict::Refused(PolicyRefusal::NoReleasesLeft(1))
    );
}

#[test]
fn rules_combine_groups() {
    let mut policy = example();
    policy.veto = None;
    policy.delay_ms = None;
    let request = cid("request");
    let now = T0;
    let legal = [signed("luis", request, now)];
    let ops = [signed("omar", request, now), signed("otto", request, now)];
    policy.rule = Some(Rule::Any(vec![
        Rule::Group("legal".into()),
        Rule::Group("ops".into()),
    ]));
    policy.validate().unwrap();
    assert_eq!(
        policy.evaluate(&situation(now, &legal, &[])),
        Verdict::Release
    );
    assert_eq!(
        policy.evaluate(&situation(now, &ops, &[])),
        Verdict::Release
    );
    assert!(matches!(
        policy.evaluate(&situation(now, &[], &[])),
        Verdict::Wait(_)
    ));
    policy.rule = Some(Rule::AtLeast {
        count: 2,
        of: vec![Rule::Group("legal".into()), Rule::Group("ops".into())],
    });
    policy.validate().unwrap();
    assert!(matches!(
        policy.evaluate(&situation(now, &legal, &[])),
        Verdict::Wait(w) if w.short == vec![("ops".to_owned(), 0, 2)]
    ));
    let both: Vec<Signed> = legal.iter().chain(&ops).cloned().collect();
    assert_eq!(
        policy.evaluate(&situation(now, &both, &[])),
        Verdict::Release
    );
}

#[test]
fn policies_that_cannot_be_met_or_are_malformed_are_refused() {
    let check = |edit: &dyn Fn(&mut ReleasePolicy)| {
        let mut policy = example();
        edit(&mut policy);
        policy.validate()
    };
    assert_eq!(check(&|_| {}), Ok(()));
    assert_eq!(check(&|p| p.max_releases = 0), Err(PolicyError::NoReleases));
    assert!(matches!(
        check(&|p| p.groups[1].count = 4),
        Err(PolicyError::Count {
            count: 4,
            members: 3,
            ..
        })
    ));
    assert!(matches!(
        check(&|p| p.groups[0].count = 0),
        Err(PolicyError::Count { count: 0, .. })
    ));
    assert!(matches!(
        check(&|p| p.veto.as_mut().unwrap().count = 4),
        Err(PolicyError::Count { .. })
    ));
    assert!(matches!(
        check(&|p| p.groups[1].name = "legal".into()),
        Err(PolicyError::GroupName(_))
    ));
    assert!(matches!(
        check(&|p| p.groups[0].name = String::new()),
        Err(PolicyError::GroupName(_))
    ));
    assert!(matches!(
        check(&|p| p.groups[0].members.push(cid("lena"))),
        Err(PolicyError::DuplicateMember(_))
    ));
    assert!(matches!(
        check(&|p| p.rule = Some(Rule::Group("finance".into()))),
        Err(PolicyError::UnknownGroup(_))
    ));
    assert!(matches!(
        check(&|p| p.rule = Some(Rule::Any(vec![]))),
        Err(PolicyError::Unsatisfiable(_))
    ));
    assert!(matches!(
        check(&|p| p.rule = Some(Rule::AtLeast {
            count: 3,
            of: vec![Rule::Group("legal".into()), Rule::Group("ops".into())]
        })),
        Err(PolicyError::Unsatisfiable(_))
    ));
    assert_eq!(
        check(&|p| p.delay_ms = None),
        Err(PolicyError::VetoWithoutDelay)
    );
    assert_eq!(
        check(&|p| p.approval_lifetime_ms = Some(0)),
        Err(PolicyError::ZeroLifetime)
    );
    assert!(matches!(
        check(&|p| p.groups[0].members = (0..65).map(|i| cid(&i.to_string())).collect()),
        Err(PolicyError::TooLarge(_))
    ));
    let mut deep = Rule::Group("legal".into());
    for _ in 0..MAX_RULE_DEPTH {
        deep = Rule::All(vec![deep]);
    }
    let deep = std::cell::RefCell::new(Some(deep));
    assert!(matches!(
        check(&|p| p.rule = deep.borrow_mut().take()),
        Err(PolicyError::TooLarge(_))
    ));
    let bare = ReleasePolicy {
        rule: Some(Rule::Group("legal".into())),
        ..ReleasePolicy::default()
    };
    assert_eq!(bare.validate(), Err(PolicyError::NoGroups("a rule")));
}

#[test]
fn an_expired_order_releases_nothing_and_an_expiry_before_the_first_release_is_refused() {
    let mut policy = example();
    policy.expires_at_ms = Some(10 * SECOND);
    assert_eq!(policy.expired(10 * SECOND - 1), None);
    assert!(matches!(
        policy.expired(10 * SECOND),
        Some(PolicyRefusal::Expired { expires_at_ms, .. }) if expires_at_ms == 10 * SECOND
    ));
    assert!(matches!(
        policy.evaluate(&situation(10 * SECOND, &[], &[])),
        Verdict::Refused(PolicyRefusal::Expired { .. })
    ));
    policy.not_before_ms = Some(10 * SECOND);
    assert_eq!(policy.validate(), Err(PolicyError::ExpiresFirst));
    policy.not_before_ms = Some(SECOND);
    assert_eq!(policy.validate(), Ok(()));
}
