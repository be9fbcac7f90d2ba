use super::*;

const ID: &[u8] = b"alice@example.org";

/// Three authorities' shares, the combined secrets, and a token for PIN 1234.
fn issued() -> ([MpinScalar; 3], G2Point, G1Point, G1Point) {
    let shares = [
        MpinScalar::random(),
        MpinScalar::random(),
        MpinScalar::random(),
    ];
    let server = recombine_g2(&shares.clone().map(|s| server_secret(&s))).unwrap();
    let client = recombine_g1(&shares.clone().map(|s| client_secret(&s, ID))).unwrap();
    let token = extract_pin(&client, ID, 1234).unwrap();
    (shares, server, client, token)
}

fn authenticate(
    token: &G1Point,
    id: &[u8],
    pin: u32,
    server: &G2Point,
    permit: Option<&Permit>,
    server_date: Option<u32>,
) -> Result<(), MpinError> {
    let first = client_first(token, id, pin, permit, None)?;
    let y = MpinScalar::random();
    let v = client_second(first.state, &y)?;
    server_check(id, server_date, &y, server, &first.u, &v)
}

#[test]
fn the_right_pin_authenticates_and_a_wrong_one_does_not() {
    let (_, server, _, token) = issued();
    authenticate(&token, ID, 1234, &server, None, None).unwrap();
    assert_eq!(
        authenticate(&token, ID, 1235, &server, None, None),
        Err(MpinError::BadPin)
    );
    // Someone else's identity with this token fails too.
    assert_eq!(
        authenticate(&token, b"mallory", 1234, &server, None, None),
        Err(MpinError::BadPin)
    );
    assert_eq!(
        authenticate(&token, ID, MAX_PIN, &server, None, None),
        Err(MpinError::InvalidPin)
    );
}

#[test]
fn no_single_authority_share_authenticates() {
    let (shares, server, _, _) = issued();
    for share in &shares {
        let partial = client_secret(share, ID);
        let token = extract_pin(&partial, ID, 1234).unwrap();
        assert_eq!(
            authenticate(&token, ID, 1234, &server, None, None),
            Err(MpinError::BadPin)
        );
        // Nor against that authority's server share alone, with the full client secret.
        let (_, _, client, _) = issued();
        let token = extract_pin(&client, ID, 1234).unwrap();
        assert_eq!(
            authenticate(&token, ID, 1234, &server_secret(share), None, None),
            Err(MpinError::BadPin)
        );
    }
}

#[test]
fn a_dated_run_needs_the_permit_of_that_date() {
    let (shares, server, _, token) = issued();
    let permit = |date| Permit {
        date,
        point: recombine_g1(&shares.clone().map(|s| time_permit(&s, date, ID))).unwrap(),
    };
    let today = permit(20_000);
    authenticate(&token, ID, 1234, &server, Some(&today), Some(20_000)).unwrap();
    // Yesterday's permit does not open today, and no permit does not either.
    let yesterday = permit(19_999);
    assert_eq!(
        authenticate(&token, ID, 1234, &server, Some(&yesterday), Some(20_000)),
        Err(MpinError::BadPin)
    );
    assert_eq!(
        authenticate(&token, ID, 1234, &server, None, Some(20_000)),
        Err(MpinError::BadPin)
    );
}

#[test]
fn encodings_round_trip_and_refuse_garbage() {
    let (shares, server, client, _) = issued();
    assert_eq!(G2Point::from_bytes(&server.to_bytes()).unwrap(), server);
    assert_eq!(G1Point::from_bytes(&client.to_bytes()).unwrap(), client);
    let scalar = MpinScalar::from_bytes(&*shares[0].to_bytes()).unwrap();
    assert_eq!(server_secret(&scalar), server_secret(&shares[0]));
    // Wrong lengths and prefixes, a point moved off the curve, a scalar too large.
    let g1 = client.to_bytes();
    assert!(G1Point::from_bytes(&g1[1..]).is_err());
    let mut compressed_prefix = g1;
    compressed_prefix[0] = 0x02;
    assert!(G1Point::from_bytes(&compressed_prefix).is_err());
    let mut off_curve = g1;
    off_curve[G1_BYTES - 1] ^= 1;
    assert_eq!(
        G1Point::from_bytes(&off_curve),
        Err(MpinError::InvalidPoint { group: "G1" })
    );
    let mut g2 = server.to_bytes();
    g2[G2_BYTES - 1] ^= 1;
    assert_eq!(
        G2Point::from_bytes(&g2),
        Err(MpinError::InvalidPoint { group: "G2" })
    );
    assert!(G2Point::from_bytes(&[0u8; G2_BYTES]).is_err());
    assert_eq!(
        MpinScalar::from_bytes(&[0xff; FIELD_BYTES]).unwrap_err(),
        MpinError::InvalidScalar
    );
    assert!(format!("{:?}", shares[0]).contains("redacted"));
}

#[test]
fn the_identity_map_lands_in_the_prime_order_subgroup() {
    for id in [&b""[..], b"a", b"alice@example.org", &[0xff; 100]] {
        let point = identity_point(id);
        assert!(bool::from(point.0.is_torsion_free()));
        assert!(!bool::from(point.0.is_identity()));
    }
}

#[test]
fn a_master_secret_shared_t_of_n_serves_from_any_t_authorities() {
    // The master secret is generated among five authorities, any three of which serve.
    let (shares, _, _) = crate::threshold::tests::generated(3, 5);
    let authority = |i: usize| MpinScalar::from_share(&shares[i]);
    let index = |i: usize| shares[i].index();
    let client = recombine_g1_threshold(
        &[0, 2, 4].map(|i| (index(i), client_secret(&authority(i), ID))),
        3,
    )
    .unwrap();
    let server = recombine_g2_threshold(
        &[1, 2, 3].map(|i| (index(i), server_secret(&authority(i)))),
        3,
    )
    .unwrap();
    let token = extract_pin(&client, ID, 1234).unwrap();
    authenticate(&token, ID, 1234, &server, None, None).unwrap();
    assert_eq!(
        authenticate(&token, ID, 4321, &server, None, None),
        Err(MpinError::BadPin)
    );
    // A dated run: the permit from yet another three.
    let permit = Permit {
        date: 20_000,
        point: recombine_g1_threshold(
            &[0, 1, 3].map(|i| (index(i), time_permit(&authority(i), 20_000, ID))),
            3,
        )
        .unwrap(),
    };
    authenticate(&token, ID, 1234, &server, Some(&permit), Some(20_000)).unwrap();

    // Two authorities are not enough; adding shares up instead of weighting them gives a
    // secret that does not authenticate.
    assert!(matches!(
        recombine_g1_threshold(
            &[0, 1].map(|i| (index(i), client_secret(&authority(i), ID))),
            3
        ),
        Err(MpinError::Shares(_))
    ));
    let summed = recombine_g1(&[0, 2, 4].map(|i| client_secret(&authority(i), ID))).unwrap();
    let wrong = extract_pin(&summed, ID, 1234).unwrap();
    assert_eq!(
        authenticate(&wrong, ID, 1234, &server, None, None),
        Err(MpinError::BadPin)
    );
    assert!(matches!(
        recombine_g2_threshold(
            &[
                (1, server_secret(&authority(0))),
                (1, server_secret(&authority(1)))
            ],
            2
        ),
        Err(MpinError::Shares(
            crate::threshold::CombineError::DuplicateIndex(1)
        ))
    ));
}
