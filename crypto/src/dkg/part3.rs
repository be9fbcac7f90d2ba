//! The key generation's last part, with the same outcome as `frost_core::keys::dkg::part3`
//! and a fraction of its cost, and the group's public key package from the commitments alone.
//!
//! FROST's own part 3 checks each of the n-1 shares a participant received against its
//! dealer's commitments (t full scalar multiplications each) and then derives every
//! participant's public share (t more each): about 2·n·t multiplications per participant, n²·t
//! for a run, which is what makes n = 64 cost a minute of CPU. Here:
//! - the dealers' commitments are added up first (point additions only), and every evaluation
//!   at a participant's index x is Horner's rule with multiplications by x, a number below
//!   2¹⁶, by doubling and adding (about 20 group operations instead of 300);
//! - the shares received are checked once, together: g·(Σ shares) against the summed
//!   commitments at this participant's index. Only when that fails is each share checked on
//!   its own, to name its dealer. Shares whose errors cancel out sum to the right key share,
//!   which is all this participant keeps.
//!
//! Everything here is public data (commitments, indices), so the variable-time evaluation
//! leaks nothing; the secret sum is multiplied by the generator in the group's own constant
//! time.

use std::collections::BTreeMap;

use frost_core::keys::dkg::{round1, round2};
use frost_core::keys::{
    KeyPackage, PublicKeyPackage, SigningShare, VerifiableSecretSharingCommitment, VerifyingShare,
};
use frost_core::{Element, Group, Identifier, VerifyingKey};

use super::{DkgError, Participant, Suite, identifier};

/// `point · x` for a small public `x`, by doubling and adding.
fn times_small<C: Suite>(point: Element<C>, x: u16) -> Element<C> {
    let mut result = <C::Group as Group>::identity();
    for bit in (0..u16::BITS - x.leading_zeros()).rev() {
        result = result + result;
        if x >> bit & 1 == 1 {
            result = result + point;
        }
    }
    result
}

/// The polynomial committed to by `coefficients` (constant term first) at `x`, by Horner's
/// rule.
fn evaluate<C: Suite>(coefficients: &[Element<C>], x: u16) -> Element<C> {
    coefficients
        .iter()
        .rev()
        .fold(<C::Group as Group>::identity(), |sum, c| {
            times_small::<C>(sum, x) + *c
        })
}

fn elements<C: Suite>(commitment: &VerifiableSecretSharingCommitment<C>) -> Vec<Element<C>> {
    commitment
        .coefficients()
        .iter()
        .map(|c| c.value())
        .collect()
}

/// The dealers' commitments added up coefficient by coefficient; `None` when two differ in
/// length (a dealer committed to a polynomial of another degree).
fn summed<'a, C: Suite>(
    commitments: impl IntoIterator<Item = &'a VerifiableSecretSharingCommitment<C>>,
) -> Option<Vec<Element<C>>> {
    let mut sum: Option<Vec<Element<C>>> = None;
    for commitment in commitments {
        let coefficients = elements(commitment);
        match &mut sum {
            None => sum = Some(coefficients),
            Some(sum) if sum.len() == coefficients.len() => {
                for (s, c) in sum.iter_mut().zip(coefficients) {
                    *s = *s + c;
                }
            }
            Some(_) => return None,
        }
    }
    sum
}

/// The public key package the summed commitments give: every participant's public share and
/// the group key, before the suite's finishing touch.
fn public_package<C: Suite>(
    group: &[Element<C>],
    participants: u16,
    threshold: u16,
) -> Result<PublicKeyPackage<C>, DkgError> {
    let constant = *group
        .first()
        .ok_or(DkgError::Failed("commitments of no coefficient"))?;
    let shares = (1..=participants)
        .map(|p| {
            Ok((
                identifier::<C>(p)?,
                VerifyingShare::new(evaluate::<C>(group, p)),
            ))
        })
        .collect::<Result<BTreeMap<_, _>, DkgError>>()?;
    Ok(PublicKeyPackage::new(
        shares,
        VerifyingKey::new(constant),
        Some(threshold),
    ))
}

