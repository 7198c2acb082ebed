use phalanx_crypto::bls::{PublicKey, Signature};
use phalanx_dv::threshold::{
    ThresholdError, deal, lagrange_at_zero, recover_public_key, recover_signature, verify_partial,
};
use proptest::prelude::*;

use crate::rng;

#[test]
fn any_m_partials_recover_a_signature_blst_verifies_under_the_group_key() {
    let (poly, shares) = deal(3, 5, &mut rng(1)).unwrap();
    let msg = b"attestation signing root";
    let partials: Vec<_> = shares
        .iter()
        .map(|s| (s.index, s.secret_key().unwrap().sign(msg).to_bytes()))
        .collect();
    let group = PublicKey::from_bytes(poly.public_key().as_slice()).unwrap();
    for subset in [[0, 1, 2], [0, 2, 4], [4, 3, 1], [1, 2, 3]] {
        let chosen: Vec<_> = subset.iter().map(|&i| partials[i]).collect();
        let sig = recover_signature(&chosen, 3).unwrap();
        let sig = Signature::from_bytes(sig.as_slice()).unwrap();
        assert!(sig.verify(&group, msg), "subset {subset:?}");
        assert!(!sig.verify(&group, b"another message"));
    }
    // Each partial verifies against its public share, not another's.
    for (s, (i, p)) in shares.iter().zip(&partials) {
        assert!(verify_partial(&poly.public_share(*i), msg, p));
        assert!(verify_partial(&s.public_share(), msg, p));
        assert!(!verify_partial(&poly.public_share(i % 5 + 1), msg, p));
    }
}

#[test]
fn fewer_than_m_partials_do_not_make_a_signature() {
    let (poly, shares) = deal(3, 4, &mut rng(2)).unwrap();
    let msg = b"m";
    let partials: Vec<_> = shares
        .iter()
        .map(|s| (s.index, s.secret_key().unwrap().sign(msg).to_bytes()))
        .collect();
    assert_eq!(
        recover_signature(&partials[..2], 3),
        Err(ThresholdError::NotEnough { have: 2, need: 3 })
    );
    // Interpolating 2 points as if the threshold were 2 gives a wrong key.
    let wrong = recover_signature(&partials[..2], 2).unwrap();
    assert!(!verify_partial(&poly.public_key(), msg, &wrong));
}

#[test]
fn public_shares_recover_the_group_key_and_indices_are_checked() {
    let (poly, _) = deal(2, 3, &mut rng(3)).unwrap();
    let pks: Vec<_> = (1..=3).map(|i| (i, poly.public_share(i))).collect();
    assert_eq!(recover_public_key(&pks[1..], 2).unwrap(), poly.public_key());
    assert_eq!(lagrange_at_zero(&[1, 0]), Err(ThresholdError::ZeroIndex));
    assert_eq!(
        lagrange_at_zero(&[2, 2]),
        Err(ThresholdError::DuplicateIndex(2))
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]
    #[test]
    fn garbage_partials_never_panic_recovery(bytes in proptest::collection::vec(any::<u8>(), 96 * 3)) {
        let partials: Vec<_> = bytes
            .chunks(96)
            .enumerate()
            .map(|(i, c)| (i as u32 + 1, phalanx_crypto::bls::SignatureBytes::from_slice(c)))
            .collect();
        let _ = recover_signature(&partials, 3);
    }
}

#[test]
fn batch_check_of_partials_over_one_message_catches_any_bad_one() {
    use phalanx_dv::threshold::{g2_affine, verify_same_message};
    let (poly, shares) = phalanx_dv::threshold::deal(3, 4, &mut crate::rng(41)).unwrap();
    let msg = b"one signing root";
    let items: Vec<_> = shares
        .iter()
        .map(|s| {
            let pk = blstrs::G1Affine::from_compressed(
                poly.public_share(s.index).as_slice().try_into().unwrap(),
            )
            .unwrap();
            let sig = g2_affine(&s.secret_key().unwrap().sign(msg).to_bytes()).unwrap();
            (pk, sig)
        })
        .collect();
    let mut r = crate::rng(42);
    assert!(verify_same_message(msg, &items, &mut r));
    assert!(!verify_same_message(b"another root", &items, &mut r));
    assert!(!verify_same_message(msg, &[], &mut r));
    // One partial signed by another share, or over another message: the batch fails.
    let mut swapped = items.clone();
    swapped[1].1 = items[2].1;
    assert!(!verify_same_message(msg, &swapped, &mut r));
    let mut other = items.clone();
    other[0].1 = g2_affine(&shares[0].secret_key().unwrap().sign(b"x").to_bytes()).unwrap();
    assert!(!verify_same_message(msg, &other, &mut r));
    // Two bad partials whose errors would cancel under fixed weights still fail: shift one
    // signature by +D and another by −D.
    let d = <blstrs::G2Projective as group::Group>::generator();
    let mut cancel = items.clone();
    cancel[0].1 = (blstrs::G2Projective::from(items[0].1) + d).into();
    cancel[1].1 = (blstrs::G2Projective::from(items[1].1) - d).into();
    assert!(!verify_same_message(msg, &cancel, &mut r));
}
