use alloy_primitives::B256;
use phalanx_dv::ballot::{Ballot, BallotError, DecryptionShare, Electorate, Proposal};
use phalanx_dv::threshold::deal;

use crate::{operators, rng};

#[test]
fn the_tally_is_decrypted_and_verifiable_without_revealing_ballots() {
    let (keys, _) = operators(5, 21);
    let ids: Vec<_> = keys.iter().map(|k| k.id()).collect();
    let (poly, shares) = deal(4, 5, &mut rng(22)).unwrap();
    let gk = poly.public_key();
    let pub_shares: Vec<_> = (1..=5).map(|i| poly.public_share(i)).collect();
    let electorate = Electorate {
        members: &ids,
        threshold: 4,
        group_key: &gk,
        public_shares: &pub_shares,
    };
    let proposal = Proposal {
        lock_hash: B256::repeat_byte(1),
        description: "replace op-2 by op-6".into(),
        new_operators: ids.clone(),
        new_threshold: 4,
    };
    let mut r = rng(23);
    let votes = [true, false, true, true, true];
    let ballots: Vec<Ballot> = keys
        .iter()
        .zip(votes)
        .map(|(k, v)| Ballot::cast(&proposal, &gk, v, k, &mut r).unwrap())
        .collect();
    // Two ballots with the same vote look unrelated (fresh randomness).
    assert_ne!(ballots[0].b, ballots[2].b);
    let dshares: Vec<_> = shares[..4]
        .iter()
        .map(|s| DecryptionShare::create(&ballots, s, &mut r).unwrap())
        .collect();
    let record = electorate
        .record(proposal.clone(), ballots.clone(), dshares.clone())
        .unwrap();
    assert_eq!(record.yes, 4);
    assert!(record.approved);
    record.verify(&electorate).unwrap();

    // A recorded result that lies is caught.
    let mut lie = record.clone();
    lie.yes = 5;
    assert!(matches!(
        lie.verify(&electorate),
        Err(BallotError::WrongResult { .. })
    ));

    // A ballot replayed under another voter's name fails.
    let mut replayed = ballots[0].clone();
    replayed.voter = ids[1];
    assert!(replayed.verify(&proposal.hash(), &gk).is_err());

    // A ballot whose ciphertext was changed (e.g. to encrypt 2) no longer proves 0-or-1.
    let mut doubled = ballots[0].clone();
    doubled.b = ballots[2].b;
    assert!(doubled.verify(&proposal.hash(), &gk).is_err());

    // A decryption share made with the wrong key share is rejected.
    let mut bad = dshares[0].clone();
    bad.index = 2;
    assert!(matches!(
        electorate.decrypt(
            &ballots,
            &[
                bad,
                dshares[1].clone(),
                dshares[2].clone(),
                dshares[3].clone()
            ]
        ),
        Err(BallotError::BadDecryptionShare(2))
    ));

    // A non-member cannot vote, a member cannot vote twice.
    let (outsider, _) = operators(1, 99);
    let extra = Ballot::cast(&proposal, &gk, true, &outsider[0], &mut r).unwrap();
    assert!(
        electorate
            .check_ballots(&proposal.hash(), &[extra])
            .is_err()
    );
    let twice = vec![ballots[0].clone(), ballots[0].clone()];
    assert!(matches!(
        electorate.check_ballots(&proposal.hash(), &twice),
        Err(BallotError::DoubleVote(_))
    ));
}

#[test]
fn a_vote_below_the_threshold_does_not_approve() {
    let (keys, _) = operators(4, 31);
    let ids: Vec<_> = keys.iter().map(|k| k.id()).collect();
    let (poly, shares) = deal(3, 4, &mut rng(32)).unwrap();
    let gk = poly.public_key();
    let pub_shares: Vec<_> = (1..=4).map(|i| poly.public_share(i)).collect();
    let electorate = Electorate {
        members: &ids,
        threshold: 3,
        group_key: &gk,
        public_shares: &pub_shares,
    };
    let proposal = Proposal {
        lock_hash: B256::ZERO,
        description: "n=5".into(),
        new_operators: ids.clone(),
        new_threshold: 4,
    };
    let mut r = rng(33);
    let ballots: Vec<_> = keys
        .iter()
        .zip([true, false, false, true])
        .map(|(k, v)| Ballot::cast(&proposal, &gk, v, k, &mut r).unwrap())
        .collect();
    let ds: Vec<_> = shares[1..]
        .iter()
        .map(|s| DecryptionShare::create(&ballots, s, &mut r).unwrap())
        .collect();
    let rec = electorate.record(proposal, ballots, ds).unwrap();
    assert_eq!((rec.yes, rec.approved), (2, false));
}
