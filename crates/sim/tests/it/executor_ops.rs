//! Executors joining and leaving the live chain by block operations: a deposit paid out of a
//! producer's bond, an exit that stops the executor's weight at once, the bond released after
//! the withdrawal delay — and a follower of the final blocks that applies the same bodies
//! ends with the chain's registry.

use phalanx_consensus::claims::{At, apply_final};
use phalanx_consensus::executor_ops::DepositError;
use phalanx_consensus::executors::ExecutorRegistry;
use phalanx_crypto::{PublicKey, SecretKey};
use phalanx_sim::chain::LiveChain;
use phalanx_spec::ChainSpec;
use phalanx_spec::devnet::DevnetParams;
use phalanx_types::{
    Epoch, ExecutorDeposit, ExecutorExit, ExecutorIndex, ProducerIndex, SignedExecutorDeposit,
    SignedExecutorExit,
};

use crate::live_util::Empty;

fn advance_epochs(chain: &mut LiveChain, now: &mut u64, epochs: u64, slots_per_epoch: u64) {
    let end = *now + epochs * slots_per_epoch * chain.slot_ms();
    while *now < end {
        *now += 100;
        chain.advance(*now);
    }
}

#[test]
fn executors_join_and_leave_by_block_operations() {
    let spec = ChainSpec::preset("minimal").unwrap();
    let spe = spec.slots_per_epoch;
    let mut params = DevnetParams::new("executor-ops", spec.clone());
    params.accounts = 0;
    params.executors = 2;
    let (mut chain, genesis, keys) = LiveChain::new(4, 2, params, Box::new(Empty), None).unwrap();
    let signing = chain.signing();
    let producer = &keys.producers[1].1;
    let fresh = SecretKey::key_gen(&[0x5e; 32]).unwrap();
    let message = ExecutorDeposit {
        pubkey: fresh.public_key().to_bytes(),
        reward_address: alloy_primitives::Address::repeat_byte(0x0e),
        amount: spec.min_executor_bond,
        producer: ProducerIndex(1),
    };
    let deposit = SignedExecutorDeposit {
        executor_signature: signing.sign(&message, &fresh),
        producer_signature: signing.sign(&message, producer),
        message: message.clone(),
    };
    // Refused at the door: signed by the wrong producer, or by nobody holding the key.
    let mut unpaid = deposit.clone();
    unpaid.producer_signature = signing.sign(&message, &keys.producers[0].1);
    assert_eq!(
        chain.submit_deposit(unpaid),
        Err(DepositError::BadProducerSignature(1))
    );
    let mut stolen = deposit.clone();
    stolen.executor_signature = signing.sign(&message, producer);
    assert_eq!(
        chain.submit_deposit(stolen),
        Err(DepositError::BadExecutorSignature)
    );
    chain.submit_deposit(deposit.clone()).unwrap();
    let bond_before = chain.executors().producer_bond(ProducerIndex(1)).unwrap();

    let mut now = 0;
    advance_epochs(&mut chain, &mut now, 4, spe);
    let new = ExecutorIndex(2);
    let epoch = Epoch(now / chain.slot_ms() / spe);
    assert_eq!(
        chain.executors().get(new).map(|e| e.pubkey),
        Some(fresh.public_key()),
        "the deposit is on chain at the next index"
    );
    assert_eq!(chain.executors().weight(new, epoch), spec.min_executor_bond);
    assert_eq!(
        chain.executors().producer_bond(ProducerIndex(1)),
        Some(bond_before - spec.min_executor_bond),
        "the producer paid for it"
    );
    // Once final, submitting it again is refused: the key is an executor's.
    assert!(matches!(
        chain.submit_deposit(deposit),
        Err(DepositError::Registry(_))
    ));

    // Executor 0 leaves: weightless at once, gone after the delay.
    let exit = ExecutorExit {
        executor: ExecutorIndex(0),
        epoch: Epoch(0),
    };
    let signed_exit = SignedExecutorExit {
        signature: signing.sign(&exit, &keys.executors[0].1),
        message: exit.clone(),
    };
    let mut forged = signed_exit.clone();
    forged.signature = signing.sign(&exit, &keys.executors[1].1);
    assert!(chain.submit_exit(forged).is_err());
    chain.submit_exit(signed_exit).unwrap();
    advance_epochs(&mut chain, &mut now, 2, spe);
    let epoch = Epoch(now / chain.slot_ms() / spe);
    let exiting = chain.executors().get(ExecutorIndex(0)).cloned().unwrap();
    let exit_epoch = exiting.exit_epoch.expect("the exit is on chain");
    assert_eq!(chain.executors().weight(ExecutorIndex(0), epoch), 0);
    assert!(chain.executors().weight(ExecutorIndex(1), epoch) > 0);
    let status = chain.status();
    assert_eq!(
        (status.executors_deposited, status.executors_exited),
        (1, 1)
    );

    let released_at = exit_epoch.0 + spec.executor_withdrawal_delay_epochs;
    let to_go = released_at.saturating_sub(epoch.0) + 3;
    advance_epochs(&mut chain, &mut now, to_go, spe);
    assert!(
        chain.executors().get(ExecutorIndex(0)).is_none(),
        "released after the delay (exit at epoch {}, now epoch {})",
        exit_epoch.0,
        now / chain.slot_ms() / spe
    );

    // A follower of the final blocks, applying each body as a light client does, ends with
    // the chain's registry.
    let finalized = chain.finalized_after(chain.genesis_root());
    assert!(
        finalized
            .iter()
            .map(|f| f.block.body.executor_deposits.len())
            .sum::<usize>()
            == 1,
        "the deposit is carried once on the final chain"
    );
    let producer_keys: Vec<PublicKey> =
        keys.producers.iter().map(|(_, k)| k.public_key()).collect();
    let key = |p: u64| producer_keys.get(p as usize).copied();
    let mut follower = ExecutorRegistry::from_genesis(&genesis).unwrap();
    for f in &finalized {
        let header = &f.block.header.message;
        let at = At {
            producer: header.producer,
            epoch: Epoch(header.slot.0 / spe),
            producer_key: &key,
        };
        apply_final(&f.block.body, &at, &mut follower, &signing).unwrap();
    }
    assert!(follower.get(ExecutorIndex(0)).is_none());
    assert_eq!(follower.get(new), chain.executors().get(new));
    assert_eq!(
        follower.producer_bond(ProducerIndex(1)),
        chain.executors().producer_bond(ProducerIndex(1))
    );
    assert_eq!(&follower, chain.executors());
}