/// Part 3 for participant `me` of `participants`: the same key package and public key package
/// as FROST's, or the dealer whose share fails.
pub(super) fn finish<C: Suite>(
    secret: &round2::SecretPackage<C>,
    commitments: &BTreeMap<Identifier<C>, round1::Package<C>>,
    shares: &BTreeMap<Identifier<C>, round2::Package<C>>,
    me: Participant,
    participants: u16,
) -> Result<(KeyPackage<C>, PublicKeyPackage<C>), DkgError> {
    let expected = usize::from(participants) - 1;
    if commitments.len() != expected
        || shares.len() != expected
        || commitments.keys().any(|id| !shares.contains_key(id))
        || commitments.contains_key(secret.identifier())
    {
        return Err(DkgError::Failed(
            "not one share and commitment from each other",
        ));
    }
    let group = summed::<C>(
        commitments
            .values()
            .map(round1::Package::commitment)
            .chain([secret.commitment()]),
    )
    .filter(|sum| sum.len() == usize::from(*secret.min_signers()))
    .ok_or(DkgError::Failed("commitments of another degree"))?;
    let signing = shares.values().fold(secret.secret_share(), |sum, share| {
        sum + share.signing_share().to_scalar()
    });
    let generator = <C::Group as Group>::generator();
    if generator * signing != evaluate::<C>(&group, me) {
        return Err(culprit(commitments, shares, me, participants));
    }
    let public = public_package(&group, participants, *secret.min_signers())?;
    let signing = SigningShare::new(signing);
    let key = KeyPackage::new(
        *secret.identifier(),
        signing,
        VerifyingShare::from(signing),
        *public.verifying_key(),
        *secret.min_signers(),
    );
    C::post_dkg(key, public).map_err(|_| DkgError::Failed("the suite refused the key"))
}

/// The first dealer whose share fails its own commitments: what a failed sum is blamed on.
fn culprit<C: Suite>(
    commitments: &BTreeMap<Identifier<C>, round1::Package<C>>,
    shares: &BTreeMap<Identifier<C>, round2::Package<C>>,
    me: Participant,
    participants: u16,
) -> DkgError {
    let generator = <C::Group as Group>::generator();
    for (id, package) in commitments {
        let Some(share) = shares.get(id) else {
            continue;
        };
        let dealt = generator * share.signing_share().to_scalar();
        if dealt != evaluate::<C>(&elements(package.commitment()), me) {
            return match super::participant_of(id, participants) {
                Some(culprit) => DkgError::Dealer {
                    culprit,
                    reason: "a share that fails its commitments",
                },
                None => DkgError::Failed("a failing share from outside the committee"),
            };
        }
    }
    DkgError::Failed("the shares fail together but not one by one")
}

/// The public key package (after the suite's finishing touch) that every participant's
/// commitment, participant 1 first, gives.
pub(super) fn public_of<C: Suite>(
    commitments: &[&VerifiableSecretSharingCommitment<C>],
) -> Result<PublicKeyPackage<C>, DkgError> {
    let participants =
        u16::try_from(commitments.len()).map_err(|_| DkgError::Failed("too many participants"))?;
    let group = summed::<C>(commitments.iter().copied())
        .ok_or(DkgError::Failed("commitments of another degree"))?;
    let threshold =
        u16::try_from(group.len()).map_err(|_| DkgError::Failed("too many coefficients"))?;
    Ok(C::finished(public_package(
        &group,
        participants,
        threshold,
    )?))
}

#[cfg(test)]
mod tests {
    use frost_core::Field;

    use super::*;

    fn small_multiples<C: Suite>() {
        let g = <C::Group as Group>::generator();
        for x in [0u16, 1, 2, 3, 7, 64, 255, 1000, u16::MAX] {
            let scalar = (0..x).fold(<<C::Group as Group>::Field as Field>::zero(), |s, _| {
                s + <<C::Group as Group>::Field as Field>::one()
            });
            assert!(times_small::<C>(g, x) == g * scalar, "{x}");
        }
    }

    #[test]
    fn small_multiples_are_full_multiplications_in_both_groups() {
        small_multiples::<super::super::Taproot>();
        small_multiples::<super::super::Bls12381G1>();
    }
}
