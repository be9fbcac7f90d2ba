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

#[test]
fn a_page_past_the_end_is_empty_however_far() {
    let paging = super::Paging {
        page: Some(usize::MAX),
        per_page: Some(10),
        sort_by: None,
    };
    let window = paging.window().expect("a valid page");
    assert_eq!(window.of(vec![1, 2, 3]).count(), 0);
}

#[test]
fn request_keys_match_in_any_case_and_extension_keys_keep_theirs() {
    let body: super::SecretBody = super::read_body(
        br#"{"OrderReference": "r", "BeneficiaryIDDocumentCid": "", "EXTENSION": {"plainText": "x"}}"#,
        "a secret request",
    )
    .expect("folded keys");
    assert_eq!(body.order_reference, "r");
    assert_eq!(body.beneficiary_id_document_cid.as_deref(), Some(""));
    assert_eq!(
        body.extension.get("plainText").map(String::as_str),
        Some("x")
    );
}
