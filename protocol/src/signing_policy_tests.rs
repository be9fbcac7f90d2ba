use super::*;

fn prefixes(list: &[&[u8]]) -> Vec<ByteBuf> {
    list.iter().map(|p| ByteBuf::from(p.to_vec())).collect()
}

#[test]
fn no_policy_allows_any_message_any_number_of_times() {
    let policy = SigningPolicy::default();
    policy.validate().unwrap();
    assert_eq!(policy.allows(u32::MAX, b"anything"), Ok(()));
}

#[test]
fn max_signatures_counts_by_request_number_and_zero_forbids_signing() {
    let policy = SigningPolicy {
        max_signatures: Some(2),
        ..SigningPolicy::default()
    };
    assert_eq!(policy.allows(2, b"m"), Ok(()));
    assert_eq!(
        policy.allows(3, b"m"),
        Err(SigningRefusal::TooMany {
            sequence: 3,
            max: 2
        })
    );
    let never = SigningPolicy {
        max_signatures: Some(0),
        ..SigningPolicy::default()
    };
    assert!(never.allows(1, b"m").is_err());
}

#[test]
fn a_message_must_start_with_an_allowed_prefix() {
    let policy = SigningPolicy {
        max_signatures: None,
        message_prefixes: prefixes(&[b"dta/payout/", b"\x00\x01"]),
    };
    policy.validate().unwrap();
    assert_eq!(policy.allows(1, b"dta/payout/42"), Ok(()));
    assert_eq!(policy.allows(1, b"\x00\x01\x02"), Ok(()));
    assert_eq!(
        policy.allows(1, b"dta/payout"),
        Err(SigningRefusal::Prefix(2))
    );
    assert_eq!(
        policy.allows(1, b"x dta/payout/"),
        Err(SigningRefusal::Prefix(2))
    );
}

#[test]
fn empty_long_or_too_many_prefixes_are_malformed() {
    let check = |list: Vec<ByteBuf>| {
        SigningPolicy {
            max_signatures: None,
            message_prefixes: list,
        }
        .validate()
    };
    assert_eq!(
        check(prefixes(&[b""])),
        Err(SigningPolicyError::PrefixLength(0))
    );
    assert_eq!(
        check(vec![ByteBuf::from(vec![7; MAX_PREFIX + 1])]),
        Err(SigningPolicyError::PrefixLength(MAX_PREFIX + 1))
    );
    assert_eq!(
        check(vec![ByteBuf::from(vec![7]); MAX_PREFIXES + 1]),
        Err(SigningPolicyError::TooManyPrefixes(MAX_PREFIXES + 1))
    );
    check(vec![ByteBuf::from(vec![7; MAX_PREFIX]); MAX_PREFIXES]).unwrap();
}
