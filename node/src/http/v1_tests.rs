#[test]
fn node_types_follow_the_original_names() {
    let roles = |r: &[&str]| r.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    assert_eq!(
        super::node_type(&roles(&["principal", "fiduciary", "beneficiary"])),
        "multi"
    );
    assert_eq!(super::node_type(&roles(&["principal"])), "principal");
    assert_eq!(super::node_type(&roles(&["fiduciary"])), "fiduciary");
}

#[test]
fn timestamps_are_rfc3339() {
    let now = super::rfc3339_now();
    assert_eq!(now.len(), 20, "{now}");
    assert!(now.starts_with("20") && now.ends_with('Z') && now.as_bytes()[10] == b'T');
}
